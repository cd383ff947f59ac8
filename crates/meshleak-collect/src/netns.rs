//! Running code inside another network namespace. setns(2) changes only the calling
//! thread, so each visit gets a fresh `std::thread` (never a tokio worker): sockets opened
//! there stay bound to that namespace, and the rest of the process is untouched.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};

/// Which network namespace to read.
#[derive(Clone, Debug)]
pub enum Netns {
    /// The namespace of a process (`/proc/PID/ns/net` under `proc_root`).
    Pid { pid: u32, proc_root: PathBuf },
    /// A namespace file, e.g. a bind mount under `/run/netns`.
    Path(PathBuf),
}

impl Netns {
    pub fn file(&self) -> PathBuf {
        match self {
            Netns::Pid { pid, proc_root } => proc_root.join(pid.to_string()).join("ns/net"),
            Netns::Path(p) => p.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot open {path}: {cause}; check that the process or namespace exists")]
    Open {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot enter the network namespace {path}: {cause}; entering needs CAP_SYS_ADMIN")]
    Enter { path: PathBuf, cause: nix::Error },
    #[error("the thread reading {path} panicked")]
    Panicked { path: PathBuf },
    #[error(
        "no answer from the network namespace {path} within {after:?} (a netlink socket or a /proc read is stuck); skipped"
    )]
    Deadline {
        path: PathBuf,
        after: Duration,
        /// Set when the abandoned reader finally returns.
        finished: Arc<AtomicBool>,
    },
}

/// `_IO(0xb7, 3)` (linux/nsfs.h): the kind of namespace a file is (a CLONE_NEW* flag).
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// The inode of the network namespace a user named by its file (`--netns`, or a pid's
/// `ns/net`), or what is wrong with it in words that say what to do: gone, not readable
/// (a missing capability, or something that forbids it), not a namespace, a namespace of
/// another kind.
pub fn named(path: &Path) -> Result<u64, String> {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("{shown} does not exist: the process exited, or the namespace was deleted")
        }
        std::io::ErrorKind::PermissionDenied => {
            if super::procs::can_read_others() {
                format!("cannot open {shown}: permission denied although meshleak holds CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH: a security module or the process's own protection (not dumpable, another user namespace) forbids it")
            } else {
                format!("cannot open {shown}: permission denied: another user's process's namespace needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (run as root, or with the DaemonSet's capabilities)")
            }
        }
        _ => format!("cannot open {shown}: {e}"),
    })?;
    // SAFETY: NS_GET_NSTYPE takes no argument and returns a CLONE_NEW* flag or -1.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    if kind < 0 {
        return Err(format!(
            "{shown} is not a namespace file (give a bind mount such as /run/netns/NAME, or /proc/PID/ns/net)"
        ));
    }
    if kind != libc::CLONE_NEWNET {
        return Err(format!(
            "{shown} is a namespace, but not a network namespace"
        ));
    }
    file.metadata()
        .map(|m| m.ino())
        .map_err(|e| format!("cannot read {shown}: {e}"))
}

/// Whether `path` is a namespace file (a bind mount of one, or a `/proc/PID/ns` link):
/// `ip netns del` unmounts first and removes the file after, and the file in between, or
/// one just made before its mount, is no namespace.
pub fn is_nsfs(path: &Path) -> bool {
    use nix::sys::statfs::{NSFS_MAGIC, statfs};
    statfs(path).is_ok_and(|fs| fs.filesystem_type() == NSFS_MAGIC)
}

/// Runs `f` on a new thread that has joined the namespace, and returns its result.
pub fn in_netns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetnsError> {
    in_netns_within(ns, None, f)
}

/// Like [`in_netns`], but gives up after `deadline`: the reader thread cannot be stopped, so
/// it is left to finish on its own (its `finished` flag says when) and the caller goes on.
pub(crate) fn in_netns_within<T: Send + 'static>(
    ns: &Netns,
    deadline: Option<Duration>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetnsError> {
    let path = ns.file();
    let file = File::open(&path).map_err(|source| NetnsError::Open {
        path: path.clone(),
        cause: source,
    })?;
    let thread_path = path.clone();
    let finished = Arc::new(AtomicBool::new(false));
    let done = finished.clone();
    let (send, answer) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("meshleak-netns".into())
        .spawn(move || {
            let result = setns(&file, CloneFlags::CLONE_NEWNET)
                .map_err(|source| NetnsError::Enter {
                    path: thread_path,
                    cause: source,
                })
                .map(|()| f());
            done.store(true, Ordering::Release);
            let _ = send.send(result);
        })
        .map_err(|e| NetnsError::Open {
            path: path.clone(),
            cause: e,
        })?;
    let received = match deadline {
        Some(after) => answer.recv_timeout(after).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => NetnsError::Deadline {
                path: path.clone(),
                after,
                finished,
            },
            mpsc::RecvTimeoutError::Disconnected => NetnsError::Panicked { path: path.clone() },
        }),
        None => answer
            .recv()
            .map_err(|_| NetnsError::Panicked { path: path.clone() }),
    };
    received?
}

/// Runs `f` inside namespace `inode`, entered by the first of its bind mounts (`paths`) or
/// processes (`pids`, under `proc_root`) that still is that namespace (a pid may have been
/// reused since it was listed): sockets `f` opens stay in it. The error says why the
/// last way in failed.
pub fn open_in<T: Send + 'static>(
    inode: u64,
    paths: &[String],
    pids: &[u32],
    proc_root: &Path,
    f: impl Fn() -> std::io::Result<T> + Send + Clone + 'static,
) -> Result<T, String> {
    let entries = paths
        .iter()
        .map(|p| Netns::Path(PathBuf::from(p)))
        .chain(pids.iter().map(|pid| Netns::Pid {
            pid: *pid,
            proc_root: proc_root.to_path_buf(),
        }));
    let mut last = "no path or process to enter it by".to_string();
    for entry in entries {
        let f = f.clone();
        let here = move || {
            let now = super::procs::netns_inode(Path::new("/proc/thread-self/ns/net"))?;
            if now != inode {
                return Err(std::io::Error::other(format!(
                    "it is namespace {now} now, not {inode} (its process exited and the pid was reused)"
                )));
            }
            f()
        };
        match in_netns(&entry, here) {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => last = format!("{}: {e}", entry.file().display()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// A file under this thread's view of `/proc/net`. After setns, `/proc/self/net` still shows
/// the process's first namespace; `/proc/thread-self/net` shows the thread's.
pub(crate) fn thread_net_file(name: &str) -> PathBuf {
    Path::new("/proc/thread-self/net").join(name)
}
