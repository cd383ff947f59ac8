//! Netlink messages: requests as meshleak sends them (a header, a fixed body, attributes),
//! and replies back to back, as a receive or a dump gives them, each sized by its header's
//! length. Pure; shared by every netlink reader, the conntrack event follower and the fuzz
//! targets.

/// `struct nlmsghdr`'s length.
pub const NLMSG_HDRLEN: usize = 16;
/// NLM_F_REQUEST: a request that is not a dump (one object by its key).
pub const NLM_F_REQUEST: u16 = 0x1;
/// NLM_F_REQUEST | NLM_F_DUMP: every object of the kind.
pub const NLM_F_REQUEST_DUMP: u16 = NLM_F_REQUEST | 0x300;

/// A request of `kind` with `flags`: the header (sequence 1, port id 0: the kernel's), then
/// `body` (the fixed family header and any attributes).
pub fn request(kind: u16, flags: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(NLMSG_HDRLEN + body.len());
    out.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    out.extend_from_slice(body);
    out
}

/// Appends one attribute (`struct nlattr` and its value, padded to 4 bytes).
pub fn push_attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// A NUL-terminated string attribute's value.
pub fn c_string(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// The messages in `data`, each whole with its header; a length that does not fit ends the
/// list, as it ends a real dump.
pub fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + NLMSG_HDRLEN <= data.len() {
        let len = u32::from_ne_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
        if len < NLMSG_HDRLEN || len > data.len() - at {
            break;
        }
        out.push(&data[at..at + len]);
        at += (len + 3) & !3;
    }
    out
}
