//! Checks an nf_tables netlink message before the pinned decoder (netlink-packet-netfilter
//! 0.4) sees it. That decoder reads some nested attributes without checking their lengths
//! (`NlaBuffer::new` instead of `new_checked`): the data of `cmp`, `bitwise` and `immediate`
//! expressions, set expressions, and set element keys, data and expressions. A lying length
//! there makes it panic, and a rule written by a process with NET_ADMIN is untrusted input. This
//! walks exactly those paths, the way the decoder does, and refuses what would not fit.

const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLA_HDRLEN: usize = 4;
const NLA_TYPE_MASK: u16 = 0x3fff;

// Message types (low byte of nlmsg_type): NEW, GET and DEL of each object.
const RULE_MSGS: [u8; 3] = [6, 7, 8];
const SET_MSGS: [u8; 3] = [9, 10, 11];
const SETELEM_MSGS: [u8; 3] = [12, 13, 14];

const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_SET_EXPR: u16 = 17;
const NFTA_SET_EXPRESSIONS: u16 = 18;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_EXPR: u16 = 7;
const NFTA_SET_ELEM_EXPRESSIONS: u16 = 11;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;

/// What in a message does not fit (its attribute length points past its end).
pub type Refusal = &'static str;

/// Whether the decoder can read `msg` (a whole netlink message) without panicking.
pub fn check(msg: &[u8]) -> Result<(), Refusal> {
    let Some(kind) = msg.get(4) else {
        return Err("a message shorter than its netlink header");
    };
    let attrs = msg.get(NLMSG_HDRLEN + NFGENMSG_LEN..).unwrap_or_default();
    for (ty, payload) in nlas(attrs) {
        match (ty, *kind) {
            (NFTA_RULE_EXPRESSIONS, k) if RULE_MSGS.contains(&k) => expressions(payload)?,
            (NFTA_SET_EXPR, k) if SET_MSGS.contains(&k) => {
                single(payload, "a set expression")?;
            }
            (NFTA_SET_EXPRESSIONS, k) if SET_MSGS.contains(&k) => expressions(payload)?,
            (NFTA_SET_ELEM_LIST_ELEMENTS, k) if SETELEM_MSGS.contains(&k) => {
                for (_, element) in nlas(payload) {
                    for (ty, value) in nlas(element) {
                        match ty {
                            NFTA_SET_ELEM_KEY | NFTA_SET_ELEM_DATA | NFTA_SET_ELEM_EXPR => {
                                single(value, "a set element's key, data or expression")?;
                            }
                            NFTA_SET_ELEM_EXPRESSIONS => expressions(value)?,
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A list of expressions: each element's data is read by the type its preceding name gives.
fn expressions(list: &[u8]) -> Result<(), Refusal> {
    for (ty, element) in nlas(list) {
        if ty != NFTA_LIST_ELEM {
            continue;
        }
        let mut name: Option<&[u8]> = None;
        for (ty, value) in nlas(element) {
            let current = name.take();
            match ty {
                NFTA_EXPR_NAME => name = Some(value.split(|b| *b == 0).next().unwrap_or(value)),
                NFTA_EXPR_DATA => {
                    let wrapped: &[u16] = match current {
                        Some(b"cmp") => &[3],
                        Some(b"bitwise") => &[4, 5, 7],
                        Some(b"immediate") => &[2],
                        _ => &[],
                    };
                    for (ty, data) in nlas(value) {
                        if wrapped.contains(&ty) {
                            single(data, "an expression's data")?;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// A payload the decoder reads as one attribute without checking it; `what` names it in
/// the refusal.
fn single(payload: &[u8], what: Refusal) -> Result<(), Refusal> {
    let fits = payload.len() >= NLA_HDRLEN
        && (NLA_HDRLEN..=payload.len())
            .contains(&(u16::from_ne_bytes([payload[0], payload[1]]) as usize));
    if fits { Ok(()) } else { Err(what) }
}

/// The attributes in `buf` that fit (type without flags, payload), as the decoder's checked
/// iterator sees them; it stops at the first that does not fit, and so does this.
fn nlas(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let header = buf.get(at..at + NLA_HDRLEN)?;
        let len = u16::from_ne_bytes([header[0], header[1]]) as usize;
        let ty = u16::from_ne_bytes([header[2], header[3]]) & NLA_TYPE_MASK;
        let payload = buf.get(at + NLA_HDRLEN..at + len.max(NLA_HDRLEN))?;
        at += (len.max(NLA_HDRLEN) + 3) & !3;
        Some((ty, payload))
    })
}
