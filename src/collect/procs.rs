//! Processes from `/proc` (or a host's /proc mounted elsewhere): the credentials their new
//! sockets get (fsuid, fsgid, groups), capabilities, user-namespace maps, cgroup, the
//! sockets they hold, and which network namespace they are in. A process that exits while
//! it is read is skipped and counted, not an error.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Mutex;

use nix::dir::Dir;
use nix::fcntl::{self, OFlag};
use nix::sys::stat::Mode;

use crate::snapshot::{ProcessFacts, UnreadCause};

/// One process and the inode of its network namespace.
pub struct Found {
    pub netns: u64,
    pub facts: ProcessFacts,
}

pub struct Listing {
    pub processes: Vec<Found>,
    pub vanished: usize,
    /// Processes this meshleak may not read (permission denied).
    pub unreadable: Vec<Unreadable>,
}

/// A process whose namespace link is closed to this meshleak.
pub struct Unreadable {
    pub pid: u32,
    pub comm: String,
    pub cause: UnreadCause,
    /// The inode of its `/proc/PID/net/dev`, which names its network namespace.
    pub net_dev: Option<u64>,
}

/// Every process under `proc_root` whose network namespace `wanted` accepts; the others
/// are left after reading their namespace link (a scan that skips the host's namespace, or
/// looks at one pod, reads no more of them).
pub fn list(
    proc_root: &Path,
    include_cmdline: bool,
    wanted: impl Fn(u64) -> bool + Sync,
) -> io::Result<Listing> {
    let mut out = Listing {
        processes: Vec::new(),
        vanished: 0,
        unreadable: Vec::new(),
    };
    let pids: Vec<u32> = fs::read_dir(proc_root)?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    let maps = IdMaps::default();
    let reads = crate::parallel::map(&pids, |pid| {
        read(proc_root, *pid, include_cmdline, &maps, &wanted)
    });
    let cause = if can_read_others() {
        UnreadCause::Forbidden
    } else {
        UnreadCause::MissingCapability
    };
    for (pid, read) in pids.into_iter().zip(reads) {
        match read {
            Ok(Some(found)) => out.processes.push(found),
            Ok(None) => {}
            Err(e) if vanished(&e) => out.vanished += 1,
            // Not ours to read: without CAP_SYS_PTRACE other users' namespace links are
            // closed. Kept apart, with what can still be learnt of it, so the scan says so
            // instead of missing them silently.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                out.unreadable.extend(unreadable(proc_root, pid, cause));
            }
            Err(_) => out.vanished += 1,
        }
    }
    out.processes.sort_by_key(|f| f.facts.pid);
    Ok(out)
}

/// What can be learnt of a process whose namespace link is closed: its name and the inode
/// of its `/proc/PID/net/dev` (neither needs ptrace access). `None` for a kernel thread,
/// which holds no sockets of its own.
fn unreadable(proc_root: &Path, pid: u32, cause: UnreadCause) -> Option<Unreadable> {
    let status = ProcDir::open(&proc_root.join(pid.to_string()))
        .and_then(|dir| dir.status())
        .unwrap_or_default();
    if is_kernel_thread(&status, pid) && !status.is_empty() {
        return None;
    }
    Some(Unreadable {
        pid,
        comm: field(&status, "Name").unwrap_or("").to_string(),
        cause,
        net_dev: net_dev_inode(proc_root, pid),
    })
}

/// Whether this process holds what reading other users' processes takes: CAP_SYS_PTRACE
/// (namespace links, fds) and CAP_DAC_READ_SEARCH. Without them a closed process is a
/// capability problem; with them, something else forbids it.
fn can_read_others() -> bool {
    const CAP_DAC_READ_SEARCH: u32 = 2;
    const CAP_SYS_PTRACE: u32 = 19;
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = field(&status, "CapEff")
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or(0);
    [CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE]
        .iter()
        .all(|bit| eff & (1 << bit) != 0)
}

/// The inode of a process's `/proc/PID/net/dev`: which network namespace it is in, even
/// where its namespace link is closed.
pub fn net_dev_inode(proc_root: &Path, pid: u32) -> Option<u64> {
    netns_inode(&proc_root.join(format!("{pid}/net/dev"))).ok()
}

/// Whether an error means the process is gone.
pub fn vanished(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound) || e.raw_os_error() == Some(libc::ESRCH)
}

/// The uid and gid maps of each user namespace seen, read once per namespace rather than
/// once per process (nearly every process shares the host's).
#[derive(Default)]
pub struct IdMaps {
    by_userns: Mutex<HashMap<u64, Maps>>,
}

type Maps = (Vec<(u32, u32, u32)>, Vec<(u32, u32, u32)>);

/// A process's directory under /proc, opened once: every file is read relative to it, so
/// each read skips the lookup of the pid, and all of them are of this one process even if
/// it exits and its pid is reused meanwhile (they fail with ESRCH instead).
struct ProcDir(OwnedFd);

impl ProcDir {
    fn open(path: &Path) -> io::Result<ProcDir> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        Ok(ProcDir(fcntl::open(path, flags, Mode::empty())?))
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        let fd = fcntl::openat(
            &self.0,
            name,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        super::procfile::read(fs::File::from(fd))
    }

    /// Lossy: a process name may hold any bytes but NUL and `/` (the kernel escapes only
    /// whitespace, `\` and ESC in this file), and must not make the process vanish.
    fn status(&self) -> io::Result<String> {
        Ok(String::from_utf8_lossy(&self.read("status")?).into_owned())
    }

    fn link(&self, name: &str) -> io::Result<String> {
        Ok(fcntl::readlinkat(&self.0, name)?
            .to_string_lossy()
            .into_owned())
    }

    /// The inode of a namespace link (`ns/net` → `net:[4026531993]`), read from the
    /// link's text: a quarter cheaper than stat, which makes the kernel find the namespace's
    /// file; both are checked alike (ptrace read access).
    fn ns_inode(&self, name: &str) -> io::Result<u64> {
        let text = self.link(name)?;
        text.rsplit_once(":[")
            .and_then(|(_, n)| n.strip_suffix(']')?.parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{name} links to `{text}`, not a namespace"),
                )
            })
    }

    fn id_maps(&self, cache: &IdMaps) -> Maps {
        let Ok(userns) = self.ns_inode("ns/user") else {
            return (self.id_map("uid_map"), self.id_map("gid_map"));
        };
        let mut known = cache.by_userns.lock().unwrap_or_else(|e| e.into_inner());
        known
            .entry(userns)
            .or_insert_with(|| (self.id_map("uid_map"), self.id_map("gid_map")))
            .clone()
    }

    fn id_map(&self, name: &str) -> Vec<(u32, u32, u32)> {
        String::from_utf8_lossy(&self.read(name).unwrap_or_default())
            .lines()
            .filter_map(|l| {
                let v: Vec<u32> = l
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                (v.len() == 3).then(|| (v[0], v[1], v[2]))
            })
            .collect()
    }

    /// `socket:[INODE]` links under `fd/`.
    fn socket_inodes(&self) -> Vec<u64> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let Ok(mut fds) = Dir::openat(&self.0, "fd", flags, Mode::empty()) else {
            return Vec::new();
        };
        let names: Vec<_> = fds
            .iter()
            .flatten()
            .filter(|e| e.file_name().to_bytes().first() != Some(&b'.'))
            .map(|e| e.file_name().to_owned())
            .collect();
        let mut out: Vec<u64> = names
            .iter()
            .filter_map(|name| fcntl::readlinkat(&fds, name.as_c_str()).ok())
            .filter_map(|target| {
                let t = target.to_str()?;
                t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// One process; `Ok(None)` for kernel threads (no memory map, no sockets of their own)
/// and for processes in a network namespace `wanted` refuses.
pub fn read(
    proc_root: &Path,
    pid: u32,
    include_cmdline: bool,
    maps: &IdMaps,
    wanted: impl Fn(u64) -> bool,
) -> io::Result<Option<Found>> {
    let dir = ProcDir::open(&proc_root.join(pid.to_string()))?;
    let netns = dir.ns_inode("ns/net")?;
    if !wanted(netns) {
        return Ok(None);
    }
    let status = dir.status()?;
    let field = |name: &str| field(&status, name);
    if is_kernel_thread(&status, pid) {
        return Ok(None);
    }
    let ids = |name: &str| -> Vec<u32> {
        field(name)
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect()
    };
    let (uids, gids) = (ids("Uid"), ids("Gid"));
    let hex = |name: &str| {
        field(name)
            .and_then(|v| u64::from_str_radix(v, 16).ok())
            .unwrap_or(0)
    };
    let cmdline = if include_cmdline {
        let raw = dir.read("cmdline")?;
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // Masked here, so no snapshot ever holds the secrets.
        Some(crate::secrets::mask(&args))
    } else {
        None
    };
    let (uid_map, gid_map) = dir.id_maps(maps);
    let facts = ProcessFacts {
        pid,
        comm: field("Name").unwrap_or("").to_string(),
        exe: dir.link("exe").ok(),
        // Uid/Gid lines: real, effective, saved, filesystem.
        fsuid: uids.get(3).copied().unwrap_or(u32::MAX),
        fsgid: gids.get(3).copied().unwrap_or(u32::MAX),
        groups: ids("Groups"),
        cap_eff: hex("CapEff"),
        cap_bnd: hex("CapBnd"),
        uid_map,
        gid_map,
        cgroup: String::from_utf8_lossy(&dir.read("cgroup").unwrap_or_default())
            .trim()
            .to_string(),
        cmdline,
        socket_inodes: dir.socket_inodes(),
        pidns: dir.ns_inode("ns/pid").unwrap_or(0),
    };
    Ok(Some(Found { netns, facts }))
}

/// The host's network namespace: the kernel's own (`init_net`), where kernel threads run;
/// kthreadd's (pid 2) where it is one, else pid 1's. Init may not be readable: a
/// non-dumpable pid 1 keeps its namespace links closed even to root.
pub fn host_netns(proc_root: &Path) -> Option<u64> {
    let pid = host_pid(proc_root)?;
    ProcDir::open(&proc_root.join(pid.to_string()))
        .and_then(|dir| dir.ns_inode("ns/net"))
        .ok()
}

/// A process in the host's network namespace: kthreadd (pid 2) where it is a kernel
/// thread, else pid 1 (in a container's own pid namespace pid 2 is an ordinary process).
pub fn host_pid(proc_root: &Path) -> Option<u32> {
    let kthreadd = ProcDir::open(&proc_root.join("2"))
        .and_then(|dir| dir.status())
        .is_ok_and(|status| is_kernel_thread(&status, 2));
    if kthreadd {
        Some(2)
    } else {
        proc_root.join("1").exists().then_some(1)
    }
}

/// A field of /proc/PID/status (`Name:\tvalue`), trimmed.
fn field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
}

/// Kernel threads have no VmSize line (and newer kernels say `Kthread: 1`); pid 1 never is one.
fn is_kernel_thread(status: &str, pid: u32) -> bool {
    field(status, "VmSize").is_none()
        && field(status, "Kthread").is_none_or(|k| k == "1")
        && pid != 1
}

/// The inode a namespace link (`net:[4026531993]`) or bind mount names (or any file's,
/// following links: `/proc/PID/net/dev` names a network namespace too).
pub fn netns_inode(path: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(fs::metadata(path)?.ino())
}

/// Maps an id as the host sees it to the id inside a user namespace (`map` lines are
/// inside, outside, count). Without a map (or an identity map) the id is unchanged.
pub fn inside(map: &[(u32, u32, u32)], id: u32) -> u32 {
    map.iter()
        .find(|(_, outside, count)| id >= *outside && (id - outside) < *count)
        .map_or(id, |(inside, outside, _)| inside + (id - outside))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    /// A process directory whose `ns/net` links to `net:[4026532000 + pid]`.
    fn process(root: &Path, pid: u32, status: &str) -> u64 {
        let dir = root.join(pid.to_string());
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("ns")).unwrap();
        fs::write(dir.join("status"), status).unwrap();
        let inode = 4_026_532_000 + u64::from(pid);
        std::os::unix::fs::symlink(format!("net:[{inode}]"), dir.join("ns/net")).unwrap();
        inode
    }

    #[test]
    fn the_host_namespace_is_kthreadds_else_inits() {
        let root = std::env::temp_dir().join(format!("meshleak-procs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let init = process(&root, 1, "Name:\tsystemd\nVmSize:\t1000 kB\n");
        let kthreadd = process(&root, 2, "Name:\tkthreadd\nPPid:\t0\nKthread:\t1\n");
        // Init's links may be closed (non-dumpable): kthreadd's namespace is the kernel's.
        assert_eq!(super::host_netns(&root), Some(kthreadd));
        // In a container's own pid namespace pid 2 is an ordinary process.
        process(&root, 2, "Name:\tsh\nVmSize:\t2000 kB\n");
        assert_eq!(super::host_netns(&root), Some(init));
        fs::remove_dir_all(root.join("1")).unwrap();
        assert_eq!(super::host_netns(&root), None);
        fs::remove_dir_all(&root).unwrap();
    }
}
