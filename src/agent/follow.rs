//! Connections between scans: one dedicated thread follows the conntrack NEW events of every
//! meshed namespace the last scan found, looks each untranslated outbound connection's socket
//! up by its 5-tuple, and counts and logs those that are not the proxy's as observed
//! bypasses. A connection that opened and closed between two scans is seen this way only.
//!
//! Bounded: one pair of sockets and a fixed-size state per namespace, dropped (and with them
//! the namespace, which a socket keeps alive) once a scan no longer finds it; log lines at
//! most [`LOG_LINES`] per namespace per [`LOG_WINDOW`], the rest counted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use serde_json::json;

use super::epoll::{Epoll, latest_plan};
use super::events::{Bus, Event};
use super::log::{LogFormat, line};
use super::metrics::{Metrics, NO_POD, Namespace};
use super::status::{Recent, Sources, now};
use meshleak_collect::follow::{FdTables, Sockets};
use meshleak_core::explain::addr_port;
use meshleak_core::observe::{Owner, Watch};
use meshleak_core::snapshot::Tracked;

/// Log lines per namespace per window; the rest are counted in one line when it ends.
const LOG_LINES: u32 = 10;
const LOG_WINDOW: Duration = Duration::from_secs(60);
/// How long the thread waits for events before it looks for a new plan.
const TICK_MS: libc::c_int = 250;
/// One receive buffer for every socket: netlink messages of a burst, read in turn.
const BUFFER: usize = 1 << 16;

/// The follower's end the scan loop holds: each scan hands it the namespaces to follow.
pub(super) struct Handle(Sender<Vec<Watch>>);

impl Handle {
    /// Replaces what is followed (new namespaces opened, gone ones closed).
    pub(super) fn follow(&self, watches: Vec<Watch>) {
        let _ = self.0.send(watches);
    }
}

/// Starts the follower thread. It stops when the handle is dropped.
pub(super) fn start(
    metrics: Arc<Metrics>,
    format: LogFormat,
    proc_root: PathBuf,
    recent: Recent,
    sources: Sources,
    bus: Bus,
) -> std::io::Result<Handle> {
    let (tx, rx) = mpsc::channel();
    sources.set(
        "connections",
        "events",
        "conntrack NEW events in meshed namespaces".into(),
    );
    let out = Out {
        metrics,
        format,
        recent,
        bus,
    };
    std::thread::Builder::new()
        .name("meshleak-follow".into())
        .spawn(move || run(&rx, &out, &proc_root))?;
    Ok(Handle(tx))
}

/// Where the follower's findings go: counters, log lines, the recent events.
struct Out {
    metrics: Arc<Metrics>,
    format: LogFormat,
    recent: Recent,
    /// Says when a namespace begins to be followed: a connection made between the scan
    /// and now is in its conntrack table, which a re-read judges.
    bus: Bus,
}

/// One followed namespace: what the last scan said of it, its sockets, its log window.
struct Followed {
    watch: Watch,
    sockets: Sockets,
    window: Window,
    fds: FdTables,
}

/// Descriptor-table reads the follower may make a second, over all namespaces: telling the
/// proxy's sockets from those of an app that shares its uid takes reading their processes'
/// descriptors (about 20 microseconds each; a busy proxy holds hundreds), which would make
/// the follower's cost that of the worst-configured pods. Past the budget a connection is
/// counted as unattributed, never guessed; an app with the proxy's uid is an
/// `identity-exempt` finding at every scan anyway. 200 reads cost about 0.4% of a core.
const READS_PER_SECOND: f64 = 200.0;

/// A token bucket of [`READS_PER_SECOND`], as deep as one second of them.
struct Budget {
    tokens: f64,
    at: Instant,
}

impl Budget {
    fn new() -> Budget {
        Budget {
            tokens: READS_PER_SECOND,
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * READS_PER_SECOND;
        self.tokens = (self.tokens + refill).min(READS_PER_SECOND);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Log lines of one namespace in the current window.
struct Window {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

impl Window {
    fn new() -> Window {
        Window {
            started: Instant::now(),
            logged: 0,
            suppressed: 0,
        }
    }

    /// Whether one more line may be logged now; when a window has ended, first says how
    /// many of its lines were not logged, and starts a new one.
    fn admit(&mut self, format: LogFormat, w: &Watch) -> bool {
        self.roll(format, w);
        if self.logged < LOG_LINES {
            self.logged += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// Ends the window once it is over, logging what it did not.
    fn roll(&mut self, format: LogFormat, w: &Watch) {
        if self.started.elapsed() < LOG_WINDOW {
            return;
        }
        if self.suppressed > 0 {
            line(
                format,
                "warn",
                "observed bypasses not logged",
                json!({ "netns": w.inode, "pod": w.pod, "count": self.suppressed, "window_s": LOG_WINDOW.as_secs() }),
            );
        }
        *self = Window::new();
    }
}

fn run(rx: &Receiver<Vec<Watch>>, out: &Out, proc_root: &Path) {
    let format = out.format;
    let mut followed: HashMap<u64, Followed> = HashMap::new();
    // Namespaces that could not be opened, logged once each.
    let mut refused: HashMap<u64, String> = HashMap::new();
    let mut buf = vec![0u8; BUFFER];
    let epoll = match Epoll::new() {
        Ok(e) => e,
        Err(e) => {
            line(
                format,
                "error",
                "cannot follow connections between scans",
                json!({ "error": format!("epoll_create1: {e}") }),
            );
            return;
        }
    };
    let mut ready = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut reads = Budget::new();
    let mut newcomers = Newcomers::default();
    let mut rolled = Instant::now();
    loop {
        let Ok(plan) = latest_plan(rx) else { return };
        if let Some(plan) = plan {
            reconcile(&mut followed, &mut refused, plan, &epoll, out, proc_root);
        }
        for inode in epoll.wait(&mut ready, TICK_MS) {
            if let Some(f) = followed.get_mut(&inode) {
                handle(f, &mut buf, &mut reads, &mut newcomers, out, proc_root);
            }
        }
        // A window's count of lines not logged is told once it ends, even if the namespace
        // has been quiet since.
        if rolled.elapsed() >= Duration::from_secs(1) {
            rolled = Instant::now();
            for f in followed.values_mut() {
                f.window.roll(format, &f.watch);
            }
        }
    }
}

/// Follows what `plan` names: opens new namespaces, drops gone ones (closing their
/// sockets lets the kernel free them), keeps the rest with the scan's new facts.
fn reconcile(
    followed: &mut HashMap<u64, Followed>,
    refused: &mut HashMap<u64, String>,
    plan: Vec<Watch>,
    epoll: &Epoll,
    out: &Out,
    proc_root: &Path,
) {
    let (metrics, format) = (&*out.metrics, out.format);
    followed.retain(|inode, _| plan.iter().any(|w| w.inode == *inode));
    refused.retain(|inode, _| plan.iter().any(|w| w.inode == *inode));
    for w in plan {
        if let Some(f) = followed.get_mut(&w.inode) {
            f.watch = w;
            f.fds.clear();
            continue;
        }
        match Sockets::open(&w, proc_root).and_then(|sockets| {
            epoll
                .add(sockets.fd(), w.inode)
                .map_err(|e| format!("epoll_ctl: {e}"))
                .map(|()| sockets)
        }) {
            Ok(sockets) => {
                let label = label(&w);
                // The series exist from the start, at 0: an alert needs no absent().
                let _ = metrics.observed.get_or_create(&label);
                let _ = metrics.unattributed.get_or_create(&label);
                let _ = metrics.events_lost.get_or_create(&label);
                refused.remove(&w.inode);
                out.bus.send(Event::Followed { inode: w.inode });
                followed.insert(
                    w.inode,
                    Followed {
                        watch: w,
                        sockets,
                        window: Window::new(),
                        fds: FdTables::default(),
                    },
                );
            }
            Err(e) => {
                if refused.get(&w.inode) != Some(&e) {
                    line(
                        format,
                        "warn",
                        "cannot follow connections",
                        json!({ "netns": w.inode, "pod": w.pod, "error": e }),
                    );
                    refused.insert(w.inode, e);
                }
            }
        }
    }
    metrics.followed.set(followed.len() as i64);
}

fn label(w: &Watch) -> Namespace {
    Namespace {
        namespace: w.namespace.clone().unwrap_or_else(|| NO_POD.to_string()),
    }
}

/// Reads one namespace's waiting events and judges each new connection.
fn handle(
    f: &mut Followed,
    buf: &mut [u8],
    reads: &mut Budget,
    newcomers: &mut Newcomers,
    out: &Out,
    proc_root: &Path,
) {
    let (events, lost) = f.sockets.drain(buf);
    let metrics = &out.metrics;
    let label = label(&f.watch);
    if lost {
        metrics.events_lost.get_or_create(&label).inc();
    }
    for t in events.iter().filter(|t| f.watch.escaped(t)) {
        let socket = f.sockets.socket(t);
        let fds = &mut f.fds;
        let mut read_fds = |pid, inode| reads.take() && fds.holds(proc_root, pid, inode);
        let owner = f.watch.owner(socket.as_ref(), &mut read_fds);
        match owner {
            Owner::Proxy => {}
            Owner::Gone | Owner::Unknown { .. } => {
                metrics.unattributed.get_or_create(&label).inc();
            }
            Owner::App { uid, app } => {
                metrics.observed.get_or_create(&label).inc();
                if f.window.admit(out.format, &f.watch) {
                    let app = app.or_else(|| {
                        let s = socket.as_ref()?;
                        f.watch
                            .holder(s, &mut read_fds)
                            .or_else(|| newcomer(proc_root, &f.watch, s, newcomers, &mut read_fds))
                    });
                    log_bypass(out, &f.watch, t, uid, app.as_ref());
                }
            }
        }
    }
}

/// The process holding `socket` among those in the namespace that the last scan did not
/// see (started since): its pid, uid and name. Each descriptor table read spends the
/// budget; past it, `None` (unattributed), never a guess.
fn newcomer(
    proc_root: &Path,
    w: &Watch,
    socket: &meshleak_core::snapshot::SocketFacts,
    newcomers: &mut Newcomers,
    holds: &mut dyn FnMut(u32, u64) -> bool,
) -> Option<meshleak_core::observe::App> {
    let mut find = |pids: &[u32]| {
        pids.iter()
            .copied()
            .filter(|pid| !w.pids.contains(pid))
            .find(|&pid| holds(pid, socket.inode))
    };
    let pid = match find(newcomers.of(proc_root, w.inode, false)) {
        Some(pid) => Some(pid),
        // Started since the last walk, perhaps: one more, if that walk is old enough.
        None => find(newcomers.of(proc_root, w.inode, true)),
    }?;
    let comm =
        std::fs::read_to_string(proc_root.join(pid.to_string()).join("comm")).unwrap_or_default();
    Some(meshleak_core::observe::App {
        pid,
        uid: socket.uid,
        comm: comm.trim_end().to_string(),
    })
}

/// The processes of each network namespace, from one walk of /proc (a readlink per
/// process) made at most every [`Newcomers::EVERY`], for all followed namespaces: walking
/// for each connection to name cost a third of a core at 1,000 connections a second.
#[derive(Default)]
struct Newcomers {
    walked: Option<Instant>,
    by_netns: HashMap<u64, Vec<u32>>,
}

impl Newcomers {
    const EVERY: Duration = Duration::from_millis(250);

    /// The pids of namespace `inode`; walked again first when there was no walk yet, or
    /// when `again` and the last one is old enough.
    fn of(&mut self, proc_root: &Path, inode: u64, again: bool) -> &[u32] {
        let due = match self.walked {
            None => true,
            Some(at) => again && at.elapsed() >= Self::EVERY,
        };
        if due {
            self.walk(proc_root);
        }
        self.by_netns.get(&inode).map_or(&[], Vec::as_slice)
    }

    fn walk(&mut self, proc_root: &Path) {
        self.walked = Some(Instant::now());
        self.by_netns.clear();
        let Ok(entries) = std::fs::read_dir(proc_root) else {
            return;
        };
        for pid in entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        {
            let link = proc_root.join(pid.to_string()).join("ns/net");
            if let Ok(netns) = meshleak_collect::procs::netns_inode(&link) {
                self.by_netns.entry(netns).or_default().push(pid);
            }
        }
    }
}

fn log_bypass(
    out: &Out,
    w: &Watch,
    t: &Tracked,
    uid: u32,
    app: Option<&meshleak_core::observe::App>,
) {
    let (src, dst) = (addr_port(&t.src, t.sport), addr_port(&t.dst, t.dport));
    line(
        out.format,
        "warn",
        "observed bypass",
        json!({
            "netns": w.inode,
            "pod": w.pod,
            "proto": t.proto.name(),
            "src": src,
            "dst": dst,
            "translated_to": t.translated_to().map(|(a, p)| addr_port(&a, p)),
            "uid": uid,
            "pid": app.map(|a| a.pid),
            "comm": app.map(|a| a.comm.clone()),
        }),
    );
    out.recent.push(meshleak_core::schema::AgentEvent {
        at: now(),
        kind: "observed-bypass",
        netns: w.inode,
        pod: w.pod.clone(),
        pid: app.map(|a| a.pid),
        comm: app.map(|a| a.comm.clone()),
        message: format!(
            "{} {src} -> {dst} left untranslated, socket uid {uid}{}",
            t.proto.name(),
            if app.is_none() {
                "; held by no process found (unattributed)"
            } else {
                ""
            }
        ),
        rule: None,
    });
}
