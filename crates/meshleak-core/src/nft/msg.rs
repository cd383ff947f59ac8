//! nf_tables netlink replies decoded by meshleak itself, every length checked: tables,
//! chains, rules with their expressions, sets and set elements, with the attribute numbers
//! of `linux/netfilter/nf_tables.h`. A message that does not fit is an error naming the
//! message, the attribute path and the byte offset; nothing is read past a buffer.

use super::ir::{self, Expr};
use crate::nlmsg::NLMSG_HDRLEN;

/// A reply that does not decode: where, and what.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} message, attribute {path} at byte {offset}: {what}")]
/// (`path` is an attribute path such as `NFTA_RULE_EXPRESSIONS/NFTA_LIST_ELEM`, or
/// `at the top level`.)
pub struct DecodeError {
    pub message: &'static str,
    pub path: String,
    pub offset: usize,
    pub what: &'static str,
}

/// One netlink attribute: its type (flags cleared), its value, and where the value starts
/// in the message.
#[derive(Clone, Copy, Debug)]
pub struct Attr<'a> {
    pub kind: u16,
    pub value: &'a [u8],
    pub offset: usize,
}

/// Where decoding is: the message kind and the attribute path, for errors.
#[derive(Clone, Copy)]
pub struct At<'p> {
    pub message: &'static str,
    pub path: &'p str,
}

impl At<'_> {
    pub fn err(&self, offset: usize, what: &'static str) -> DecodeError {
        DecodeError {
            message: self.message,
            path: self.path.to_string(),
            offset,
            what,
        }
    }
}

const NLA_HDRLEN: usize = 4;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// The attributes in `buf` (which starts at byte `base` of its message), each length
/// checked against what is left.
pub fn attrs<'a>(buf: &'a [u8], base: usize, at: At) -> Result<Vec<Attr<'a>>, DecodeError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + NLA_HDRLEN <= buf.len() {
        let len = u16::from_ne_bytes([buf[pos], buf[pos + 1]]) as usize;
        let kind = u16::from_ne_bytes([buf[pos + 2], buf[pos + 3]]) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || pos + len > buf.len() {
            return Err(at.err(base + pos, "its length does not fit"));
        }
        out.push(Attr {
            kind,
            value: &buf[pos + NLA_HDRLEN..pos + len],
            offset: base + pos + NLA_HDRLEN,
        });
        pos += (len + 3) & !3;
    }
    Ok(out)
}

impl<'a> Attr<'a> {
    /// The nested attributes of this one.
    pub(crate) fn nested(&self, at: At) -> Result<Vec<Attr<'a>>, DecodeError> {
        attrs(self.value, self.offset, at)
    }

    pub(crate) fn be32(&self, at: At) -> Result<u32, DecodeError> {
        match self.value {
            [a, b, c, d, ..] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
            _ => Err(at.err(self.offset, "shorter than 4 bytes")),
        }
    }

    /// A NUL-terminated string (its NUL and padding dropped).
    pub fn string(&self) -> String {
        String::from_utf8_lossy(self.bytes_until_nul()).into_owned()
    }

    /// The same, borrowed; `None` when not UTF-8 (names of expressions are ASCII).
    pub fn str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes_until_nul()).ok()
    }

    fn bytes_until_nul(&self) -> &'a [u8] {
        self.value.split(|b| *b == 0).next().unwrap_or_default()
    }
}

/// The first attribute of `kind`.
pub fn find<'a, 'b>(list: &'b [Attr<'a>], kind: u16) -> Option<&'b Attr<'a>> {
    list.iter().find(|a| a.kind == kind)
}

/// A chain's hook and priority, if it is a base chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookSpec {
    /// NF_INET_* hook number.
    pub number: u32,
    pub priority: i32,
}

/// One nf_tables object, as a reply describes it.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Table {
        name: String,
    },
    Chain {
        table: String,
        name: String,
        hook: Option<HookSpec>,
        /// NF_DROP 0, NF_ACCEPT 1.
        policy: Option<u32>,
        chain_type: Option<String>,
    },
    Rule {
        table: String,
        chain: String,
        exprs: Vec<Expr>,
        userdata: Option<Vec<u8>>,
    },
    Set {
        table: String,
        name: String,
        flags: u32,
        key: KeyShape,
    },
    Elements {
        table: String,
        set: String,
        elems: Vec<Element>,
    },
}

/// A set's key as its declaration gives it. An empty set has no element to show a
/// concatenation's shape (`ip daddr . tcp dport`): only this does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyShape {
    /// NFTA_SET_KEY_LEN: the whole key in bytes, each field of a concatenation rounded up
    /// to 4-byte registers (0: not given).
    pub len: u32,
    /// Each field's length in bytes (NFTA_SET_DESC_CONCAT); nft sends them only for some
    /// concatenated sets (interval ones), so this may be empty for a concatenation too.
    pub fields: Vec<u32>,
}

/// A set element: its key, an explicit key end (concatenated intervals), whether it ends
/// an interval (NFT_SET_ELEM_INTERVAL_END), and in a verdict map its verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub key: Vec<u8>,
    pub key_end: Option<Vec<u8>>,
    pub interval_end: bool,
    pub verdict: Option<ir::Jump>,
}

const NFGENMSG_LEN: usize = 4;
/// NFNL_SUBSYS_NFTABLES.
const SUBSYS_NFTABLES: u8 = 10;

/// An nfnetlink message opened: `(subsys << 8) | kind` split, the `nfgenmsg` family, and
/// its top-level attributes (each length checked).
pub struct Nfgen<'a> {
    pub subsys: u8,
    pub kind: u8,
    pub family: u8,
    pub len: usize,
    msg: &'a [u8],
}

impl<'a> Nfgen<'a> {
    /// Checks a whole netlink message's header: its length fits the buffer.
    pub fn open(msg: &'a [u8]) -> Result<Self, DecodeError> {
        let header = At {
            message: "netlink",
            path: "header",
        };
        if msg.len() < NLMSG_HDRLEN {
            return Err(header.err(0, "shorter than a netlink header"));
        }
        let len = u32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]) as usize;
        if len < NLMSG_HDRLEN || len > msg.len() {
            return Err(header.err(0, "its length does not fit"));
        }
        let family = msg.get(NLMSG_HDRLEN).copied().unwrap_or(0);
        Ok(Nfgen {
            kind: msg[4],
            subsys: msg[5],
            family,
            len,
            msg,
        })
    }

    /// The attributes after the `nfgenmsg` header, decoding for `message`.
    pub fn attrs(&self, message: &'static str) -> Result<Vec<Attr<'a>>, DecodeError> {
        if self.len < NLMSG_HDRLEN + NFGENMSG_LEN {
            return Err(At {
                message: "netlink",
                path: "header",
            }
            .err(NLMSG_HDRLEN, "shorter than its nfgenmsg header"));
        }
        let start = NLMSG_HDRLEN + NFGENMSG_LEN;
        let at = At {
            message,
            path: "at the top level",
        };
        attrs(&self.msg[start..self.len], start, at)
    }
}

/// NFT_MSG_NEWGEN: the answer to NFT_MSG_GETGEN.
const MSG_NEWGEN: u8 = 15;

/// What an NFT_MSG_NEWGEN message says: the rule set's generation id after a commit, and
/// the process that committed it (the kernel names it by its pid in the initial PID
/// namespace and its `comm`). A reply to NFT_MSG_GETGEN carries the same attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub generation: u32,
    pub pid: Option<u32>,
    pub comm: Option<String>,
}

// enum nft_gen_attributes.
const NFTA_GEN_ID: u16 = 1;
const NFTA_GEN_PROC_PID: u16 = 2;
const NFTA_GEN_PROC_NAME: u16 = 3;

/// The commit an NFT_MSG_NEWGEN message announces (every nf_tables commit ends with one,
/// sent to NFNLGRP_NFTABLES); `None`: another message.
pub fn commit(msg: &[u8]) -> Result<Option<Commit>, DecodeError> {
    let m = Nfgen::open(msg)?;
    if m.subsys != SUBSYS_NFTABLES || m.kind != MSG_NEWGEN {
        return Ok(None);
    }
    let top = m.attrs("generation")?;
    let at = |path| At {
        message: "generation",
        path,
    };
    let Some(id) = find(&top, NFTA_GEN_ID) else {
        return Err(at("NFTA_GEN_ID").err(NLMSG_HDRLEN, "missing"));
    };
    Ok(Some(Commit {
        generation: id.be32(at("NFTA_GEN_ID"))?,
        pid: find(&top, NFTA_GEN_PROC_PID)
            .map(|a| a.be32(at("NFTA_GEN_PROC_PID")))
            .transpose()?,
        comm: find(&top, NFTA_GEN_PROC_NAME).map(Attr::string),
    }))
}

/// The rule set's generation id in an NFT_MSG_NEWGEN reply: it changes with every
/// committed change, so equal ids before and after a dump prove the dump saw one rule set.
/// `None`: another message.
pub fn generation(msg: &[u8]) -> Result<Option<u32>, DecodeError> {
    Ok(commit(msg)?.map(|c| c.generation))
}

/// Decodes one whole netlink message: its NFPROTO_* family and object; `None` for what
/// is not an nf_tables object (NLMSG_DONE, another subsystem, a message kind not read).
pub fn decode(msg: &[u8]) -> Result<Option<(u8, Object)>, DecodeError> {
    let m = Nfgen::open(msg)?;
    if m.subsys != SUBSYS_NFTABLES {
        return Ok(None);
    }
    let message = match m.kind {
        0 => "table",
        3 => "chain",
        6 => "rule",
        9 => "set",
        12 => "set element",
        _ => return Ok(None),
    };
    let (kind, family) = (m.kind, m.family);
    let top = m.attrs(message)?;
    let s = |kind: u16| find(&top, kind).map(Attr::string).unwrap_or_default();
    let object = match kind {
        // NFTA_TABLE_NAME 1
        0 => Object::Table { name: s(1) },
        // NFTA_CHAIN_TABLE 1, NAME 3, HOOK 4, POLICY 5, TYPE 7
        3 => {
            let hook = match find(&top, 4) {
                Some(h) => {
                    let at = At {
                        message,
                        path: "NFTA_CHAIN_HOOK",
                    };
                    let inner = h.nested(at)?;
                    // NFTA_HOOK_HOOKNUM 1, PRIORITY 2
                    match (find(&inner, 1), find(&inner, 2)) {
                        (Some(n), Some(p)) => Some(HookSpec {
                            number: n.be32(at)?,
                            priority: p.be32(at)? as i32,
                        }),
                        _ => None,
                    }
                }
                None => None,
            };
            let policy = find(&top, 5)
                .map(|p| {
                    p.be32(At {
                        message,
                        path: "NFTA_CHAIN_POLICY",
                    })
                })
                .transpose()?;
            Object::Chain {
                table: s(1),
                name: s(3),
                hook,
                policy,
                chain_type: find(&top, 7).map(Attr::string),
            }
        }
        // NFTA_RULE_TABLE 1, CHAIN 2, EXPRESSIONS 4, USERDATA 7
        6 => {
            let exprs = match find(&top, 4) {
                Some(list) => ir::exprs(list, message)?,
                None => Vec::new(),
            };
            Object::Rule {
                table: s(1),
                chain: s(2),
                exprs,
                userdata: find(&top, 7).map(|u| u.value.to_vec()),
            }
        }
        // NFTA_SET_TABLE 1, NAME 2, FLAGS 3
        9 => Object::Set {
            table: s(1),
            name: s(2),
            flags: find(&top, 3)
                .map(|f| {
                    f.be32(At {
                        message,
                        path: "NFTA_SET_FLAGS",
                    })
                })
                .transpose()?
                .unwrap_or(0),
            key: key_shape(&top, message)?,
        },
        // NFTA_SET_ELEM_LIST_TABLE 1, SET 2, ELEMENTS 3
        _ => Object::Elements {
            table: s(1),
            set: s(2),
            elems: match find(&top, 3) {
                Some(list) => elements(list, message)?,
                None => Vec::new(),
            },
        },
    };
    Ok(Some((family, object)))
}

/// A set's NFTA_SET_KEY_LEN (5) and the field lengths in its NFTA_SET_DESC (9):
/// NFTA_SET_DESC_CONCAT (2), NFTA_LIST_ELEM (1) entries each holding NFTA_SET_FIELD_LEN (1).
fn key_shape(top: &[Attr], message: &'static str) -> Result<KeyShape, DecodeError> {
    let at = |path| At { message, path };
    let len = find(top, 5)
        .map(|l| l.be32(at("NFTA_SET_KEY_LEN")))
        .transpose()?
        .unwrap_or(0);
    let mut fields = Vec::new();
    if let Some(desc) = find(top, 9) {
        let at = at("NFTA_SET_DESC/NFTA_SET_DESC_CONCAT");
        if let Some(concat) = find(&desc.nested(at)?, 2) {
            for elem in concat.nested(at)?.iter().filter(|a| a.kind == 1) {
                if let Some(field) = find(&elem.nested(at)?, 1) {
                    fields.push(field.be32(at)?);
                }
            }
        }
    }
    Ok(KeyShape { len, fields })
}

/// NFTA_SET_ELEM_LIST_ELEMENTS: NFTA_LIST_ELEM entries, each with KEY 1, DATA 2, FLAGS 3
/// and KEY_END 10, keys nested as NFTA_DATA_VALUE 1, a verdict map's data as
/// NFTA_DATA_VERDICT 2.
fn elements(list: &Attr, message: &'static str) -> Result<Vec<Element>, DecodeError> {
    let at = At {
        message,
        path: "NFTA_SET_ELEM_LIST_ELEMENTS",
    };
    let mut out = Vec::new();
    for item in list.nested(at)?.iter().filter(|a| a.kind == 1) {
        let at = At {
            message,
            path: "NFTA_SET_ELEM_LIST_ELEMENTS/NFTA_LIST_ELEM",
        };
        let attrs = item.nested(at)?;
        let key = find(&attrs, 1).map(|k| data_value(k, at)).transpose()?;
        let key_end = find(&attrs, 10).map(|k| data_value(k, at)).transpose()?;
        let flags = find(&attrs, 3)
            .map(|f| f.be32(at))
            .transpose()?
            .unwrap_or(0);
        let verdict = match find(&attrs, 2) {
            Some(d) if find(&d.nested(at)?, 2).is_some() => Some(ir::verdict(d, at)?),
            _ => None,
        };
        if let Some(key) = key {
            out.push(Element {
                key,
                key_end,
                interval_end: flags & 1 != 0,
                verdict,
            });
        }
    }
    Ok(out)
}

/// The bytes of a nested NFTA_DATA_VALUE (1); empty for a verdict (NFTA_DATA_VERDICT 2).
pub(crate) fn data_value(attr: &Attr, at: At) -> Result<Vec<u8>, DecodeError> {
    let inner = attr.nested(at)?;
    Ok(find(&inner, 1)
        .map(|v| v.value.to_vec())
        .unwrap_or_default())
}
