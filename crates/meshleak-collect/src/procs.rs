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
use nix::fcntl::AtFlags;
use nix::fcntl::{self, OFlag};
use nix::sys::stat::{Mode, fstatat};

use meshleak_core::snapshot::{HeldSocket, ProcessFacts, RingFacts, ThreadFacts, UnreadCause};

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
    detail: Detail,
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
    let reads =
        meshleak_core::parallel::map(&pids, |pid| read(proc_root, *pid, detail, &maps, &wanted));
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
pub(crate) fn can_read_others() -> bool {
    const CAP_DAC_READ_SEARCH: u32 = 2;
    const CAP_SYS_PTRACE: u32 = 19;
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = hex_field(&status, "CapEff");
    [CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE]
        .iter()
        .all(|bit| eff & (1 << bit) != 0)
}

/// The inode of a process's `/proc/PID/net/dev`: which network namespace it is in, even
/// where its namespace link is closed.
pub(crate) fn net_dev_inode(proc_root: &Path, pid: u32) -> Option<u64> {
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

pub type Maps = (Vec<(u32, u32, u32)>, Vec<(u32, u32, u32)>);

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

    /// The id maps of its user namespace `userns` (read once per namespace).
    fn id_maps(&self, userns: Option<u64>, cache: &IdMaps) -> Maps {
        let Some(userns) = userns else {
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

    /// The directory `name` (`fd`, `task`) and its entries named by numbers.
    fn numbered(&self, name: &str) -> Option<(Dir, Vec<(u32, std::ffi::CString)>)> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut dir = Dir::openat(&self.0, name, flags, Mode::empty()).ok()?;
        let names = dir
            .iter()
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_str().ok()?.parse().ok()?;
                Some((n, e.file_name().to_owned()))
            })
            .collect();
        Some((dir, names))
    }

    /// The sockets under `fd/`, each with its inode's owner: `stat` through the link (one
    /// call per descriptor, as the readlink it replaces) gives the inode, its type and the
    /// credentials its creator had. And its io_uring rings: anonymous inodes (no type bits)
    /// whose link names `[io_uring]`, their credentials not read yet.
    fn files(&self, tid: Option<u32>) -> (Vec<HeldSocket>, Vec<RingFacts>) {
        let Some((fds, names)) = self.numbered("fd") else {
            return (Vec::new(), Vec::new());
        };
        let mut sockets = Vec::new();
        let mut rings = Vec::new();
        for (fd, name) in names {
            let Ok(st) = fstatat(&fds, name.as_c_str(), AtFlags::empty()) else {
                continue;
            };
            match st.st_mode & libc::S_IFMT {
                libc::S_IFSOCK => sockets.push(HeldSocket {
                    fd,
                    inode: st.st_ino,
                    uid: st.st_uid,
                    gid: st.st_gid,
                    tid,
                    ..HeldSocket::default()
                }),
                0 if fcntl::readlinkat(&fds, name.as_c_str())
                    .is_ok_and(|l| l.as_encoded_bytes() == b"anon_inode:[io_uring]") =>
                {
                    rings.push(RingFacts {
                        fd,
                        registered: false,
                        tid,
                        personalities: Vec::new(),
                        sqpoll: None,
                        unread: Some(RING_UNREAD.into()),
                    });
                }
                _ => {}
            }
        }
        sockets.sort_unstable_by_key(|s| (s.inode, s.fd));
        sockets.dedup_by_key(|s| s.inode);
        (sockets, rings)
    }

    /// Its threads other than the leader (`pid`), each with its directory.
    fn other_threads(&self, pid: u32) -> Vec<(u32, ProcDir)> {
        let Some((_, names)) = self.numbered("task") else {
            return Vec::new();
        };
        names
            .into_iter()
            .filter(|(tid, _)| *tid != pid)
            .filter_map(|(tid, _)| Some((tid, self.open_at(&format!("task/{tid}")).ok()?)))
            .collect()
    }

    /// Threads other than the leader whose credentials differ from `leader`. Listed only
    /// for a multi-threaded process (`Threads:` above 1).
    fn threads(&self, pid: u32, leader: &Creds) -> Vec<ThreadFacts> {
        let mut out = Vec::new();
        for (tid, task) in self.other_threads(pid) {
            let Ok(status) = task.status() else { continue };
            let creds = Creds::of(&status);
            if creds != *leader {
                out.push(ThreadFacts {
                    tid,
                    fsuid: creds.fsuid,
                    fsgid: creds.fsgid,
                    groups: creds.groups,
                    cap_eff: creds.cap_eff,
                    cap_prm: creds.cap_prm,
                });
            }
        }
        out
    }

    /// The sockets and rings of process `pid` (this directory) from its fd tables: its own
    /// (through `live`, a live thread's once its leader exited) and, when `threaded`, its
    /// threads' private ones (`unshare(CLONE_FILES)`).
    fn all_files(
        &self,
        pid: u32,
        live: &ProcDir,
        threaded: bool,
    ) -> (Vec<HeldSocket>, Vec<RingFacts>) {
        let (mut sockets, mut rings) = live.files(None);
        if !threaded {
            return (sockets, rings);
        }
        for (tid, task) in self.other_threads(pid) {
            if shares_files(pid, tid) {
                continue;
            }
            let (own, own_rings) = task.files(Some(tid));
            rings.extend(own_rings);
            for s in own {
                if let Err(at) = sockets.binary_search_by_key(&s.inode, |h| h.inode) {
                    sockets.insert(at, s);
                }
            }
        }
        (sockets, rings)
    }

    /// Where its namespaces and fd table are read, with its network namespace: its own
    /// directory, or, once its leader thread has exited (a zombie leader keeps no
    /// namespaces and no files, while its other threads run on with both), a live thread's.
    fn live(&self, pid: u32) -> io::Result<(ProcDir, u64)> {
        let gone = match self.ns_inode("ns/net") {
            Ok(netns) => return Ok((self.open_at(".")?, netns)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => e,
            Err(e) => return Err(e),
        };
        self.other_threads(pid)
            .into_iter()
            .find_map(|(_, task)| Some((task.ns_inode("ns/net").ok()?, task)))
            .map(|(netns, task)| (task, netns))
            .ok_or(gone)
    }

    fn open_at(&self, name: &str) -> io::Result<ProcDir> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        Ok(ProcDir(fcntl::openat(&self.0, name, flags, Mode::empty())?))
    }
}

/// What a ring found under `fd/` is until the kernel's view (BPF) fills it in.
pub const RING_UNREAD: &str = "its registered personalities and SQPOLL credentials were not read";

/// Whether a thread shares its leader's fd table (`kcmp(KCMP_FILES)`); where kcmp cannot
/// tell (no CONFIG_KCMP, another pid namespace), it is assumed not to, and its table read.
fn shares_files(pid: u32, tid: u32) -> bool {
    const KCMP_FILES: libc::c_int = 2;
    // SAFETY: kcmp only compares two tasks' kernel objects; no memory is passed.
    let rc = unsafe { libc::syscall(libc::SYS_kcmp, pid, tid, KCMP_FILES, 0, 0) };
    rc == 0
}

/// What a task's status says of the credentials its new sockets get.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Creds {
    fsuid: u32,
    fsgid: u32,
    /// Real, effective, saved and fs uids (gids): each is one `setresuid`/`setfsuid`
    /// (`setresgid`/`setfsgid`) may switch to without privilege.
    uids: Vec<u32>,
    gids: Vec<u32>,
    groups: Vec<u32>,
    cap_eff: u64,
    cap_prm: u64,
}

impl Creds {
    fn of(status: &str) -> Creds {
        let ids = |name: &str| -> Vec<u32> {
            field(status, name)
                .unwrap_or("")
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        };
        // Uid/Gid lines: real, effective, saved, filesystem.
        let (uids, gids) = (ids("Uid"), ids("Gid"));
        Creds {
            fsuid: uids.get(3).copied().unwrap_or(u32::MAX),
            fsgid: gids.get(3).copied().unwrap_or(u32::MAX),
            uids,
            gids,
            groups: ids("Groups"),
            cap_eff: hex_field(status, "CapEff"),
            cap_prm: hex_field(status, "CapPrm"),
        }
    }
}

fn hex_field(status: &str, name: &str) -> u64 {
    field(status, name)
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or(0)
}

/// What to read of each process beyond what verdicts need.
#[derive(Clone, Copy, Debug, Default)]
pub struct Detail {
    /// Its command line, masked (`--include-cmdline`).
    pub cmdline: bool,
    /// The path of its executable (`exe`), for snapshots (`collect`), which forensics
    /// reads: no verdict needs it, and a readlink per process is about 8% of a scan.
    pub exe: bool,
    /// Its descriptors (sockets, rings): not read where the BPF iterator gives them, a
    /// quarter of a scan's /proc reads saved; [`read_files`] reads them after, if it could
    /// not.
    pub files: bool,
}

/// A process's sockets and rings from its fd tables (its own, and its threads' private
/// ones), for a process read without them; nothing when it is gone.
pub fn read_files(proc_root: &Path, facts: &mut ProcessFacts) {
    let pid = facts.pid;
    let Ok(dir) = ProcDir::open(&proc_root.join(pid.to_string())) else {
        return;
    };
    let Ok((live, _)) = dir.live(pid) else { return };
    (facts.sockets, facts.rings) = dir.all_files(pid, &live, true);
}

/// One process; `Ok(None)` for kernel threads (no memory map, no sockets of their own)
/// and for processes in a network namespace `wanted` refuses.
pub fn read(
    proc_root: &Path,
    pid: u32,
    detail: Detail,
    maps: &IdMaps,
    wanted: impl Fn(u64) -> bool,
) -> io::Result<Option<Found>> {
    let dir = ProcDir::open(&proc_root.join(pid.to_string()))?;
    let (live, netns) = dir.live(pid)?;
    if !wanted(netns) {
        return Ok(None);
    }
    let status = dir.status()?;
    let field = |name: &str| field(&status, name);
    if is_kernel_thread(&status, pid) {
        return Ok(None);
    }
    let creds = Creds::of(&status);
    let cmdline = if detail.cmdline {
        let raw = dir.read("cmdline")?;
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // Masked here, so no snapshot ever holds the secrets.
        Some(meshleak_core::secrets::mask(&args))
    } else {
        None
    };
    let userns = live.ns_inode("ns/user").ok();
    let (uid_map, gid_map) = dir.id_maps(userns, maps);
    let threaded = field("Threads").is_some_and(|n| n != "1");
    let (sockets, rings) = if detail.files {
        dir.all_files(pid, &live, threaded)
    } else {
        (Vec::new(), Vec::new())
    };
    let threads = if threaded {
        dir.threads(pid, &creds)
    } else {
        Vec::new()
    };
    let facts = ProcessFacts {
        pid,
        ppid: field("PPid").and_then(|v| v.parse().ok()).unwrap_or(0),
        comm: field("Name").unwrap_or("").to_string(),
        exe: detail.exe.then(|| dir.link("exe").ok()).flatten(),
        fsuid: creds.fsuid,
        fsgid: creds.fsgid,
        groups: creds.groups,
        all_uids: creds.uids,
        all_gids: creds.gids,
        cap_eff: creds.cap_eff,
        cap_prm: creds.cap_prm,
        cap_bnd: hex_field(&status, "CapBnd"),
        no_new_privs: field("NoNewPrivs").map(|v| v != "0"),
        userns: userns.unwrap_or(0),
        uid_map,
        gid_map,
        cgroup: String::from_utf8_lossy(&dir.read("cgroup").unwrap_or_default())
            .trim()
            .to_string(),
        cmdline,
        sockets,
        rings,
        cgroup_programs: Vec::new(),
        threads,
        pidns: live.ns_inode("ns/pid").unwrap_or(0),
        ns_pid: field("NSpid")
            .and_then(|v| v.split_whitespace().last())
            .and_then(|v| v.parse().ok()),
    };
    Ok(Some(Found { netns, facts }))
}

/// meshleak's own user namespace's id maps.
pub(crate) fn own_id_maps() -> Maps {
    match ProcDir::open(Path::new("/proc/self")) {
        Ok(dir) => (dir.id_map("uid_map"), dir.id_map("gid_map")),
        Err(_) => (Vec::new(), Vec::new()),
    }
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
