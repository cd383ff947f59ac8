//! A whole node: every network namespace (from processes, deduplicated by inode, and bind
//! mounts under /run/netns and /var/run/netns), each read once, with its processes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::netns::{Netns, NetnsError, is_nsfs};
use super::procs::{self, netns_inode};
use super::{CollectError, NftCache, read_netns};
use meshleak_core::snapshot::{
    NetnsFacts, NetnsOwner, OwnerSource, OwnersRead, ProcessFacts, SNAPSHOT_VERSION, Snapshot,
    UnreadProcess,
};

#[derive(Clone, Debug)]
pub struct ScanOptions {
    /// Where the host's /proc is (`/host/proc` in a container).
    pub proc_root: PathBuf,
    /// Directories of namespace bind mounts (`/run/netns`, `/var/run/netns`).
    pub netns_dirs: Vec<PathBuf>,
    pub include_host: bool,
    pub include_cmdline: bool,
    /// Read each process's executable path (snapshots keep it for forensics).
    pub include_exe: bool,
    /// Only these namespace inodes (e.g. one pod's); all when empty.
    pub only: Vec<u64>,
    /// Where the host's root is (`/host` in a container): runtime state and kubelet logs
    /// are read under it.
    pub host_root: PathBuf,
    /// How long one namespace may take to read before it is reported and skipped.
    pub netns_deadline: Duration,
    /// The node's name (the DaemonSet gives it from `spec.nodeName`); else the hostname,
    /// which in a container is the pod's, not the node's.
    pub node_name: Option<String>,
}

/// The default [`ScanOptions::netns_deadline`]: reading a namespace takes milliseconds; a
/// namespace that takes seconds is stuck, not slow.
pub(crate) const NETNS_DEADLINE: Duration = Duration::from_secs(10);

/// Readers that missed their deadline and have not returned yet, by namespace inode: while
/// one is stuck, later scans (the agent's) skip that namespace instead of adding a thread.
static STUCK: Mutex<BTreeMap<u64, Arc<AtomicBool>>> = Mutex::new(BTreeMap::new());

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            proc_root: "/proc".into(),
            netns_dirs: vec!["/run/netns".into(), "/var/run/netns".into()],
            include_host: false,
            include_cmdline: false,
            include_exe: false,
            only: Vec::new(),
            host_root: "/".into(),
            netns_deadline: NETNS_DEADLINE,
            node_name: None,
        }
    }
}

/// One namespace as the process listing and bind mounts found it.
#[derive(Default)]
struct Ns {
    paths: Vec<String>,
    processes: Vec<ProcessFacts>,
}

pub fn scan(opts: &ScanOptions) -> Result<Snapshot, CollectError> {
    check_proc_root(&opts.proc_root)?;
    let no_bpf = bpf_unusable(&opts.proc_root);
    // Loaded beside the /proc walk; a no-op once loaded (the agent's later scans).
    let loading = no_bpf.is_none().then(|| {
        std::thread::Builder::new()
            .name("meshleak-bpf".into())
            .spawn(super::task_files::prepare)
    });
    let mut host = procs::host_netns(&opts.proc_root);
    // The host's namespace as its /proc/net/dev names it: readable where its namespace
    // link is closed (no CAP_SYS_PTRACE), so the host can still be told apart.
    let host_dev =
        procs::host_pid(&opts.proc_root).and_then(|pid| procs::net_dev_inode(&opts.proc_root, pid));
    let scanned = |host: Option<u64>, inode: u64| {
        (opts.include_host || Some(inode) != host)
            && (opts.only.is_empty() || opts.only.contains(&inode))
    };
    let detail = procs::Detail {
        cmdline: opts.include_cmdline,
        exe: opts.include_exe,
        // The BPF iterator gives descriptors; read from /proc after, if it fails to load.
        files: no_bpf.is_some(),
    };
    let mut listing =
        procs::list(&opts.proc_root, detail, |inode| scanned(host, inode)).map_err(|source| {
            CollectError::Proc {
                path: opts.proc_root.display().to_string(),
                cause: source,
            }
        })?;

    if let Some(Ok(loading)) = loading {
        let _ = loading.join();
    }
    let (owners, programs_unread) = kernel_view(
        &opts.proc_root,
        host,
        no_bpf,
        detail.files,
        &mut listing.processes,
    );
    let mut all: BTreeMap<u64, Ns> = BTreeMap::new();
    for found in listing.processes {
        all.entry(found.netns)
            .or_default()
            .processes
            .push(found.facts);
    }
    if host.is_none() && host_dev.is_some() {
        host = all
            .iter()
            .find(|(_, ns)| {
                ns.processes
                    .first()
                    .is_some_and(|p| procs::net_dev_inode(&opts.proc_root, p.pid) == host_dev)
            })
            .map(|(inode, _)| *inode);
    }
    for dir in super::netns_dirs::distinct(&opts.netns_dirs) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        // Only namespace files: `ip netns del` unmounts first and removes the file after,
        // and the file in between is no namespace.
        for e in entries.flatten().filter(|e| is_nsfs(&e.path())) {
            if let Ok(inode) = netns_inode(&e.path()) {
                let paths = &mut all.entry(inode).or_default().paths;
                let p = e.path().display().to_string();
                if !paths.contains(&p) {
                    paths.push(p);
                }
            }
        }
    }

    let mut snapshot = Snapshot {
        snapshot_version: SNAPSHOT_VERSION,
        node: opts.node(),
        kernel: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        scanned_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        netns: Vec::new(),
        containers: Vec::new(),
        errors: Vec::new(),
        vanished_processes: listing.vanished,
        vanished_netns: 0,
        unread_netns: 0,
        unread_processes: Vec::new(),
        owners,
        programs_unread,
    };
    let wanted: Vec<(u64, Ns)> = all
        .into_iter()
        .filter(|(inode, _)| scanned(host, *inode))
        .collect();
    // Namespaces are read in parallel: most of the time is the kernel walking its global
    // socket and connection tables, which several threads do side by side.
    let cache = NftCache::default();
    let reads =
        meshleak_core::parallel::map(&wanted, |(inode, ns)| read_one(opts, *inode, ns, &cache));
    // Namespaces setns refused for want of CAP_SYS_ADMIN.
    let mut refused: Vec<String> = Vec::new();
    for ((inode, ns), read) in wanted.into_iter().zip(reads) {
        match read {
            Ok(Some(read)) => snapshot.netns.push(NetnsFacts {
                inode,
                paths: ns.paths,
                host: Some(inode) == host,
                rules: read.rules,
                interfaces: read.interfaces,
                routes: read.routes,
                routing_rules: read.routing_rules,
                sockets: read.sockets,
                packet_sockets: read.packet_sockets,
                conntrack: read.conntrack,
                processes: probe_unlisted(ns.processes, &read.unlisted),
                net_dev: read.net_dev,
                unprivileged_port_start: read.unprivileged_port_start,
                ephemeral_ports: read.ephemeral_ports,
                owner: read.owner.map(|userns| NetnsOwner {
                    userns,
                    uid_map: None,
                    gid_map: None,
                }),
                gaps: read.gaps,
                rules_unread: read.rules_unread,
            }),
            Ok(None) => snapshot.vanished_netns += 1,
            Err(CollectError::Netns(NetnsError::Enter {
                path,
                cause: nix::errno::Errno::EPERM,
            })) => {
                snapshot.unread_netns += 1;
                refused.push(path.display().to_string());
            }
            Err(e) => {
                snapshot.unread_netns += 1;
                snapshot
                    .errors
                    .push(format!("network namespace {inode}: {e}"));
            }
        }
    }
    // Said once, not once per namespace: on a node, hundreds share the one cause.
    if !refused.is_empty() {
        const SHOWN: usize = 3;
        let more = refused.len().saturating_sub(SHOWN);
        let mut names = refused[..refused.len().min(SHOWN)].join(", ");
        if more > 0 {
            names += &format!(" and {more} more");
        }
        snapshot.errors.push(format!(
            "{} network namespace{} could not be entered: setns needs CAP_SYS_ADMIN (run meshleak as root, or with the DaemonSet's capabilities): {names}",
            refused.len(),
            if refused.len() == 1 { "" } else { "s" },
        ));
    }
    owner_maps(&mut snapshot.netns);
    // Where each unreadable process is: in a namespace read above, in one this scan does
    // not report (the host's, or not the pod asked for), or not known.
    let host_dev = host_dev.filter(|_| !opts.include_host);
    for u in listing.unreadable {
        let netns = snapshot
            .netns
            .iter()
            .find(|n| n.net_dev.is_some() && n.net_dev == u.net_dev)
            .map(|n| n.inode);
        let elsewhere = netns.is_none()
            && u.net_dev
                .is_some_and(|d| Some(d) == host_dev || !opts.only.is_empty());
        snapshot.unread_processes.push(UnreadProcess {
            pid: u.pid,
            comm: u.comm,
            cause: u.cause,
            netns,
            elsewhere,
        });
    }
    let ids: BTreeMap<String, Option<String>> = snapshot
        .netns
        .iter()
        .flat_map(|n| &n.processes)
        .filter_map(|p| {
            let ids = meshleak_core::attribution::from_cgroup(&p.cgroup);
            Some((ids.container_id?, ids.pod_uid))
        })
        .collect();
    let (containers, errors) = super::containers::read(&opts.host_root, &ids);
    snapshot.containers = containers;
    snapshot.errors.extend(errors);
    Ok(snapshot)
}

/// Why the BPF iterator cannot be used here, known before loading it: `MESHLEAK_BPF=off`,
/// or a `proc_root` of another pid namespace than meshleak's, whose tasks the iterator
/// (which sees its reader's) cannot name.
fn bpf_unusable(proc_root: &std::path::Path) -> Option<String> {
    if super::task_files::switched_off() {
        return Some(format!("{}=off", super::task_files::SWITCH));
    }
    let same_pidns = std::fs::read_link(proc_root.join("self"))
        .is_ok_and(|l| l.to_str() == Some(std::process::id().to_string().as_str()));
    (!same_pidns).then(|| {
        format!(
            "{} is the /proc of another pid namespace than meshleak's, whose tasks a BPF iterator cannot name (run with the host's pid namespace: hostPID)",
            proc_root.display()
        )
    })
}

/// Puts the kernel's view of every process's files (BPF, read after the /proc walk) into
/// the processes read: their sockets, rings and cgroup programs. Where BPF is not used
/// (`no_bpf` says why) or fails to load, says why; descriptors not read in the walk
/// (`files_read`) are read from /proc then, and rings' credentials stay unread.
fn kernel_view(
    proc_root: &std::path::Path,
    host: Option<u64>,
    no_bpf: Option<String>,
    files_read: bool,
    found: &mut [procs::Found],
) -> (OwnersRead, Option<String>) {
    let view = match no_bpf {
        Some(why) => Err(why),
        None => super::task_files::read(),
    };
    match view {
        Ok(view) => {
            for f in found.iter_mut() {
                view.apply(&mut f.facts, f.netns, host, proc_root);
            }
            let unread = cgroup_programs(&view, found).err();
            (
                OwnersRead {
                    source: OwnerSource::FCred,
                    why: None,
                },
                unread,
            )
        }
        Err(why) => {
            if !files_read {
                for f in found.iter_mut() {
                    procs::read_files(proc_root, &mut f.facts);
                }
            }
            for ring in found.iter_mut().flat_map(|f| &mut f.facts.rings) {
                ring.unread = Some(format!("{}: {why}", procs::RING_UNREAD));
            }
            // `owners` says BPF was not used, which cgroup programs need too.
            (
                OwnersRead {
                    source: OwnerSource::Inode,
                    why: Some(why),
                },
                None,
            )
        }
    }
}

/// The cgroup BPF programs acting on each process's sockets, by the cgroup the iterator
/// gave for it.
fn cgroup_programs(
    view: &super::task_files::KernelFiles,
    found: &mut [procs::Found],
) -> Result<(), String> {
    let of = view.cgroups();
    let mut ids: Vec<u64> = found
        .iter()
        .filter_map(|f| of.get(&f.facts.pid).copied())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let programs = super::cgroup_bpf::programs(&ids)?;
    for f in found.iter_mut() {
        if let Some(list) = of.get(&f.facts.pid).and_then(|id| programs.get(id)) {
            f.facts.cgroup_programs.clone_from(list);
        }
    }
    Ok(())
}

/// Marks the held sockets found in none of the namespace's tables, and asks each what it
/// is and where it was made: such a socket may be of another namespace, or not connected
/// yet (rare, so the cost of asking is too).
fn probe_unlisted(mut processes: Vec<ProcessFacts>, unlisted: &[u64]) -> Vec<ProcessFacts> {
    if unlisted.is_empty() {
        return processes;
    }
    for p in &mut processes {
        for s in &mut p.sockets {
            if unlisted.binary_search(&s.inode).is_ok() {
                s.unlisted = true;
                // The kernel's view already said; a fixed-file socket has no descriptor.
                if s.probed.is_none() && s.fixed_slot.is_none() {
                    s.probed = super::sockprobe::probe(p.pid, s.tid, s.fd, s.inode).ok();
                }
            }
        }
    }
    processes
}

/// The id maps of each namespace's owning user namespace, from a process living in it
/// (or meshleak's own, when it owns the namespace): ids in rules are interpreted there.
fn owner_maps(netns: &mut [NetnsFacts]) {
    let own = super::userns::own().ok();
    let mut known: BTreeMap<u64, procs::Maps> = netns
        .iter()
        .flat_map(|n| &n.processes)
        .map(|p| (p.userns, (p.uid_map.clone(), p.gid_map.clone())))
        .collect();
    if let Some(own) = own.filter(|o| !known.contains_key(o)) {
        known.insert(own, procs::own_id_maps());
    }
    for n in netns.iter_mut() {
        // Without an owner the namespace's gaps already say why.
        let Some(owner) = n.owner.as_mut() else {
            continue;
        };
        match owner.userns.first().and_then(|u| known.get(u)) {
            Some((uids, gids)) => {
                owner.uid_map = Some(uids.clone());
                owner.gid_map = Some(gids.clone());
            }
            None => n.gaps.push(format!(
                "the id maps of the user namespace owning it ({}): no process in it was read, so ids are compared as meshleak's user namespace sees them",
                owner.userns.first().copied().unwrap_or(0)
            )),
        }
    }
}

/// Reads a namespace through a bind mount or any of its processes that still exists;
/// `Ok(None)` when every way in has vanished.
fn read_one(
    opts: &ScanOptions,
    inode: u64,
    ns: &Ns,
    cache: &NftCache,
) -> Result<Option<super::NetnsRead>, CollectError> {
    let mut stuck = STUCK.lock().unwrap_or_else(|e| e.into_inner());
    stuck.retain(|_, finished| !finished.load(Ordering::Acquire));
    if stuck.contains_key(&inode) {
        return Err(CollectError::Stuck { inode });
    }
    drop(stuck);
    let ways = ns
        .paths
        .iter()
        .map(|p| Netns::Path(p.into()))
        .chain(ns.processes.iter().map(|p| Netns::Pid {
            pid: p.pid,
            proc_root: opts.proc_root.clone(),
        }));
    let held: Vec<u64> = ns
        .processes
        .iter()
        .flat_map(|p| p.sockets.iter().map(|s| s.inode))
        .collect();
    for way in ways {
        // The pid may have been reused by a process in another namespace.
        if netns_inode(&way.file()).ok() != Some(inode) {
            continue;
        }
        match read_netns(
            &way,
            cache,
            Some(opts.netns_deadline),
            held.clone(),
            !opts.only.is_empty(),
        ) {
            Ok(read) => return Ok(Some(read)),
            Err(CollectError::Netns(NetnsError::Open { cause, .. })) if procs::vanished(&cause) => {
                continue;
            }
            Err(CollectError::Netns(NetnsError::Deadline {
                path,
                after,
                finished,
            })) => {
                STUCK
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(inode, finished.clone());
                return Err(CollectError::Netns(NetnsError::Deadline {
                    path,
                    after,
                    finished,
                }));
            }
            // `ip netns del` between listing and entering: the bind mount is gone and the
            // file left behind is no namespace (setns says EINVAL). Vanished, not an error.
            Err(CollectError::Netns(NetnsError::Enter { .. }))
                if !is_nsfs(&way.file()) || netns_inode(&way.file()).ok() != Some(inode) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Whether a file is a namespace file (nsfs).
/// `--proc-root` must be a proc file system: anything else (a typo, `/sys`, an empty
/// directory) would list no processes and make every namespace look empty.
fn check_proc_root(root: &std::path::Path) -> Result<(), CollectError> {
    let not_proc = |why: String| CollectError::NotProc {
        path: root.display().to_string(),
        why,
    };
    let fs = nix::sys::statfs::statfs(root).map_err(|e| not_proc(e.desc().to_string()))?;
    if fs.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        return Err(not_proc(format!(
            "it is not a proc file system (file system type {:?})",
            fs.filesystem_type()
        )));
    }
    Ok(())
}

impl ScanOptions {
    /// The node's name reports carry: `node_name` when given, else the hostname.
    pub fn node(&self) -> String {
        self.node_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(hostname)
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}
