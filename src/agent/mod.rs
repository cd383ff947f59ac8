//! `meshleak agent`: scans on start and then every interval (with jitter), one scan at a
//! time on a dedicated thread (namespaces are entered there, never on a tokio worker);
//! serves metrics and health on one listener and the last report on another (loopback by
//! default: it shows process details); logs one line per new and resolved finding.

mod changes;
mod follow;
mod http;
mod listener;
pub(crate) mod log;
mod metrics;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{Mutex as AsyncMutex, watch};

use log::{LogFormat, line};
use meshleak_collect::scan::{self, ScanOptions};
use meshleak_core::report;
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
    /// The report's JSON (docs/report-schema.md).
    pub json: String,
    /// Its findings as PolicyReport objects (`?format=policyreport`).
    pub policy_report: String,
}

/// What the HTTP handlers and the scan loop share.
pub(crate) struct State {
    opts: AgentOptions,
    metrics: Arc<metrics::Metrics>,
    /// Hands each scan's meshed namespaces to the connection follower.
    follower: Mutex<follow::Handle>,
    /// The last successful scan's report, rendered once per scan.
    last: Mutex<Option<Arc<Rendered>>>,
    /// What the last scan could not read (its report's `incomplete`): while not empty the
    /// agent is not ready, since its answers may miss bypasses.
    incomplete: Mutex<Vec<String>>,
    /// The errors and incomplete lines already logged (the last scan's).
    logged: Mutex<std::collections::HashSet<String>>,
    /// Held while a scan runs: one at a time.
    scanning: AsyncMutex<()>,
    last_fresh: Mutex<Option<Instant>>,
    previous: Mutex<Option<changes::Index>>,
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
    let follower = follow::start(metrics.clone(), fmt, opts.scan.proc_root.clone())?;
    let state = Arc::new(State {
        metrics,
        follower: Mutex::new(follower),
        opts,
        last: Mutex::new(None),
        incomplete: Mutex::new(Vec::new()),
        logged: Mutex::new(Default::default()),
        scanning: AsyncMutex::new(()),
        last_fresh: Mutex::new(None),
        previous: Mutex::new(None),
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
        }),
    );
    let scans = tokio::spawn(scan_loop(state.clone(), stop_rx));
    shutdown_signal(fmt).await;
    line(fmt, "info", "stopping", json!({}));
    let _ = stop_tx.send(true);
    scans.abort();
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

async fn scan_loop(state: Arc<State>, mut stop: watch::Receiver<bool>) {
    loop {
        let _ = scan_now(&state).await;
        let wait = jittered(state.opts.interval);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The interval give or take 10%, so agents started together do not scan in step.
fn jittered(interval: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos()) as f64
        / 1e9;
    interval.mul_f64(0.9 + 0.2 * nanos)
}

/// Runs one scan on a dedicated thread (waiting for a running one to finish first),
/// updates metrics and the stored report, and logs what changed.
pub(crate) async fn scan_now(state: &Arc<State>) -> Result<Arc<Rendered>, String> {
    let _one = state.scanning.lock().await;
    let opts = state.opts.scan.clone();
    let started = Instant::now();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("meshleak-scan".into())
        .spawn(move || {
            let result = scan::scan(&opts)
                .map(|s| {
                    let r = report::build(&s, started.elapsed().as_millis() as u64);
                    let watches = meshleak_core::observe::watches(&s, &r);
                    (r, watches)
                })
                .map_err(|e| e.to_string());
            let _ = tx.send(result);
        })
        .map_err(|e| format!("cannot start a scan thread: {e}"))?;
    let result = rx.await.map_err(|_| "the scan thread died".to_string())?;
    let fmt = state.opts.log_format;
    let elapsed = started.elapsed().as_secs_f64();
    state.metrics.duration.observe(elapsed);
    match result {
        Ok((report, watches)) => {
            state.follower.lock().unwrap().follow(watches);
            state.metrics.scans.inc();
            state.metrics.observe(&report);
            log_changes(state, &report);
            // Each problem is logged when it appears, not again every scan.
            let mut seen = state.logged.lock().unwrap();
            for e in report.errors.iter().filter(|e| !seen.contains(*e)) {
                line(fmt, "warn", "not read", json!({ "error": e }));
            }
            for i in report.incomplete.iter().filter(|i| !seen.contains(*i)) {
                line(fmt, "warn", "incomplete", json!({ "not_read": i }));
            }
            *seen = report
                .errors
                .iter()
                .chain(&report.incomplete)
                .cloned()
                .collect();
            drop(seen);
            *state.incomplete.lock().unwrap() = report.incomplete.clone();
            let text = Arc::new(Rendered {
                json: meshleak_core::json::to_string_pretty(&report).unwrap_or_default(),
                policy_report: meshleak_core::json::to_string_pretty(
                    &meshleak_core::policyreport::build(&report),
                )
                .unwrap_or_default(),
            });
            *state.last.lock().unwrap() = Some(text.clone());
            drop(report);
            return_memory();
            Ok(text)
        }
        Err(e) => {
            state
                .metrics
                .errors
                .get_or_create(&metrics::Stage {
                    stage: "scan".into(),
                })
                .inc();
            line(fmt, "error", "scan failed", json!({ "error": e }));
            Err(e)
        }
    }
}

fn log_changes(state: &State, report: &Report) {
    let now = changes::index(report);
    let mut previous = state.previous.lock().unwrap();
    let before = previous.take().unwrap_or_default();
    for c in changes::diff(&before, &now) {
        let level = if c.event == "new" && c.severity == "high" {
            "warn"
        } else {
            "info"
        };
        let msg = format!("finding {}", c.event);
        line(
            state.opts.log_format,
            level,
            &msg,
            serde_json::to_value(&c).unwrap_or_default(),
        );
    }
    *previous = Some(now);
}
