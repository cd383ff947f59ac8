//! Writes rules of the model back out as `iptables-restore` input and as `nft -f` syntax.
//! Used to load generated rule sets into the kernel and for parse/print round trips.

use std::net::IpAddr;

use crate::model::{Action, AddrType, Dir, MarkReg, Match, NatPorts, NatSource, Test, proto_name};
use crate::range::{AddrRange, IdRange, PortRange};

/// One rule's options as `iptables-restore` reads them (without `-A CHAIN`).
/// `None`: the rule has a test iptables cannot express.
pub fn xtables_rule(matches: &[Match], actions: &[Action]) -> Option<String> {
    let tests = matches.iter().map(xt_match);
    let actions = actions.iter().map(xt_action);
    Some(tests.chain(actions).collect::<Option<Vec<_>>>()?.join(" "))
}

/// One test as iptables writes it; `None` when iptables cannot express it.
fn xt_match(m: &Match) -> Option<String> {
    let not = if m.negated { "! " } else { "" };
    Some(match &m.test {
        Test::Protocol { protos } if protos.len() == 1 => {
            format!("{not}-p {}", proto_name(protos[0]))
        }
        Test::Addr { dir, ranges, .. } => {
            let flag = if *dir == Dir::Src { "-s" } else { "-d" };
            match ranges.as_slice() {
                [r] if r.as_net().is_none() => {
                    let opt = if *dir == Dir::Src {
                        "--src-range"
                    } else {
                        "--dst-range"
                    };
                    format!("-m iprange {not}{opt} {}-{}", r.start, r.end)
                }
                _ if !m.negated || ranges.len() == 1 => {
                    let nets: Option<Vec<String>> = ranges
                        .iter()
                        .map(|r| r.as_net().map(|n| n.to_string()))
                        .collect();
                    format!("{not}{flag} {}", nets?.join(","))
                }
                _ => return None,
            }
        }
        Test::Iface { dir, patterns } if patterns.len() == 1 => {
            let flag = if *dir == Dir::Src { "-i" } else { "-o" };
            let p = &patterns[0];
            format!(
                "{not}{flag} {}{}",
                p.name,
                if p.wildcard { "+" } else { "" }
            )
        }
        Test::Port {
            dir,
            protos,
            ranges,
        } if protos.len() == 1 => {
            let d = if *dir == Dir::Src { "s" } else { "d" };
            if ranges.len() == 1 {
                format!(
                    "-m {} {not}--{d}port {}",
                    proto_name(protos[0]),
                    xt_ports(&ranges[0])
                )
            } else {
                let list: Vec<String> = ranges.iter().map(xt_ports).collect();
                format!("-m multiport {not}--{d}ports {}", list.join(","))
            }
        }
        Test::Uid { ranges } if ranges.len() == 1 => {
            format!("-m owner {not}--uid-owner {}", ranges[0])
        }
        Test::Gid {
            ranges,
            suppl_groups,
        } if ranges.len() == 1 => format!(
            "-m owner {not}--gid-owner {}{}",
            ranges[0],
            if *suppl_groups { " --suppl-groups" } else { "" }
        ),
        Test::SocketExists => format!("-m owner {not}--socket-exists"),
        Test::Mark { reg, mask, values } if values.len() == 1 && values[0].0 == values[0].1 => {
            let module = if *reg == MarkReg::Mark {
                "mark"
            } else {
                "connmark"
            };
            format!("-m {module} {not}--mark 0x{:x}/0x{mask:x}", values[0].0)
        }
        Test::CtState { states } => {
            let names: Vec<String> = states
                .iter()
                .map(|s| format!("{s:?}").to_uppercase())
                .collect();
            format!("-m conntrack {not}--ctstate {}", names.join(","))
        }
        Test::AddrType {
            dir,
            types,
            limit_iface_out,
        } => {
            let opt = if *dir == Dir::Src {
                "--src-type"
            } else {
                "--dst-type"
            };
            let names: Vec<String> = types.iter().map(addr_type_name).collect();
            let limit = if *limit_iface_out {
                " --limit-iface-out"
            } else {
                ""
            };
            format!("-m addrtype {not}{opt} {}{limit}", names.join(","))
        }
        Test::Always => "-m comment --comment meshleak".into(),
        _ => return None,
    })
}

/// One action as an iptables target.
fn xt_action(a: &Action) -> Option<String> {
    Some(match a {
        Action::Accept => "-j ACCEPT".into(),
        Action::Drop => "-j DROP".into(),
        Action::Reject => "-j REJECT".into(),
        Action::Return => "-j RETURN".into(),
        Action::Jump { chain } => format!("-j {chain}"),
        Action::Goto { chain } => format!("-g {chain}"),
        Action::Redirect { ports: Some(p) } => format!("-j REDIRECT --to-ports {p}"),
        Action::Redirect { ports: None } => "-j REDIRECT".into(),
        Action::Dnat {
            addr: Some(a),
            ports,
        } => {
            format!("-j DNAT --to-destination {}", nat_to(a, ports))
        }
        Action::SetMark(set) if set.copy.is_none() && set.or == 0 => {
            let target = if set.reg == MarkReg::Mark {
                "MARK"
            } else {
                "CONNMARK"
            };
            format!("-j {target} --set-xmark 0x{:x}/0x{:x}", set.xor, !set.keep)
        }
        Action::SetMark(set) if set.or == 0 && set.xor == 0 => match (set.reg, set.copy) {
            (MarkReg::CtMark, Some((MarkReg::Mark, nfmask))) => {
                format!(
                    "-j CONNMARK --save-mark --nfmask 0x{nfmask:x} --ctmask 0x{:x}",
                    !set.keep
                )
            }
            (MarkReg::Mark, Some((MarkReg::CtMark, ctmask))) => {
                format!(
                    "-j CONNMARK --restore-mark --nfmask 0x{:x} --ctmask 0x{ctmask:x}",
                    !set.keep
                )
            }
            _ => return None,
        },
        Action::Notrack => "-j CT --notrack".into(),
        Action::Continue { name } if name == "LOG" => "-j LOG".into(),
        _ => return None,
    })
}

/// One rule as an nft statement list (without `add rule FAMILY TABLE CHAIN`).
/// `None`: the rule has a test nft cannot express (e.g. `--suppl-groups`).
pub fn nft_rule(matches: &[Match], actions: &[Action]) -> Option<String> {
    let tests = matches.iter().map(nft_match);
    let actions = actions.iter().map(nft_action);
    Some(tests.chain(actions).collect::<Option<Vec<_>>>()?.join(" "))
}

/// One test as an nft expression; `None` when nft cannot express it.
fn nft_match(m: &Match) -> Option<String> {
    let op = if m.negated { "!= " } else { "" };
    Some(match &m.test {
        Test::Protocol { protos } => format!(
            "meta l4proto {op}{}",
            set(protos.iter().map(|p| proto_name(*p)))
        ),
        Test::NfProto { version } => format!("meta nfproto {op}{}", version.family().name()),
        Test::Addr {
            dir,
            version,
            ranges,
        } => {
            let proto = if version.family().name() == "ipv4" {
                "ip"
            } else {
                "ip6"
            };
            let field = if *dir == Dir::Src { "saddr" } else { "daddr" };
            format!(
                "{proto} {field} {op}{}",
                set(ranges.iter().map(AddrRange::to_string))
            )
        }
        Test::Iface { dir, patterns } => {
            let key = if *dir == Dir::Src {
                "iifname"
            } else {
                "oifname"
            };
            let names = patterns
                .iter()
                .map(|p| format!("\"{}{}\"", p.name, if p.wildcard { "*" } else { "" }));
            format!("{key} {op}{}", set(names))
        }
        Test::Port {
            dir,
            protos,
            ranges,
        } => {
            let proto = match protos.as_slice() {
                [] => "th".to_string(),
                [p] => proto_name(*p),
                _ => return None,
            };
            let field = if *dir == Dir::Src { "sport" } else { "dport" };
            format!(
                "{proto} {field} {op}{}",
                set(ranges.iter().map(PortRange::to_string))
            )
        }
        Test::Uid { ranges } => format!(
            "meta skuid {op}{}",
            set(ranges.iter().map(IdRange::to_string))
        ),
        Test::Gid {
            ranges,
            suppl_groups: false,
        } => format!(
            "meta skgid {op}{}",
            set(ranges.iter().map(IdRange::to_string))
        ),
        Test::Mark { reg, mask, values } => {
            let key = if *reg == MarkReg::Mark {
                "meta mark"
            } else {
                "ct mark"
            };
            let vals = values.iter().map(|(a, b)| {
                if a == b {
                    format!("0x{a:x}")
                } else {
                    format!("0x{a:x}-0x{b:x}")
                }
            });
            if *mask == u32::MAX {
                format!("{key} {op}{}", set(vals))
            } else {
                // After a bitwise expression nft needs the operator spelled out.
                let op = if m.negated { "!=" } else { "==" };
                format!("{key} and 0x{mask:x} {op} {}", set(vals))
            }
        }
        Test::CtState { states } => {
            let names: Vec<String> = states
                .iter()
                .map(|s| format!("{s:?}").to_lowercase())
                .collect();
            format!("ct state {op}{{ {} }}", names.join(", "))
        }
        Test::AddrType {
            dir: Dir::Dst,
            types,
            limit_iface_out: false,
        } => {
            format!(
                "fib daddr type {op}{}",
                set(types.iter().map(|t| addr_type_name(t).to_lowercase()))
            )
        }
        Test::Always => "counter".into(),
        Test::TcpFlags { mask, cmp } => {
            let op = if m.negated { "!=" } else { "==" };
            format!("tcp flags & 0x{mask:02x} {op} 0x{cmp:02x}")
        }
        // What meshleak could not lift, named in brackets where it stands.
        Test::Unknown { .. } => format!("[not modelled: {}]", m.text),
        _ => return None,
    })
}

/// One action as an nft statement.
fn nft_action(a: &Action) -> Option<String> {
    Some(match a {
        Action::Unknown { name } => format!("[not modelled: {name}]"),
        Action::Accept => "accept".into(),
        Action::Drop => "drop".into(),
        Action::Reject => "reject".into(),
        Action::Return => "return".into(),
        Action::Jump { chain } => format!("jump {chain}"),
        Action::Goto { chain } => format!("goto {chain}"),
        Action::Redirect { ports: Some(p) } => format!("redirect to :{p}"),
        Action::Redirect { ports: None } => "redirect".into(),
        Action::Dnat {
            addr: Some(a),
            ports,
        } => {
            let family = if a.is_ipv6() { "ip6" } else { "ip" };
            format!("dnat {family} to {}", nat_to(a, ports))
        }
        Action::SetMark(set) if set.copy.is_none() && set.keep == 0 && set.or == 0 => {
            let key = if set.reg == MarkReg::Mark {
                "meta mark"
            } else {
                "ct mark"
            };
            format!("{key} set 0x{:x}", set.xor)
        }
        Action::SetMark(set) if set.keep == 0 && set.or == 0 && set.xor == 0 => {
            match (set.reg, set.copy) {
                (MarkReg::CtMark, Some((MarkReg::Mark, u32::MAX))) => {
                    "ct mark set meta mark".into()
                }
                (MarkReg::Mark, Some((MarkReg::CtMark, u32::MAX))) => {
                    "meta mark set ct mark".into()
                }
                _ => return None,
            }
        }
        Action::Notrack => "notrack".into(),
        Action::Continue { name } if name == "TRACE" => "meta nftrace set 1".into(),
        Action::Continue { .. } => "log".into(),
        Action::Snat { addr, ports } if !ports.unknown => {
            let (family, to) = match addr {
                NatSource::Kept => ("", String::new()),
                NatSource::To(a) => (family_of(a), a.to_string()),
                NatSource::Range(a, b) => (family_of(a), format!("{a}-{b}")),
                NatSource::Unknown => return None,
            };
            let to = match ports.range {
                Some(p) if to.contains(':') => format!("[{to}]:{p}"),
                Some(p) => format!("{to}:{p}"),
                None => to,
            };
            format!("snat {family}to {to}{}", nat_flags(ports))
        }
        Action::Masquerade { ports } if !ports.unknown => match ports.range {
            Some(p) => format!("masquerade to :{p}{}", nat_flags(ports)),
            None => format!("masquerade{}", nat_flags(ports)),
        },
        Action::Tproxy { port: Some(p) } => format!("tproxy to :{p}"),
        Action::Tproxy { port: None } => "tproxy".into(),
        _ => return None,
    })
}

/// A verdict map as nft prints it, `KEY vmap { VALUE : VERDICT, ... }`, from each
/// element's test and verdict; `None` when an element cannot be printed or the elements do
/// not test one key.
pub(crate) fn nft_vmap<'a>(
    arms: impl Iterator<Item = (&'a [Match], &'a Action)>,
) -> Option<String> {
    let (mut key, mut items) = (None, Vec::new());
    for (matches, action) in arms {
        let test = nft_rule(matches, &[])?;
        let verdict = nft_action(action)?;
        let (k, v) = match test.strip_suffix(" }").and_then(|t| t.split_once(" { ")) {
            Some(kv) => kv,
            None => test.rsplit_once(' ')?,
        };
        if key.get_or_insert_with(|| k.to_string()) != k {
            return None;
        }
        items.push(format!("{v} : {verdict}"));
    }
    Some(format!("{} vmap {{ {} }}", key?, items.join(", ")))
}

/// A NAT destination as both tools write it: `ADDR`, `ADDR:PORT`, `[ADDR6]:PORT`.
/// `ip ` or `ip6 `: the family a NAT statement to this address maps.
fn family_of(addr: &IpAddr) -> &'static str {
    if addr.is_ipv6() { "ip6 " } else { "ip " }
}

/// A NAT statement's flags as nft writes them: ` random,persistent`.
fn nat_flags(ports: &NatPorts) -> String {
    let names: Vec<&str> = ports.flag_names().collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(" {}", names.join(","))
    }
}

fn nat_to(addr: &IpAddr, ports: &Option<PortRange>) -> String {
    match ports {
        Some(p) if addr.is_ipv6() => format!("[{addr}]:{p}"),
        Some(p) => format!("{addr}:{p}"),
        None => addr.to_string(),
    }
}

fn set(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.len() == 1 {
        items[0].clone()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}

fn xt_ports(p: &PortRange) -> String {
    if p.start == p.end {
        p.start.to_string()
    } else {
        format!("{}:{}", p.start, p.end)
    }
}

fn addr_type_name(t: &AddrType) -> String {
    format!("{t:?}").to_uppercase()
}
