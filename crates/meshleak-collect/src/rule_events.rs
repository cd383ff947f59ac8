//! A namespace's rule changes as the kernel announces them, read-only: a netfilter netlink
//! socket subscribed to `NFNLGRP_NFTABLES`. Every nf_tables commit (by nft, iptables-nft,
//! or any other client) ends with NFT_MSG_NEWGEN, which names the generation and the
//! committing process; the per-object messages before it are not needed, since the
//! namespace's rules are read again whole. iptables-legacy sends nothing: see
//! [`LegacyTables`]. The socket is opened inside the namespace and keeps it alive, so it
//! must be dropped once the namespace is no longer followed.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use netlink_sys::protocols::NETLINK_NETFILTER;
use netlink_sys::{Socket, SocketAddr};

use super::legacy::XtSocket;
use super::netns::open_in;
use meshleak_core::model::IpVersion;
use meshleak_core::nft::msg::{self, Commit};

/// `NFNLGRP_NFTABLES` (7), as a bind group mask.
const NFTABLES_GROUP: u32 = 1 << (7 - 1);
/// Room for a large commit's messages (iptables-nft announces every rule it adds); past
/// it the kernel drops them and says so (ENOBUFS), which is read as "changed".
const RECEIVE_BUFFER: libc::c_int = 1 << 20;

pub struct RuleEvents(Socket);

/// What one drain of the socket says.
#[derive(Debug, Default)]
pub struct Drained {
    /// The commits announced, in order.
    pub commits: Vec<Commit>,
    /// The kernel dropped messages (the buffer overran): the rules may have changed, by
    /// whom is not known.
    pub lost: bool,
}

impl RuleEvents {
    /// Opens the socket inside namespace `inode` (see [`open_in`]).
    pub fn open(
        inode: u64,
        paths: &[String],
        pids: &[u32],
        proc_root: &Path,
    ) -> Result<RuleEvents, String> {
        open_in(inode, paths, pids, proc_root, || {
            let mut s = Socket::new(NETLINK_NETFILTER)?;
            s.bind(&SocketAddr::new(0, NFTABLES_GROUP))?;
            s.set_non_blocking(true)?;
            super::netlink::set_receive_buffer(&s, RECEIVE_BUFFER);
            Ok(RuleEvents(s))
        })
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Every message waiting, as the commits they end with.
    pub fn drain(&mut self, buf: &mut [u8]) -> Drained {
        let mut commits = Vec::new();
        let lost = super::netlink::drain(&self.0, buf, usize::MAX, |m| {
            commits.extend(msg::commit(m).ok().flatten());
        });
        Drained { commits, lost }
    }
}

/// iptables-legacy's tables of one namespace, watched by polling, since x_tables announces
/// nothing: the table names (`ip_tables_names`, `ip6_tables_names`, kept open: a proc net
/// file stays bound to the namespace it was opened in) and each listed table's
/// `IPT_SO_GET_INFO` (hooks, underflows, entry count, size) through UDP sockets of the
/// namespace (CAP_NET_ADMIN only). A replacement that keeps all of these (a rule's port
/// or uid changed in place) is not seen this way; it is at the next whole scan.
pub struct LegacyTables {
    names: [Option<std::fs::File>; 2],
    sockets: [XtSocket; 2],
}

const VERSIONS: [IpVersion; 2] = [IpVersion::V4, IpVersion::V6];

impl LegacyTables {
    pub fn open(
        inode: u64,
        paths: &[String],
        pids: &[u32],
        proc_root: &Path,
    ) -> Result<LegacyTables, String> {
        open_in(inode, paths, pids, proc_root, || {
            let names = ["ip_tables_names", "ip6_tables_names"]
                .map(|n| std::fs::File::open(super::netns::thread_net_file(n)).ok());
            let open = |v| XtSocket::open(v).map_err(|e| io::Error::other(e.to_string()));
            Ok(LegacyTables {
                names,
                sockets: [open(IpVersion::V4)?, open(IpVersion::V6)?],
            })
        })
    }

    /// What the tables are now, to compare with what they were: each listed table's name
    /// and GET_INFO answer. A table is asked for only once its name is listed: asking for
    /// one that is not loaded would create it.
    pub fn state(&mut self) -> Vec<u8> {
        use std::io::{Read, Seek};
        let mut out = Vec::new();
        for (i, file) in self.names.iter_mut().enumerate() {
            // The module may load after the namespace was opened: the file then appears.
            let Some(f) = file else { continue };
            let mut text = String::new();
            if f.rewind().is_err() || f.read_to_string(&mut text).is_err() {
                continue;
            }
            out.push(VERSIONS[i] as u8);
            for name in text.lines().map(str::trim).filter(|n| !n.is_empty()) {
                out.extend_from_slice(name.as_bytes());
                match self.sockets[i].info(name) {
                    Ok(info) => out.extend_from_slice(&info),
                    Err(e) => out.extend_from_slice(&e.raw_os_error().unwrap_or(0).to_ne_bytes()),
                }
            }
        }
        out
    }
}
