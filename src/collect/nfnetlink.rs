//! nfnetlink dump requests for the nf_tables and conntrack readers.

use std::io;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::protocols::NETLINK_NETFILTER;

use super::netlink::Netlink;

/// A netfilter netlink socket bound in the calling thread's namespace.
pub struct Nfnetlink(Netlink);

impl Nfnetlink {
    pub fn open() -> io::Result<Nfnetlink> {
        Netlink::open(NETLINK_NETFILTER).map(Nfnetlink)
    }

    /// A socket whose dumps stop at `limit`.
    pub fn open_limited(limit: super::netlink::Limit) -> io::Result<Nfnetlink> {
        Netlink::open(NETLINK_NETFILTER).map(|n| Nfnetlink(n.limited(limit)))
    }

    /// Sends one GET dump request and returns each reply message (whole, with its netlink
    /// header); see [`Netlink::dump`].
    pub fn dump(
        &mut self,
        family: NetfilterProtoFamily,
        msg: impl Into<NetfilterMessageInner>,
    ) -> io::Result<Vec<Vec<u8>>> {
        self.0.dump(&request(family, msg))
    }

    /// Like [`Nfnetlink::dump`], each reply message handed to `each` as it arrives.
    pub fn dump_each(
        &mut self,
        family: NetfilterProtoFamily,
        msg: impl Into<NetfilterMessageInner>,
        each: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        self.0.dump_each(&request(family, msg), each)
    }
}

/// A GET dump request, serialized.
fn request(family: NetfilterProtoFamily, msg: impl Into<NetfilterMessageInner>) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut packet = NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(family, 0, 0),
            msg,
        )),
    );
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    buf
}
