//! One netlink dump request and its raw replies, shared by the nf_tables, conntrack and
//! sock_diag readers. Replies are split by their netlink headers only, so one message a
//! decoder cannot read never hides the end of a dump or an error.

use std::io;
use std::time::Instant;

use netlink_sys::{Socket, SocketAddr};

pub(crate) const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

/// How long one receive may wait: the kernel answers a dump at once, so a socket that stays
/// silent this long is stuck, and the read fails instead of hanging the namespace's reader.
const RECEIVE_TIMEOUT_SECS: libc::time_t = 5;

/// A netlink socket of one protocol, bound in the calling thread's namespace, with what its
/// dumps may take.
pub struct Netlink(Socket, Option<Limit>);

/// A bound on what one socket's dumps read: a namespace that holds hundreds of thousands of
/// rules (any pod with NET_ADMIN can load them in seconds) must not make the reader use
/// unbounded memory, nor go on reading after its namespace's deadline.
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    /// Reply bytes, over all of the socket's dumps.
    pub bytes: usize,
    /// When reading stops.
    pub until: Option<Instant>,
    used: usize,
}

impl Limit {
    pub fn new(bytes: usize, until: Option<Instant>) -> Limit {
        Limit {
            bytes,
            until,
            used: 0,
        }
    }
}

/// A dump stopped at its [`Limit`].
#[derive(Clone, Copy, Debug, thiserror::Error)]
pub enum Stopped {
    #[error("the replies exceed {0} MiB, where meshleak stops reading")]
    TooLarge(usize),
    #[error("the namespace's read deadline passed")]
    Deadline,
}

/// Whether an I/O error is a dump stopped at its limit.
pub fn stopped(e: &io::Error) -> Option<&Stopped> {
    e.get_ref().and_then(|e| e.downcast_ref::<Stopped>())
}

impl Netlink {
    pub fn open(protocol: isize) -> io::Result<Netlink> {
        let mut socket = Socket::new(protocol)?;
        let timeout = libc::timeval {
            tv_sec: RECEIVE_TIMEOUT_SECS,
            tv_usec: 0,
        };
        // SAFETY: a valid socket fd and a timeval of the size given.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink(socket, None))
    }

    /// This socket, its dumps bounded by `limit`.
    pub fn limited(self, limit: Limit) -> Netlink {
        Netlink(self.0, Some(limit))
    }

    /// Sends one request the kernel answers with a single message (no dump) and returns
    /// that message; `None` when the answer is ENOENT (no such object).
    pub(crate) fn ask(&mut self, request: &[u8]) -> io::Result<Option<Vec<u8>>> {
        self.0.send(request, 0)?;
        let mut rx = vec![0u8; 1 << 13];
        let n = self.0.recv(&mut &mut rx[..], 0)?;
        let word = |i: usize| {
            rx.get(i..i + 4)
                .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        };
        let len = word(0) as usize;
        if n < NLMSG_HDRLEN || len < NLMSG_HDRLEN || len > n {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a netlink reply claims {len} bytes where {n} came"),
            ));
        }
        if u16::from_ne_bytes([rx[4], rx[5]]) == NLMSG_ERROR {
            return match -(word(NLMSG_HDRLEN) as i32) {
                libc::ENOENT => Ok(None),
                code => Err(io::Error::from_raw_os_error(code)),
            };
        }
        rx.truncate(len);
        Ok(Some(rx))
    }

    /// Sends one serialized dump request and returns each reply message (whole, with its
    /// netlink header) until NLMSG_DONE. A request the kernel answers with ENOENT (nothing
    /// of that kind) gives no messages.
    pub fn dump(&mut self, request: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        self.dump_each(request, |m| {
            out.push(m.to_vec());
            Ok(())
        })?;
        Ok(out)
    }

    /// Like [`Netlink::dump`], handing each reply message to `each` as it arrives (so a
    /// large dump need not be held whole); an error from `each` ends the dump with it.
    pub(crate) fn dump_each(
        &mut self,
        request: &[u8],
        mut each: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        self.0.send(request, 0)?;
        let mut rx = vec![0u8; 1 << 16];
        loop {
            let n = self.0.recv(&mut &mut rx[..], 0)?;
            if let Some(limit) = &mut self.1 {
                limit.used += n;
                if limit.used > limit.bytes {
                    return Err(io::Error::other(Stopped::TooLarge(limit.bytes >> 20)));
                }
                if limit.until.is_some_and(|t| Instant::now() > t) {
                    return Err(io::Error::other(Stopped::Deadline));
                }
            }
            let mut at = 0;
            while at + NLMSG_HDRLEN <= n {
                let word =
                    |i: usize| u32::from_ne_bytes(rx[at + i..at + i + 4].try_into().unwrap());
                let len = word(0) as usize;
                let kind = u16::from_ne_bytes([rx[at + 4], rx[at + 5]]);
                if len < NLMSG_HDRLEN || at + len > n {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("a netlink reply claims {len} bytes where {} remain", n - at),
                    ));
                }
                match kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let code = if len >= NLMSG_HDRLEN + 4 {
                            -(word(NLMSG_HDRLEN) as i32)
                        } else {
                            libc::EPROTO
                        };
                        return match code {
                            0 | libc::ENOENT => Ok(()),
                            _ => Err(io::Error::from_raw_os_error(code)),
                        };
                    }
                    _ => each(&rx[at..at + len])?,
                }
                at += (len + 3) & !3;
            }
        }
    }
}

/// Sets a socket's receive buffer to `size`: SO_RCVBUFFORCE (which needs CAP_NET_ADMIN)
/// passes the system's cap; SO_RCVBUF, capped by it, is the fallback. An event socket's
/// buffer is what a burst waits in while its reader works.
pub(crate) fn set_receive_buffer(socket: &netlink_sys::Socket, size: libc::c_int) {
    use std::os::fd::AsRawFd;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: a valid socket fd and an int of the size given.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&raw const size).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            break;
        }
    }
}

/// The messages waiting on a non-blocking event socket, at most `limit` reads of it, each
/// message handed to `each`; `true` when the kernel dropped some first (its buffer overran:
/// ENOBUFS).
pub(crate) fn drain(
    socket: &netlink_sys::Socket,
    buf: &mut [u8],
    limit: usize,
    mut each: impl FnMut(&[u8]),
) -> bool {
    let mut lost = false;
    for _ in 0..limit {
        match socket.recv(&mut &mut buf[..], libc::MSG_DONTWAIT) {
            Ok(0) => break,
            Ok(n) => meshleak_core::nlmsg::split(&buf[..n])
                .into_iter()
                .for_each(&mut each),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => lost = true,
            Err(_) => break,
        }
    }
    lost
}
