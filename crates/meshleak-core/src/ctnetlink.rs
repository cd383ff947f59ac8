//! ctnetlink (NFNL_SUBSYS_CTNETLINK) messages decoded by meshleak itself, without I/O: a
//! connection's original and reply tuples, with the attribute numbers of
//! `linux/netfilter/nfnetlink_conntrack.h`. A dump reply and a NEW event share the layout.
//! Every length is checked by the same attribute reader as the nf_tables decoder.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::nft::msg::{At, Attr, DecodeError, Nfgen, find};
use crate::snapshot::{SocketProto, Tracked};

/// NFNL_SUBSYS_CTNETLINK.
pub const SUBSYS_CTNETLINK: u8 = 1;
/// IPCTNL_MSG_CT_NEW: a dump reply or a NEW event.
const MSG_CT_NEW: u8 = 0;
/// IPCTNL_MSG_CT_GET: the dump request.
pub const MSG_CT_GET: u8 = 1;

// enum ctattr_type, ctattr_tuple, ctattr_ip, ctattr_l4proto.
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

/// Entries kept per namespace: a pod's table is small; a host's can be huge and is cut here.
pub(crate) const MAX_TRACKED: usize = 65_536;

/// The TCP and UDP connections of a dump's replies (each a whole netlink message), at most
/// [`MAX_TRACKED`]. Messages that do not decode, and other protocols, are skipped: they
/// cannot be attributed anyway.
pub fn from_raw(raw: &[Vec<u8>]) -> Vec<Tracked> {
    raw.iter()
        .filter_map(|bytes| connection(bytes))
        .take(MAX_TRACKED)
        .collect()
}

/// One message (a dump reply or a NEW event: the same layout) as the TCP or UDP connection
/// it describes; `None` for other protocols and for what does not decode.
pub fn connection(msg: &[u8]) -> Option<Tracked> {
    decode(msg).ok().flatten()
}

/// One ctnetlink message as the TCP or UDP connection it describes. `Ok(None)`: another
/// message kind, another protocol, or a tuple without addresses or ports (nothing to
/// attribute); an error: a length that does not fit.
pub fn decode(msg: &[u8]) -> Result<Option<Tracked>, DecodeError> {
    let m = Nfgen::open(msg)?;
    if m.subsys != SUBSYS_CTNETLINK || m.kind != MSG_CT_NEW {
        return Ok(None);
    }
    let top = m.attrs("conntrack")?;
    let (Some(orig), Some(reply)) = (find(&top, CTA_TUPLE_ORIG), find(&top, CTA_TUPLE_REPLY))
    else {
        return Ok(None);
    };
    let (Some(o), Some(r)) = (
        tuple(orig, "CTA_TUPLE_ORIG")?,
        tuple(reply, "CTA_TUPLE_REPLY")?,
    ) else {
        return Ok(None);
    };
    Ok(Some(Tracked {
        proto: o.proto,
        src: o.src,
        sport: o.sport,
        dst: o.dst,
        dport: o.dport,
        reply_src: r.src,
        reply_sport: r.sport,
    }))
}

struct Tuple {
    proto: SocketProto,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
}

/// One direction's tuple: addresses (IPv4 or IPv6), protocol, ports; only TCP and UDP.
fn tuple(attr: &Attr, path: &'static str) -> Result<Option<Tuple>, DecodeError> {
    let at = At {
        message: "conntrack",
        path,
    };
    let parts = attr.nested(at)?;
    let (mut src, mut dst, mut proto, mut sport, mut dport) = (None, None, None, None, None);
    if let Some(ip) = find(&parts, CTA_TUPLE_IP) {
        for a in ip.nested(at)? {
            match (a.kind, a.value) {
                (CTA_IP_V4_SRC, v) => src = addr(v).or(src),
                (CTA_IP_V4_DST, v) => dst = addr(v).or(dst),
                (CTA_IP_V6_SRC, v) => src = addr(v).or(src),
                (CTA_IP_V6_DST, v) => dst = addr(v).or(dst),
                _ => {}
            }
        }
    }
    if let Some(p) = find(&parts, CTA_TUPLE_PROTO) {
        for a in p.nested(at)? {
            match (a.kind, a.value) {
                (CTA_PROTO_NUM, [6, ..]) => proto = Some(SocketProto::Tcp),
                (CTA_PROTO_NUM, [17, ..]) => proto = Some(SocketProto::Udp),
                (CTA_PROTO_SRC_PORT, [a, b, ..]) => sport = Some(u16::from_be_bytes([*a, *b])),
                (CTA_PROTO_DST_PORT, [a, b, ..]) => dport = Some(u16::from_be_bytes([*a, *b])),
                _ => {}
            }
        }
    }
    Ok((|| {
        Some(Tuple {
            proto: proto?,
            src: src?,
            sport: sport?,
            dst: dst?,
            dport: dport?,
        })
    })())
}

/// An address attribute's value: 4 bytes IPv4, 16 bytes IPv6, anything else none.
fn addr(v: &[u8]) -> Option<IpAddr> {
    match v.len() {
        4 => Some(Ipv4Addr::from(<[u8; 4]>::try_from(v).ok()?).into()),
        16 => Some(Ipv6Addr::from(<[u8; 16]>::try_from(v).ok()?).into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nlmsg::{push_attr, request};

    /// A CT_NEW message as the kernel writes it (ctnetlink_dump_tuples).
    fn message(orig: (&str, u16, &str, u16), reply_from: (&str, u16), proto: u8) -> Vec<u8> {
        let tuple = |src: &str, sport: u16, dst: &str, dport: u16| {
            let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
            let octets = |a: IpAddr| match a {
                IpAddr::V4(v) => (v.octets().to_vec(), 0),
                IpAddr::V6(v) => (v.octets().to_vec(), 2),
            };
            let (mut ip, mut l4, mut out) = (Vec::new(), Vec::new(), Vec::new());
            let ((s, shift), (d, _)) = (octets(src), octets(dst));
            push_attr(&mut ip, CTA_IP_V4_SRC + shift, &s);
            push_attr(&mut ip, CTA_IP_V4_DST + shift, &d);
            push_attr(&mut l4, CTA_PROTO_NUM, &[proto]);
            push_attr(&mut l4, CTA_PROTO_SRC_PORT, &sport.to_be_bytes());
            push_attr(&mut l4, CTA_PROTO_DST_PORT, &dport.to_be_bytes());
            push_attr(&mut out, CTA_TUPLE_IP | 0x8000, &ip);
            push_attr(&mut out, CTA_TUPLE_PROTO | 0x8000, &l4);
            out
        };
        let mut body = vec![2, 0, 0, 0];
        push_attr(
            &mut body,
            CTA_TUPLE_ORIG | 0x8000,
            &tuple(orig.0, orig.1, orig.2, orig.3),
        );
        push_attr(
            &mut body,
            CTA_TUPLE_REPLY | 0x8000,
            &tuple(reply_from.0, reply_from.1, orig.0, orig.1),
        );
        request(u16::from(SUBSYS_CTNETLINK) << 8, 0, &body)
    }

    #[test]
    fn decodes_both_families_and_skips_other_protocols() {
        let redirected = message(
            ("169.254.1.2", 40000, "10.0.0.9", 443),
            ("127.0.0.1", 15001),
            6,
        );
        let t = decode(&redirected).unwrap().unwrap();
        assert_eq!((t.proto, t.sport, t.dport), (SocketProto::Tcp, 40000, 443));
        assert_eq!(
            t.translated_to(),
            Some(("127.0.0.1".parse().unwrap(), 15001))
        );
        let v6 = message(("fd00::2", 5000, "fd00::9", 53), ("fd00::9", 53), 17);
        let t = decode(&v6).unwrap().unwrap();
        assert_eq!(
            (t.proto, t.src, t.translated_to()),
            (SocketProto::Udp, "fd00::2".parse().unwrap(), None)
        );
        let icmp = message(("169.254.1.2", 0, "192.0.2.7", 0), ("192.0.2.7", 0), 1);
        assert_eq!(decode(&icmp).unwrap(), None);
    }

    #[test]
    fn a_length_that_does_not_fit_is_an_error_not_a_guess() {
        let mut m = message(("169.254.1.2", 1, "10.0.0.9", 2), ("10.0.0.9", 2), 6);
        // The first nested attribute (CTA_TUPLE_ORIG) claims more than the message holds.
        m[20] = 0xff;
        m[21] = 0x0f;
        let e = decode(&m).unwrap_err();
        assert!(e.to_string().contains("conntrack"), "{e}");
        m.truncate(10);
        assert!(decode(&m).is_err());
    }
}
