//! meshleak's own view of nf_tables expressions. netlink-packet-netfilter (pinned) types six
//! expression kinds and leaves the rest as raw attributes; both are turned into one small
//! IR here, with the attribute numbers of `linux/netfilter/nf_tables.h`.

use netlink_packet_core::{DefaultNla, Nla};
use netlink_packet_netfilter::nftables::{
    Bitwise, Cmp, DataAttribute, ExpressionAttribute, Expressions, Immediate, ListAttribute,
    Lookup, Meta, MetaKey, Operator, Payload, Register, Verdict, VerdictAttribute,
};

/// A register as a byte offset into the 64-byte data area: NFT_REG_1..4 are 16 bytes
/// each, NFT_REG32_00..15 address it in 4-byte steps.
pub type Reg = u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Jump {
    Accept,
    Drop,
    Continue,
    Return,
    Jump(String),
    Goto(String),
    Other(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    Payload {
        dreg: Reg,
        base: u32,
        offset: u32,
        len: u32,
    },
    /// `meta KEY` loaded into `dreg`, or (with `sreg`) `meta KEY set`.
    Meta {
        key: MetaKey,
        dreg: Option<Reg>,
        sreg: Option<Reg>,
    },
    Cmp {
        sreg: Reg,
        op: CmpOp,
        data: Vec<u8>,
    },
    Bitwise {
        sreg: Reg,
        dreg: Reg,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    ByteOrder {
        sreg: Reg,
        dreg: Reg,
    },
    Range {
        sreg: Reg,
        neq: bool,
        from: Vec<u8>,
        to: Vec<u8>,
    },
    Lookup {
        sreg: Reg,
        set: String,
        invert: bool,
    },
    /// A map lookup (`vmap`, `dnat to ... map`): its result, a verdict or data, is in
    /// `dreg` (`VERDICT_REG` for a verdict map).
    MapLookup {
        dreg: Reg,
    },
    Verdict(Jump),
    Value {
        dreg: Reg,
        data: Vec<u8>,
    },
    /// `ct KEY` loaded, or (with `sreg`) set.
    Ct {
        key: u32,
        dreg: Option<Reg>,
        sreg: Option<Reg>,
    },
    Nat {
        dnat: bool,
        addr: Option<Reg>,
        proto_min: Option<Reg>,
        proto_max: Option<Reg>,
    },
    Redir {
        proto_min: Option<Reg>,
        proto_max: Option<Reg>,
    },
    Masq,
    Tproxy {
        port: Option<Reg>,
    },
    Fib {
        result: u32,
        flags: u32,
        dreg: Reg,
    },
    Match {
        name: String,
        revision: u32,
        info: Vec<u8>,
    },
    Target {
        name: String,
        revision: u32,
        info: Vec<u8>,
    },
    Counter,
    Log,
    Notrack,
    Reject,
    Other(String),
}

/// The verdict register as [`reg`] names it.
pub const VERDICT_REG: Reg = u32::MAX;

fn reg(r: &Register) -> Reg {
    let n = u32::from(*r);
    match n {
        1..=4 => (n - 1) * 16,
        8..=23 => (n - 8) * 4,
        _ => u32::MAX,
    }
}

fn value(d: &DataAttribute) -> Vec<u8> {
    match d {
        DataAttribute::Value(v) => v.clone(),
        _ => Vec::new(),
    }
}

fn raw(nla: &DefaultNla) -> Vec<u8> {
    let mut buf = vec![0; nla.value_len()];
    nla.emit_value(&mut buf);
    buf
}

/// Attribute `kind` of a raw expression, as bytes.
fn attr(attrs: &[DefaultNla], kind: u16) -> Option<Vec<u8>> {
    attrs.iter().find(|a| a.kind() == kind).map(raw)
}

fn be32(attrs: &[DefaultNla], kind: u16) -> Option<u32> {
    attr(attrs, kind).and_then(|v| {
        v.get(..4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
    })
}

/// A register attribute of a raw expression (`NFTA_*_SREG` and friends, big-endian u32).
fn reg_attr(attrs: &[DefaultNla], kind: u16) -> Option<Reg> {
    be32(attrs, kind).map(|n| reg(&Register::from(n)))
}

fn op(o: &Operator) -> Option<CmpOp> {
    Some(match o {
        Operator::Equal => CmpOp::Eq,
        Operator::NotEqual => CmpOp::Neq,
        Operator::LessThan => CmpOp::Lt,
        Operator::LessThanEqual => CmpOp::Lte,
        Operator::GreaterThan => CmpOp::Gt,
        Operator::GreatherThanEqual => CmpOp::Gte,
        _ => return None,
    })
}

fn verdict(attrs: &[VerdictAttribute]) -> Jump {
    let chain = attrs.iter().find_map(|a| match a {
        VerdictAttribute::Chain(c) => Some(c.clone()),
        _ => None,
    });
    let code = attrs.iter().find_map(|a| match a {
        VerdictAttribute::Code(c) => Some(*c),
        _ => None,
    });
    match code {
        Some(Verdict::Continue) => Jump::Continue,
        Some(Verdict::Return) => Jump::Return,
        Some(Verdict::Jump) => Jump::Jump(chain.unwrap_or_default()),
        Some(Verdict::Goto) => Jump::Goto(chain.unwrap_or_default()),
        // NF_DROP is 0 and NF_ACCEPT 1; NFT_BREAK and others are negative.
        Some(Verdict::Other(0)) => Jump::Drop,
        Some(Verdict::Other(1)) => Jump::Accept,
        Some(Verdict::Other(n)) => Jump::Other(n as i32 as i64),
        Some(Verdict::Break) => Jump::Other(-2),
        None => Jump::Other(i64::MIN),
        Some(_) => Jump::Other(i64::MIN),
    }
}

/// One rule's expressions.
pub fn exprs(list: &[ListAttribute<ExpressionAttribute>]) -> Vec<Expr> {
    list.iter()
        .filter_map(|item| match item {
            ListAttribute::Element(attrs) => Some(attrs),
            _ => None,
        })
        .map(|attrs| {
            let name = attrs.iter().find_map(|a| match a {
                ExpressionAttribute::Name(n) => Some(n.as_str()),
                _ => None,
            });
            let data = attrs.iter().find_map(|a| match a {
                ExpressionAttribute::Data(d) => Some(d),
                _ => None,
            });
            match (name, data) {
                (Some(name), Some(d)) => expr(name, d),
                (Some("counter"), None) => Expr::Counter,
                (Some("notrack"), None) => Expr::Notrack,
                (Some("masq"), None) => Expr::Masq,
                (Some("reject"), None) => Expr::Reject,
                (Some("log"), None) => Expr::Log,
                (Some(name), None) => Expr::Other(name.to_string()),
                (None, _) => Expr::Other("unnamed expression".into()),
            }
        })
        .collect()
}

fn expr(name: &str, d: &Expressions) -> Expr {
    match d {
        Expressions::Payload(a) => {
            let (mut dreg, mut base, mut offset, mut len) = (None, 0, 0, 0);
            for x in a {
                match x {
                    Payload::DestinationRegister(r) => dreg = Some(reg(r)),
                    Payload::Base(b) => base = *b,
                    Payload::Offset(o) => offset = *o,
                    Payload::Len(l) => len = *l,
                    _ => {}
                }
            }
            match dreg {
                Some(dreg) => Expr::Payload {
                    dreg,
                    base,
                    offset,
                    len,
                },
                None => Expr::Other("payload write".into()),
            }
        }
        Expressions::Meta(a) => {
            let (mut key, mut dreg, mut sreg) = (None, None, None);
            for x in a {
                match x {
                    Meta::Key(k) => key = Some(*k),
                    Meta::DestinationRegister(r) => dreg = Some(reg(r)),
                    Meta::SourceRegister(r) => sreg = Some(reg(r)),
                    _ => {}
                }
            }
            match key {
                Some(key) => Expr::Meta { key, dreg, sreg },
                None => Expr::Other("meta".into()),
            }
        }
        Expressions::Cmp(a) => {
            let (mut sreg, mut o, mut data) = (None, None, Vec::new());
            for x in a {
                match x {
                    Cmp::SourceRegister(r) => sreg = Some(reg(r)),
                    Cmp::Op(p) => o = op(p),
                    Cmp::Data(d) => data = value(d),
                    _ => {}
                }
            }
            match (sreg, o) {
                (Some(sreg), Some(op)) => Expr::Cmp { sreg, op, data },
                _ => Expr::Other("cmp".into()),
            }
        }
        Expressions::Bitwise(a) => {
            let (mut sreg, mut dreg, mut mask, mut xor, mut plain) =
                (None, None, Vec::new(), Vec::new(), true);
            for x in a {
                match x {
                    Bitwise::SourceRegister(r) => sreg = Some(reg(r)),
                    Bitwise::DestinationRegister(r) => dreg = Some(reg(r)),
                    Bitwise::Mask(d) => mask = value(d),
                    Bitwise::Xor(d) => xor = value(d),
                    // Shifts and register-to-register operations are not masks.
                    Bitwise::Op(n) => plain = *n == 0,
                    Bitwise::SourceRegister2(_) => plain = false,
                    _ => {}
                }
            }
            match (sreg, dreg, plain) {
                (Some(sreg), Some(dreg), true) => Expr::Bitwise {
                    sreg,
                    dreg,
                    mask,
                    xor,
                },
                _ => Expr::Other("bitwise shift".into()),
            }
        }
        Expressions::Lookup(a) => {
            let (mut sreg, mut set, mut flags, mut map) = (None, None, 0, None);
            for x in a {
                match x {
                    Lookup::SourceRegister(r) => sreg = Some(reg(r)),
                    Lookup::Set(s) => set = Some(s.clone()),
                    Lookup::Flags(f) => flags = *f,
                    Lookup::DestinationRegister(r) => map = Some(reg(r)),
                    _ => {}
                }
            }
            match (sreg, set, map) {
                (_, _, Some(dreg)) => Expr::MapLookup { dreg },
                (Some(sreg), Some(set), None) => Expr::Lookup {
                    sreg,
                    set,
                    invert: flags & 1 != 0,
                },
                _ => Expr::Other("lookup".into()),
            }
        }
        Expressions::Immediate(a) => {
            let mut dreg = None;
            let mut data = None;
            for x in a {
                match x {
                    Immediate::DestinationRegister(r) => dreg = Some(*r),
                    Immediate::Data(d) => data = Some(d),
                    _ => {}
                }
            }
            match (dreg, data) {
                (Some(Register::Verdict), Some(DataAttribute::Verdict(v))) => {
                    Expr::Verdict(verdict(v))
                }
                (Some(r), Some(d)) => Expr::Value {
                    dreg: reg(&r),
                    data: value(d),
                },
                _ => Expr::Other("immediate".into()),
            }
        }
        Expressions::Other {
            expression_type,
            attributes: a,
        } => other(expression_type, a),
        _ => Expr::Other(name.to_string()),
    }
}

/// Expressions the crate leaves raw. Attribute numbers from nf_tables.h (NFTA_*_*).
fn other(name: &str, a: &[DefaultNla]) -> Expr {
    let s = |kind| {
        attr(a, kind).map(|v| {
            String::from_utf8_lossy(v.split(|b| *b == 0).next().unwrap_or(&[])).into_owned()
        })
    };
    match name {
        "counter" => Expr::Counter,
        "log" => Expr::Log,
        "notrack" => Expr::Notrack,
        "reject" => Expr::Reject,
        "masq" => Expr::Masq,
        // NFTA_BYTEORDER_SREG 1, DREG 2
        "byteorder" => match (reg_attr(a, 1), reg_attr(a, 2)) {
            (Some(sreg), Some(dreg)) => Expr::ByteOrder { sreg, dreg },
            _ => Expr::Other(name.into()),
        },
        // NFTA_RANGE_SREG 1, OP 2, FROM_DATA 3, TO_DATA 4 (data nested: NFTA_DATA_VALUE 1)
        "range" => match (reg_attr(a, 1), be32(a, 2), attr(a, 3), attr(a, 4)) {
            (Some(sreg), Some(op), Some(from), Some(to)) => Expr::Range {
                sreg,
                neq: op == 1,
                from: nested_value(&from),
                to: nested_value(&to),
            },
            _ => Expr::Other(name.into()),
        },
        // NFTA_CT_DREG 1, KEY 2, DIRECTION 3, SREG 4
        "ct" => match be32(a, 2) {
            Some(key) => Expr::Ct {
                key,
                dreg: reg_attr(a, 1),
                sreg: reg_attr(a, 4),
            },
            None => Expr::Other(name.into()),
        },
        // NFTA_NAT_TYPE 1, FAMILY 2, REG_ADDR_MIN 3, REG_ADDR_MAX 4, REG_PROTO_MIN 5, MAX 6
        "nat" => Expr::Nat {
            dnat: be32(a, 1) == Some(1),
            addr: reg_attr(a, 3),
            proto_min: reg_attr(a, 5),
            proto_max: reg_attr(a, 6),
        },
        // NFTA_REDIR_REG_PROTO_MIN 1, MAX 2
        "redir" => Expr::Redir {
            proto_min: reg_attr(a, 1),
            proto_max: reg_attr(a, 2),
        },
        // NFTA_TPROXY_FAMILY 1, REG_ADDR 2, REG_PORT 3
        "tproxy" => Expr::Tproxy {
            port: reg_attr(a, 3),
        },
        // NFTA_FIB_DREG 1, RESULT 2, FLAGS 3
        "fib" => match (reg_attr(a, 1), be32(a, 2), be32(a, 3)) {
            (Some(dreg), Some(result), Some(flags)) => Expr::Fib {
                result,
                flags,
                dreg,
            },
            _ => Expr::Other(name.into()),
        },
        // NFTA_MATCH_NAME 1, REV 2, INFO 3 (the same for targets)
        "match" | "target" => {
            let (n, rev, info) = (
                s(1).unwrap_or_default(),
                be32(a, 2).unwrap_or(0),
                attr(a, 3).unwrap_or_default(),
            );
            if name == "match" {
                Expr::Match {
                    name: n,
                    revision: rev,
                    info,
                }
            } else {
                Expr::Target {
                    name: n,
                    revision: rev,
                    info,
                }
            }
        }
        other => Expr::Other(other.to_string()),
    }
}

/// The value inside a nested `NFTA_DATA_VALUE` attribute.
fn nested_value(bytes: &[u8]) -> Vec<u8> {
    // struct nlattr { u16 len; u16 type; } then the value, padded.
    if bytes.len() < 4 {
        return Vec::new();
    }
    let len = u16::from_ne_bytes([bytes[0], bytes[1]]) as usize;
    bytes
        .get(4..len.min(bytes.len()))
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}
