//! sock_diag (NETLINK_SOCK_DIAG) requests and replies for TCP and UDP sockets, without I/O.
//!
//! Why not `/proc/net/tcp{,6}`: each of those files walks the kernel's global established hash
//! (262,144 buckets on a 24 GiB machine, calling `cond_resched` per bucket), once per family
//! and per namespace — about 1.5 ms per file. One inet_diag dump in the old `TCPDIAG_GETSOCK`
//! form asks for both families at once (the kernel sets `AF_UNSPEC` for that form) and skips
//! empty buckets cheaply: about 0.4 ms per namespace, measured on this kernel. UDP has no
//! such form (one dump per family), but each dump walks the UDP hash once where
//! /proc/net/udp walks it again on every read() call.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::nlmsg::{self, NLM_F_REQUEST, NLM_F_REQUEST_DUMP, NLMSG_HDRLEN};
use crate::snapshot::{SocketFacts, SocketProto};

/// `TCPDIAG_GETSOCK`: the original inet_diag request; answers both address families.
const TCPDIAG_GETSOCK: u16 = 18;
/// `SOCK_DIAG_BY_FAMILY`: the current request, one address family at a time.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// Every TCP state (`TCPF_ALL`), as /proc/net/tcp lists them.
pub const ALL_STATES: u32 = 0xfff;
/// `TCPF_LISTEN` alone: the kernel then walks only its listening hash, not the global
/// established hash (262,144 buckets on a 2-core VM, walked once per namespace).
pub const LISTEN: u32 = 1 << 10;
/// Every state but LISTEN: what the established hash holds.
pub const NOT_LISTEN: u32 = ALL_STATES & !LISTEN;
/// Length of `struct inet_diag_msg`.
const MSG_LEN: usize = 72;
/// A socket id matching anything: ports and addresses zero, interface zero, cookie "none".
const ANY_SOCKET: [u8; 48] = {
    let mut id = [0u8; 48];
    let mut i = 40;
    while i < 48 {
        id[i] = 0xff;
        i += 1;
    }
    id
};

/// The one-walk request for TCP sockets of both families in `states` (a `TCPF_*` mask;
/// `struct inet_diag_req`).
pub fn tcp_request_both(states: u32) -> Vec<u8> {
    let mut body = vec![libc::AF_INET as u8, 0, 0, 0];
    body.extend_from_slice(&ANY_SOCKET);
    body.extend_from_slice(&states.to_ne_bytes());
    body.extend_from_slice(&0u32.to_ne_bytes()); // idiag_dbs
    message(TCPDIAG_GETSOCK, &body)
}

/// The per-family request (`struct inet_diag_req_v2`) for sockets in `states`: UDP, and TCP
/// on kernels that refuse the old form.
pub fn request(family: libc::c_int, proto: SocketProto, states: u32) -> Vec<u8> {
    let ipproto = match proto {
        SocketProto::Tcp => libc::IPPROTO_TCP,
        SocketProto::Udp => libc::IPPROTO_UDP,
        SocketProto::Raw => libc::IPPROTO_RAW,
        SocketProto::Ping => libc::IPPROTO_ICMP,
    };
    let mut body = vec![family as u8, ipproto as u8, 0, 0];
    body.extend_from_slice(&states.to_ne_bytes());
    body.extend_from_slice(&ANY_SOCKET);
    message(SOCK_DIAG_BY_FAMILY, &body)
}

/// The request for the one socket that sent a tracked connection's first packet (its
/// local end is the connection's source): `inet_diag_req_v2` with the exact 5-tuple, no
/// dump. The kernel answers with that socket's record, or ENOENT once it is closed.
pub fn lookup_request(t: &crate::snapshot::Tracked) -> Vec<u8> {
    let ipproto = match t.proto {
        SocketProto::Udp => libc::IPPROTO_UDP,
        _ => libc::IPPROTO_TCP,
    };
    let (src, dst) = (t.src.to_canonical(), t.dst.to_canonical());
    let family = if src.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let mut body = vec![family as u8, ipproto as u8, 0, 0];
    body.extend_from_slice(&ALL_STATES.to_ne_bytes());
    body.extend_from_slice(&t.sport.to_be_bytes());
    body.extend_from_slice(&t.dport.to_be_bytes());
    for a in [src, dst] {
        let mut word = [0u8; 16];
        match a {
            IpAddr::V4(v) => word[..4].copy_from_slice(&v.octets()),
            IpAddr::V6(v) => word.copy_from_slice(&v.octets()),
        }
        body.extend_from_slice(&word);
    }
    body.extend_from_slice(&0u32.to_ne_bytes()); // interface: any
    body.extend_from_slice(&[0xff; 8]); // INET_DIAG_NOCOOKIE
    nlmsg::request(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, &body)
}

fn message(kind: u16, body: &[u8]) -> Vec<u8> {
    nlmsg::request(kind, NLM_F_REQUEST_DUMP, body)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DiagError {
    #[error("a sock_diag reply of {0} bytes is shorter than its {MSG_LEN}-byte socket record")]
    Short(usize),
    #[error("a sock_diag reply names address family {0}, neither IPv4 nor IPv6")]
    Family(u8),
}

/// One reply message (with its netlink header) as a socket of the protocol asked for.
pub fn decode(msg: &[u8], proto: SocketProto) -> Result<SocketFacts, DiagError> {
    let m = msg
        .get(NLMSG_HDRLEN..NLMSG_HDRLEN + MSG_LEN)
        .ok_or(DiagError::Short(msg.len()))?;
    let word = |at: usize| u32::from_ne_bytes([m[at], m[at + 1], m[at + 2], m[at + 3]]);
    let port = |at: usize| u16::from_be_bytes([m[at], m[at + 1]]);
    let addr = |at: usize| -> Result<IpAddr, DiagError> {
        match m[0] as libc::c_int {
            libc::AF_INET => Ok(IpAddr::V4(Ipv4Addr::new(
                m[at],
                m[at + 1],
                m[at + 2],
                m[at + 3],
            ))),
            libc::AF_INET6 => {
                let bytes: [u8; 16] = m[at..at + 16].try_into().expect("16 bytes");
                Ok(IpAddr::V6(Ipv6Addr::from(bytes)))
            }
            other => Err(DiagError::Family(other as u8)),
        }
    };
    Ok(SocketFacts {
        proto,
        local: addr(8)?,
        local_port: port(4),
        remote: addr(24)?,
        remote_port: port(6),
        state: state_name(proto, m[1]).to_string(),
        uid: word(64),
        inode: u64::from(word(68)),
        // INET_DIAG_SKV6ONLY comes with every IPv6 socket's reply: whether an IPv6 socket
        // on `::` also takes IPv4 connections.
        v6only: (m[0] as libc::c_int == libc::AF_INET6)
            .then(|| attr(msg, INET_DIAG_SKV6ONLY))
            .flatten()
            .and_then(|a| a.first())
            .map(|b| *b != 0),
        // INET_DIAG_MARK comes only to a requester with CAP_NET_ADMIN over the namespace.
        mark: attr(msg, INET_DIAG_MARK)
            .and_then(|a| a.get(..4))
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
    })
}

const INET_DIAG_SKV6ONLY: u16 = 11;
const INET_DIAG_MARK: u16 = 15;

/// The payload of the reply's attribute `want`, if the reply has it whole.
fn attr(msg: &[u8], want: u16) -> Option<&[u8]> {
    let len = u32::from_ne_bytes(msg.get(..4)?.try_into().ok()?) as usize;
    let mut at = NLMSG_HDRLEN + MSG_LEN;
    let end = len.min(msg.len());
    while at + 4 <= end {
        let alen = u16::from_ne_bytes([msg[at], msg[at + 1]]) as usize;
        let kind = u16::from_ne_bytes([msg[at + 2], msg[at + 3]]);
        if alen < 4 || at + alen > end {
            return None;
        }
        if kind == want {
            return Some(&msg[at + 4..at + alen]);
        }
        at += (alen + 3) & !3;
    }
    None
}

/// A socket state number (`include/net/tcp_states.h`, which UDP and raw sockets share) as
/// meshleak names it.
pub(crate) fn state_name(proto: SocketProto, state: u8) -> &'static str {
    match (proto, state) {
        (SocketProto::Tcp, 0x0A) => "listen",
        (SocketProto::Tcp, 0x01) => "established",
        (SocketProto::Tcp, 0x02) => "syn-sent",
        (SocketProto::Tcp, 0x03) => "syn-recv",
        (SocketProto::Tcp, 0x04) => "fin-wait1",
        (SocketProto::Tcp, 0x05) => "fin-wait2",
        (SocketProto::Tcp, 0x06) => "time-wait",
        (SocketProto::Tcp, 0x07) => "close",
        (SocketProto::Tcp, 0x08) => "close-wait",
        (SocketProto::Tcp, 0x09) => "last-ack",
        (SocketProto::Tcp, 0x0B) => "closing",
        (SocketProto::Tcp, _) => "other",
        (_, 0x01) => "connected",
        _ => "unconnected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(family: u8, state: u8, src: &[u8], dst: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; NLMSG_HDRLEN + MSG_LEN];
        let b = &mut m[NLMSG_HDRLEN..];
        b[0] = family;
        b[1] = state;
        b[4..6].copy_from_slice(&15001u16.to_be_bytes());
        b[6..8].copy_from_slice(&443u16.to_be_bytes());
        b[8..8 + src.len()].copy_from_slice(src);
        b[24..24 + dst.len()].copy_from_slice(dst);
        b[64..68].copy_from_slice(&1337u32.to_ne_bytes());
        b[68..72].copy_from_slice(&48862u32.to_ne_bytes());
        m
    }

    #[test]
    fn decodes_both_families() {
        let s = decode(
            &reply(2, 1, &[127, 0, 0, 1], &[169, 254, 0, 2]),
            SocketProto::Tcp,
        )
        .unwrap();
        assert_eq!(
            (s.local, s.local_port, s.remote, s.remote_port),
            (
                "127.0.0.1".parse().unwrap(),
                15001,
                "169.254.0.2".parse().unwrap(),
                443
            )
        );
        assert_eq!(
            (s.state.as_str(), s.uid, s.inode),
            ("established", 1337, 48862)
        );
        let v6: Ipv6Addr = "fd00::1".parse().unwrap();
        let s = decode(&reply(10, 0x0A, &v6.octets(), &[0; 16]), SocketProto::Tcp).unwrap();
        assert_eq!((s.local, s.state.as_str()), (IpAddr::V6(v6), "listen"));
        assert_eq!(s.v6only, None);
        // INET_DIAG_SKV6ONLY after an INET_DIAG_SHUTDOWN byte, each padded to 4.
        let mut m = reply(10, 0x0A, &[0; 16], &[0; 16]);
        m.extend([5, 0, 8, 0, 0, 0, 0, 0, 5, 0, 11, 0, 1, 0, 0, 0]);
        let len = m.len() as u32;
        m[..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(decode(&m, SocketProto::Tcp).unwrap().v6only, Some(true));
        assert_eq!(decode(&m, SocketProto::Tcp).unwrap().mark, None);
        let mut marked = m.clone();
        marked.extend([8, 0, 15, 0]);
        marked.extend(0x539u32.to_ne_bytes());
        let len = marked.len() as u32;
        marked[..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(decode(&marked, SocketProto::Tcp).unwrap().mark, Some(0x539));
        let cut = m.len() - 6;
        m[..4].copy_from_slice(&(cut as u32).to_ne_bytes());
        assert_eq!(decode(&m[..cut], SocketProto::Tcp).unwrap().v6only, None);
        let s = decode(&reply(10, 7, &v6.octets(), &[0; 16]), SocketProto::Udp).unwrap();
        assert_eq!(
            (s.proto, s.state.as_str()),
            (SocketProto::Udp, "unconnected")
        );
    }

    #[test]
    fn refuses_short_and_foreign_replies() {
        let full = reply(2, 1, &[1, 2, 3, 4], &[5, 6, 7, 8]);
        assert_eq!(
            decode(&full[..40], SocketProto::Tcp).unwrap_err(),
            DiagError::Short(40)
        );
        assert_eq!(
            decode(&reply(7, 1, &[], &[]), SocketProto::Udp).unwrap_err(),
            DiagError::Family(7)
        );
    }

    #[test]
    fn requests_have_the_kernel_layouts() {
        // inet_diag_req: 4 + 48 + 4 + 4; inet_diag_req_v2: 4 + 4 + 48.
        assert_eq!(tcp_request_both(ALL_STATES).len(), NLMSG_HDRLEN + 60);
        assert_eq!(
            request(libc::AF_INET6, SocketProto::Udp, ALL_STATES).len(),
            NLMSG_HDRLEN + 56
        );
        assert_eq!(
            &tcp_request_both(LISTEN)[4..6],
            &TCPDIAG_GETSOCK.to_ne_bytes()
        );
        // idiag_states after the family bytes and the socket id.
        assert_eq!(&tcp_request_both(LISTEN)[68..72], &LISTEN.to_ne_bytes());
    }
}
