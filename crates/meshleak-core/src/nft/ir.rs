//! meshleak's own view of nf_tables expressions, decoded from the raw attributes of a
//! rule's NFTA_RULE_EXPRESSIONS with the attribute numbers of
//! `linux/netfilter/nf_tables.h`, every length checked (see [`super::msg`]).

use super::msg::{At, Attr, DecodeError, data_value, find};

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
    /// A map lookup (`vmap`, `dnat to ... map`) of the key in `sreg`: its result, a
    /// verdict or data, is in `dreg` (`VERDICT_REG` for a verdict map); a key not in the
    /// map ends the rule unmatched (NFT_BREAK).
    MapLookup {
        sreg: Option<Reg>,
        set: Option<String>,
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
        addr_max: Option<Reg>,
        proto_min: Option<Reg>,
        proto_max: Option<Reg>,
        flags: u32,
    },
    Redir {
        proto_min: Option<Reg>,
        proto_max: Option<Reg>,
    },
    Masq {
        proto_min: Option<Reg>,
        proto_max: Option<Reg>,
        flags: u32,
    },
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
    /// `limit rate RATE/UNIT burst BURST`: packets (or bytes) per `unit` seconds.
    Limit {
        rate: u64,
        unit: u64,
        burst: u32,
        bytes: bool,
        invert: bool,
    },
    /// `log`; with a group, iptables-nft's `-j NFLOG`.
    Log {
        group: Option<u16>,
        prefix: String,
        snaplen: Option<u32>,
        threshold: u16,
    },
    Notrack,
    Reject,
    Other(String),
}

/// NFT_META_* keys meshleak reads; the rest by number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaKey {
    Mark,
    Iifname,
    Oifname,
    SocketUserId,
    SocketGroupId,
    Nfproto,
    L4Proto,
    Nftrace,
    Other(u32),
}

impl MetaKey {
    fn from_number(n: u32) -> MetaKey {
        match n {
            3 => MetaKey::Mark,
            6 => MetaKey::Iifname,
            7 => MetaKey::Oifname,
            10 => MetaKey::SocketUserId,
            11 => MetaKey::SocketGroupId,
            15 => MetaKey::Nfproto,
            16 => MetaKey::L4Proto,
            12 => MetaKey::Nftrace,
            n => MetaKey::Other(n),
        }
    }
}

/// The verdict register as [`reg`] names it.
pub(crate) const VERDICT_REG: Reg = u32::MAX;

/// NFT_REG_VERDICT 0, NFT_REG_1..4 (16 bytes each), NFT_REG32_00..15 (4 bytes each).
fn reg(n: u32) -> Reg {
    match n {
        1..=4 => (n - 1) * 16,
        8..=23 => (n - 8) * 4,
        _ => VERDICT_REG,
    }
}

/// The attributes of one expression's NFTA_EXPR_DATA, with the helpers its decoders use.
struct Data<'a, 'p> {
    attrs: Vec<Attr<'a>>,
    at: At<'p>,
}

impl Data<'_, '_> {
    fn get(&self, kind: u16) -> Option<&Attr<'_>> {
        find(&self.attrs, kind)
    }

    fn be32(&self, kind: u16) -> Result<Option<u32>, DecodeError> {
        self.get(kind).map(|a| a.be32(self.at)).transpose()
    }

    fn be16(&self, kind: u16) -> Result<Option<u16>, DecodeError> {
        self.get(kind)
            .map(|a| match a.value {
                [b0, b1, ..] => Ok(u16::from_be_bytes([*b0, *b1])),
                _ => Err(self.at.err(a.offset, "shorter than 2 bytes")),
            })
            .transpose()
    }

    fn be64(&self, kind: u16) -> Result<Option<u64>, DecodeError> {
        self.get(kind)
            .map(|a| match a.value {
                [b0, b1, b2, b3, b4, b5, b6, b7, ..] => {
                    Ok(u64::from_be_bytes([*b0, *b1, *b2, *b3, *b4, *b5, *b6, *b7]))
                }
                _ => Err(self.at.err(a.offset, "shorter than 8 bytes")),
            })
            .transpose()
    }

    fn reg(&self, kind: u16) -> Result<Option<Reg>, DecodeError> {
        Ok(self.be32(kind)?.map(reg))
    }

    fn string(&self, kind: u16) -> Option<String> {
        self.get(kind).map(Attr::string)
    }

    fn bytes(&self, kind: u16) -> Vec<u8> {
        self.get(kind).map(|a| a.value.to_vec()).unwrap_or_default()
    }

    /// A nested NFTA_DATA_VALUE.
    fn value(&self, kind: u16) -> Result<Option<Vec<u8>>, DecodeError> {
        self.get(kind).map(|a| data_value(a, self.at)).transpose()
    }
}

fn op(n: u32) -> Option<CmpOp> {
    Some(match n {
        0 => CmpOp::Eq,
        1 => CmpOp::Neq,
        2 => CmpOp::Lt,
        3 => CmpOp::Lte,
        4 => CmpOp::Gt,
        5 => CmpOp::Gte,
        _ => return None,
    })
}

/// NFTA_DATA_VERDICT: NFTA_VERDICT_CODE 1 (NF_DROP 0, NF_ACCEPT 1, NFT_CONTINUE -1,
/// NFT_BREAK -2, NFT_JUMP -3, NFT_GOTO -4, NFT_RETURN -5), NFTA_VERDICT_CHAIN 2.
/// An `nft_data` attribute holding a verdict (NFTA_DATA_VERDICT 2: code 1, chain 2), as an
/// immediate or a verdict map element carries it.
pub(super) fn verdict(data: &Attr, at: At) -> Result<Jump, DecodeError> {
    let inner = data.nested(at)?;
    let Some(v) = find(&inner, 2) else {
        return Ok(Jump::Other(i64::MIN));
    };
    let attrs = v.nested(at)?;
    let chain = find(&attrs, 2).map(Attr::string).unwrap_or_default();
    let Some(code) = find(&attrs, 1).map(|c| c.be32(at)).transpose()? else {
        return Ok(Jump::Other(i64::MIN));
    };
    Ok(match code as i32 {
        0 => Jump::Drop,
        1 => Jump::Accept,
        -1 => Jump::Continue,
        -3 => Jump::Jump(chain),
        -4 => Jump::Goto(chain),
        -5 => Jump::Return,
        n => Jump::Other(n as i64),
    })
}

/// One rule's NFTA_RULE_EXPRESSIONS: NFTA_LIST_ELEM entries of NFTA_EXPR_NAME 1 and
/// NFTA_EXPR_DATA 2.
pub(crate) fn exprs(list: &Attr, message: &'static str) -> Result<Vec<Expr>, DecodeError> {
    let at = At {
        message,
        path: "NFTA_RULE_EXPRESSIONS",
    };
    let mut out = Vec::new();
    for item in list.nested(at)?.iter().filter(|a| a.kind == 1) {
        let at = At {
            message,
            path: "NFTA_RULE_EXPRESSIONS/NFTA_LIST_ELEM",
        };
        let attrs = item.nested(at)?;
        let Some(name) = find(&attrs, 1).map(|n| n.str().unwrap_or("(not UTF-8)")) else {
            out.push(Expr::Other("unnamed expression".into()));
            continue;
        };
        let data = match find(&attrs, 2) {
            Some(d) => d.nested(At {
                message,
                path: "NFTA_RULE_EXPRESSIONS/NFTA_LIST_ELEM/NFTA_EXPR_DATA",
            })?,
            None => Vec::new(),
        };
        let d = Data {
            attrs: data,
            at: At {
                message,
                path: "NFTA_RULE_EXPRESSIONS/NFTA_LIST_ELEM/NFTA_EXPR_DATA",
            },
        };
        out.push(expr(name, &d)?);
    }
    Ok(out)
}

fn expr(name: &str, d: &Data) -> Result<Expr, DecodeError> {
    let other = || Expr::Other(name.to_string());
    Ok(match name {
        "counter" => Expr::Counter,
        // NFTA_LIMIT_RATE 1, UNIT 2 (be64), BURST 3, TYPE 4 (NFT_LIMIT_PKT_BYTES 1),
        // FLAGS 5 (NFT_LIMIT_F_INV 1)
        "limit" => match (d.be64(1)?, d.be64(2)?) {
            (Some(rate), Some(unit)) => Expr::Limit {
                rate,
                unit,
                burst: d.be32(3)?.unwrap_or(0),
                bytes: d.be32(4)?.unwrap_or(0) == 1,
                invert: d.be32(5)?.unwrap_or(0) & 1 != 0,
            },
            _ => other(),
        },
        // NFTA_LOG_GROUP 1 (be16), PREFIX 2, SNAPLEN 3, QTHRESHOLD 4 (be16)
        "log" => Expr::Log {
            group: d.be16(1)?,
            prefix: d.string(2).unwrap_or_default(),
            snaplen: d.be32(3)?,
            threshold: d.be16(4)?.unwrap_or(0),
        },
        "notrack" => Expr::Notrack,
        "reject" => Expr::Reject,
        // NFTA_MASQ_FLAGS 1, REG_PROTO_MIN 2, MAX 3
        "masq" => Expr::Masq {
            flags: d.be32(1)?.unwrap_or(0),
            proto_min: d.reg(2)?,
            proto_max: d.reg(3)?,
        },
        // NFTA_PAYLOAD_DREG 1, BASE 2, OFFSET 3, LEN 4 (a write has SREG 5 instead)
        "payload" => match d.reg(1)? {
            Some(dreg) => Expr::Payload {
                dreg,
                base: d.be32(2)?.unwrap_or(0),
                offset: d.be32(3)?.unwrap_or(0),
                len: d.be32(4)?.unwrap_or(0),
            },
            None => Expr::Other("payload write".into()),
        },
        // NFTA_META_DREG 1, KEY 2, SREG 3
        "meta" => match d.be32(2)? {
            Some(key) => Expr::Meta {
                key: MetaKey::from_number(key),
                dreg: d.reg(1)?,
                sreg: d.reg(3)?,
            },
            None => other(),
        },
        // NFTA_CMP_SREG 1, OP 2, DATA 3
        "cmp" => match (d.reg(1)?, d.be32(2)?.and_then(op)) {
            (Some(sreg), Some(op)) => Expr::Cmp {
                sreg,
                op,
                data: d.value(3)?.unwrap_or_default(),
            },
            _ => other(),
        },
        // NFTA_BITWISE_SREG 1, DREG 2, LEN 3, MASK 4, XOR 5, OP 6, DATA 7: only the boolean
        // form (OP 0, no DATA) is a mask and xor; shifts are not.
        "bitwise" => match (d.reg(1)?, d.reg(2)?, d.be32(6)?.unwrap_or(0), d.get(7)) {
            (Some(sreg), Some(dreg), 0, None) => Expr::Bitwise {
                sreg,
                dreg,
                mask: d.value(4)?.unwrap_or_default(),
                xor: d.value(5)?.unwrap_or_default(),
            },
            _ => Expr::Other("bitwise shift".into()),
        },
        // NFTA_LOOKUP_SET 1, SREG 2, DREG 3, FLAGS 5 (NFT_LOOKUP_F_INV 1)
        "lookup" => match (d.reg(2)?, d.string(1), d.reg(3)?) {
            (sreg, set, Some(dreg)) => Expr::MapLookup { sreg, set, dreg },
            (Some(sreg), Some(set), None) => Expr::Lookup {
                sreg,
                set,
                invert: d.be32(5)?.unwrap_or(0) & 1 != 0,
            },
            _ => other(),
        },
        // NFTA_IMMEDIATE_DREG 1, DATA 2
        "immediate" => match (d.be32(1)?, d.get(2)) {
            (Some(0), Some(data)) => Expr::Verdict(verdict(data, d.at)?),
            (Some(r), Some(_)) => Expr::Value {
                dreg: reg(r),
                data: d.value(2)?.unwrap_or_default(),
            },
            _ => other(),
        },
        // NFTA_BYTEORDER_SREG 1, DREG 2
        "byteorder" => match (d.reg(1)?, d.reg(2)?) {
            (Some(sreg), Some(dreg)) => Expr::ByteOrder { sreg, dreg },
            _ => other(),
        },
        // NFTA_RANGE_SREG 1, OP 2, FROM_DATA 3, TO_DATA 4
        "range" => match (d.reg(1)?, d.be32(2)?, d.value(3)?, d.value(4)?) {
            (Some(sreg), Some(op), Some(from), Some(to)) => Expr::Range {
                sreg,
                neq: op == 1,
                from,
                to,
            },
            _ => other(),
        },
        // NFTA_CT_DREG 1, KEY 2, DIRECTION 3, SREG 4
        "ct" => match d.be32(2)? {
            Some(key) => Expr::Ct {
                key,
                dreg: d.reg(1)?,
                sreg: d.reg(4)?,
            },
            None => other(),
        },
        // NFTA_NAT_TYPE 1, FAMILY 2, REG_ADDR_MIN 3, REG_ADDR_MAX 4, REG_PROTO_MIN 5, MAX 6,
        // FLAGS 7
        "nat" => Expr::Nat {
            dnat: d.be32(1)? == Some(1),
            addr: d.reg(3)?,
            addr_max: d.reg(4)?,
            proto_min: d.reg(5)?,
            proto_max: d.reg(6)?,
            flags: d.be32(7)?.unwrap_or(0),
        },
        // NFTA_REDIR_REG_PROTO_MIN 1, MAX 2
        "redir" => Expr::Redir {
            proto_min: d.reg(1)?,
            proto_max: d.reg(2)?,
        },
        // NFTA_TPROXY_FAMILY 1, REG_ADDR 2, REG_PORT 3
        "tproxy" => Expr::Tproxy { port: d.reg(3)? },
        // NFTA_FIB_DREG 1, RESULT 2, FLAGS 3
        "fib" => match (d.reg(1)?, d.be32(2)?, d.be32(3)?) {
            (Some(dreg), Some(result), Some(flags)) => Expr::Fib {
                result,
                flags,
                dreg,
            },
            _ => other(),
        },
        // NFTA_MATCH_NAME 1, REV 2, INFO 3 (the same for targets)
        "match" => Expr::Match {
            name: d.string(1).unwrap_or_default(),
            revision: d.be32(2)?.unwrap_or(0),
            info: d.bytes(3),
        },
        "target" => Expr::Target {
            name: d.string(1).unwrap_or_default(),
            revision: d.be32(2)?.unwrap_or(0),
            info: d.bytes(3),
        },
        _ => other(),
    })
}
