//! xtables match modules (`-m NAME ...`): each consumes its own options and yields typed
//! tests. Modules meshleak does not model become one `Unknown` match holding their text.

use super::ParseError;
use super::xtables::{Ctx, Cursor, resolve_option};
use crate::model::{AddrType, CtState, Dir, MarkReg, Match, Test};
use crate::range::{AddrRange, IdRange, PortRange};

/// A comma-separated option value, each item parsed by `parse`; `what` names a bad item.
fn list<T>(
    ctx: &Ctx,
    value: &str,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, ParseError> {
    value
        .split(',')
        .map(|item| parse(item).ok_or_else(|| ctx.err(Some(item), what.to_string())))
        .collect()
}

/// `-s`/`-d` value: a comma-separated list of addresses or networks.
pub(super) fn addr_test(ctx: &Ctx, dir: Dir, value: &str) -> Result<Test, ParseError> {
    // iptables also takes masks that are not prefixes (10.0.0.0/255.0.255.0): valid, but
    // not a range meshleak models, so an unknown test (as the native reader makes it).
    if let Some((a, m)) = value.split_once('/')
        && let (Ok(a), Ok(m)) = (a.parse::<std::net::IpAddr>(), m.parse::<std::net::IpAddr>())
        && a.is_ipv4() == m.is_ipv4()
        && AddrRange::parse(value).is_none()
    {
        let letter = if dir == Dir::Src { 's' } else { 'd' };
        return Ok(Test::Unknown {
            name: format!("-{letter} with a non-prefix mask"),
        });
    }
    let ranges = list(ctx, value, "not an address or network", AddrRange::parse)?;
    let version = ranges[0].version();
    if ranges.iter().any(|r| r.version() != version) {
        return Err(ctx.err(Some(value), "mixes IPv4 and IPv6 addresses"));
    }
    Ok(Test::Addr {
        dir,
        version,
        ranges,
    })
}

/// Every long option of the modules meshleak reads, so abbreviations resolve as iptables
/// resolves them; options read here but not modelled become unknown matches.
fn known_options(module: &str) -> Option<&'static [&'static str]> {
    Some(match module {
        "tcp" => &[
            "--source-port",
            "--sport",
            "--destination-port",
            "--dport",
            "--tcp-flags",
            "--syn",
            "--tcp-option",
        ],
        "udp" => &["--source-port", "--sport", "--destination-port", "--dport"],
        "sctp" => &[
            "--source-port",
            "--sport",
            "--destination-port",
            "--dport",
            "--chunk-types",
        ],
        "multiport" => &[
            "--source-ports",
            "--sports",
            "--destination-ports",
            "--dports",
            "--ports",
        ],
        "owner" => &[
            "--uid-owner",
            "--gid-owner",
            "--socket-exists",
            "--suppl-groups",
        ],
        "mark" | "connmark" => &["--mark"],
        "conntrack" => &[
            "--ctstate",
            "--ctproto",
            "--ctorigsrc",
            "--ctorigdst",
            "--ctreplsrc",
            "--ctrepldst",
            "--ctorigsrcport",
            "--ctorigdstport",
            "--ctreplsrcport",
            "--ctrepldstport",
            "--ctstatus",
            "--ctexpire",
            "--ctdir",
        ],
        "state" => &["--state"],
        "addrtype" => &[
            "--src-type",
            "--dst-type",
            "--limit-iface-in",
            "--limit-iface-out",
        ],
        "iprange" => &["--src-range", "--dst-range"],
        "comment" => &["--comment"],
        _ => return None,
    })
}

/// Reads every option of module `name` at the cursor; `text_start` is where the module's
/// text begins (`-m NAME`, or the first option when restore input leaves out `-m tcp`).
/// One `-m NAME` module's options as tests. The comment module's `--comment` is no test: its
/// text goes to `comment` (the rule's).
pub(super) fn parse_module(
    ctx: &Ctx,
    name: &str,
    protos: &[u8],
    cur: &mut Cursor,
    text_start: usize,
    comment: &mut Option<String>,
) -> Result<Vec<Match>, ParseError> {
    let mut out: Vec<Match> = Vec::new();
    let known = known_options(name).is_some();
    while cur.at_module_option() {
        let start = cur.pos;
        let negated = cur.peek() == Some("!");
        if negated {
            cur.next();
        }
        let opt = cur.next().expect("at_module_option saw it");
        let test = match known_options(name).and_then(|k| resolve_option(opt, k)) {
            Some("--comment") if name == "comment" => {
                *comment = Some(cur.value(ctx, opt)?.to_string());
                continue;
            }
            Some(full) => option(ctx, name, full, protos, cur, &mut out)?,
            None => None,
        };
        let test = match test {
            Some(Test::Always) => continue,
            Some(test) => test,
            None => {
                // Unknown options take the words up to the next option as arguments.
                while cur.peek().is_some_and(|w| !w.starts_with('-') && w != "!") {
                    cur.next();
                }
                if !known {
                    continue;
                }
                Test::Unknown {
                    name: format!("{name} {opt}"),
                }
            }
        };
        out.push(Match {
            negated,
            test,
            text: cur.text_since(start),
        });
    }
    let whole = cur.text_since(text_start);
    if !known || (out.is_empty() && !matches!(name, "comment" | "tcp" | "udp" | "multiport")) {
        // A module meshleak does not model (e.g. `-m socket`) still restricts the packet.
        return Ok(vec![Match {
            negated: false,
            test: Test::Unknown {
                name: name.to_string(),
            },
            text: whole,
        }]);
    }
    // Each test is cited with its whole module text, as the rule shows it.
    for m in &mut out {
        m.text = whole.clone();
    }
    Ok(out)
}

/// TCP flag names as iptables takes them (`SYN,ACK`, `ALL`, `NONE`), as bits.
fn tcp_flag_bits(list: &str) -> Option<u8> {
    list.split(',').try_fold(0u8, |bits, name| {
        let bit = match name.to_ascii_uppercase().as_str() {
            "FIN" => 0x01,
            "SYN" => 0x02,
            "RST" => 0x04,
            "PSH" => 0x08,
            "ACK" => 0x10,
            "URG" => 0x20,
            "ALL" => 0x3f,
            "NONE" => 0,
            _ => return None,
        };
        Some(bits | bit)
    })
}

/// One option of a module. `Ok(None)`: an option or module meshleak does not model.
fn option(
    ctx: &Ctx,
    module: &str,
    opt: &str,
    protos: &[u8],
    cur: &mut Cursor,
    prev: &mut [Match],
) -> Result<Option<Test>, ParseError> {
    let test = match (module, opt) {
        (
            "tcp" | "udp" | "sctp",
            "--dport" | "--destination-port" | "--sport" | "--source-port",
        ) => {
            let value = cur.value(ctx, opt)?;
            let range = PortRange::parse(value)
                .ok_or_else(|| ctx.err(Some(value), "not a port or port range"))?;
            Test::Port {
                dir: if opt.contains('d') {
                    Dir::Dst
                } else {
                    Dir::Src
                },
                protos: vec![crate::model::proto_number(module).expect("known module")],
                ranges: vec![range],
            }
        }
        ("multiport", "--dports" | "--destination-ports" | "--sports" | "--source-ports") => {
            let value = cur.value(ctx, opt)?;
            let ranges = list(ctx, value, "not a port or port range", PortRange::parse)?;
            Test::Port {
                dir: if opt.contains('d') {
                    Dir::Dst
                } else {
                    Dir::Src
                },
                protos: protos.to_vec(),
                ranges,
            }
        }
        ("owner", "--uid-owner") => match IdRange::parse(cur.value(ctx, opt)?) {
            Some(r) => Test::Uid { ranges: vec![r] },
            // A user name: only the machine that loaded the rules knows its id.
            None => return Ok(None),
        },
        ("owner", "--gid-owner") => match IdRange::parse(cur.value(ctx, opt)?) {
            Some(r) => Test::Gid {
                ranges: vec![r],
                suppl_groups: false,
            },
            None => return Ok(None),
        },
        ("owner", "--suppl-groups") => {
            let gid = prev.iter_mut().rev().find_map(|m| match &mut m.test {
                Test::Gid { suppl_groups, .. } => Some(suppl_groups),
                _ => None,
            });
            match gid {
                Some(flag) => *flag = true,
                None => {
                    return Err(ctx.err(Some(opt), "--suppl-groups needs --gid-owner before it"));
                }
            }
            Test::Always
        }
        ("owner", "--socket-exists") => Test::SocketExists,
        ("tcp", "--syn") => Test::TcpFlags {
            mask: 0x17,
            cmp: 0x02,
        },
        ("tcp", "--tcp-flags") => {
            let mut flags = || -> Result<u8, ParseError> {
                let value = cur.value(ctx, opt)?;
                tcp_flag_bits(value).ok_or_else(|| ctx.err(Some(value), "not a list of TCP flags"))
            };
            let (mask, cmp) = (flags()?, flags()?);
            Test::TcpFlags { mask, cmp }
        }
        ("mark" | "connmark", "--mark") => {
            let value = cur.value(ctx, opt)?;
            let (v, mask) = mark_value(ctx, value)?;
            Test::Mark {
                reg: if module == "mark" {
                    MarkReg::Mark
                } else {
                    MarkReg::CtMark
                },
                mask,
                values: vec![(v & mask, v & mask)],
            }
        }
        ("conntrack", "--ctstate") | ("state", "--state") => {
            let value = cur.value(ctx, opt)?;
            let states = list(ctx, value, "unknown conntrack state", CtState::from_name)?;
            Test::CtState { states }
        }
        ("addrtype", "--src-type" | "--dst-type") => {
            let value = cur.value(ctx, opt)?;
            let types = list(ctx, value, "unknown address type", AddrType::from_name)?;
            Test::AddrType {
                dir: if opt == "--src-type" {
                    Dir::Src
                } else {
                    Dir::Dst
                },
                types,
                limit_iface_out: false,
            }
        }
        ("addrtype", "--limit-iface-out") => {
            for m in prev.iter_mut() {
                if let Test::AddrType {
                    limit_iface_out, ..
                } = &mut m.test
                {
                    *limit_iface_out = true;
                }
            }
            Test::Always
        }
        ("iprange", "--src-range" | "--dst-range") => {
            let value = cur.value(ctx, opt)?;
            let range = AddrRange::parse(value)
                .ok_or_else(|| ctx.err(Some(value), "not an address range"))?;
            Test::Addr {
                dir: if opt == "--src-range" {
                    Dir::Src
                } else {
                    Dir::Dst
                },
                version: range.version(),
                ranges: vec![range],
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(test))
}

/// `VALUE[/MASK]`, decimal or hex, as `-m mark --mark` and `MARK --set-xmark` take it.
pub(super) fn mark_value(ctx: &Ctx, text: &str) -> Result<(u32, u32), ParseError> {
    let (v, m) = match text.split_once('/') {
        Some((v, m)) => (v, Some(m)),
        None => (text, None),
    };
    let value = parse_u32(v).ok_or_else(|| ctx.err(Some(text), "not a mark value"))?;
    let mask = match m {
        Some(m) => parse_u32(m).ok_or_else(|| ctx.err(Some(text), "not a mark mask"))?,
        None => u32::MAX,
    };
    Ok((value, mask))
}

pub(super) fn parse_u32(text: &str) -> Option<u32> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}
