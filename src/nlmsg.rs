//! Netlink messages back to back, as a receive or a dump gives them: each sized by its
//! header's length. Pure; shared by the conntrack event follower and the fuzz targets.

/// `struct nlmsghdr`'s length.
const NLMSG_HDRLEN: usize = 16;

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
