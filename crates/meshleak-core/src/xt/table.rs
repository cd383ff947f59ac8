//! Walks the entries of a legacy x_tables table (what `IPT_SO_GET_ENTRIES` returns) into the
//! rule model, the way libiptc rebuilds chains: built-in chains start at their hook entry and
//! end at their underflow (the policy); a user chain starts after an ERROR entry naming it
//! and ends with an implicit RETURN; the table ends with an ERROR entry named "ERROR".

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::bytes::{Bytes, Truncated};
use super::{matches, targets};
use crate::model::{
    Action, Backend, BaseChain, Chain, Dir, DumpFormat, Hook, IfacePattern, IpVersion, Match,
    Policy, Rule, Table, Test, proto_name,
};
use crate::parse::builtin_chains;
use crate::range::AddrRange;

/// What `IPT_SO_GET_INFO` says about a table.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TableInfo {
    pub name: String,
    pub valid_hooks: u32,
    pub hook_entry: [u32; 5],
    pub underflow: [u32; 5],
}

const HOOKS: [Hook; 5] = [
    Hook::Prerouting,
    Hook::Input,
    Hook::Forward,
    Hook::Output,
    Hook::Postrouting,
];

/// Offsets inside `struct ipt_entry` / `ip6t_entry` (checked against the uapi headers).
struct Layout {
    target_offset: usize,
    next_offset: usize,
    elems: usize,
}

const IPV4: Layout = Layout {
    target_offset: 88,
    next_offset: 90,
    elems: 112,
};
const IPV6: Layout = Layout {
    target_offset: 140,
    next_offset: 142,
    elems: 168,
};

/// `xt_entry_match` / `xt_entry_target` header: u16 size, name[29], revision.
const EXT_HEADER: usize = 32;
const INV_VIA_IN: u8 = 0x01;
const INV_VIA_OUT: u8 = 0x02;
const INV_SRCIP: u8 = 0x08;
const INV_DSTIP: u8 = 0x10;
const INV_FRAG: u8 = 0x20;
const INV_PROTO: u8 = 0x40;
const F_GOTO: u8 = 0x02;
const IPT_F_FRAG: u8 = 0x01;
const IP6T_F_PROTO: u8 = 0x01;
const IP6T_F_GOTO: u8 = 0x04;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{0}")]
    Truncated(#[from] Truncated),
    #[error("entry at offset {at}: {why}")]
    Entry { at: usize, why: String },
}

/// One entry as laid out in the blob.
struct Entry<'a> {
    at: usize,
    bytes: Bytes<'a>,
    target_offset: usize,
    target_name: String,
    target_revision: u8,
    target_data: Bytes<'a>,
}

fn entries<'a>(blob: Bytes<'a>, l: &Layout) -> Result<Vec<Entry<'a>>, DecodeError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < blob.len() {
        let next = blob.u16(at + l.next_offset, "entry next_offset")? as usize;
        let target_offset = blob.u16(at + l.target_offset, "entry target_offset")? as usize;
        if next < l.elems || target_offset < l.elems || target_offset + EXT_HEADER > next {
            return Err(DecodeError::Entry {
                at,
                why: format!("offsets do not fit (target {target_offset}, next {next})"),
            });
        }
        let bytes = blob.sub(at, next, "entry")?;
        let tsize = bytes.u16(target_offset, "target size")? as usize;
        if tsize < EXT_HEADER || target_offset + tsize > next {
            return Err(DecodeError::Entry {
                at,
                why: format!("target size {tsize} does not fit"),
            });
        }
        out.push(Entry {
            at,
            bytes,
            target_offset,
            target_name: bytes.name(target_offset + 2, 29, "target name")?,
            target_revision: bytes.u8(target_offset + 31, "target revision")?,
            target_data: bytes.sub(
                target_offset + EXT_HEADER,
                tsize - EXT_HEADER,
                "target data",
            )?,
        });
        at += next;
    }
    Ok(out)
}

/// Decodes a whole table of `version`'s family.
pub fn decode(
    info: &TableInfo,
    blob: &[u8],
    version: IpVersion,
    origin: &str,
) -> Result<Table, DecodeError> {
    let layout = match version {
        IpVersion::V4 => &IPV4,
        IpVersion::V6 => &IPV6,
    };
    let all = entries(Bytes::new(blob), layout)?;
    let builtins = builtin_chains(&info.name);

    // Where each chain starts (with its hook, for built-ins), to name jump targets and
    // split the entries.
    let mut starts: BTreeMap<usize, (String, Option<Hook>)> = BTreeMap::new();
    for (h, hook) in HOOKS.iter().enumerate() {
        if info.valid_hooks & (1 << h) != 0 {
            starts.insert(
                info.hook_entry[h] as usize,
                (hook_name(*hook).to_string(), Some(*hook)),
            );
        }
    }
    for (i, e) in all.iter().enumerate() {
        if e.target_name == "ERROR" {
            let name = e.target_data.name(0, 32, "chain name")?;
            if let (false, Some(next)) = (name == "ERROR", all.get(i + 1)) {
                starts.insert(next.at, (name, None));
            }
        }
    }
    let underflows: Vec<usize> = (0..5)
        .filter(|h| info.valid_hooks & (1 << h) != 0)
        .map(|h| info.underflow[h] as usize)
        .collect();

    let mut chains: Vec<Chain> = Vec::new();
    let mut current: Option<usize> = None;
    for (i, e) in all.iter().enumerate() {
        if let Some((name, hook)) = starts.get(&e.at) {
            let base = hook.and_then(|hook| {
                let (_, priority, chain_type) = builtins?.iter().find(|(c, _, _)| c == name)?;
                Some(BaseChain {
                    hook,
                    priority: *priority,
                    chain_type: *chain_type,
                    policy: Policy::Accept,
                })
            });
            chains.push(Chain {
                name: name.clone(),
                base,
                rules: Vec::new(),
            });
            current = Some(chains.len() - 1);
        }
        if e.target_name == "ERROR" {
            current = None;
            continue;
        }
        let Some(ci) = current else { continue };
        if underflows.contains(&e.at) && chains[ci].base.is_some() {
            // The underflow entry is the built-in chain's policy.
            let verdict = e.target_data.i32(0, "policy verdict")?;
            if let Some(b) = chains[ci].base.as_mut() {
                b.policy = if verdict == -1 {
                    Policy::Drop
                } else {
                    Policy::Accept
                };
            }
            current = None;
            continue;
        }
        // A user chain's last entry, before the next ERROR, is its implicit RETURN.
        if chains[ci].base.is_none() && all.get(i + 1).is_some_and(|n| n.target_name == "ERROR") {
            continue;
        }
        let rule = decode_rule(
            e,
            layout,
            version,
            &starts,
            &chains[ci].name,
            all.get(i + 1).map(|n| n.at),
        )?;
        chains[ci].rules.push(rule);
    }
    for c in &mut chains {
        for (i, r) in c.rules.iter_mut().enumerate() {
            r.position = i + 1;
        }
    }
    Ok(Table {
        backend: Backend::IptablesLegacy,
        family: version.family(),
        name: info.name.clone(),
        chains,
        origin: origin.to_string(),
        format: DumpFormat::IptablesSave,
    })
}

fn hook_name(h: Hook) -> &'static str {
    match h {
        Hook::Prerouting => "PREROUTING",
        Hook::Input => "INPUT",
        Hook::Forward => "FORWARD",
        Hook::Output => "OUTPUT",
        Hook::Postrouting => "POSTROUTING",
    }
}

fn decode_rule(
    e: &Entry,
    layout: &Layout,
    version: IpVersion,
    starts: &BTreeMap<usize, (String, Option<Hook>)>,
    chain: &str,
    next_entry: Option<usize>,
) -> Result<Rule, DecodeError> {
    let (mut text, mut matches, protos, goto) = match version {
        IpVersion::V4 => ip_part_v4(e.bytes)?,
        IpVersion::V6 => ip_part_v6(e.bytes)?,
    };
    // Matches between the header and the target.
    let mut at = layout.elems;
    let mut comment = None;
    while at < e.target_offset {
        let size = e.bytes.u16(at, "match size")? as usize;
        if size < EXT_HEADER || at + size > e.target_offset {
            return Err(DecodeError::Entry {
                at: e.at,
                why: format!("match size {size} does not fit"),
            });
        }
        let name = e.bytes.name(at + 2, 29, "match name")?;
        let revision = e.bytes.u8(at + 31, "match revision")?;
        let data = e
            .bytes
            .sub(at + EXT_HEADER, size - EXT_HEADER, "match data")?;
        if (name.as_str(), revision) == ("comment", 0) {
            comment = Some(matches::comment(data)?.into_boxed_str());
        }
        let d = matches::decode(&name, revision, data, version, &protos);
        let shown = d.alias.unwrap_or(&name).to_string();
        text += &format!(" -m {shown}{}", d.save);
        matches.extend(d.into_matches(&shown));
        at += size;
    }
    let flag = if goto { "-g" } else { "-j" };
    let actions = match e.target_name.as_str() {
        "" => {
            let v = e.target_data.i32(0, "standard verdict")?;
            match v {
                -1 => vec![named(&mut text, flag, "DROP", Action::Drop)],
                -2 => vec![named(&mut text, flag, "ACCEPT", Action::Accept)],
                -4 => vec![named(
                    &mut text,
                    flag,
                    "QUEUE",
                    Action::Unknown {
                        name: "QUEUE".into(),
                    },
                )],
                -5 => vec![named(&mut text, flag, "RETURN", Action::Return)],
                v if v >= 0 && Some(v as usize) == next_entry => vec![], // no target: fall through
                v if v >= 0 => {
                    let target = starts
                        .get(&(v as usize))
                        .map(|(n, _)| n.clone())
                        .ok_or_else(|| DecodeError::Entry {
                            at: e.at,
                            why: format!("jump to offset {v}, where no chain starts"),
                        })?;
                    let action = if goto {
                        Action::Goto {
                            chain: target.clone(),
                        }
                    } else {
                        Action::Jump {
                            chain: target.clone(),
                        }
                    };
                    vec![named(&mut text, flag, &target, action)]
                }
                v => vec![named(
                    &mut text,
                    flag,
                    &format!("verdict {v}"),
                    Action::Unknown {
                        name: format!("verdict {v}"),
                    },
                )],
            }
        }
        name => {
            let d = targets::decode(name, e.target_revision, e.target_data, version);
            text += &format!(" {flag} {}{}", d.alias.unwrap_or(name), d.save);
            vec![d.action]
        }
    };
    Ok(Rule {
        position: 0,
        text: format!("-A {chain}{text}"),
        matches,
        actions,
        comment,
    })
}

fn named(text: &mut String, flag: &str, name: &str, action: Action) -> Action {
    *text += &format!(" {flag} {name}");
    action
}

type IpPart = (String, Vec<Match>, Vec<u8>, bool);

fn ip_part_v4(b: Bytes) -> Result<IpPart, Truncated> {
    let (src, dst) = (b.ipv4(0, "src")?, b.ipv4(4, "dst")?);
    let (smsk, dmsk) = (b.ipv4(8, "smsk")?, b.ipv4(12, "dmsk")?);
    let proto = b.u16(80, "proto")?;
    let (flags, inv) = (b.u8(82, "flags")?, b.u8(83, "invflags")?);
    let mut out = (String::new(), Vec::new(), Vec::new(), flags & F_GOTO != 0);
    addr(&mut out, 's', src.into(), smsk.into(), inv & INV_SRCIP != 0);
    addr(&mut out, 'd', dst.into(), dmsk.into(), inv & INV_DSTIP != 0);
    iface(&mut out, 'i', b, 16, 48, inv & INV_VIA_IN != 0)?;
    iface(&mut out, 'o', b, 32, 64, inv & INV_VIA_OUT != 0)?;
    protocol(&mut out, proto, inv & INV_PROTO != 0);
    if flags & IPT_F_FRAG != 0 {
        let neg = inv & INV_FRAG != 0;
        out.0 += &format!("{} -f", if neg { " !" } else { "" });
        out.1.push(Match {
            negated: neg,
            test: Test::Unknown {
                name: "fragment".into(),
            },
            text: "-f".into(),
        });
    }
    Ok(out)
}

fn ip_part_v6(b: Bytes) -> Result<IpPart, Truncated> {
    let (src, dst) = (b.ipv6(0, "src")?, b.ipv6(16, "dst")?);
    let (smsk, dmsk) = (b.ipv6(32, "smsk")?, b.ipv6(48, "dmsk")?);
    let proto = b.u16(128, "proto")?;
    let (flags, inv) = (b.u8(131, "flags")?, b.u8(132, "invflags")?);
    let mut out = (
        String::new(),
        Vec::new(),
        Vec::new(),
        flags & IP6T_F_GOTO != 0,
    );
    addr(&mut out, 's', src.into(), smsk.into(), inv & INV_SRCIP != 0);
    addr(&mut out, 'd', dst.into(), dmsk.into(), inv & INV_DSTIP != 0);
    iface(&mut out, 'i', b, 64, 96, inv & INV_VIA_IN != 0)?;
    iface(&mut out, 'o', b, 80, 112, inv & INV_VIA_OUT != 0)?;
    if flags & IP6T_F_PROTO != 0 {
        protocol(&mut out, proto, inv & INV_PROTO != 0);
    }
    Ok(out)
}

/// `-s`/`-d` as `save_ipv4_addr`/`save_ipv6_addr` print them: `addr/len`, or `addr/mask`
/// for a mask that is not a prefix.
fn addr(out: &mut IpPart, letter: char, a: IpAddr, mask: IpAddr, neg: bool) {
    let zero = |x: &IpAddr| x.is_unspecified();
    if zero(&a) && zero(&mask) && !neg {
        return;
    }
    let mbits = crate::range::addr_key(&mask);
    let width = if a.is_ipv4() { 32 } else { 128 };
    let ones = mbits.count_ones();
    let prefix = ones == 0
        || (mbits >> (width - ones)) << (width - ones) == mbits
            && (mbits >> (width - ones)).count_ones() == ones;
    let text = crate::range::ip_text;
    let shown = if prefix {
        format!("{}/{ones}", text(&a))
    } else {
        format!("{}/{}", text(&a), text(&mask))
    };
    out.0 += &format!("{} -{letter} {shown}", if neg { " !" } else { "" });
    let range = AddrRange::parse(&format!("{a}/{ones}")).filter(|_| prefix);
    let test = match range {
        Some(r) => Test::Addr {
            dir: if letter == 's' { Dir::Src } else { Dir::Dst },
            version: IpVersion::of(&a),
            ranges: vec![r],
        },
        None => Test::Unknown {
            name: format!("-{letter} with a non-prefix mask"),
        },
    };
    out.1.push(Match {
        negated: neg,
        test,
        text: format!("-{letter} {shown}"),
    });
}

/// `-i`/`-o` as libiptc prints them: the name's characters while the mask is set, then `+`
/// where the mask stops before the name does (a prefix match).
fn iface(
    out: &mut IpPart,
    letter: char,
    b: Bytes,
    name_at: usize,
    mask_at: usize,
    neg: bool,
) -> Result<(), Truncated> {
    let raw = b.slice(name_at, 16, "interface")?;
    let mask = b.slice(mask_at, 16, "interface mask")?;
    // An empty mask (`-o +`) compares nothing: every packet matches, and negated none.
    // iptables-legacy-save prints neither, losing `! -o +`, which the kernel holds and
    // obeys: it is printed and modelled here.
    if mask[0] == 0 && !neg {
        return Ok(());
    }
    let (mut name, mut wildcard) = (String::new(), mask[0] == 0);
    for i in 0..16 {
        if mask[i] != 0 {
            if raw[i] != 0 {
                name.push(raw[i] as char);
            }
        } else {
            wildcard = i == 0 || raw[i - 1] != 0;
            break;
        }
    }
    let shown = format!("{name}{}", if wildcard { "+" } else { "" });
    out.0 += &format!("{} -{letter} {shown}", if neg { " !" } else { "" });
    out.1.push(Match {
        negated: neg,
        test: Test::Iface {
            dir: if letter == 'i' { Dir::Src } else { Dir::Dst },
            patterns: vec![IfacePattern { name, wildcard }],
        },
        text: format!("-{letter} {shown}"),
    });
    Ok(())
}

fn protocol(out: &mut IpPart, proto: u16, neg: bool) {
    if proto == 0 {
        return;
    }
    // iptables names protocols from /etc/protocols, where 58 is "ipv6-icmp".
    let name = match proto {
        58 => "ipv6-icmp".to_string(),
        p => u8::try_from(p)
            .map(proto_name)
            .unwrap_or_else(|_| p.to_string()),
    };
    out.0 += &format!("{} -p {name}", if neg { " !" } else { "" });
    if let Ok(p) = u8::try_from(proto) {
        out.1.push(Match {
            negated: neg,
            test: Test::Protocol { protos: vec![p] },
            text: format!("-p {name}"),
        });
        if !neg {
            out.2 = vec![p];
        }
    }
}
