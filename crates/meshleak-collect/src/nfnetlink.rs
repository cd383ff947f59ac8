//! nfnetlink dump requests for the nf_tables and conntrack readers, serialized by meshleak
//! itself (`struct nfgenmsg` and attributes): only GET requests, nothing that changes.

use std::io;

use netlink_sys::protocols::NETLINK_NETFILTER;

use super::netlink::Netlink;
use meshleak_core::nlmsg::{self, NLM_F_REQUEST, NLM_F_REQUEST_DUMP};

/// A netfilter netlink socket bound in the calling thread's namespace.
pub(crate) struct Nfnetlink(Netlink);

impl Nfnetlink {
    pub(crate) fn open() -> io::Result<Nfnetlink> {
        Netlink::open(NETLINK_NETFILTER).map(Nfnetlink)
    }

    /// A socket whose dumps stop at `limit`.
    pub(crate) fn open_limited(limit: super::netlink::Limit) -> io::Result<Nfnetlink> {
        Netlink::open(NETLINK_NETFILTER).map(|n| Nfnetlink(n.limited(limit)))
    }

    /// Sends one GET dump request (from [`dump_request`]) and returns each reply message
    /// (whole, with its netlink header); see [`Netlink::dump`].
    pub(crate) fn dump(&mut self, request: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        self.0.dump(request)
    }

    /// Sends one request answered by a single message (from [`get_request`]); see
    /// [`Netlink::ask`].
    pub(crate) fn ask(&mut self, request: &[u8]) -> io::Result<Option<Vec<u8>>> {
        self.0.ask(request)
    }

    /// Like [`Nfnetlink::dump`], each reply message handed to `each` as it arrives.
    pub(crate) fn dump_each(
        &mut self,
        request: &[u8],
        each: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        self.0.dump_each(request, each)
    }
}

/// A GET dump request of subsystem `subsys` (NFNL_SUBSYS_*), message `msg`, for NFPROTO_*
/// `family` (0: every family), with `attrs` (type, value) after the `nfgenmsg` header.
pub(crate) fn dump_request(subsys: u8, msg: u8, family: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    request(subsys, msg, family, attrs, NLM_F_REQUEST_DUMP)
}

/// A GET request for one object (no dump), such as the rule set's generation.
pub(crate) fn get_request(subsys: u8, msg: u8) -> Vec<u8> {
    request(subsys, msg, 0, &[], NLM_F_REQUEST)
}

fn request(subsys: u8, msg: u8, family: u8, attrs: &[(u16, &[u8])], flags: u16) -> Vec<u8> {
    // struct nfgenmsg: family, version NFNETLINK_V0, res_id (big-endian) 0.
    let mut body = vec![family, 0, 0, 0];
    for (kind, value) in attrs {
        nlmsg::push_attr(&mut body, *kind, value);
    }
    nlmsg::request((u16::from(subsys) << 8) | u16::from(msg), flags, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_element_request_has_the_kernel_layout() {
        let table = nlmsg::c_string("nat");
        let set = nlmsg::c_string("s");
        let req = dump_request(10, 13, 2, &[(1, &table), (2, &set)]);
        let mut want = Vec::new();
        want.extend_from_slice(&36u32.to_ne_bytes());
        want.extend_from_slice(&0x0a0du16.to_ne_bytes());
        want.extend_from_slice(&0x0301u16.to_ne_bytes());
        want.extend_from_slice(&1u32.to_ne_bytes());
        want.extend_from_slice(&0u32.to_ne_bytes());
        want.extend_from_slice(&[2, 0, 0, 0]);
        want.extend_from_slice(&8u16.to_ne_bytes());
        want.extend_from_slice(&1u16.to_ne_bytes());
        want.extend_from_slice(b"nat\0");
        want.extend_from_slice(&6u16.to_ne_bytes());
        want.extend_from_slice(&2u16.to_ne_bytes());
        want.extend_from_slice(b"s\0\0\0");
        assert_eq!(req, want);
    }
}
