//! The namespace's connection-tracking table over ctnetlink (a GET dump: nothing changes).
//! Each entry says where a connection's first packet was going and where its replies come
//! from; a difference is destination NAT, e.g. the redirect to the proxy. This is how
//! meshleak proves that a live connection did or did not pass the proxy.

use std::io;
use std::path::Path;

use super::nfnetlink::{self, Nfnetlink};
use meshleak_core::ctnetlink;
use meshleak_core::snapshot::{SocketFacts, SocketProto, Tracked};

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
    Some(ctnetlink::from_raw(&raw))
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

pub(crate) fn dump_raw() -> io::Result<Vec<Vec<u8>>> {
    Nfnetlink::open()?.dump(&nfnetlink::dump_request(
        ctnetlink::SUBSYS_CTNETLINK,
        ctnetlink::MSG_CT_GET,
        libc::AF_UNSPEC as u8,
        &[],
    ))
}
