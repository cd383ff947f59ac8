//! Processes from `/proc` (or a host's /proc mounted elsewhere): the credentials their new
//! sockets get (fsuid, fsgid, groups), capabilities, user-namespace maps, cgroup, the
//! sockets they hold, and which network namespace they are in. A process that exits while
//! it is read is skipped and counted, not an error.

use std::fs;
use std::io;
use std::path::Path;

use crate::snapshot::ProcessFacts;

/// One process and the inode of its network namespace.
pub struct Found {
    pub netns: u64,
    pub facts: ProcessFacts,
}

pub struct Listing {
    pub processes: Vec<Found>,
    pub vanished: usize,
    /// Processes this meshleak may not read (permission denied).
    pub unreadable: Vec<u32>,
}

/// Every process under `proc_root`.
pub fn list(proc_root: &Path, include_cmdline: bool) -> io::Result<Listing> {
    let mut out = Listing {
        processes: Vec::new(),
        vanished: 0,
        unreadable: Vec::new(),
    };
    let pids: Vec<u32> = fs::read_dir(proc_root)?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    let reads = crate::parallel::map(&pids, |pid| read(proc_root, *pid, include_cmdline));
    for (pid, read) in pids.into_iter().zip(reads) {
        match read {
            Ok(Some(found)) => out.processes.push(found),
            Ok(None) => {}
            Err(e) if vanished(&e) => out.vanished += 1,
            // Not ours to read: without CAP_SYS_PTRACE other users' namespace links are
            // closed. Counted apart so the scan says so instead of missing them silently.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => out.unreadable.push(pid),
            Err(_) => out.vanished += 1,
        }
    }
    out.processes.sort_by_key(|f| f.facts.pid);
    Ok(out)
}

/// Whether an error means the process is gone.
pub fn vanished(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound) || e.raw_os_error() == Some(libc::ESRCH)
}

/// One process; `Ok(None)` for kernel threads (no memory map, no sockets of their own).
pub fn read(proc_root: &Path, pid: u32, include_cmdline: bool) -> io::Result<Option<Found>> {
    let dir = proc_root.join(pid.to_string());
    // Lossy: a process name may hold any bytes but NUL and `/` (the kernel escapes only
    // whitespace, `\` and ESC in this file), and must not make the process vanish.
    let status = String::from_utf8_lossy(&fs::read(dir.join("status"))?).into_owned();
    let field = |name: &str| -> Option<&str> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
            .map(str::trim)
    };
    if field("VmSize").is_none() && field("Kthread").is_none_or(|k| k == "1") && pid != 1 {
        // Kernel threads have no VmSize line.
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
    let netns = netns_inode(&dir.join("ns/net"))?;
    let cmdline = if include_cmdline {
        let raw = fs::read(dir.join("cmdline"))?;
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
    let facts = ProcessFacts {
        pid,
        comm: field("Name").unwrap_or("").to_string(),
        exe: fs::read_link(dir.join("exe"))
            .ok()
            .map(|p| p.display().to_string()),
        // Uid/Gid lines: real, effective, saved, filesystem.
        fsuid: uids.get(3).copied().unwrap_or(u32::MAX),
        fsgid: gids.get(3).copied().unwrap_or(u32::MAX),
        groups: ids("Groups"),
        cap_eff: hex("CapEff"),
        cap_bnd: hex("CapBnd"),
        uid_map: id_map(&dir.join("uid_map")),
        gid_map: id_map(&dir.join("gid_map")),
        cgroup: String::from_utf8_lossy(&fs::read(dir.join("cgroup")).unwrap_or_default())
            .trim()
            .to_string(),
        cmdline,
        socket_inodes: socket_inodes(&dir.join("fd")),
        pidns: netns_inode(&dir.join("ns/pid")).unwrap_or(0),
    };
    Ok(Some(Found { netns, facts }))
}

/// The inode a namespace link (`net:[4026531993]`) or bind mount names.
pub fn netns_inode(path: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(fs::metadata(path)?.ino())
}

fn id_map(path: &Path) -> Vec<(u32, u32, u32)> {
    fs::read_to_string(path)
        .unwrap_or_default()
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

/// `socket:[INODE]` links under `/proc/PID/fd`.
fn socket_inodes(fd_dir: &Path) -> Vec<u64> {
    let Ok(entries) = fs::read_dir(fd_dir) else {
        return Vec::new();
    };
    let mut out: Vec<u64> = entries
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter_map(|target| {
            let t = target.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Maps an id as the host sees it to the id inside a user namespace (`map` lines are
/// inside, outside, count). Without a map (or an identity map) the id is unchanged.
pub fn inside(map: &[(u32, u32, u32)], id: u32) -> u32 {
    map.iter()
        .find(|(_, outside, count)| id >= *outside && (id - outside) < *count)
        .map_or(id, |(inside, outside, _)| inside + (id - outside))
}
