//! Lifts one rule's expressions (a register machine: loads, masks, comparisons, lookups,
//! verdicts) into the model's tests and actions, as nft and iptables-nft themselves read
//! them back. What cannot be lifted becomes an unknown test or target, never dropped.

use std::collections::HashMap;
use std::net::IpAddr;

use super::ir::MetaKey;

use super::ir::{CmpOp, Expr, Jump, Reg, VERDICT_REG};
use super::msg::KeyShape;
use crate::model::{
    Action, AddrType, CtState, Dir, Family, IfacePattern, IpVersion, MarkReg, MarkSet, Match,
    NF_NAT_RANGE_NETMAP, NatPorts, NatSource, Test, netmap_mask, proto_name,
};
use crate::range::{AddrRange, IdRange, PortRange, addr_from_key};
use crate::xt::{
    bytes::Bytes, continuing as xt_continuing, extensions as xt_ext, matches as xt_matches,
    targets as xt_targets,
};

/// A set's elements as inclusive ranges of big-endian keys (interval sets are stored as
/// start and end-plus-one boundaries), and its key as declared.
#[derive(Clone, Debug, Default)]
pub struct SetElems {
    pub ranges: Vec<SetRange>,
    pub key: KeyShape,
}

impl SetElems {
    /// Whether the key is a concatenation (`ip daddr . tcp dport`) rather than one field
    /// `width` bytes wide: elements longer than the field show it, and for an empty set,
    /// which has none, only the declaration does.
    fn concatenated(&self, width: usize) -> bool {
        self.key.fields.len() > 1
            || self.key.len as usize > width
            || self
                .ranges
                .iter()
                .any(|r| r.start.len().max(r.end.len()) > width)
    }
}

/// One element: keys `start..=end` and, in a verdict map, the element's verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct SetRange {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
    pub verdict: Option<Jump>,
}

/// What a register holds.
#[derive(Clone, Debug)]
enum Src {
    Payload {
        base: u32,
        offset: u32,
        len: u32,
    },
    Meta(MetaKey),
    Ct(u32),
    Fib {
        flags: u32,
        result: u32,
    },
    Value(Vec<u8>),
    /// The result of a data map lookup: which value depends on the packet.
    Mapped,
}

#[derive(Clone, Debug)]
struct Loaded {
    src: Src,
    mask: Option<Vec<u8>>,
    xor: Option<Vec<u8>>,
    /// Converted to network order by a byteorder expression.
    swapped: bool,
}

/// What a loaded value is, for the tests it can make.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Field {
    Addr(Dir, IpVersion),
    Proto(Option<IpVersion>),
    NfProto,
    Port(Dir),
    Uid,
    Gid,
    Iface(Dir),
    Mark(MarkReg),
    CtState,
    /// `fib saddr|daddr [. oif] type`: the address type, looked up on the output
    /// interface only with `oif` (iptables' `--limit-iface-out`).
    FibType(Dir, bool),
    /// TCP flags byte (`--tcp-flags`).
    TcpFlags,
    /// IPv4 fragment offset (`-f`).
    Fragment,
}

impl Field {
    /// The bytes a set key of this field holds.
    fn width(self) -> usize {
        match self {
            Field::Addr(_, IpVersion::V4) => 4,
            Field::Addr(_, IpVersion::V6) => 16,
            Field::Proto(_) | Field::NfProto | Field::TcpFlags => 1,
            Field::Port(_) | Field::Fragment => 2,
            Field::Iface(_) => 16,
            Field::Uid | Field::Gid | Field::Mark(_) | Field::CtState | Field::FibType(..) => 4,
        }
    }
}

/// The lifted rule: tests, actions, and text fragments for `iptables-save` form.
#[derive(Clone)]
pub struct Lifted {
    pub matches: Vec<Match>,
    pub actions: Vec<Action>,
    /// A verdict map's elements (`tcp dport vmap { 22 : accept, 23 : drop }`): the rule
    /// is then one rule per element, the element's test after `matches` and its verdict
    /// after `actions`; a key in no element ends the rule unmatched.
    pub arms: Vec<Arm>,
    /// `-s`, `-d`, `-i`, `-o`, `-p` parts (fixed order), module parts in order, target.
    pub generic: Vec<(u8, String)>,
    pub modules: Vec<String>,
    pub target: String,
}

/// One verdict map element: the test of its keys and its verdict.
#[derive(Clone, Debug)]
pub struct Arm {
    pub matches: Vec<Match>,
    pub action: Action,
}

pub struct Lifter<'a> {
    family: Family,
    sets: &'a HashMap<String, (SetElems, bool)>,
    regs: HashMap<Reg, Loaded>,
    version: Option<IpVersion>,
    l4proto: Option<u8>,
    /// Relational comparisons on one register, gathered into a range.
    bounds: Option<(Reg, Field, u128, u128)>,
    /// The tcp/udp module being assembled: its place in `modules`, name and parts.
    ports: Option<(usize, String, [Option<String>; 3])>,
    out: Lifted,
}

impl<'a> Lifter<'a> {
    pub fn new(family: Family, sets: &'a HashMap<String, (SetElems, bool)>) -> Self {
        Lifter {
            family,
            sets,
            regs: HashMap::new(),
            version: family.version(),
            l4proto: None,
            bounds: None,
            ports: None,
            out: Lifted {
                matches: Vec::new(),
                actions: Vec::new(),
                arms: Vec::new(),
                generic: Vec::new(),
                modules: Vec::new(),
                target: String::new(),
            },
        }
    }

    pub(crate) fn lift(mut self, exprs: &[Expr]) -> Lifted {
        for e in exprs {
            if !matches!(
                e,
                Expr::Cmp {
                    op: CmpOp::Lt | CmpOp::Lte | CmpOp::Gt | CmpOp::Gte,
                    ..
                }
            ) {
                self.flush_bounds();
            }
            self.step(e);
        }
        self.flush_bounds();
        self.finish_ports();
        self.out
    }

    fn load(&mut self, dreg: Reg, src: Src) {
        self.regs.insert(
            dreg,
            Loaded {
                src,
                mask: None,
                xor: None,
                swapped: false,
            },
        );
    }

    fn step(&mut self, e: &Expr) {
        match e {
            Expr::Payload {
                dreg,
                base,
                offset,
                len,
            } => self.load(
                *dreg,
                Src::Payload {
                    base: *base,
                    offset: *offset,
                    len: *len,
                },
            ),
            Expr::Meta {
                key, dreg: Some(d), ..
            } => self.load(*d, Src::Meta(*key)),
            Expr::Ct {
                key, dreg: Some(d), ..
            } => self.load(*d, Src::Ct(*key)),
            Expr::Fib {
                flags,
                result,
                dreg,
            } => self.load(
                *dreg,
                Src::Fib {
                    flags: *flags,
                    result: *result,
                },
            ),
            Expr::Value { dreg, data } => self.load(*dreg, Src::Value(data.clone())),
            Expr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
            } => {
                if let Some(mut l) = self.regs.get(sreg).cloned() {
                    l.mask = Some(mask.clone());
                    l.xor = Some(xor.clone()).filter(|x| x.iter().any(|b| *b != 0));
                    self.regs.insert(*dreg, l);
                }
            }
            Expr::ByteOrder { sreg, dreg } => {
                if let Some(mut l) = self.regs.get(sreg).cloned() {
                    l.swapped = true;
                    self.regs.insert(*dreg, l);
                }
            }
            Expr::Cmp { sreg, op, data } => self.cmp(*sreg, *op, data),
            Expr::Range {
                sreg,
                neq,
                from,
                to,
            } => {
                if let Some((field, l)) = self.field_of(*sreg)
                    && l.mask.is_none()
                {
                    let (a, b) = (self.number(field, &l, from), self.number(field, &l, to));
                    self.push_ranges(field, *neq, vec![(a, b)]);
                } else {
                    self.unknown("range on an unknown value");
                }
            }
            Expr::Lookup { sreg, set, invert } => self.lookup(*sreg, set, *invert),
            Expr::MapLookup {
                sreg,
                set,
                dreg: VERDICT_REG,
            } => self.verdict_map(*sreg, set.as_deref()),
            Expr::MapLookup { dreg, .. } => self.load(*dreg, Src::Mapped),
            Expr::Verdict(j) => self.verdict(j),
            Expr::Meta {
                key: MetaKey::Mark,
                sreg: Some(s),
                ..
            } => self.set_mark(MarkReg::Mark, *s),
            Expr::Ct {
                key: 3,
                sreg: Some(s),
                ..
            } => self.set_mark(MarkReg::CtMark, *s),
            // `dnat`/`snat ... prefix to NET`: NF_NAT_RANGE_NETMAP maps the network.
            Expr::Nat {
                dnat,
                addr,
                addr_max,
                flags,
                ..
            } if flags & NF_NAT_RANGE_NETMAP != 0 => {
                let action = match (self.addr(*addr), self.addr(*addr_max)) {
                    (Some(min), Some(max)) => {
                        netmap_mask(min, max).map(|mask| Action::Netmap { to: min, mask })
                    }
                    _ => None,
                };
                let name = if *dnat { "DNAT" } else { "SNAT" };
                self.action(
                    action.unwrap_or(Action::Unknown {
                        name: format!("{} prefix to a value looked up", name.to_lowercase()),
                    }),
                    name.into(),
                );
            }
            Expr::Nat {
                dnat: true,
                addr,
                proto_min,
                proto_max,
                ..
            } => {
                if [addr, proto_min, proto_max]
                    .iter()
                    .any(|r| self.mapped(**r))
                {
                    return self.action(
                        Action::Unknown {
                            name: "dnat to a value looked up in a map".into(),
                        },
                        "DNAT".into(),
                    );
                }
                let known = self.addr(*addr);
                if addr.is_some() && known.is_none() {
                    // An address from the packet or an expression: where it goes is not known.
                    return self.action(
                        Action::Unknown {
                            name: "dnat to an address not a constant".into(),
                        },
                        "DNAT".into(),
                    );
                }
                let ports = self.ports(*proto_min, *proto_max);
                self.action(Action::Dnat { addr: known, ports }, "DNAT".into());
            }
            Expr::Nat {
                dnat: false,
                addr,
                addr_max,
                proto_min,
                proto_max,
                flags,
            } => {
                let action = Action::Snat {
                    addr: self.source_nat(*addr, *addr_max),
                    ports: self.source_ports(*proto_min, *proto_max, *flags),
                };
                self.action(action, "SNAT".into());
            }
            Expr::Redir {
                proto_min,
                proto_max,
            } => {
                if [proto_min, proto_max].iter().any(|r| self.mapped(**r)) {
                    return self.action(
                        Action::Unknown {
                            name: "redirect to a port looked up in a map".into(),
                        },
                        "REDIRECT".into(),
                    );
                }
                let ports = self.ports(*proto_min, *proto_max);
                self.action(Action::Redirect { ports }, "REDIRECT".into());
            }
            Expr::Masq {
                proto_min,
                proto_max,
                flags,
            } => {
                let ports = self.source_ports(*proto_min, *proto_max, *flags);
                self.action(Action::Masquerade { ports }, "MASQUERADE".into());
            }
            Expr::Tproxy { port } if self.mapped(*port) => self.action(
                Action::Unknown {
                    name: "tproxy to a port looked up in a map".into(),
                },
                "TPROXY".into(),
            ),
            Expr::Tproxy { port } => {
                let port = port
                    .and_then(|r| self.value(r))
                    .and_then(|v| v.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])));
                self.action(Action::Tproxy { port }, "TPROXY".into());
            }
            Expr::Match {
                name,
                revision,
                info,
            } => {
                let version = self.version.unwrap_or(IpVersion::V4);
                let protos: Vec<u8> = self.l4proto.into_iter().collect();
                let d =
                    xt_matches::decode(name, *revision as u8, Bytes::new(info), version, &protos);
                let shown = d.alias.unwrap_or(name).to_string();
                self.out.modules.push(format!("-m {shown}{}", d.save));
                self.out.matches.extend(d.into_matches(&shown));
            }
            Expr::Target {
                name,
                revision,
                info,
            } => {
                let version = self.version.unwrap_or(IpVersion::V4);
                let d = xt_targets::decode(name, *revision as u8, Bytes::new(info), version);
                self.out.target = format!("-j {}{}", d.alias.unwrap_or(name), d.save);
                self.out.actions.push(d.action);
            }
            Expr::Counter => {}
            Expr::Limit {
                rate,
                unit,
                burst,
                bytes,
                invert,
            } => self.limit(*rate, *unit, *burst, *bytes, *invert),
            // With a group, iptables-nft's `-j NFLOG` (as its xt target prints); logging
            // decides nothing.
            Expr::Log {
                group: Some(group),
                prefix,
                snaplen,
                threshold,
            } => self.action(
                Action::Continue {
                    name: "NFLOG".into(),
                },
                format!(
                    "NFLOG{}",
                    xt_continuing::nflog_text(prefix, *group, *snaplen, 0, *threshold)
                ),
            ),
            Expr::Log { .. } => self
                .out
                .actions
                .push(Action::Continue { name: "log".into() }),
            // `meta nftrace set`: iptables-nft's `-j TRACE`; tracing decides nothing.
            Expr::Meta {
                key: MetaKey::Nftrace,
                sreg: Some(s),
                ..
            } if self.value(*s).is_some_and(|v| v.first() == Some(&1)) => self.action(
                Action::Continue {
                    name: "TRACE".into(),
                },
                "TRACE".into(),
            ),
            Expr::Notrack => self.out.actions.push(Action::Notrack),
            Expr::Reject => self.action(Action::Reject, "REJECT".into()),
            Expr::Meta { .. } | Expr::Ct { .. } => self.unknown("meta/ct statement"),
            Expr::Other(name) => self.unknown(name),
        }
    }

    /// A rate limit: not modelled (whether a packet is within it is unknown), cited as nft
    /// prints it and printed as iptables-nft prints its `-m limit` (avg = XT_LIMIT_SCALE *
    /// unit / rate).
    fn limit(&mut self, rate: u64, unit: u64, burst: u32, bytes: bool, invert: bool) {
        // Kernel values are untrusted: a product past u64 has no iptables form.
        let avg = u64::from(xt_ext::LIMIT_SCALE)
            .checked_mul(unit)
            .and_then(|v| v.checked_div(rate))
            .and_then(|a| u32::try_from(a).ok());
        let per = match unit {
            1 => "second".to_string(),
            60 => "minute".into(),
            3600 => "hour".into(),
            86400 => "day".into(),
            604800 => "week".into(),
            n => format!("{n} seconds"),
        };
        let nft = format!(
            "limit rate {}{rate}/{per} burst {burst} {}",
            if invert { "over " } else { "" },
            if bytes { "bytes" } else { "packets" }
        );
        self.out.modules.push(match (avg, bytes, invert) {
            (Some(avg), false, false) => format!("-m limit{}", xt_ext::limit_text(avg, burst)),
            _ => nft.clone(),
        });
        self.push(
            false,
            Test::Unknown {
                name: "limit".into(),
            },
            nft,
        );
    }

    fn unknown(&mut self, what: &str) {
        self.out.matches.push(Match {
            negated: false,
            test: Test::Unknown {
                name: format!("nft expression {what}"),
            },
            text: what.to_string(),
        });
    }

    fn action(&mut self, a: Action, target: String) {
        if self.out.target.is_empty() {
            self.out.target = format!("-j {target}");
        }
        self.out.actions.push(a);
    }

    /// The address a `snat` maps to: a register not loaded with a constant (a map lookup,
    /// a field of the packet) is not known here. (An inet table's `snat ip to` is skipped
    /// for IPv6 packets by evaluation, as the kernel skips it.)
    fn source_nat(&self, min: Option<Reg>, max: Option<Reg>) -> NatSource {
        if min.is_none() {
            return NatSource::Kept;
        }
        match (self.addr(min), max.map(|r| self.addr(Some(r)))) {
            (Some(first), None) => NatSource::To(first),
            (Some(first), Some(Some(last))) => NatSource::of(Some(first), Some(last)),
            _ => NatSource::Unknown,
        }
    }

    /// The source ports a `snat`/`masquerade` gives; unknown when its registers hold what
    /// is not a constant.
    fn source_ports(&self, min: Option<Reg>, max: Option<Reg>, flags: u32) -> NatPorts {
        let range = self.ports(min, max);
        NatPorts {
            unknown: min.is_some() && range.is_none(),
            ..NatPorts::of(range, flags)
        }
    }

    /// Whether a register holds the result of a data map lookup.
    fn mapped(&self, r: Option<Reg>) -> bool {
        r.and_then(|r| self.regs.get(&r))
            .is_some_and(|l| matches!(l.src, Src::Mapped))
    }

    fn value(&self, r: Reg) -> Option<Vec<u8>> {
        match self.regs.get(&r)? {
            Loaded {
                src: Src::Value(v), ..
            } => Some(v.clone()),
            _ => None,
        }
    }

    /// The address a register holds as a constant (`None`: no register, or not one).
    fn addr(&self, r: Option<Reg>) -> Option<IpAddr> {
        r.and_then(|r| self.value(r)).and_then(|v| ip_from(&v))
    }

    fn ports(&self, min: Option<Reg>, max: Option<Reg>) -> Option<PortRange> {
        let port = |r: Option<Reg>| {
            r.and_then(|r| self.value(r))
                .and_then(|v| v.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])))
        };
        let start = port(min)?;
        Some(PortRange {
            start,
            end: port(max).unwrap_or(start),
        })
    }

    /// `KEY vmap { ELEMENT : VERDICT, ... }`: one arm per element, each the element's test
    /// and verdict. A map meshleak cannot read, a key it cannot test, or a verdict it does
    /// not follow (`continue`, a verdict code it does not know) leaves the rule's outcome
    /// unknown wherever it is reached, never dropped.
    fn verdict_map(&mut self, sreg: Option<Reg>, set: Option<&str>) {
        let arms = self.arms(sreg, set);
        match arms {
            Some(arms) if !arms.is_empty() => {
                self.out.target = "-j verdict-map".into();
                self.out.arms = arms;
            }
            // An empty map matches nothing; the model has no never-matching test.
            Some(_) => self.unknown("verdict map with no element"),
            None => self.action(
                Action::Unknown {
                    name: "verdict map (vmap) meshleak cannot read".into(),
                },
                "-j verdict-map".into(),
            ),
        }
    }

    fn arms(&mut self, sreg: Option<Reg>, set: Option<&str>) -> Option<Vec<Arm>> {
        let (field, l) = self.field_of(sreg?)?;
        let (elems, _) = self.sets.get(set?)?;
        if l.mask.is_some() && !matches!(field, Field::Addr(..)) {
            return None;
        }
        let mut arms = Vec::new();
        for r in &elems.ranges {
            if r.start.len().max(r.end.len()) > field.width() {
                return None; // a concatenated key
            }
            let action = match r.verdict.as_ref()? {
                Jump::Accept => Action::Accept,
                Jump::Drop => Action::Drop,
                Jump::Return => Action::Return,
                Jump::Jump(c) => Action::Jump { chain: c.clone() },
                Jump::Goto(c) => Action::Goto { chain: c.clone() },
                Jump::Continue | Jump::Other(_) => return None,
            };
            // The element's test, made as a comparison would make it, on a copy of the
            // state: an arm changes nothing for the others.
            let saved = (
                self.out.clone(),
                self.version,
                self.l4proto,
                self.ports.clone(),
            );
            let (a, b) = (
                self.number(field, &l, &r.start),
                self.number(field, &l, &r.end),
            );
            self.push_ranges(field, false, vec![(a, b)]);
            let matches = self.out.matches.split_off(saved.0.matches.len());
            (self.out, self.version, self.l4proto, self.ports) = saved;
            if matches
                .iter()
                .any(|m| matches!(m.test, Test::Unknown { .. }))
            {
                return None;
            }
            arms.push(Arm { matches, action });
        }
        Some(arms)
    }

    fn verdict(&mut self, j: &Jump) {
        let (a, t) = match j {
            Jump::Accept => (Action::Accept, "-j ACCEPT".to_string()),
            Jump::Drop => (Action::Drop, "-j DROP".into()),
            Jump::Return => (Action::Return, "-j RETURN".into()),
            Jump::Jump(c) => (Action::Jump { chain: c.clone() }, format!("-j {c}")),
            Jump::Goto(c) => (Action::Goto { chain: c.clone() }, format!("-g {c}")),
            Jump::Continue => return,
            Jump::Other(n) => (
                Action::Unknown {
                    name: format!("verdict {n}"),
                },
                format!("-j verdict-{n}"),
            ),
        };
        self.out.target = t;
        self.out.actions.push(a);
    }

    /// `meta mark set` / `ct mark set` from a register: a constant, the other mark, or a
    /// masked and xored copy of a mark.
    fn set_mark(&mut self, target: MarkReg, sreg: Reg) {
        let Some(l) = self.regs.get(&sreg).cloned() else {
            return self.unknown("mark set from an unknown value");
        };
        let word = |v: &Option<Vec<u8>>| {
            v.as_ref()
                .and_then(|b| b.get(..4))
                .map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
        };
        let set = match &l.src {
            Src::Value(v) => Some(MarkSet {
                reg: target,
                keep: 0,
                or: 0,
                xor: word(&Some(v.clone())).unwrap_or(0),
                copy: None,
            }),
            Src::Meta(MetaKey::Mark) | Src::Ct(3) => {
                let from = if matches!(l.src, Src::Meta(_)) {
                    MarkReg::Mark
                } else {
                    MarkReg::CtMark
                };
                let (mask, xor) = (word(&l.mask).unwrap_or(u32::MAX), word(&l.xor).unwrap_or(0));
                Some(if from == target {
                    MarkSet {
                        reg: target,
                        keep: mask,
                        or: 0,
                        xor,
                        copy: None,
                    }
                } else {
                    MarkSet {
                        reg: target,
                        keep: 0,
                        or: 0,
                        xor,
                        copy: Some((from, mask)),
                    }
                })
            }
            _ => None,
        };
        match set {
            Some(s) => self.out.actions.push(Action::SetMark(s)),
            None => self.unknown("mark set from an unknown value"),
        }
    }

    /// The field a register holds, with the load.
    fn field_of(&self, reg: Reg) -> Option<(Field, Loaded)> {
        let l = self.regs.get(&reg)?.clone();
        let f = match &l.src {
            Src::Payload {
                base: 1,
                offset: 6,
                len: 2,
            } if self.version == Some(IpVersion::V4) => Field::Fragment,
            // nft loads only the leading bytes of an address for a byte-aligned prefix.
            Src::Payload {
                base: 1,
                offset,
                len,
            } => match (self.version?, offset, len) {
                (IpVersion::V4, 12, 1..=4) => Field::Addr(Dir::Src, IpVersion::V4),
                (IpVersion::V4, 16, 1..=4) => Field::Addr(Dir::Dst, IpVersion::V4),
                (IpVersion::V4, 9, 1) => Field::Proto(Some(IpVersion::V4)),
                (IpVersion::V6, 8, 1..=16) => Field::Addr(Dir::Src, IpVersion::V6),
                (IpVersion::V6, 24, 1..=16) => Field::Addr(Dir::Dst, IpVersion::V6),
                (IpVersion::V6, 6, 1) => Field::Proto(Some(IpVersion::V6)),
                _ => return None,
            },
            Src::Payload {
                base: 2,
                offset: 13,
                len: 1,
            } => Field::TcpFlags,
            Src::Payload {
                base: 2,
                offset: 0,
                len: 2,
            } => Field::Port(Dir::Src),
            Src::Payload {
                base: 2,
                offset: 2,
                len: 2,
            } => Field::Port(Dir::Dst),
            Src::Meta(MetaKey::L4Proto) => Field::Proto(None),
            Src::Meta(MetaKey::Nfproto) => Field::NfProto,
            Src::Meta(MetaKey::SocketUserId) => Field::Uid,
            Src::Meta(MetaKey::SocketGroupId) => Field::Gid,
            Src::Meta(MetaKey::Oifname) => Field::Iface(Dir::Dst),
            Src::Meta(MetaKey::Iifname) => Field::Iface(Dir::Src),
            Src::Meta(MetaKey::Mark) => Field::Mark(MarkReg::Mark),
            Src::Ct(0) => Field::CtState,
            Src::Ct(3) => Field::Mark(MarkReg::CtMark),
            // NFT_FIB_RESULT_ADDRTYPE (3) of NFTA_FIB_F_SADDR (1) or DADDR (2), optionally
            // on the output interface (OIF, 16). The interface results (`fib ... oif`,
            // `oifname`), existence tests (PRESENT, 32), and lookups by mark (4) or input
            // interface (8) are not modelled.
            Src::Fib { flags, result: 3 } if flags & !(1 | 2 | 16) == 0 => {
                let oif = flags & 16 != 0;
                match flags & 3 {
                    2 => Field::FibType(Dir::Dst, oif),
                    1 => Field::FibType(Dir::Src, oif),
                    _ => return None,
                }
            }
            _ => return None,
        };
        // A transport header's bytes 0-3 are ports only for protocols that have them
        // (`ah reserved`, `icmp checksum` sit there too).
        if let (Field::Port(_), Some(p)) = (f, self.l4proto)
            && !crate::model::has_ports(p)
        {
            return None;
        }
        // An xor part (`meta mark or 0x03`) changes what is compared: only a mark's is
        // modelled (in `cmp`).
        if l.xor.is_some() && !matches!(f, Field::Mark(_)) {
            return None;
        }
        Some((f, l))
    }

    /// A comparison value as a number: network order for packet fields and swapped values,
    /// host order for meta and ct keys.
    fn number(&self, field: Field, l: &Loaded, data: &[u8]) -> u128 {
        let be = matches!(
            field,
            Field::Addr(..) | Field::Port(_) | Field::Proto(_) | Field::NfProto
        ) || l.swapped;
        let mut bytes = data.to_vec();
        if !be {
            bytes.reverse();
        }
        bytes.iter().fold(0u128, |acc, b| (acc << 8) | *b as u128)
    }

    fn cmp(&mut self, sreg: Reg, op: CmpOp, data: &[u8]) {
        if self.both_ports(sreg, op, data) {
            return;
        }
        let Some((field, mut l)) = self.field_of(sreg) else {
            return self.unknown("comparison on a value meshleak does not model");
        };
        // A partial address load compares a prefix: widen it to the whole address with a
        // prefix mask, so it reads as the CIDR it is.
        let mut data = data.to_vec();
        if let (Field::Addr(_, version), Src::Payload { len, .. }) = (field, &l.src) {
            let width = if version == IpVersion::V4 { 4 } else { 16 };
            let len = *len as usize;
            if len < width && (op == CmpOp::Eq || op == CmpOp::Neq) {
                let mut mask = l.mask.clone().unwrap_or_else(|| vec![0xff; len]);
                mask.resize(width, 0);
                data.resize(width, 0);
                l.mask = Some(mask);
            }
        }
        let data = data.as_slice();
        match op {
            CmpOp::Eq | CmpOp::Neq => {
                let neg = op == CmpOp::Neq;
                match field {
                    Field::Iface(dir) => self.iface_eq(dir, neg, data),
                    Field::CtState if l.mask.is_some() && data.iter().all(|b| *b == 0) => {
                        // `ct state a,b`: (state & mask) != 0.
                        let mask =
                            self.number(field, &l, l.mask.as_deref().unwrap_or_default()) as u32;
                        self.push(
                            !neg,
                            Test::CtState {
                                states: ct_states(mask),
                            },
                            format!("ct state 0x{mask:x}"),
                        );
                    }
                    Field::Addr(..) if l.mask.is_some() => {
                        self.masked_addr_eq(field, &l, neg, data)
                    }
                    Field::Mark(reg) => self.mark_eq(reg, field, &l, neg, data),
                    Field::TcpFlags => {
                        let mask = l
                            .mask
                            .as_deref()
                            .and_then(|m| m.first().copied())
                            .unwrap_or(0xff);
                        let comp = data.first().copied().unwrap_or(0);
                        let text = format!(
                            "--tcp-flags {} {}",
                            xt_matches::tcp_flags(mask),
                            xt_matches::tcp_flags(comp)
                        );
                        self.port_part("tcp", 2, neg, &text);
                        self.push(neg, Test::TcpFlags { mask, cmp: comp }, text);
                    }
                    Field::Fragment => {
                        // `-f`: fragment offset & 0x1fff != 0 (a non-first fragment).
                        self.generic(5, !neg, "-f");
                        self.push(
                            !neg,
                            Test::Unknown {
                                name: "fragment".into(),
                            },
                            "-f".into(),
                        );
                    }
                    _ if l.mask.is_some() => self.unknown("masked comparison"),
                    _ => {
                        let v = self.number(field, &l, data);
                        self.push_ranges(field, neg, vec![(v, v)]);
                    }
                }
            }
            _ if l.mask.is_some() => self.unknown("masked ordering comparison"),
            _ => {
                let v = self.number(field, &l, data);
                let (mut lo, mut hi) = match &self.bounds {
                    Some((r, _, lo, hi)) if *r == sreg => (*lo, *hi),
                    _ => {
                        self.flush_bounds();
                        (0, u128::MAX)
                    }
                };
                match op {
                    CmpOp::Lt => hi = hi.min(v.saturating_sub(1)),
                    CmpOp::Lte => hi = hi.min(v),
                    CmpOp::Gt => lo = lo.max(v + 1),
                    _ => lo = lo.max(v),
                }
                self.bounds = Some((sreg, field, lo, hi));
            }
        }
    }

    /// `-o eth0`, `oifname "veth*"`: an interface name, exact or a prefix.
    fn iface_eq(&mut self, dir: Dir, neg: bool, data: &[u8]) {
        // iptables-nft writes `! -i +` (no interface at all) as this name, which no
        // interface can have: read back as the negated match of every name.
        if !neg && data.contains(&0) && data.split(|b| *b == 0).next() == Some(b"INVAL/D") {
            return self.iface_eq(dir, true, &[]);
        }
        let exact = data.contains(&0);
        let name: String = data
            .iter()
            .take_while(|b| **b != 0)
            .map(|b| *b as char)
            .collect();
        let shown = format!("{name}{}", if exact { "" } else { "+" });
        let letter = if dir == Dir::Src { 'i' } else { 'o' };
        self.generic(
            if dir == Dir::Src { 2 } else { 3 },
            neg,
            &format!("-{letter} {shown}"),
        );
        self.push(
            neg,
            Test::Iface {
                dir,
                patterns: vec![IfacePattern {
                    name,
                    wildcard: !exact,
                }],
            },
            format!("-{letter} {shown}"),
        );
    }

    /// An address under a mask: a CIDR when the mask is a prefix, else kept unknown and shown
    /// as iptables shows it.
    fn masked_addr_eq(&mut self, field: Field, l: &Loaded, neg: bool, data: &[u8]) {
        let mask = l.mask.clone().unwrap_or_default();
        // A prefix mask: ones, then zeros. Its length is the CIDR's.
        let ones: u32 = mask.iter().map(|b| b.count_ones()).sum();
        let prefix_ok = mask
            .iter()
            .scan(true, |full, b| {
                let ok = *full || *b == 0;
                *full = *b == 0xff;
                Some(ok && (b.leading_ones() == b.count_ones()))
            })
            .all(|x| x);
        let len = ones;
        let v = self.number(field, l, data);
        if prefix_ok {
            self.push_ranges_masked(field, neg, v, len);
        } else if let Field::Addr(dir, version) = field {
            // A mask that is not a prefix: kept (unknown), shown as iptables does.
            let (a, m) = (
                addr_from_key(version, v),
                addr_from_key(version, self.number(field, l, &mask)),
            );
            let letter = if dir == Dir::Src { 's' } else { 'd' };
            let text = format!(
                "-{letter} {}/{}",
                crate::range::ip_text(&a),
                crate::range::ip_text(&m)
            );
            self.generic(if dir == Dir::Src { 0 } else { 1 }, neg, &text);
            self.push(
                neg,
                Test::Unknown {
                    name: format!("-{letter} with a non-prefix mask"),
                },
                text,
            );
        }
    }

    /// `meta mark and M xor X == V` (and ct mark): `(mark & M) == V ^ X`.
    fn mark_eq(&mut self, reg: MarkReg, field: Field, l: &Loaded, neg: bool, data: &[u8]) {
        let mask = l
            .mask
            .as_deref()
            .map(|m| self.number(field, l, m) as u32)
            .unwrap_or(u32::MAX);
        // ((mark & mask) ^ xor) == v is (mark & mask) == v ^ xor; a value
        // with bits outside the mask is one no mark meets: unknown, never
        // read as a test that matches.
        let xor = l
            .xor
            .as_deref()
            .map_or(0, |x| self.number(field, l, x) as u32);
        let v = self.number(field, l, data) as u32 ^ xor;
        if v & !mask != 0 {
            return self.unknown("mark comparison no mark can meet");
        }
        let text = format!(
            "-m {} --mark {}",
            if reg == MarkReg::Mark {
                "mark"
            } else {
                "connmark"
            },
            xt_matches::mark_text(v, mask)
        );
        self.module(neg, &text);
        self.push(
            neg,
            Test::Mark {
                reg,
                mask,
                values: vec![(v, v)],
            },
            text,
        );
    }

    /// iptables-nft's `--sport A --dport B` (both single ports) as one 4-byte comparison of
    /// the transport header's first bytes: both port tests. Whether it was one.
    fn both_ports(&mut self, sreg: Reg, op: CmpOp, data: &[u8]) -> bool {
        let Some(Loaded {
            src:
                Src::Payload {
                    base: 2,
                    offset: 0,
                    len: 4,
                },
            mask: None,
            xor: None,
            swapped: false,
        }) = self.regs.get(&sreg)
        else {
            return false;
        };
        let (CmpOp::Eq, [a, b, c, d], Some(proto)) = (op, data, self.l4proto) else {
            return false;
        };
        if !crate::model::has_ports(proto) {
            return false;
        }
        let (sport, dport) = (u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d]));
        self.push_ranges(
            Field::Port(Dir::Src),
            false,
            vec![(sport.into(), sport.into())],
        );
        self.push_ranges(
            Field::Port(Dir::Dst),
            false,
            vec![(dport.into(), dport.into())],
        );
        true
    }

    fn flush_bounds(&mut self) {
        if let Some((reg, field, lo, hi)) = self.bounds.take() {
            let max = match field {
                Field::Port(_) => u16::MAX as u128,
                Field::Uid | Field::Gid | Field::Mark(_) => u32::MAX as u128,
                _ => u128::MAX,
            };
            let _ = reg;
            self.push_ranges(field, false, vec![(lo, hi.min(max))]);
        }
    }

    fn lookup(&mut self, sreg: Reg, set: &str, invert: bool) {
        let (Some((field, l)), Some((elems, _))) = (self.field_of(sreg), self.sets.get(set)) else {
            return self.unknown("lookup in a set meshleak cannot read");
        };
        // A concatenation (`meta skgid . tcp dport`): the registers after this one hold
        // the other parts, which one test cannot express, unless the set is empty.
        if elems.concatenated(field.width()) {
            if elems.ranges.is_empty() {
                return self.empty_concatenation(sreg, &elems.key, invert);
            }
            return self.unknown("lookup with a concatenated key");
        }
        if l.mask.is_some() && !matches!(field, Field::Addr(..)) {
            return self.unknown("lookup of a masked value");
        }
        // Set keys are stored in the register's byte order.
        let ranges = elems
            .ranges
            .iter()
            .map(|r| {
                (
                    self.number(field, &l, &r.start),
                    self.number(field, &l, &r.end),
                )
            })
            .collect();
        self.push_ranges(field, invert, ranges);
    }

    /// `a . b @s` with `s` empty: no key is in it, so the lookup is each field's test with
    /// no values, each false (inverted: each true) where it applies, which keeps each
    /// field's own condition (`tcp dport` only for TCP) and the key's declared shape. The
    /// tests are exact whatever the fields: they hold nothing a packet could be in.
    fn empty_concatenation(&mut self, sreg: Reg, key: &KeyShape, invert: bool) {
        let Some(fields) = self.key_fields(sreg, key) else {
            return self.unknown("lookup with a concatenated key meshleak cannot split");
        };
        for field in fields {
            match field {
                Field::Iface(dir) => {
                    let letter = if dir == Dir::Src { 'i' } else { 'o' };
                    let test = Test::Iface {
                        dir,
                        patterns: Vec::new(),
                    };
                    self.push(invert, test, format!("-{letter} "));
                }
                _ => self.push_ranges(field, invert, Vec::new()),
            }
        }
    }

    /// The fields of a concatenated key loaded from `sreg` on: each in the registers after
    /// the one before, rounded up to 4 bytes, as nft lays them out. Each field's length must
    /// be the declared one (NFTA_SET_DESC_CONCAT) when the set gives them, and together
    /// they must make the declared key length. `None`: a field meshleak does not model,
    /// or loads that do not make the declared key.
    fn key_fields(&self, sreg: Reg, key: &KeyShape) -> Option<Vec<Field>> {
        let mut left = match key.len {
            0 => key.fields.iter().map(|f| f.div_ceil(4) * 4).sum(),
            len => len,
        };
        let (mut at, mut fields) = (sreg, Vec::new());
        while left > 0 {
            let (field, l) = self.field_of(at)?;
            let len = match l.src {
                Src::Payload { len, .. } => len,
                _ => field.width() as u32,
            };
            if key
                .fields
                .get(fields.len())
                .is_some_and(|want| *want != len)
            {
                return None;
            }
            let step = len.div_ceil(4).max(1) * 4;
            left = left.checked_sub(step)?;
            at = at.checked_add(step)?;
            fields.push(field);
        }
        let declared = key.fields.is_empty() || key.fields.len() == fields.len();
        (fields.len() > 1 && declared).then_some(fields)
    }

    fn push(&mut self, negated: bool, test: Test, text: String) {
        self.out.matches.push(Match {
            negated,
            test,
            text,
        });
    }

    fn generic(&mut self, order: u8, neg: bool, text: &str) {
        self.out
            .generic
            .push((order, format!("{}{text}", if neg { "! " } else { "" })));
    }

    fn module(&mut self, neg: bool, text: &str) {
        let text = match (neg, text.split_once(" --")) {
            (true, Some((m, rest))) => format!("{m} ! --{rest}"),
            _ => text.to_string(),
        };
        self.out.modules.push(text);
    }

    fn push_ranges_masked(&mut self, field: Field, neg: bool, v: u128, len: u32) {
        let Field::Addr(dir, version) = field else {
            return;
        };
        let width = if version == IpVersion::V4 { 32 } else { 128 };
        let host = width - len;
        let start = if host >= 128 { 0 } else { (v >> host) << host };
        let end = if host >= 128 {
            u128::MAX
        } else {
            start | ((1u128 << host) - 1)
        };
        let r = AddrRange {
            start: addr_from_key(version, start),
            end: addr_from_key(version, end),
        };
        self.addr_test(dir, version, neg, vec![r]);
    }

    fn addr_test(&mut self, dir: Dir, version: IpVersion, neg: bool, ranges: Vec<AddrRange>) {
        let letter = if dir == Dir::Src { 's' } else { 'd' };
        let shown: Vec<String> = ranges.iter().map(AddrRange::to_string).collect();
        let text = format!("-{letter} {}", shown.join(","));
        self.generic(if dir == Dir::Src { 0 } else { 1 }, neg, &text);
        self.push(
            neg,
            Test::Addr {
                dir,
                version,
                ranges,
            },
            text,
        );
    }

    /// Tests from value ranges of a field.
    fn push_ranges(&mut self, field: Field, neg: bool, ranges: Vec<(u128, u128)>) {
        match field {
            Field::Addr(dir, version) => {
                let ranges = ranges
                    .into_iter()
                    .map(|(a, b)| AddrRange {
                        start: addr_from_key(version, a),
                        end: addr_from_key(version, b),
                    })
                    .collect();
                self.addr_test(dir, version, neg, ranges);
            }
            Field::Proto(version) => self.proto_ranges(version, neg, &ranges),
            Field::NfProto => {
                let version = match ranges.first() {
                    Some((2, 2)) => IpVersion::V4,
                    Some((10, 10)) => IpVersion::V6,
                    _ => return self.unknown("meta nfproto value"),
                };
                if !neg {
                    self.version = Some(version);
                }
                self.push(
                    neg,
                    Test::NfProto { version },
                    format!("meta nfproto {}", version.family().name()),
                );
            }
            Field::Port(dir) => self.port_ranges(dir, neg, ranges),
            Field::Uid | Field::Gid => self.id_ranges(field == Field::Uid, neg, ranges),
            Field::Mark(reg) => {
                let values = ranges
                    .into_iter()
                    .map(|(a, b)| (a as u32, b as u32))
                    .collect();
                self.push(
                    neg,
                    Test::Mark {
                        reg,
                        mask: u32::MAX,
                        values,
                    },
                    "mark".into(),
                );
            }
            Field::CtState => {
                let states = ranges
                    .iter()
                    .flat_map(|(a, _)| ct_states(*a as u32))
                    .collect();
                self.push(neg, Test::CtState { states }, "ct state".into());
            }
            Field::FibType(dir, oif) => {
                let types: Vec<AddrType> = ranges
                    .iter()
                    .filter_map(|(a, _)| AddrType::from_rtn(*a as u32))
                    .collect();
                self.push(
                    neg,
                    Test::AddrType {
                        dir,
                        types,
                        limit_iface_out: oif,
                    },
                    "fib type".into(),
                );
            }
            Field::Iface(_) | Field::TcpFlags | Field::Fragment => {
                self.unknown("range on a field without ranges")
            }
        }
    }

    /// `-p tcp`, `meta l4proto { tcp, udp }`: a protocol sets the rule's transport for the
    /// port tests after it, and in an inet table the family its header implies.
    fn proto_ranges(&mut self, version: Option<IpVersion>, neg: bool, ranges: &[(u128, u128)]) {
        let protos: Vec<u8> = ranges
            .iter()
            .flat_map(|(a, b)| (*a..=*b).take(256))
            .map(|p| p as u8)
            .collect();
        if let (false, [p]) = (neg, protos.as_slice()) {
            self.l4proto = Some(*p);
        }
        if let Some(v) = version
            && self.family == Family::Inet
        {
            self.push(false, Test::NfProto { version: v }, String::new());
        }
        let names: Vec<String> = protos
            .iter()
            .map(|p| crate::xt::save::proto_text(*p))
            .collect();
        let text = format!("-p {}", names.join(","));
        self.generic(4, neg, &text);
        self.push(neg, Test::Protocol { protos }, text);
    }

    /// Ports of the rule's transport: one range as that protocol's module shows it, more as
    /// multiport.
    fn port_ranges(&mut self, dir: Dir, neg: bool, ranges: Vec<(u128, u128)>) {
        let protos: Vec<u8> = self.l4proto.into_iter().collect();
        let ranges: Vec<PortRange> = ranges
            .into_iter()
            .map(|(a, b)| PortRange {
                start: a as u16,
                end: b.min(65535) as u16,
            })
            .collect();
        let opt = if dir == Dir::Src { "sport" } else { "dport" };
        let shown: Vec<String> = ranges
            .iter()
            .map(|r| {
                if r.start == r.end {
                    r.start.to_string()
                } else {
                    format!("{}:{}", r.start, r.end)
                }
            })
            .collect();
        let module = protos.first().map_or("tcp".to_string(), |p| proto_name(*p));
        let text = if ranges.len() == 1 {
            format!("-m {module} --{opt} {}", shown[0])
        } else {
            format!("-m multiport --{opt}s {}", shown.join(","))
        };
        if ranges.len() == 1 {
            self.port_part(
                &module,
                usize::from(dir == Dir::Dst),
                neg,
                &format!("--{opt} {}", shown[0]),
            );
        } else {
            self.module(neg, &text);
        }
        self.push(
            neg,
            Test::Port {
                dir,
                protos,
                ranges,
            },
            text,
        );
    }

    /// `meta skuid`/`skgid` (iptables-nft's `-m owner` is an xt match, not this).
    fn id_ranges(&mut self, uid: bool, neg: bool, ranges: Vec<(u128, u128)>) {
        let ranges: Vec<IdRange> = ranges
            .into_iter()
            .map(|(a, b)| IdRange {
                start: a as u32,
                end: b.min(u32::MAX as u128) as u32,
            })
            .collect();
        let shown: Vec<String> = ranges.iter().map(IdRange::to_string).collect();
        let (key, test) = if uid {
            ("skuid", Test::Uid { ranges })
        } else {
            (
                "skgid",
                Test::Gid {
                    ranges,
                    suppl_groups: false,
                },
            )
        };
        self.push(neg, test, format!("meta {key} {}", shown.join(",")));
    }

    /// `-m tcp --sport X --dport Y --tcp-flags A B` is one module in iptables-save output,
    /// its parts in that order whatever order the expressions came in. `slot`: 0 sport,
    /// 1 dport, 2 flags.
    fn port_part(&mut self, module: &str, slot: usize, neg: bool, part: &str) {
        let part = format!("{}{part}", if neg { "! " } else { "" });
        match &mut self.ports {
            Some((_, m, slots)) if m == module && slots[slot].is_none() => slots[slot] = Some(part),
            _ => {
                self.finish_ports();
                self.out.modules.push(String::new());
                let mut slots: [Option<String>; 3] = Default::default();
                slots[slot] = Some(part);
                self.ports = Some((self.out.modules.len() - 1, module.to_string(), slots));
            }
        }
    }

    fn finish_ports(&mut self) {
        if let Some((at, module, slots)) = self.ports.take() {
            let parts: Vec<String> = slots.into_iter().flatten().collect();
            self.out.modules[at] = format!("-m {module} {}", parts.join(" "));
        }
    }
}

/// `ct state` bits (NF_CT_STATE_BIT): INVALID 1, ESTABLISHED 2, RELATED 4, NEW 8, UNTRACKED 64.
fn ct_states(mask: u32) -> Vec<CtState> {
    [
        (1, CtState::Invalid),
        (2, CtState::Established),
        (4, CtState::Related),
        (8, CtState::New),
        (64, CtState::Untracked),
    ]
    .into_iter()
    .filter(|(b, _)| mask & b != 0)
    .map(|(_, s)| s)
    .collect()
}

fn ip_from(v: &[u8]) -> Option<IpAddr> {
    match v.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(v).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(v).ok()?)),
        _ => None,
    }
}
