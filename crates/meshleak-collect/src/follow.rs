//! The conntrack event follower's sockets in one namespace, read-only: a ctnetlink socket
//! subscribed to NEW events (`NFNLGRP_CONNTRACK_NEW`; DESTROY events are not needed: a
//! NEW event already says where the first packet went and whether it was translated) and
//! a sock_diag socket to look each new connection's socket up by its 5-tuple. Both are
//! opened by a thread that entered the namespace and left with them: a socket keeps its
//! namespace, so they must be dropped once a scan no longer finds the namespace.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use netlink_sys::protocols::{NETLINK_NETFILTER, NETLINK_SOCK_DIAG};
use netlink_sys::{Socket, SocketAddr};

use super::netlink::Netlink;
use super::netns::open_in;
use meshleak_core::ctnetlink;
use meshleak_core::observe::Watch;
use meshleak_core::snapshot::{SocketFacts, Tracked};
use meshleak_core::sockdiag;

/// `NFNLGRP_CONNTRACK_NEW`, as a bind group mask.
const CONNTRACK_NEW_GROUP: u32 = 1;
/// The event socket's receive buffer: a burst of this many bytes of events (~2,500
/// connections) waits while the follower works; beyond it the kernel drops events and
/// says so (ENOBUFS), which is counted.
const RECEIVE_BUFFER: libc::c_int = 1 << 20;

pub struct Sockets {
    events: Socket,
    diag: Netlink,
}

impl Sockets {
    /// Opens both sockets inside the namespace `w` names (see [`open_in`]).
    pub fn open(w: &Watch, proc_root: &Path) -> Result<Sockets, String> {
        open_in(w.inode, &w.paths, &w.pids, proc_root, open_here)
    }

    pub fn fd(&self) -> RawFd {
        self.events.as_raw_fd()
    }

    /// Every event waiting on the socket, as the connections they announce; `lost` when
    /// the kernel dropped some (the buffer overran).
    pub fn drain(&mut self, buf: &mut [u8]) -> (Vec<Tracked>, bool) {
        let mut out = Vec::new();
        let lost = super::netlink::drain(&self.events, buf, usize::MAX, |m| {
            out.extend(ctnetlink::connection(m));
        });
        (out, lost)
    }

    /// The socket that sent `t`'s first packet; `None` when it is closed already (gone, or
    /// in TIME-WAIT).
    pub fn socket(&mut self, t: &Tracked) -> Option<SocketFacts> {
        let reply = self.diag.ask(&sockdiag::lookup_request(t)).ok()??;
        // A closed socket in TIME-WAIT is still found, with no inode and no uid.
        sockdiag::decode(&reply, t.proto)
            .ok()
            .filter(|s| s.inode != 0)
    }
}

fn open_here() -> io::Result<Sockets> {
    let mut events = Socket::new(NETLINK_NETFILTER)?;
    events.bind(&SocketAddr::new(0, CONNTRACK_NEW_GROUP))?;
    events.set_non_blocking(true)?;
    super::netlink::set_receive_buffer(&events, RECEIVE_BUFFER);
    let diag = Netlink::open(NETLINK_SOCK_DIAG)?;
    Ok(Sockets { events, diag })
}

/// Processes' descriptor tables, each directory kept open once read: telling whose a
/// socket is may be asked hundreds of times a second, and opening `/proc/PID/fd` (a path
/// walk) is a third of each ask. An open directory stays bound to its process: once that
/// exits it reads empty, even if the pid is reused.
#[derive(Default)]
pub struct FdTables(std::collections::HashMap<u32, nix::dir::Dir>);

impl FdTables {
    /// Whether process `pid` holds socket `inode` (one of its descriptors names it), each
    /// link read relative to the open directory.
    pub fn holds(&mut self, proc_root: &Path, pid: u32, inode: u64) -> bool {
        use nix::fcntl::{OFlag, readlinkat};
        use nix::sys::stat::Mode;
        let dir = match self.0.entry(pid) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let path = proc_root.join(pid.to_string()).join("fd");
                match nix::dir::Dir::open(
                    &path,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                    Mode::empty(),
                ) {
                    Ok(d) => v.insert(d),
                    Err(_) => return false,
                }
            }
        };
        let want = format!("socket:[{inode}]");
        // SAFETY: the directory stays open (in `self`) for as long as this borrow.
        let at = unsafe { std::os::fd::BorrowedFd::borrow_raw(dir.as_raw_fd()) };
        // The iterator rewinds the directory when dropped: the next ask reads it afresh.
        dir.iter().flatten().any(|e| {
            let name = e.file_name();
            name.to_bytes().first().is_some_and(u8::is_ascii_digit)
                && readlinkat(at, name).is_ok_and(|l| l.as_encoded_bytes() == want.as_bytes())
        })
    }

    /// Forgets every table (after a scan: the processes may have changed).
    pub fn clear(&mut self) {
        self.0.clear();
    }
}
