//! The BPF programs effective on a process's cgroup that act on its sockets before
//! netfilter sees anything: connect4/6 and sendmsg4/6 rewrite where it connects or sends,
//! bind4/6 the source it binds, sock_create its socket's mark or interface (Cilium's
//! socket load balancing is the common case). Asked of the kernel (`BPF_PROG_QUERY` with
//! `BPF_F_QUERY_EFFECTIVE`, so programs of parent cgroups count) through a handle of each
//! cgroup, opened by the id the BPF iterator gives: no path is needed, so it works from a
//! container whose own cgroup namespace hides the others' paths (with the host's cgroup2
//! hierarchy mounted, and CAP_DAC_READ_SEARCH). Read-only.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use meshleak_core::snapshot::CgroupProgram;

/// The attach types that act on a socket before netfilter, with the names bpftool uses.
const ATTACH_TYPES: [(u32, &str); 7] = [
    (2, "sock_create"),
    (8, "bind4"),
    (9, "bind6"),
    (10, "connect4"),
    (11, "connect6"),
    (14, "sendmsg4"),
    (15, "sendmsg6"),
];

const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_F_QUERY_EFFECTIVE: u32 = 1;
/// `FILEID_KERNFS`: a cgroup's file handle holds its kernfs id.
const FILEID_KERNFS: i32 = 0xfe;
/// Programs listed per cgroup and attach type, at most.
const MAX_PROGRAMS: usize = 64;

/// The programs of each cgroup (by id); `Err` says why none could be read.
pub fn programs(cgroups: &[u64]) -> Result<HashMap<u64, Vec<CgroupProgram>>, String> {
    let root = cgroup2_root()?;
    let mut out = HashMap::new();
    for &id in cgroups {
        // A cgroup removed since the iterator ran has no programs left to act.
        let Ok(dir) = open_cgroup(&root, id) else {
            continue;
        };
        let mut found = Vec::new();
        for (attach_type, attach) in ATTACH_TYPES {
            for prog in query(&dir, attach_type)? {
                found.push(CgroupProgram {
                    id: prog,
                    name: name_of(prog).unwrap_or_default(),
                    attach: attach.to_string(),
                });
            }
        }
        out.insert(id, found);
    }
    Ok(out)
}

/// The root of the cgroup2 hierarchy, as mounted in meshleak's mount namespace (the
/// DaemonSet mounts the host's): a cgroup2 mount whose root is the hierarchy's.
fn cgroup2_root() -> Result<OwnedFd, String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    let mount = info
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            (right.split(' ').next() == Some("cgroup2") && f.get(3) == Some(&"/"))
                .then(|| unescape(f.get(4)?))
        })
        .next()
        .flatten()
        .ok_or("no cgroup2 hierarchy is mounted whole here (mount the host's /sys/fs/cgroup)")?;
    let path = std::ffi::CString::new(mount.as_str()).map_err(|e| e.to_string())?;
    // SAFETY: a NUL-terminated path; the descriptor is owned at once.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(format!("{mount}: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> Option<String> {
    let mut out = Vec::new();
    let b = field.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).ok()?;
            out.push(u8::from_str_radix(oct, 8).ok()?);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[repr(C)]
struct KernfsHandle {
    handle_bytes: u32,
    handle_type: i32,
    id: [u8; 8],
}

fn open_cgroup(root: &OwnedFd, id: u64) -> std::io::Result<OwnedFd> {
    let mut handle = KernfsHandle {
        handle_bytes: 8,
        handle_type: FILEID_KERNFS,
        id: id.to_ne_bytes(),
    };
    // SAFETY: the handle is a `struct file_handle` with its 8 bytes; the descriptor
    // returned is owned at once.
    let fd = unsafe {
        libc::open_by_handle_at(
            root.as_raw_fd(),
            (&raw mut handle).cast(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `union bpf_attr` as BPF_PROG_QUERY reads it.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    pad: u32,
    prog_attach_flags: u64,
}

fn query(dir: &OwnedFd, attach_type: u32) -> Result<Vec<u32>, String> {
    let mut ids = [0u32; MAX_PROGRAMS];
    let mut attr = QueryAttr {
        target_fd: dir.as_raw_fd() as u32,
        attach_type,
        query_flags: BPF_F_QUERY_EFFECTIVE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: MAX_PROGRAMS as u32,
        ..QueryAttr::default()
    };
    // SAFETY: attr is a valid bpf_attr prefix for this command, ids outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            &raw mut attr,
            std::mem::size_of::<QueryAttr>(),
        )
    };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!(
            "BPF_PROG_QUERY on a cgroup: {e} (it needs CAP_NET_ADMIN)"
        ));
    }
    Ok(ids[..(attr.prog_cnt as usize).min(MAX_PROGRAMS)].to_vec())
}

/// A program's name, as it was loaded (`bpf_prog_info.name`).
fn name_of(id: u32) -> Option<String> {
    let mut attr = [0u64; 2];
    attr[0] = u64::from(id);
    // SAFETY: the attr holds prog_id for BPF_PROG_GET_FD_BY_ID; the fd is owned at once.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_GET_FD_BY_ID, attr.as_mut_ptr(), 16) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a descriptor the kernel just returned.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut info = [0u8; 256];
    let mut get = [0u64; 2];
    get[0] = (fd.as_raw_fd() as u32 as u64) | ((info.len() as u64) << 32);
    get[1] = info.as_mut_ptr() as u64;
    // SAFETY: bpf_fd, info_len and info for BPF_OBJ_GET_INFO_BY_FD; info outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, get.as_mut_ptr(), 16) };
    if rc < 0 {
        return None;
    }
    let name = &info[64..80];
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    Some(String::from_utf8_lossy(&name[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(
            super::unescape(r"/sys/fs/cgroup\040x").as_deref(),
            Some("/sys/fs/cgroup x")
        );
        assert_eq!(super::unescape("/a/b").as_deref(), Some("/a/b"));
    }
}
