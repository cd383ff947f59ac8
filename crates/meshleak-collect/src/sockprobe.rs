//! Asks a socket that is in none of its holder's namespace's tables what it is: a duplicate
//! of the holder's descriptor (`pidfd_getfd`, which needs ptrace access, as reading
//! `/proc/PID/fd` does) answers its family, type, protocol, whether it listens, and which
//! network namespace it was created in (`SIOCGSKNS`). The holder's descriptor table is
//! not changed; the duplicate is closed at once.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use meshleak_core::snapshot::ProbedSocket;

const SIOCGSKNS: libc::c_ulong = 0x894c;
/// `PIDFD_THREAD` (Linux 6.9): a pidfd for a thread, whose private fd table is read.
const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;

/// The socket `fd` of process `pid` (or thread `tid`), if it still is socket `inode`.
pub fn probe(pid: u32, tid: Option<u32>, fd: u32, inode: u64) -> io::Result<ProbedSocket> {
    let flags = if tid.is_some() { PIDFD_THREAD } else { 0 };
    let pidfd = syscall_fd(
        libc::SYS_pidfd_open,
        tid.unwrap_or(pid) as libc::c_long,
        flags,
    )?;
    // SAFETY: pidfd_getfd reads the target's table and returns a new descriptor or -1.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: rc is a descriptor the kernel just gave us.
    let sock = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(rc as i32) });
    if sock.metadata()?.ino() != inode {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the descriptor now holds another file",
        ));
    }
    let opt = |name| getsockopt_int(&sock, name);
    // SAFETY: SIOCGSKNS takes no argument and returns a new descriptor or -1.
    let ns = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCGSKNS as _) };
    if ns < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ns is a descriptor the kernel just gave us.
    let ns = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(ns) });
    Ok(ProbedSocket {
        family: opt(libc::SO_DOMAIN)? as u16,
        sock_type: opt(libc::SO_TYPE)? as u16,
        protocol: opt(libc::SO_PROTOCOL)? as u16,
        listening: opt(libc::SO_ACCEPTCONN)? != 0,
        netns: ns.metadata()?.ino(),
    })
}

fn syscall_fd(nr: libc::c_long, arg: libc::c_long, flags: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let rc = unsafe { libc::syscall(nr, arg, flags) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: rc is a descriptor the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
}

fn getsockopt_int(sock: &impl AsRawFd, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len point to an int-sized buffer and its length.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_socket_says_what_it_is_and_where_it_was_made() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let owned: std::os::fd::OwnedFd = l.try_clone().unwrap().into();
        let ino = std::fs::File::from(owned).metadata().unwrap().ino();
        let Ok(p) = super::probe(std::process::id(), None, l.as_raw_fd() as u32, ino) else {
            return; // pidfd_getfd refused (no ptrace access to ourselves under a sandbox).
        };
        let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        assert_eq!(
            (p.family, p.sock_type, p.listening, p.netns),
            (2, 1, true, own)
        );
    }
}
