//! `meshleak agent`: a small event loop. Sources (`namespaces`, `rules`, `processes`, and
//! `follow` for connections) turn what the kernel says into typed events; one owner
//! (`owner`) holds the per-namespace state, reads again what an event concerns, and scans
//! the whole node at every interval (with jitter) as the reconciliation, one read at a
//! time on a dedicated thread (namespaces are entered there, never on a tokio worker).
//! Metrics and health are served on one listener and the last report, with the sources'
//! modes and the recent events, on another (loopback by default: it shows process
//! details); logs say each new and resolved finding, rule change and observed bypass.

mod changes;
mod epoll;
mod events;
mod follow;
mod http;
mod listener;
pub(crate) mod log;
mod metrics;
mod namespaces;
mod owner;
mod processes;
mod rules;
mod status;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{Mutex as AsyncMutex, watch};

use log::{LogFormat, line};
use meshleak_collect::scan::ScanOptions;
use meshleak_core::schema::Report;

pub(crate) struct AgentOptions {
    pub interval: Duration,
    pub listen: SocketAddr,
    pub report_listen: SocketAddr,
    pub scan: ScanOptions,
    pub log_format: LogFormat,
    pub pod_labels: bool,
    /// The shortest time between two on-demand (`/report?fresh=1`) scans.
    pub fresh_every: Duration,
}

/// A report in the forms `/report` serves.
pub(crate) struct Rendered {
    /// The report (docs/report-schema.md), written with the agent's status when served.
    pub report: Report,
    /// Its findings as PolicyReport objects (`?format=policyreport`).
    pub policy_report: String,
}

/// What the HTTP handlers and the scan loop share.
pub(crate) struct State {
    opts: AgentOptions,
    metrics: Arc<metrics::Metrics>,
    /// Hands each scan's meshed namespaces to the connection follower.
    follower: Mutex<follow::Handle>,
    /// Hands each scan's pod namespaces to the rules source.
    rules: Mutex<rules::Handle>,
    /// Each event source's mode, and the recent events.
    sources: status::Sources,
    recent: status::Recent,
    bus: events::Bus,
    /// The last successful scan's report, rendered once per scan.
    last: Mutex<Option<Arc<Rendered>>>,
    /// What the last scan could not read (its report's `incomplete`): while not empty the
    /// agent is not ready, since its answers may miss bypasses.
    incomplete: Mutex<Vec<String>>,
    /// The errors and incomplete lines already logged (the last scan's).
    logged: Mutex<std::collections::HashSet<String>>,
    /// The per-namespace state, held while a scan runs: one at a time.
    held: AsyncMutex<owner::Held>,
    last_fresh: Mutex<Option<Instant>>,
}

pub(crate) fn run(opts: AgentOptions) -> anyhow::Result<()> {
    limit_malloc_arenas();
    raise_fd_limit();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(opts))
}

/// Two malloc arenas at most. Every scan reads each namespace on a thread of its own, and
/// glibc gives threads arenas of their own (up to eight per core) whose freed memory it
/// keeps: at 250 pods and a scan every 2 s the agent grew from 38 to 57 MiB in 90 s; with
/// two arenas it stays at 26 MiB, and a scan is as fast.
/// The soft descriptor limit raised to the hard one: a node of many pods needs a
/// descriptor per namespace read at once, plus the listeners' connections, and the usual
/// soft limit (1024) is a quarter of what containers are allowed.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write one rlimit struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Hands freed heap memory back to the system (after a scan, and after a burst of
/// connections): glibc otherwise keeps it, and the agent's RSS stays at its peak.
pub(crate) fn return_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

async fn serve(opts: AgentOptions) -> anyhow::Result<()> {
    let fmt = opts.log_format;
    log::set_node(&opts.scan.node());
    let metrics = Arc::new(metrics::Metrics::new(opts.pod_labels, &opts.scan.node()));
    let sources = status::Sources::default();
    let recent = status::Recent::default();
    let bus = events::Bus::new(metrics.overruns.clone());
    let follower = follow::start(
        metrics.clone(),
        fmt,
        opts.scan.proc_root.clone(),
        recent.clone(),
        sources.clone(),
        bus.clone(),
    )?;
    let rules = rules::start(
        bus.clone(),
        sources.clone(),
        fmt,
        opts.scan.proc_root.clone(),
        opts.scan.host_root.clone(),
    )?;
    namespaces::start(
        opts.scan.netns_dirs.clone(),
        bus.clone(),
        sources.clone(),
        fmt,
    );
    processes::start(
        opts.scan.proc_root.clone(),
        bus.clone(),
        sources.clone(),
        fmt,
    );
    let state = Arc::new(State {
        metrics,
        follower: Mutex::new(follower),
        rules: Mutex::new(rules),
        sources,
        recent,
        bus,
        opts,
        last: Mutex::new(None),
        incomplete: Mutex::new(Vec::new()),
        logged: Mutex::new(Default::default()),
        held: AsyncMutex::new(owner::Held::default()),
        last_fresh: Mutex::new(None),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let servers = http::start(state.clone(), stop_rx.clone()).await?;
    line(
        fmt,
        "info",
        "started",
        json!({
            "listen": state.opts.listen.to_string(),
            "report_listen": state.opts.report_listen.to_string(),
            "interval_s": state.opts.interval.as_secs_f64(),
            "node": state.opts.scan.node(),
            "sources": state.sources.all(),
        }),
    );
    let owner = tokio::spawn(owner::run(state.clone(), stop_rx));
    shutdown_signal(fmt).await;
    line(fmt, "info", "stopping", json!({}));
    let _ = stop_tx.send(true);
    owner.abort();
    for s in servers {
        // In-flight requests are answered; a stuck one is cut after a few seconds.
        let _ = tokio::time::timeout(Duration::from_secs(5), s).await;
    }
    Ok(())
}

/// Returns on SIGTERM or SIGINT. SIGHUP (which would kill the agent without a word) is
/// logged and ignored: options are read at start only.
async fn shutdown_signal(fmt: LogFormat) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        line(fmt, "error", "cannot handle signals; stopping", json!({}));
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => line(
                fmt,
                "info",
                "SIGHUP ignored: options are read at start; restart to change them",
                json!({}),
            ),
        }
    }
}
