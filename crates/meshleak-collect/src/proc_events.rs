//! Process events from the kernel's proc connector, read-only: fork, exec and id changes
//! of every task on the node, as they happen. The connector lives in the host's network
//! namespace only, so the socket is opened there (entered through a host process under the
//! proc root); the kernel takes the subscription only from a listener in the initial user
//! and PID namespaces (`hostPID: true` in a pod), and says so with an answer: without one,
//! [`ProcEvents::open`] fails with why, and the agent polls instead.

use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use netlink_sys::{Socket, SocketAddr};

use super::netns::{Netns, in_netns};
use meshleak_core::cnproc::{self, ProcEvent};

/// NETLINK_CONNECTOR.
const NETLINK_CONNECTOR: isize = 11;
/// A fork storm's events wait here while the agent works; past it the kernel drops them
/// and says so (ENOBUFS), which the agent counts and answers with a whole scan.
const RECEIVE_BUFFER: libc::c_int = 4 << 20;
/// How long the kernel's answer to the subscription is awaited.
const ANSWER_WITHIN: Duration = Duration::from_millis(500);

pub struct ProcEvents(Socket);

/// What one drain of the socket says.
#[derive(Debug, Default)]
pub struct Drained {
    /// The events followed (fork, exec, id changes).
    pub events: Vec<ProcEvent>,
    /// Messages read, exits and the rest included.
    pub read: usize,
    /// The kernel dropped events: some were missed.
    pub lost: bool,
}

impl ProcEvents {
    /// Subscribes, in the host's network namespace (entered through `proc_root`'s pid 1
    /// when this process is elsewhere). The error says why events are not available.
    pub fn open(proc_root: &Path) -> Result<ProcEvents, String> {
        // In the host's namespace already (on the host, or hostNetwork): no entering.
        let here = match open_here() {
            Ok(events) => return Ok(events),
            Err(e) => e,
        };
        if here.raw_os_error() != Some(libc::EPROTONOSUPPORT) {
            return Err(format!("proc connector: {here}"));
        }
        let host = Netns::Pid {
            pid: super::procs::host_pid(proc_root).unwrap_or(1),
            proc_root: proc_root.to_path_buf(),
        };
        in_netns(&host, open_here)
            .map_err(|e| {
                format!("the proc connector is in the host's network namespace only, and entering it failed: {e}")
            })?
            .map_err(|e| format!("proc connector: {e}"))
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// The events waiting, at most `limit` (one a message): what is beyond waits, or
    /// overruns the buffer in a storm.
    pub fn drain(&mut self, buf: &mut [u8], limit: usize) -> Drained {
        let (mut events, mut read) = (Vec::new(), 0);
        let lost = super::netlink::drain(&self.0, buf, limit, |m| {
            read += 1;
            events.extend(cnproc::decode(m));
        });
        Drained { events, read, lost }
    }
}

fn open_here() -> std::io::Result<ProcEvents> {
    let mut s = Socket::new(NETLINK_CONNECTOR)?;
    s.bind(&SocketAddr::new(0, cnproc::CN_IDX_PROC))?;
    super::netlink::set_receive_buffer(&s, RECEIVE_BUFFER);
    s.send(&cnproc::listen_request(), 0)?;
    // The answer comes only if the kernel took the subscription; events of other
    // listeners may come first.
    s.set_non_blocking(true)?;
    let until = Instant::now() + ANSWER_WITHIN;
    let mut buf = vec![0u8; 1 << 16];
    while Instant::now() < until {
        match s.recv(&mut &mut buf[..], libc::MSG_DONTWAIT) {
            Ok(n) => {
                for m in meshleak_core::nlmsg::split(&buf[..n]) {
                    match cnproc::ack(m) {
                        Some(0) => return Ok(ProcEvents(s)),
                        Some(err) => {
                            return Err(std::io::Error::from_raw_os_error(err as i32));
                        }
                        None => {}
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(
        "the kernel did not take the subscription: it answers only a listener in the initial user and PID namespaces (hostPID: true)",
    ))
}
