//! x_tables match blobs (`struct xt_entry_match` payloads), shared by the legacy reader and
//! the xt compat expressions iptables-nft writes. Each decoder yields the typed tests and the
//! text the extension's `save` function prints, so output equals `iptables-save`'s.

use super::bytes::{Bytes, Truncated};
use crate::model::{AddrType, CtState, Dir, IpVersion, MarkReg, Match, Test};
use crate::range::{AddrRange, IdRange, PortRange};

/// A decoded match: the save text after `-m NAME` and its tests.
pub struct Decoded {
    /// The name `iptables-save` shows when it differs (conntrack's `state` alias).
    pub alias: Option<&'static str>,
    pub save: String,
    pub tests: Vec<(bool, Test)>,
}

impl Decoded {
    /// The matches of the model, each citing the whole module text.
    pub(crate) fn into_matches(self, name: &str) -> Vec<Match> {
        let text = format!("-m {name}{}", self.save);
        self.tests
            .into_iter()
            .map(|(negated, test)| Match {
                negated,
                test,
                text: text.clone(),
            })
            .collect()
    }
}

/// Decodes one match; `protos` is the rule's `-p` (multiport ports need it).
pub fn decode(name: &str, revision: u8, data: Bytes, version: IpVersion, protos: &[u8]) -> Decoded {
    match decode_known(name, revision, data, version, protos) {
        Ok(Some(d)) => d,
        Ok(None) => unknown(name, revision, data, "not modelled"),
        Err(e) => unknown(name, revision, data, &e.to_string()),
    }
}

/// An extension meshleak cannot read: kept, shown with its raw bytes, evaluated as unknown.
fn unknown(name: &str, revision: u8, data: Bytes, why: &str) -> Decoded {
    Decoded {
        alias: None,
        save: format!(" (revision {revision}, {why}: {})", data.hex()),
        tests: vec![(
            false,
            Test::Unknown {
                name: format!("{name} revision {revision}"),
            },
        )],
    }
}

fn inv(flag: bool) -> &'static str {
    if flag { " !" } else { "" }
}

fn decode_known(
    name: &str,
    revision: u8,
    d: Bytes,
    version: IpVersion,
    protos: &[u8],
) -> Result<Option<Decoded>, Truncated> {
    Ok(Some(match (name, revision) {
        ("tcp", 0) | ("udp", 0) => tcp_udp(name, d)?,
        ("multiport", 1) => multiport(d, protos)?,
        ("owner", 1) => owner(d)?,
        ("mark", 1) => mark(d, MarkReg::Mark)?,
        ("connmark", 1) => mark(d, MarkReg::CtMark)?,
        ("comment", 0) => Decoded {
            alias: None,
            save: format!(" --comment{}", save_string(&comment(d)?)),
            tests: vec![],
        },
        ("conntrack", 1..=3) => conntrack(d, revision, version)?,
        ("state", 0) => {
            let mask = d.u32(0, "state mask")?;
            Decoded {
                alias: None,
                save: format!(
                    " --state {}",
                    states(&state_bits(mask, STATE_BITS, STATE_ORDER))
                ),
                tests: vec![(
                    false,
                    Test::CtState {
                        states: state_bits(mask, STATE_BITS, STATE_ORDER),
                    },
                )],
            }
        }
        ("addrtype", 1) => addrtype(d)?,
        ("iprange", 1) => iprange(d, version)?,
        ("sctp", 0) => sctp(d)?,
        _ => match super::extensions::save(name, revision, d, version)? {
            // Printed as the tool prints it; where it stands the outcome is unknown.
            Some(save) => Decoded {
                alias: None,
                save,
                tests: vec![(
                    false,
                    Test::Unknown {
                        name: name.to_string(),
                    },
                )],
            },
            None => return Ok(None),
        },
    }))
}

/// `struct xt_sctp_info`: dpts[2], spts[2], chunkmap[64], chunk_match_type, flag_info[4],
/// flag_count, flags (SRC 1, DEST 2, CHUNK_TYPES 4), invflags. Ports are tests as TCP's;
/// chunk types are printed as libxt_sctp does and are an unknown test.
fn sctp(d: Bytes) -> Result<Decoded, Truncated> {
    let (flags, invflags) = (d.u32(284, "sctp flags")?, d.u32(288, "sctp invflags")?);
    let (mut save, mut tests) = (String::new(), Vec::new());
    for (bit, at, dir, opt) in [(1, 4, Dir::Src, "--sport"), (2, 0, Dir::Dst, "--dport")] {
        if flags & bit == 0 {
            continue;
        }
        let (lo, hi) = (d.u16(at, "sctp port")?, d.u16(at + 2, "sctp port")?);
        let neg = invflags & bit != 0;
        save += &format!("{} {opt} {}", inv(neg), ports(lo, hi));
        tests.push((
            neg,
            Test::Port {
                dir,
                protos: vec![132],
                ranges: vec![PortRange { start: lo, end: hi }],
            },
        ));
    }
    if flags & 4 != 0 {
        let neg = invflags & 4 != 0;
        save += &format!("{} --chunk-types{}", inv(neg), sctp_chunks(d)?);
        tests.push((
            neg,
            Test::Unknown {
                name: "sctp --chunk-types".into(),
            },
        ));
    }
    Ok(Decoded {
        alias: None,
        save,
        tests,
    })
}

/// libxt_sctp's chunk list: the match type, then NONE, ALL, or each chunk set in the map
/// by name with its flags (`DATA:Be`: upper case set, lower case clear, per mask bit).
fn sctp_chunks(d: Bytes) -> Result<String, Truncated> {
    const NAMES: &[(u8, &str, &str)] = &[
        (0, "DATA", "----IUBE"),
        (1, "INIT", "--------"),
        (2, "INIT_ACK", "--------"),
        (3, "SACK", "--------"),
        (4, "HEARTBEAT", "--------"),
        (5, "HEARTBEAT_ACK", "--------"),
        (6, "ABORT", "-------T"),
        (7, "SHUTDOWN", "--------"),
        (8, "SHUTDOWN_ACK", "--------"),
        (9, "ERROR", "--------"),
        (10, "COOKIE_ECHO", "--------"),
        (11, "COOKIE_ACK", "--------"),
        (12, "ECN_ECNE", "--------"),
        (13, "ECN_CWR", "--------"),
        (14, "SHUTDOWN_COMPLETE", "-------T"),
        (64, "I_DATA", "----IUBE"),
        (130, "RE_CONFIG", "--------"),
        (132, "PAD", "--------"),
        (193, "ASCONF", "--------"),
        (128, "ASCONF_ACK", "--------"),
        (192, "FORWARD_TSN", "--------"),
        (194, "I_FORWARD_TSN", "--------"),
    ];
    let mut out = match d.u32(264, "sctp chunk match type")? {
        1 => " any".to_string(),
        2 => " all".to_string(),
        4 => " only".to_string(),
        n => format!(" (match type {n})"),
    };
    let mut map = [0u32; 8 * 8];
    for (i, word) in map.iter_mut().enumerate() {
        *word = d.u32(8 + i * 4, "sctp chunkmap")?;
    }
    if map.iter().all(|w| *w == 0) {
        return Ok(out + " NONE");
    }
    if map.iter().all(|w| *w == u32::MAX) {
        return Ok(out + " ALL");
    }
    let flag_count = (d.i32(280, "sctp flag count")?).clamp(0, 4) as usize;
    let mut flag_info = Vec::new();
    for j in 0..flag_count {
        let at = 268 + j * 3;
        flag_info.push((
            d.u8(at, "sctp flag chunk")?,
            d.u8(at + 1, "sctp flag")?,
            d.u8(at + 2, "sctp flag mask")?,
        ));
    }
    let mut chunks = Vec::new();
    for i in 0..=255u8 {
        if map[usize::from(i) / 32] & (1 << (i % 32)) == 0 {
            continue;
        }
        let (name, valid) = NAMES
            .iter()
            .find(|(n, ..)| *n == i)
            .map_or(("UNKNOWN", "--------"), |(_, name, valid)| (*name, *valid));
        let mut chunk = name.to_string();
        for (_, flags, mask) in flag_info.iter().filter(|(c, ..)| *c == i) {
            chunk.push(':');
            for bit in (0..8).rev() {
                if mask & (1 << bit) != 0 {
                    let c = char::from(valid.as_bytes()[7 - bit]);
                    chunk.push(if flags & (1 << bit) != 0 {
                        c
                    } else {
                        c.to_ascii_lowercase()
                    });
                }
            }
        }
        chunks.push(chunk);
    }
    out.push(' ');
    out += &chunks.join(",");
    Ok(out)
}

fn ports(lo: u16, hi: u16) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}:{hi}")
    }
}

/// `struct xt_tcp` / `xt_udp`: spts[2], dpts[2] (host order), then flags; invflags at the end.
fn tcp_udp(name: &str, d: Bytes) -> Result<Decoded, Truncated> {
    let proto = crate::model::proto_number(name).expect("tcp or udp");
    let (inv_at, mut save, mut tests) = (
        if name == "tcp" { 11 } else { 8 },
        String::new(),
        Vec::new(),
    );
    let invflags = d.u8(inv_at, "tcp/udp invflags")?;
    for (i, (dir, opt)) in [(Dir::Src, "--sport"), (Dir::Dst, "--dport")]
        .into_iter()
        .enumerate()
    {
        let (lo, hi) = (d.u16(i * 4, "port")?, d.u16(i * 4 + 2, "port")?);
        if lo == 0 && hi == u16::MAX {
            continue;
        }
        let neg = invflags & (1 << i) != 0;
        save += &format!("{} {opt} {}", inv(neg), ports(lo, hi));
        tests.push((
            neg,
            Test::Port {
                dir,
                protos: vec![proto],
                ranges: vec![PortRange { start: lo, end: hi }],
            },
        ));
    }
    if name == "tcp" {
        let (option, mask, cmp) = (
            d.u8(8, "tcp option")?,
            d.u8(9, "tcp flag mask")?,
            d.u8(10, "tcp flags")?,
        );
        if mask != 0 {
            save += &format!(
                "{} --tcp-flags {} {}",
                inv(invflags & 0x04 != 0),
                tcp_flags(mask),
                tcp_flags(cmp)
            );
            tests.push((invflags & 0x04 != 0, Test::TcpFlags { mask, cmp }));
        }
        if option != 0 {
            save += &format!("{} --tcp-option {option}", inv(invflags & 0x08 != 0));
            tests.push((
                invflags & 0x08 != 0,
                Test::Unknown {
                    name: "tcp --tcp-option".into(),
                },
            ));
        }
    }
    Ok(Decoded {
        alias: None,
        save,
        tests,
    })
}

/// TCP flag bits as libxt_tcp's `print_tcpf` names them (`SYN,ACK`, `NONE`): every flag
/// is named, even all six.
pub(crate) fn tcp_flags(bits: u8) -> String {
    const NAMES: [(u8, &str); 6] = [
        (0x01, "FIN"),
        (0x02, "SYN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x10, "ACK"),
        (0x20, "URG"),
    ];
    if bits & 0x3f == 0 {
        return "NONE".into();
    }
    NAMES
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

/// `struct xt_multiport_v1`: flags, count, ports[15], pflags[15] (range starts), invert.
fn multiport(d: Bytes, protos: &[u8]) -> Result<Decoded, Truncated> {
    let (flags, count) = (
        d.u8(0, "multiport flags")?,
        d.u8(1, "multiport count")? as usize,
    );
    let invert = d.u8(47, "multiport invert")? != 0;
    let mut ranges = Vec::new();
    let mut shown = Vec::new();
    let mut i = 0;
    while i < count.min(15) {
        let lo = d.u16(2 + i * 2, "multiport port")?;
        if d.u8(32 + i, "multiport range flag")? != 0 && i + 1 < count.min(15) {
            let hi = d.u16(2 + (i + 1) * 2, "multiport port")?;
            ranges.push(PortRange { start: lo, end: hi });
            shown.push(format!("{lo}:{hi}"));
            i += 2;
        } else {
            ranges.push(PortRange::single(lo));
            shown.push(lo.to_string());
            i += 1;
        }
    }
    let (opt, dirs): (&str, &[Dir]) = match flags {
        0 => ("--sports", &[Dir::Src]),
        1 => ("--dports", &[Dir::Dst]),
        _ => ("--ports", &[]),
    };
    let tests = match dirs {
        [dir] => vec![(
            invert,
            Test::Port {
                dir: *dir,
                protos: protos.to_vec(),
                ranges,
            },
        )],
        _ => vec![(
            false,
            Test::Unknown {
                name: "multiport --ports".into(),
            },
        )],
    };
    Ok(Decoded {
        alias: None,
        save: format!("{} {opt} {}", inv(invert), shown.join(",")),
        tests,
    })
}

/// `struct xt_owner_match_info`: uid_min/max, gid_min/max, match and invert flag bytes.
fn owner(d: Bytes) -> Result<Decoded, Truncated> {
    const SOCKET: u8 = 4;
    const UID: u8 = 1;
    const GID: u8 = 2;
    const SUPPL: u8 = 8;
    let (uid, gid) = (
        IdRange {
            start: d.u32(0, "uid_min")?,
            end: d.u32(4, "uid_max")?,
        },
        IdRange {
            start: d.u32(8, "gid_min")?,
            end: d.u32(12, "gid_max")?,
        },
    );
    let (m, invert) = (
        d.u8(16, "owner match flags")?,
        d.u8(17, "owner invert flags")?,
    );
    let (mut save, mut tests) = (String::new(), Vec::new());
    if m & SOCKET != 0 {
        save += &format!("{} --socket-exists", inv(invert & SOCKET != 0));
        tests.push((invert & SOCKET != 0, Test::SocketExists));
    }
    if m & UID != 0 {
        save += &format!("{} --uid-owner {uid}", inv(invert & UID != 0));
        tests.push((invert & UID != 0, Test::Uid { ranges: vec![uid] }));
    }
    if m & GID != 0 {
        save += &format!("{} --gid-owner {gid}", inv(invert & GID != 0));
        tests.push((
            invert & GID != 0,
            Test::Gid {
                ranges: vec![gid],
                suppl_groups: m & SUPPL != 0,
            },
        ));
    }
    if m & SUPPL != 0 {
        save += &format!("{} --suppl-groups", inv(invert & SUPPL != 0));
    }
    Ok(Decoded {
        alias: None,
        save,
        tests,
    })
}

/// `struct xt_mark_mtinfo1` / `xt_connmark_mtinfo1`: mark, mask, invert.
fn mark(d: Bytes, reg: MarkReg) -> Result<Decoded, Truncated> {
    let (value, mask, invert) = (
        d.u32(0, "mark")?,
        d.u32(4, "mark mask")?,
        d.u8(8, "mark invert")? != 0,
    );
    Ok(Decoded {
        alias: None,
        save: format!("{} --mark {}", inv(invert), mark_text(value, mask)),
        tests: vec![(
            invert,
            Test::Mark {
                reg,
                mask,
                values: vec![(value & mask, value & mask)],
            },
        )],
    })
}

/// `0xV` or `0xV/0xM`, as libxtables prints marks.
pub(crate) fn mark_text(value: u32, mask: u32) -> String {
    if mask == u32::MAX {
        format!("0x{value:x}")
    } else {
        format!("0x{value:x}/0x{mask:x}")
    }
}

/// State bits as `xt_state` keeps them: XT_STATE_BIT(ctinfo), INVALID, UNTRACKED (1 << 6).
const STATE_BITS: &[(u32, CtState)] = &[
    (1 << 0, CtState::Invalid),
    (1 << 1, CtState::Established),
    (1 << 2, CtState::Related),
    (1 << 3, CtState::New),
    (1 << 6, CtState::Untracked),
];

/// `xt_conntrack`'s: the same, but bit 6 is SNAT, then DNAT, and UNTRACKED is 1 << 8.
const CTSTATE_BITS: &[(u32, CtState)] = &[
    (1 << 0, CtState::Invalid),
    (1 << 1, CtState::Established),
    (1 << 2, CtState::Related),
    (1 << 3, CtState::New),
    (1 << 6, CtState::Snat),
    (1 << 7, CtState::Dnat),
    (1 << 8, CtState::Untracked),
];

/// The states a mask holds, in the order `order` prints them (so text and tests agree).
fn state_bits(mask: u32, table: &[(u32, CtState)], order: &[CtState]) -> Vec<CtState> {
    let set: Vec<CtState> = table
        .iter()
        .filter(|(bit, _)| mask & bit != 0)
        .map(|(_, s)| *s)
        .collect();
    order.iter().filter(|s| set.contains(s)).copied().collect()
}

const STATE_ORDER: &[CtState] = &[
    CtState::Invalid,
    CtState::New,
    CtState::Related,
    CtState::Established,
    CtState::Untracked,
];
const CTSTATE_ORDER: &[CtState] = &[
    CtState::Invalid,
    CtState::New,
    CtState::Related,
    CtState::Established,
    CtState::Untracked,
    CtState::Snat,
    CtState::Dnat,
];

fn states(set: &[CtState]) -> String {
    set.iter()
        .map(|s| format!("{s:?}").to_uppercase())
        .collect::<Vec<_>>()
        .join(",")
}

/// `struct xt_conntrack_mtinfo1..3`: tuple addresses and masks, expiry, protocol, ports,
/// match and invert flags, state and status masks (u8 in revision 1, u16 after; revision 3
/// adds port ranges). Printed in libxt_conntrack's order; only `--ctstate` is modelled,
/// each other criterion is an unknown test named by its option, as the text reader names
/// it.
fn conntrack(d: Bytes, revision: u8, version: IpVersion) -> Result<Decoded, Truncated> {
    const STATE: u16 = 1 << 0;
    const STATE_ALIAS: u16 = 1 << 13;
    let (match_flags, invert_flags) = (
        d.u16(146, "conntrack match flags")?,
        d.u16(148, "conntrack invert flags")?,
    );
    let (state_mask, status_mask) = if revision == 1 {
        (
            u32::from(d.u8(150, "conntrack state mask")?),
            u32::from(d.u8(151, "conntrack status mask")?),
        )
    } else {
        (
            u32::from(d.u16(150, "conntrack state mask")?),
            u32::from(d.u16(152, "conntrack status mask")?),
        )
    };
    if match_flags == STATE | STATE_ALIAS {
        // `-m state --state ...` as iptables 1.8 loads it: conntrack, shown as state.
        let set = state_bits(state_mask, CTSTATE_BITS, STATE_ORDER);
        return Ok(Decoded {
            alias: Some("state"),
            save: format!(
                "{} --state {}",
                inv(invert_flags & STATE != 0),
                states(&set)
            ),
            tests: vec![(invert_flags & STATE != 0, Test::CtState { states: set })],
        });
    }
    let (mut save, mut tests) = (String::new(), Vec::new());
    if match_flags & STATE != 0 {
        let set = state_bits(state_mask, CTSTATE_BITS, CTSTATE_ORDER);
        save += &format!(
            "{} --ctstate {}",
            inv(invert_flags & STATE != 0),
            states(&set)
        );
        tests.push((invert_flags & STATE != 0, Test::CtState { states: set }));
    }
    let mut criterion = |bit: u16, text: String, tests: &mut Vec<(bool, Test)>| {
        if match_flags & bit == 0 {
            return;
        }
        let neg = invert_flags & bit != 0;
        save += &format!("{}{text}", inv(neg));
        let opt = text.split_whitespace().next().unwrap_or_default();
        tests.push((
            neg,
            Test::Unknown {
                name: format!("conntrack {opt}"),
            },
        ));
    };
    criterion(
        1 << 1,
        format!(" --ctproto {}", d.u16(136, "conntrack l4proto")?),
        &mut tests,
    );
    for (i, opt) in ["--ctorigsrc", "--ctorigdst", "--ctreplsrc", "--ctrepldst"]
        .into_iter()
        .enumerate()
    {
        let text = format!(
            " {opt} {}",
            addr_with_mask(d, i * 32, i * 32 + 16, version)?
        );
        criterion(1 << (2 + i), text, &mut tests);
    }
    for (i, opt) in [
        "--ctorigsrcport",
        "--ctorigdstport",
        "--ctreplsrcport",
        "--ctrepldstport",
    ]
    .into_iter()
    .enumerate()
    {
        // Revision 3 keeps ranges in host order, revisions 1-2 a port in network order.
        let (lo, hi) = if revision == 3 {
            (
                d.u16(138 + i * 2, "conntrack port")?,
                d.u16(154 + i * 2, "conntrack port high")?,
            )
        } else {
            (d.u16_be(138 + i * 2, "conntrack port")?, 0)
        };
        let ports = if hi == 0 || hi == lo {
            lo.to_string()
        } else {
            format!("{lo}:{hi}")
        };
        criterion(1 << (8 + i), format!(" {opt} {ports}"), &mut tests);
    }
    let status: Vec<&str> = [
        (1, "EXPECTED"),
        (2, "SEEN_REPLY"),
        (4, "ASSURED"),
        (8, "CONFIRMED"),
    ]
    .into_iter()
    .filter(|(bit, _)| status_mask & bit != 0)
    .map(|(_, name)| name)
    .collect();
    let status = if status.is_empty() {
        "NONE".to_string()
    } else {
        status.join(",")
    };
    criterion(1 << 6, format!(" --ctstatus {status}"), &mut tests);
    let (min, max) = (
        d.u32(128, "conntrack expires min")?,
        d.u32(132, "conntrack expires max")?,
    );
    let expires = if min == max {
        min.to_string()
    } else {
        format!("{min}:{max}")
    };
    criterion(1 << 7, format!(" --ctexpire {expires}"), &mut tests);
    if match_flags & (1 << 12) != 0 {
        // The direction is printed by name; its invert bit means REPLY, not a negation.
        let dir = if invert_flags & (1 << 12) != 0 {
            "REPLY"
        } else {
            "ORIGINAL"
        };
        save += &format!(" --ctdir {dir}");
        tests.push((
            false,
            Test::Unknown {
                name: "conntrack --ctdir".into(),
            },
        ));
    }
    Ok(Decoded {
        alias: None,
        save,
        tests,
    })
}

/// An address at `at` and its mask at `mask` as libxtables prints them numerically:
/// `10.0.0.0/8`, `10.0.0.1` (full mask), `10.0.0.0/255.0.255.0`.
pub(crate) fn addr_with_mask(
    d: Bytes,
    at: usize,
    mask: usize,
    version: IpVersion,
) -> Result<String, Truncated> {
    Ok(match version {
        IpVersion::V4 => {
            let m = u32::from(d.ipv4(mask, "mask")?);
            let shown = mask_text(m.into(), m.count_ones(), 32, || {
                d.ipv4(mask, "mask").map(|a| a.to_string())
            })?;
            format!("{}{shown}", d.ipv4(at, "address")?)
        }
        IpVersion::V6 => {
            let m = u128::from(d.ipv6(mask, "mask")?);
            let shown = mask_text(m, m.count_ones(), 128, || {
                d.ipv6(mask, "mask").map(|a| a.to_string())
            })?;
            format!("{}{shown}", d.ipv6(at, "address")?)
        }
    })
}

/// The length of the prefix a mask in the top `width` bits of `mask` is (the rest zero),
/// or `None` when it is no prefix (libxtables' mask-to-cidr gives -1 then).
pub(crate) fn prefix_len(mask: u128, width: u32) -> Option<u32> {
    let ones = mask.leading_ones().min(width);
    let rest = mask.checked_shl(ones).unwrap_or(0);
    (rest == 0).then_some(ones)
}

/// libxtables' mask suffix: nothing for a full mask, `/N` for a prefix, else the mask in
/// address form (`/255.0.255.0`).
fn mask_text(
    mask: u128,
    ones: u32,
    width: u32,
    as_addr: impl FnOnce() -> Result<String, Truncated>,
) -> Result<String, Truncated> {
    if ones == width {
        return Ok(String::new());
    }
    // `ones` leading ones and nothing after them: a prefix length.
    let prefix = ones == 0 || mask >> (width - ones) == (1u128 << ones) - 1;
    Ok(if prefix {
        format!("/{ones}")
    } else {
        format!("/{}", as_addr()?)
    })
}

const ADDR_TYPES: [(u16, AddrType); 12] = [
    (1 << 0, AddrType::Unspec),
    (1 << 1, AddrType::Unicast),
    (1 << 2, AddrType::Local),
    (1 << 3, AddrType::Broadcast),
    (1 << 4, AddrType::Anycast),
    (1 << 5, AddrType::Multicast),
    (1 << 6, AddrType::Blackhole),
    (1 << 7, AddrType::Unreachable),
    (1 << 8, AddrType::Prohibit),
    (1 << 9, AddrType::Throw),
    (1 << 10, AddrType::Nat),
    (1 << 11, AddrType::Xresolve),
];

/// `struct xt_addrtype_info_v1`: source, dest (type bit sets), flags (inversion, limits).
fn addrtype(d: Bytes) -> Result<Decoded, Truncated> {
    let (src, dst, flags) = (
        d.u16(0, "addrtype source")?,
        d.u16(2, "addrtype dest")?,
        d.u32(4, "addrtype flags")?,
    );
    let (inv_src, inv_dst, limit_in, limit_out) = (
        flags & 1 != 0,
        flags & 2 != 0,
        flags & 4 != 0,
        flags & 8 != 0,
    );
    let (mut save, mut tests) = (String::new(), Vec::new());
    for (bits, dir, neg, opt) in [
        (src, Dir::Src, inv_src, "--src-type"),
        (dst, Dir::Dst, inv_dst, "--dst-type"),
    ] {
        if bits == 0 {
            continue;
        }
        let types: Vec<AddrType> = ADDR_TYPES
            .iter()
            .filter(|(b, _)| bits & b != 0)
            .map(|(_, t)| *t)
            .collect();
        let names: Vec<String> = types
            .iter()
            .map(|t| format!("{t:?}").to_uppercase())
            .collect();
        save += &format!("{} {opt} {}", inv(neg), names.join(","));
        tests.push((
            neg,
            Test::AddrType {
                dir,
                types,
                limit_iface_out: limit_out,
            },
        ));
    }
    if limit_in {
        save += " --limit-iface-in";
    }
    if limit_out {
        save += " --limit-iface-out";
    }
    Ok(Decoded {
        alias: None,
        save,
        tests,
    })
}

/// `struct xt_iprange_mtinfo`: src_min, src_max, dst_min, dst_max (16 bytes each), flags.
fn iprange(d: Bytes, version: IpVersion) -> Result<Decoded, Truncated> {
    let flags = d.u8(64, "iprange flags")?;
    let (mut save, mut tests) = (String::new(), Vec::new());
    for (i, dir, opt) in [
        (0usize, Dir::Src, "--src-range"),
        (1, Dir::Dst, "--dst-range"),
    ] {
        let (on, neg) = (flags & (1 << i) != 0, flags & (1 << (i + 4)) != 0);
        if !on {
            continue;
        }
        let (lo, hi) = match version {
            IpVersion::V4 => (
                d.ipv4(i * 32, "iprange min")?.into(),
                d.ipv4(i * 32 + 16, "iprange max")?.into(),
            ),
            IpVersion::V6 => (
                d.ipv6(i * 32, "iprange min")?.into(),
                d.ipv6(i * 32 + 16, "iprange max")?.into(),
            ),
        };
        save += &format!("{} {opt} {lo}-{hi}", inv(neg));
        tests.push((
            neg,
            Test::Addr {
                dir,
                version,
                ranges: vec![AddrRange { start: lo, end: hi }],
            },
        ));
    }
    Ok(Decoded {
        alias: None,
        save,
        tests,
    })
}

/// The comment match's text: `struct xt_comment_info`, a NUL-terminated array of
/// XT_MAX_COMMENT_LEN (256) bytes. Printed with the rule, and kept as the rule's comment.
pub(crate) fn comment(d: Bytes) -> Result<String, Truncated> {
    d.name(0, 256, "comment")
}

/// libxtables' `xtables_save_string`: bare when only `[A-Za-z0-9_-]`, else double-quoted
/// with `"`, `\` and `'` escaped.
pub(crate) fn save_string(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        return format!(" {value}");
    }
    let mut out = String::from(" \"");
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}
