//! The kernel's own view of every task's open files, read with meshleak's BPF `task_file`
//! iterator (`bpf/held.bpf.c`): each socket's `f_cred` (what owner matches compare; /proc
//! shows only the inode's owner, which `fchown` changes), where it is bound, its unix peer,
//! and each io_uring ring's personalities, SQPOLL credentials and fixed-file sockets,
//! which /proc does not show at all. The iterator is the one kernel object meshleak
//! creates; it only reads. Where it cannot load (no BTF, kernel before 5.8, no CAP_BPF and
//! CAP_PERFMON or CAP_SYS_ADMIN), [`read`] says why and the scan falls back to `stat`.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

use libbpf_rs::{Iter, IterOpts, Object, ObjectBuilder};
use meshleak_core::snapshot::{
    HeldSocket, OwnerSource, PeerHolder, ProbedSocket, ProcessFacts, RingCred, RingFacts, UnixPeer,
};
use meshleak_core::taskfiles::{self, Kind, Record, Sock};

/// The object clang built (`build.rs`), 8-byte aligned as ELF readers expect.
#[repr(C, align(8))]
struct Aligned<T: ?Sized>(T);
static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/held.bpf.o")));

/// The loaded object, kept between scans: loading (the kernel's BTF, relocations, the
/// verifier) costs some 30 ms, an iteration a few. A load that failed is not retried (its
/// cause, a missing privilege or kernel feature, does not go away).
static LOADED: Mutex<Option<Result<Object, String>>> = Mutex::new(None);

/// Every task's sockets and rings, by process.
#[derive(Debug, Default)]
pub struct KernelFiles {
    /// The sockets of each process's fd tables, by process.
    sockets: HashMap<u32, Vec<Record>>,
    rings: HashMap<u32, Vec<Ring>>,
    /// Each process's cgroup v2 id.
    cgroups: HashMap<u32, u64>,
    /// Rings registered by index (IORING_REGISTER_RING_FDS), by process: (index, inode).
    registered: HashMap<u32, Vec<(u32, u64)>>,
    /// Who holds each socket, by inode, and the network namespace each lives in: the far
    /// end of a unix socket is found here.
    holders: HashMap<u64, Vec<(u32, u64)>>,
}

#[derive(Debug, Default)]
struct Ring {
    tid: u32,
    fd: u32,
    ino: u64,
    personalities: Vec<RingCred>,
    sqpoll: Option<RingCred>,
    fixed: Vec<Record>,
    flags: u32,
}

/// Set to `off`, meshleak loads no BPF program (for nodes whose policy forbids it): owners
/// come from inodes, and the reports say so.
pub const SWITCH: &str = "MESHLEAK_BPF";

/// Loads the iterators now, if they are not yet: a scan calls it on a thread of its own
/// at its start, so loading (some 30 ms) runs beside its /proc walk instead of after it.
pub fn prepare() {
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    loaded.get_or_insert_with(load);
}

/// Whether `MESHLEAK_BPF=off` forbids loading it.
pub fn switched_off() -> bool {
    std::env::var(SWITCH).is_ok_and(|v| v == "off")
}

/// Reads every task of meshleak's pid namespace; `Err` says why BPF cannot be used. The
/// caller checks [`switched_off`] first.
pub fn read() -> Result<KernelFiles, String> {
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    let object = loaded
        .get_or_insert_with(load)
        .as_ref()
        .map_err(|e| e.clone())?;
    let bytes = iterate(object).map_err(|e| format!("the BPF iterator could not be read: {e}"))?;
    let records = taskfiles::decode(&bytes).map_err(|e| e.to_string())?;
    Ok(KernelFiles::from_records(records))
}

/// The object's iterators: every task's files, then every thread, for its cgroup and the
/// io_uring rings it registered by index.
const PROGRAMS: [&str; 2] = ["held_files", "tasks"];

fn load() -> Result<Object, String> {
    // libbpf's own messages would go to stderr: its errors come back as values.
    libbpf_rs::set_print(None);
    ObjectBuilder::default()
        .open_memory(&OBJECT.0)
        .and_then(|open| open.load())
        .map_err(|e| {
            format!(
                "the BPF iterator could not be loaded: {e}; it needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN), and kernel 5.8+ with BTF (/sys/kernel/btf/vmlinux)"
            )
        })
}

/// One pass of each iterator: a new link and iterator file each time (an iterator file
/// reads once).
fn iterate(object: &Object) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    for name in PROGRAMS {
        let program = object
            .progs_mut()
            .find(|p| p.name() == name)
            .ok_or_else(|| format!("the BPF object has no program {name}"))?;
        let link = program
            .attach_iter_with_opts(IterOpts::None)
            .map_err(|e| e.to_string())?;
        let mut iter = Iter::new(&link).map_err(|e| e.to_string())?;
        iter.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    }
    Ok(bytes)
}

fn cred(r: &Record) -> RingCred {
    RingCred {
        id: r.slot,
        fsuid: r.cred.fsuid,
        fsgid: r.cred.fsgid,
        cap_eff: r.cred.cap_eff,
    }
}

impl KernelFiles {
    fn from_records(records: Vec<Record>) -> KernelFiles {
        let mut out = KernelFiles::default();
        // A ring's records come together, its `Ring` record last.
        let mut ring = Ring::default();
        for r in records {
            if let Some(s) = r.sock {
                out.holders
                    .entry(s.ino)
                    .or_default()
                    .push((r.tgid, u64::from(r.task_netns)));
            }
            match r.kind {
                Kind::Socket => out.sockets.entry(r.tgid).or_default().push(r),
                Kind::Fixed => ring.fixed.push(r),
                Kind::Personality => ring.personalities.push(cred(&r)),
                Kind::Sqpoll => ring.sqpoll = Some(RingCred { id: 0, ..cred(&r) }),
                Kind::Task => {
                    out.cgroups.insert(r.tgid, r.cgroup);
                }
                Kind::Ring if r.flags & taskfiles::RING_REGISTERED != 0 => {
                    out.registered
                        .entry(r.tgid)
                        .or_default()
                        .push((r.fd, r.ino));
                }
                Kind::Ring => {
                    ring.ino = r.ino;
                    ring.tid = r.tid;
                    ring.fd = r.fd;
                    ring.flags = r.flags;
                    out.rings
                        .entry(r.tgid)
                        .or_default()
                        .push(std::mem::take(&mut ring));
                }
            }
        }
        out
    }

    /// Puts the kernel's view into a process read from /proc: its fd tables' sockets (the
    /// scan reads no descriptors from /proc where this view is had), each with its file's
    /// `f_cred` as owner, where it is bound and its unix peer; its rings with their
    /// credentials, and their fixed-file sockets among its held sockets. `netns` is the
    /// process's network namespace; a unix socket connected to one of another namespace
    /// gets its peer's holders (read under `proc_root`), `host` naming the host's.
    pub fn apply(&self, p: &mut ProcessFacts, netns: u64, host: Option<u64>, proc_root: &Path) {
        for r in self.sockets.get(&p.pid).into_iter().flatten() {
            let tid = (r.tid != p.pid).then_some(r.tid);
            if let Some(s) = held(p, r, r.fd, tid) {
                s.unix_peer = r
                    .sock
                    .and_then(|sock| sock.peer)
                    .and_then(|(inode, _)| self.peer_elsewhere(inode, netns, host, proc_root));
            }
        }
        let rings = self.rings.get(&p.pid).map_or(&[][..], Vec::as_slice);
        if rings.is_empty() && !self.registered.contains_key(&p.pid) {
            return;
        }
        p.rings.clear();
        // A registered ring whose descriptor is still open is read through it.
        for &(index, ino) in self.registered.get(&p.pid).into_iter().flatten() {
            if !rings.iter().any(|r| r.ino == ino) {
                p.rings.push(RingFacts {
                    fd: index,
                    registered: true,
                    tid: None,
                    personalities: Vec::new(),
                    sqpoll: None,
                    unread: Some("registered by index (IORING_REGISTER_RING_FDS) with its descriptor closed: its personalities, SQPOLL credentials and fixed files are not read".into()),
                });
            }
        }
        for ring in rings {
            let tid = (ring.tid != p.pid).then_some(ring.tid);
            let mut cut = Vec::new();
            if ring.flags & taskfiles::RING_PERSONALITIES_CUT != 0 {
                cut.push("personalities with ids above 63 are not read");
            }
            if ring.flags & taskfiles::RING_FIXED_CUT != 0 {
                cut.push("its fixed-file table holds more sockets or slots than one pass reads");
            }
            p.rings.push(RingFacts {
                fd: ring.fd,
                registered: false,
                tid,
                personalities: ring.personalities.clone(),
                sqpoll: ring.sqpoll,
                unread: (!cut.is_empty()).then(|| cut.join("; ")),
            });
            // A socket also in an fd table is held there, not in the ring.
            for r in &ring.fixed {
                if r.sock.is_some_and(|s| p.holds(s.ino)) {
                    continue;
                }
                if let Some(s) = held(p, r, ring.fd, tid) {
                    s.fixed_slot = Some(r.slot);
                }
            }
        }
    }

    /// Each process's cgroup v2 id.
    pub fn cgroups(&self) -> &HashMap<u32, u64> {
        &self.cgroups
    }

    /// The peer of a unix socket, when the processes holding it live in another network
    /// namespace than `netns`. Where the peer socket was made does not tell: the kernel
    /// makes a connection's server end in the connecting side's namespace.
    fn peer_elsewhere(
        &self,
        inode: u64,
        netns: u64,
        host: Option<u64>,
        proc_root: &Path,
    ) -> Option<UnixPeer> {
        let mut held = self.holders.get(&inode).cloned().unwrap_or_default();
        held.sort_unstable();
        held.dedup();
        let mut there = None;
        let mut holders = Vec::new();
        for (pid, ns) in held {
            if ns == netns || ns == 0 {
                continue;
            }
            // Held from several other namespaces (rare): the first one's holders are named.
            if *there.get_or_insert(ns) != ns {
                continue;
            }
            holders.push(PeerHolder {
                pid,
                comm: std::fs::read_to_string(proc_root.join(pid.to_string()).join("comm"))
                    .map(|c| c.trim_end().to_string())
                    .unwrap_or_default(),
            });
        }
        let there = there?;
        Some(UnixPeer {
            inode,
            netns: there,
            host: host == Some(there),
            holders,
        })
    }
}

/// The process's held socket of a socket record (made at `fd`, of thread `tid`, unless it
/// is held already), with its owner, address and kind as the kernel keeps them; `None`
/// for a record of no socket.
fn held<'p>(
    p: &'p mut ProcessFacts,
    r: &Record,
    fd: u32,
    tid: Option<u32>,
) -> Option<&'p mut HeldSocket> {
    let sock = r.sock?;
    let at = match p.sockets.binary_search_by_key(&sock.ino, |h| h.inode) {
        Ok(at) => at,
        Err(at) => {
            let new = HeldSocket {
                fd,
                inode: sock.ino,
                tid,
                ..HeldSocket::default()
            };
            p.sockets.insert(at, new);
            at
        }
    };
    let s = &mut p.sockets[at];
    set_owner(s, r, &sock);
    Some(s)
}

/// A held socket's owner, address and kind, as the kernel keeps them.
fn set_owner(s: &mut HeldSocket, r: &Record, sock: &Sock) {
    let f_cred = (r.cred.fsuid, r.cred.fsgid);
    if (sock.inode_uid, sock.inode_gid) != f_cred {
        s.inode_owner = Some((sock.inode_uid, sock.inode_gid));
    }
    (s.uid, s.gid) = f_cred;
    s.owner_source = OwnerSource::FCred;
    s.mark = Some(sock.mark);
    s.v6only = (sock.family == 10).then_some(sock.v6only);
    s.bound = sock
        .local
        .filter(|(addr, port)| *port != 0 || !addr.is_unspecified());
    s.probed = Some(probed(sock));
}

fn probed(sock: &Sock) -> ProbedSocket {
    ProbedSocket {
        family: sock.family,
        sock_type: sock.sock_type,
        protocol: sock.protocol,
        listening: sock.listening(),
        netns: u64::from(sock.netns),
    }
}
