//! What the follower threads share: an epoll set of event sockets, each registered with a
//! key (a namespace's inode), so a wakeup costs what is ready, not what is watched (a socket
//! leaves the set when closed); and the latest plan the owner sent them.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub(super) struct Epoll(OwnedFd);

impl Epoll {
    pub(super) fn new() -> std::io::Result<Epoll> {
        // SAFETY: epoll_create1 has no memory arguments.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor no one else owns.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(super) fn add(&self, fd: RawFd, key: u64) -> std::io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: key,
        };
        // SAFETY: both descriptors are open; `ev` is a valid event the call only reads.
        let rc = unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// The keys of the sockets with events, waiting at most `timeout_ms`.
    pub(super) fn wait(
        &self,
        ready: &mut [libc::epoll_event],
        timeout_ms: libc::c_int,
    ) -> Vec<u64> {
        // SAFETY: `ready` is a writable array of the length given.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                ready.as_mut_ptr(),
                ready.len() as libc::c_int,
                timeout_ms,
            )
        };
        ready[..n.max(0) as usize].iter().map(|e| e.u64).collect()
    }
}

/// The latest of the plans waiting (`Ok(None)`: none came); `Err` once the owner is gone.
pub(super) fn latest_plan<T>(rx: &std::sync::mpsc::Receiver<T>) -> Result<Option<T>, ()> {
    let mut plan = None;
    loop {
        match rx.try_recv() {
            Ok(p) => plan = Some(p),
            Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(plan),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return Err(()),
        }
    }
}
