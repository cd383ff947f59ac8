//! The namespace's connection-tracking table over ctnetlink (a GET dump: nothing changes).
//! Each entry says where a connection's first packet was going and where its replies come
//! from; a difference is destination NAT, e.g. the redirect to the proxy. This is how
//! meshleak proves that a live connection did or did not pass the proxy.

use std::io;
use std::net::IpAddr;
use std::path::Path;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};

use super::nfnetlink::Nfnetlink;
use crate::snapshot::{SocketFacts, SocketProto, Tracked};

/// Entries kept per namespace: a pod's table is small; a host's can be huge and is cut here.
pub const MAX_TRACKED: usize = 65_536;

/// The TCP and UDP entries of the calling thread's namespace, or `None` when the kernel
/// tracks no connections (nf_conntrack not loaded: then no NAT happens either) or refuses the
/// dump. Messages that do not decode are skipped: they cannot be attributed anyway.
///
/// The dump walks the kernel's whole connection table (shared by every namespace), the
/// dearest read of a scan; it is skipped, giving an empty list, when no socket of the
/// namespace could have sent traffic out (only listeners and loopback).
pub fn entries(sockets: &[SocketFacts]) -> Option<Vec<Tracked>> {
    if !Path::new("/sys/module/nf_conntrack").exists() {
        return None;
    }
    if !sockets.iter().any(could_send_out) {
        return Some(Vec::new());
    }
    let raw = dump_raw().ok()?;
    Some(from_raw(&raw))
}

/// A TCP connection or a UDP socket not confined to loopback: conntrack may hold its flows.
fn could_send_out(s: &SocketFacts) -> bool {
    let local = s.local.to_canonical();
    match s.proto {
        SocketProto::Tcp => s.state != "listen" && !s.remote.to_canonical().is_loopback(),
        SocketProto::Udp => !local.is_loopback(),
        SocketProto::Raw | SocketProto::Ping => false,
    }
}

pub fn dump_raw() -> io::Result<Vec<Vec<u8>>> {
    Nfnetlink::open()?.dump(
        NetfilterProtoFamily::Unspec,
        ConntrackMessage::Get(Vec::new()),
    )
}

pub fn from_raw(raw: &[Vec<u8>]) -> Vec<Tracked> {
    raw.iter()
        .filter_map(|bytes| decode(bytes))
        .take(MAX_TRACKED)
        .collect()
}

/// One ctnetlink message (a dump reply or a NEW event: the same layout) as the TCP or UDP
/// connection it describes.
pub(super) fn decode(bytes: &[u8]) -> Option<Tracked> {
    let msg = NetlinkMessage::<NetfilterMessage>::deserialize(bytes).ok()?;
    let NetlinkPayload::InnerMessage(NetfilterMessage {
        inner: NetfilterMessageInner::Conntrack(ConntrackMessage::New(attrs)),
        ..
    }) = msg.payload
    else {
        return None;
    };
    let tuple = |want_orig: bool| {
        attrs.iter().find_map(|a| match a {
            ConntrackAttribute::CtaTupleOrig(t) if want_orig => Some(t),
            ConntrackAttribute::CtaTupleReply(t) if !want_orig => Some(t),
            _ => None,
        })
    };
    let (proto, src, sport, dst, dport) = endpoints(tuple(true)?)?;
    let (_, reply_src, reply_sport, _, _) = endpoints(tuple(false)?)?;
    Some(Tracked {
        proto,
        src,
        sport,
        dst,
        dport,
        reply_src,
        reply_sport,
    })
}

/// Protocol, source and destination of one direction; only TCP and UDP.
fn endpoints(tuple: &[Tuple]) -> Option<(SocketProto, IpAddr, u16, IpAddr, u16)> {
    let (mut src, mut dst, mut proto, mut sport, mut dport) = (None, None, None, None, None);
    for t in tuple {
        match t {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => src = Some(*a),
                        IPTuple::DestinationAddress(a) => dst = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(ps) => {
                for p in ps {
                    match p {
                        ProtoTuple::Protocol(Protocol::Tcp) => proto = Some(SocketProto::Tcp),
                        ProtoTuple::Protocol(Protocol::Udp) => proto = Some(SocketProto::Udp),
                        ProtoTuple::SourcePort(n) => sport = Some(*n),
                        ProtoTuple::DestinationPort(n) => dport = Some(*n),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((proto?, src?, sport?, dst?, dport?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::NetlinkHeader;
    use netlink_packet_netfilter::NetfilterHeader;

    fn message(orig: (&str, u16, &str, u16), reply_from: (&str, u16), proto: Protocol) -> Vec<u8> {
        let tuple = |src: &str, sport, dst: &str, dport| {
            vec![
                Tuple::Ip(vec![
                    IPTuple::SourceAddress(src.parse().unwrap()),
                    IPTuple::DestinationAddress(dst.parse().unwrap()),
                ]),
                Tuple::Proto(vec![
                    ProtoTuple::Protocol(proto),
                    ProtoTuple::SourcePort(sport),
                    ProtoTuple::DestinationPort(dport),
                ]),
            ]
        };
        let msg = ConntrackMessage::New(vec![
            ConntrackAttribute::CtaTupleOrig(tuple(orig.0, orig.1, orig.2, orig.3)),
            ConntrackAttribute::CtaTupleReply(tuple(reply_from.0, reply_from.1, orig.0, orig.1)),
        ]);
        let mut packet = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, 0),
                msg,
            )),
        );
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        buf
    }

    #[test]
    fn decodes_entries_and_skips_what_it_cannot_read() {
        let redirected = message(
            ("169.254.1.2", 40000, "10.0.0.9", 443),
            ("127.0.0.1", 15001),
            Protocol::Tcp,
        );
        let direct = message(
            ("169.254.1.2", 5000, "192.0.2.7", 53),
            ("192.0.2.7", 53),
            Protocol::Udp,
        );
        let icmp = message(
            ("169.254.1.2", 0, "192.0.2.7", 0),
            ("192.0.2.7", 0),
            Protocol::Icmp,
        );
        let mut truncated = redirected.clone();
        truncated.truncate(30);
        let got = from_raw(&[redirected, truncated, icmp, vec![0xff; 3], direct]);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            got[0].translated_to(),
            Some(("127.0.0.1".parse().unwrap(), 15001))
        );
        assert_eq!(
            (got[1].proto, got[1].translated_to()),
            (SocketProto::Udp, None)
        );
    }
}
