//! Generated rule sets over every feature meshleak models, in both syntaxes, for the
//! kernel tests. Deterministic (xorshift), so a failing seed can be replayed.

#![allow(dead_code)] // each test binary uses a different part

use super::{Probe, probe};
use meshleak_core::model::{
    Action, AddrType, CtState, Dir, IfacePattern, IpVersion, MarkReg, MarkSet, Match, Test,
};
use meshleak_core::range::{AddrRange, IdRange, PortRange};
use meshleak_core::render::{nft_rule, xtables_rule};

/// xorshift64*: small, deterministic, no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

#[derive(Clone, Copy, PartialEq)]
pub enum Syntax {
    Xtables { suppl_groups: bool },
    Nft,
}

pub fn addr(text: &str) -> AddrRange {
    AddrRange::parse(text).expect("literal")
}

pub fn m(negated: bool, test: Test) -> Match {
    Match {
        negated,
        test,
        text: String::new(),
    }
}

/// A random conjunction of tests over the features meshleak models.
pub fn gen_matches(r: &mut Rng, syntax: Syntax, version: IpVersion) -> Vec<Match> {
    let mut out = Vec::new();
    let proto = match r.below(4) {
        0 => Some(6u8),
        1 => Some(17),
        _ => None,
    };
    if let Some(p) = proto {
        out.push(m(false, Test::Protocol { protos: vec![p] }));
    }
    for _ in 0..r.below(3) {
        let neg = r.chance(30);
        let test = match r.below(10) {
            0 | 1 => {
                let nets: &[&str] = match version {
                    IpVersion::V4 => &[
                        "169.254.77.2/32",
                        "169.254.77.0/24",
                        "127.0.0.1/32",
                        "10.0.0.0/8",
                        "169.254.77.1/32",
                    ],
                    IpVersion::V6 => &["fd77::2/128", "fd77::/64", "::1/128", "fd00::/8"],
                };
                let dir = if r.chance(80) { Dir::Dst } else { Dir::Src };
                Test::Addr {
                    dir,
                    version,
                    ranges: vec![addr(r.pick(nets))],
                }
            }
            2 => Test::Iface {
                dir: Dir::Dst,
                patterns: vec![IfacePattern::parse(r.pick(&["lo", "eth0", "eth+"]))],
            },
            3 | 4 => {
                let Some(p) = proto else { continue };
                let ranges = match r.below(3) {
                    0 => vec![PortRange::single(r.pick(&[80, 8080, 15008, 53]))],
                    1 => vec![PortRange {
                        start: 8000,
                        end: 9000,
                    }],
                    _ => vec![
                        PortRange::single(53),
                        PortRange::single(80),
                        PortRange {
                            start: 15000,
                            end: 15010,
                        },
                    ],
                };
                let dir = if r.chance(85) { Dir::Dst } else { Dir::Src };
                Test::Port {
                    dir,
                    protos: vec![p],
                    ranges,
                }
            }
            5 => Test::Uid {
                ranges: vec![r.pick(&[
                    IdRange::single(1337),
                    IdRange {
                        start: 106,
                        end: 108,
                    },
                    IdRange::single(10001),
                ])],
            },
            6 => Test::Gid {
                ranges: vec![r.pick(&[IdRange::single(1337), IdRange::single(10001)])],
                suppl_groups: matches!(syntax, Syntax::Xtables { suppl_groups: true })
                    && r.chance(50),
            },
            7 => Test::Mark {
                reg: MarkReg::Mark,
                mask: 0xfff,
                values: vec![(0x539, 0x539)],
            },
            8 => Test::CtState {
                states: vec![r.pick(&[CtState::New, CtState::Established])],
            },
            _ => Test::AddrType {
                dir: Dir::Dst,
                types: vec![AddrType::Local],
                limit_iface_out: false,
            },
        };
        // iptables allows each generic option (-s, -d, -o) once per rule; and
        // iptables-nft-save prints two `-m tcp --dport` of one rule as one (wrongly: the
        // first's negation with the second's value), so dumps of such rules cannot be trusted.
        let generic = |t: &Test| match t {
            Test::Addr { dir, .. } => Some((0, *dir)),
            Test::Iface { dir, .. } => Some((1, *dir)),
            Test::Port { dir, .. } => Some((2, *dir)),
            _ => None,
        };
        if matches!(syntax, Syntax::Xtables { .. })
            && generic(&test).is_some()
            && out
                .iter()
                .any(|m: &Match| generic(&m.test) == generic(&test))
        {
            continue;
        }
        out.push(m(neg, test));
    }
    out
}

/// One table's rules: (chain, matches, action) with chains `OUTPUT`, `C1`, `C2`.
pub struct TableSpec {
    pub rules: Vec<(String, Vec<Match>, Action)>,
}

pub fn gen_nat(r: &mut Rng, syntax: Syntax, version: IpVersion, may_map: bool) -> TableSpec {
    let mut rules = Vec::new();
    let chains = ["OUTPUT", "C1", "C2"];
    for (ci, chain) in chains.iter().enumerate() {
        for _ in 0..r.below(4) + usize::from(ci == 0) {
            let action = match r.below(12) {
                0..=3 => Action::Return,
                4 => Action::Accept,
                5 | 6 if may_map => Action::Redirect {
                    ports: Some(PortRange::single(r.pick(&[15001, 15002, 15006]))),
                },
                7 if may_map => Action::Dnat {
                    addr: Some(version.loopback()),
                    ports: Some(PortRange::single(15006)),
                },
                8 if ci + 1 < chains.len() => Action::Jump {
                    chain: chains[ci + 1 + r.below(chains.len() - ci - 1)].to_string(),
                },
                9 if ci + 1 < chains.len() => Action::Goto {
                    chain: chains[ci + 1 + r.below(chains.len() - ci - 1)].to_string(),
                },
                // iptables-legacy refuses DROP in nat; nft and iptables-nft accept it.
                10 if syntax == Syntax::Nft => Action::Drop,
                _ => Action::Return,
            };
            let mut ms = gen_matches(r, syntax, version);
            // Mapping to a port needs a protocol with ports (both tools refuse otherwise).
            let maps = matches!(action, Action::Redirect { .. } | Action::Dnat { .. });
            if maps && !ms.iter().any(|m| matches!(m.test, Test::Protocol { .. })) {
                ms.insert(
                    0,
                    m(
                        false,
                        Test::Protocol {
                            protos: vec![r.pick(&[6, 17])],
                        },
                    ),
                );
            }
            rules.push((chain.to_string(), ms, action));
        }
    }
    if may_map && r.chance(80) {
        for proto in [6, 17] {
            if proto == 6 || r.chance(30) {
                let tcp = vec![m(
                    false,
                    Test::Protocol {
                        protos: vec![proto],
                    },
                )];
                rules.push((
                    "OUTPUT".into(),
                    tcp,
                    Action::Redirect {
                        ports: Some(PortRange::single(15001)),
                    },
                ));
            }
        }
    }
    TableSpec { rules }
}

pub fn gen_mangle(r: &mut Rng, syntax: Syntax, version: IpVersion) -> TableSpec {
    let mark = Action::SetMark(MarkSet {
        reg: MarkReg::Mark,
        keep: !0xfff,
        or: 0,
        xor: 0x539,
        copy: None,
    });
    let mark = match syntax {
        // nft writes constants as full assignments.
        Syntax::Nft => Action::SetMark(MarkSet {
            reg: MarkReg::Mark,
            keep: 0,
            or: 0,
            xor: 0x539,
            copy: None,
        }),
        Syntax::Xtables { .. } => mark,
    };
    let rules = (0..1 + r.below(2))
        .map(|_| {
            (
                "OUTPUT".to_string(),
                gen_matches(r, syntax, version),
                mark.clone(),
            )
        })
        .collect();
    TableSpec { rules }
}

pub fn gen_filter(r: &mut Rng, syntax: Syntax, version: IpVersion) -> TableSpec {
    // Replies (the proxy's SYN-ACK) must pass: this test is about first packets.
    let established = m(
        false,
        Test::CtState {
            states: vec![CtState::Established],
        },
    );
    let first = ("OUTPUT".to_string(), vec![established], Action::Accept);
    let rules = std::iter::once(first)
        .chain((0..1 + r.below(2)).map(|_| {
            let action = if r.chance(50) {
                Action::Drop
            } else {
                Action::Accept
            };
            let mut ms = gen_matches(r, syntax, version);
            let has_dport = ms
                .iter()
                .any(|m| matches!(m.test, Test::Port { dir: Dir::Dst, .. }));
            if !has_dport && r.chance(50) {
                let proto = ms.iter().find_map(|m| match &m.test {
                    Test::Protocol { protos } => Some(protos[0]),
                    _ => None,
                });
                if proto.is_none() {
                    ms.push(m(false, Test::Protocol { protos: vec![6] }));
                }
                let port = r.pick(&[15001, 15002, 8080, 80]);
                let protos = vec![proto.unwrap_or(6)];
                ms.push(m(
                    r.chance(20),
                    Test::Port {
                        dir: Dir::Dst,
                        protos,
                        ranges: vec![PortRange::single(port)],
                    },
                ));
            }
            ("OUTPUT".to_string(), ms, action)
        }))
        .collect();
    TableSpec { rules }
}

pub fn restore_text(table: &str, spec: &TableSpec) -> String {
    let mut text = format!("*{table}\n:C1 - [0:0]\n:C2 - [0:0]\n");
    for (chain, ms, action) in &spec.rules {
        let body = xtables_rule(ms, std::slice::from_ref(action)).expect("expressible in iptables");
        text += &format!("-A {chain} {body}\n");
    }
    text + "COMMIT\n"
}

pub fn nft_text(table: &str, kind: &str, priority: i32, spec: &TableSpec) -> String {
    let mut text = format!(
        "table inet {table} {{\n chain OUTPUT {{\n  type {kind} hook output priority {priority};\n"
    );
    let body = |chain: &str| {
        spec.rules
            .iter()
            .filter(|(c, _, _)| c == chain)
            .map(|(_, ms, a)| {
                format!(
                    "  {}\n",
                    nft_rule(ms, std::slice::from_ref(a)).expect("expressible in nft")
                )
            })
            .collect::<String>()
    };
    text += &body("OUTPUT");
    text += " }\n";
    for chain in ["C1", "C2"] {
        text += &format!(" chain {chain} {{\n{} }}\n", body(chain));
    }
    text + "}\n"
}

/// The identities probes connect as: (uid, gid, supplementary groups).
pub const PROBE_IDS: &[(u32, u32, &[u32])] = &[
    (10001, 10001, &[]),
    (10001, 1337, &[]),
    (1337, 1337, &[]),
    (10001, 10001, &[1337]),
    (107, 107, &[]),
];

/// Where probes connect to: the peer, the pod itself, loopback, both families.
pub const PROBE_DSTS: [&str; 9] = [
    "169.254.77.2:80",
    "169.254.77.2:8080",
    "169.254.77.2:15008",
    "169.254.77.2:53",
    "127.0.0.1:8080",
    "169.254.77.1:8080",
    "[fd77::2]:80",
    "[fd77::2]:53",
    "[::1]:8080",
];

pub fn probes(r: &mut Rng) -> Vec<Probe> {
    let (ids, dsts) = (PROBE_IDS, PROBE_DSTS);
    (0..8)
        .map(|_| {
            let (uid, gid, groups) = r.pick(ids);
            probe(uid, gid, groups, r.chance(30), r.pick(&dsts))
        })
        .collect()
}
