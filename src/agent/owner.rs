//! The one owner of the per-namespace state: it takes the sources' events, coalesces them
//! per namespace, asks collection to read again only the namespaces they concern (a whole
//! scan at every interval, at `/report?fresh=1`, and after an overflow), folds the result
//! into the node's snapshot, asks the core to judge it, and publishes: metrics, the
//! report, log lines and the recent events, and the plans of the followers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::watch;

use super::events::{Pending, RuleChange};
use super::log::line;
use super::metrics;
use super::rules::Entrance;
use super::status;
use super::{Rendered, State, changes, return_memory};
use meshleak_collect::scan::{self, ScanOptions};
use meshleak_core::nft::msg::Commit;
use meshleak_core::schema::{AgentEvent, ProcessVerdict, Report};
use meshleak_core::snapshot::Snapshot;

/// How long events of a namespace are gathered before it is read again: a pod's start
/// (sandbox, init container's rules, app) comes as a burst.
const GATHER: Duration = Duration::from_millis(100);
/// A re-read's cost sets the pause before the next one (at most a fifth of a core over a
/// storm); never shorter than [`GATHER`].
const DUTY: u32 = 4;
/// A namespace whose only news is process events is read at most this often: the first
/// exec in a quiet pod is judged at once, an exec loop twice a second.
const PROCESS_SPACING: Duration = Duration::from_millis(500);

/// What the owner holds between scans.
#[derive(Default)]
pub(super) struct Held {
    snapshot: Option<Snapshot>,
    index: Option<changes::Index>,
    /// Each process's last verdict and ids, by namespace and pid.
    judged: Judgements,
    /// Each namespace's judgement before its last rule change (see `log_rule_changes`).
    baseline: Judgements,
    /// Namespaces whose rules were read changed before any event said so.
    unexplained: HashSet<u64>,
}

/// Judgements by namespace, then pid.
type Judgements = HashMap<u64, HashMap<u32, Judgement>>;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Judgement {
    verdict: ProcessVerdict,
    uid: u32,
    gid: u32,
    comm: String,
}

/// The owner's loop: events in, re-reads out; a whole scan each interval (jittered), and
/// when a source's kernel buffer overran.
pub(super) async fn run(state: Arc<State>, mut stop: watch::Receiver<bool>) {
    let _ = whole(&state, BTreeMap::new()).await;
    let mut next_full = Instant::now() + jittered(state.opts.interval);
    // What is pending per namespace, and since when.
    let mut dirty: BTreeMap<u64, (Pending, Instant)> = BTreeMap::new();
    let mut last_read: HashMap<u64, Instant> = HashMap::new();
    let mut not_before = Instant::now();
    loop {
        for (inode, p) in state.bus.take() {
            state.metrics.process_events.inc_by(p.processes as u64);
            dirty
                .entry(inode)
                .or_insert_with(|| (Pending::default(), Instant::now()))
                .0
                .merge(p);
        }
        // When each namespace is due: its events gathered a moment; one with only process
        // events (an exec loop) no sooner than PROCESS_SPACING after its last read.
        let due_of = |inode: &u64, (p, since): &(Pending, Instant)| {
            let gathered = *since + GATHER;
            match last_read.get(inode) {
                Some(read) if p.processes_only() => gathered.max(*read + PROCESS_SPACING),
                _ => gathered,
            }
        };
        let mut due = dirty
            .iter()
            .map(|(i, d)| due_of(i, d))
            .min()
            .unwrap_or(next_full);
        if state.bus.overflow_owed() {
            due = Instant::now();
        }
        let due = due.max(not_before).min(next_full);
        tokio::select! {
            _ = state.bus.wait() => continue,
            _ = tokio::time::sleep_until(due.into()) => {}
            _ = stop.changed() => {
                state.bus.close();
                return;
            }
        }
        let started = Instant::now();
        let overflowed = state.bus.take_overflow();
        if overflowed || started >= next_full {
            // A whole scan reads every namespace; what is pending is judged with it.
            let causes = std::mem::take(&mut dirty)
                .into_iter()
                .map(|(i, (p, _))| (i, p))
                .collect();
            let _ = whole(&state, causes).await;
            next_full = Instant::now() + jittered(state.opts.interval);
            last_read.clear();
        } else {
            let ready: Vec<u64> = dirty
                .iter()
                .filter(|(i, d)| due_of(i, d) <= started)
                .map(|(i, _)| *i)
                .collect();
            if ready.is_empty() {
                continue;
            }
            let causes: BTreeMap<u64, Pending> = ready
                .iter()
                .filter_map(|i| Some((*i, dirty.remove(i)?.0)))
                .collect();
            let _ = rescan(&state, causes).await;
            for i in ready {
                last_read.insert(i, Instant::now());
            }
            last_read.retain(|_, t| t.elapsed() < PROCESS_SPACING);
        }
        // A storm that overruns a kernel buffer over and over gets whole scans at half the
        // pace of re-reads: they cost the node's every namespace.
        let duty = if overflowed { 2 * DUTY } else { DUTY };
        not_before = Instant::now() + (started.elapsed() * duty).max(GATHER);
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

/// What a scan thread hands back: the node's snapshot and its judgement.
struct Scanned {
    snapshot: Snapshot,
    report: Report,
    watches: Vec<meshleak_core::observe::Watch>,
    /// Namespaces whose rules differ from the previous snapshot's.
    rules_moved: HashSet<u64>,
    /// The namespaces the previous snapshot held.
    known_before: HashSet<u64>,
}

/// Runs `work` on a dedicated thread (namespaces are entered there, never on a tokio
/// worker) and waits for it.
async fn on_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("meshleak-scan".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| format!("cannot start a scan thread: {e}"))?;
    rx.await.map_err(|_| "the scan thread died".to_string())
}

/// Scans with `opts` on a scan thread and has `fold` make the node's snapshot of the held
/// one (taken) and what was read. A scan that fails puts the held snapshot back, so what was
/// known stays for the next try.
async fn read(
    held: &mut Held,
    opts: ScanOptions,
    fold: impl FnOnce(Option<Snapshot>, Snapshot) -> Scanned + Send + 'static,
) -> Result<Scanned, String> {
    let previous = held.snapshot.take();
    let result = on_thread(move || match scan::scan(&opts) {
        Ok(read) => Ok(fold(previous, read)),
        Err(e) => Err((e.to_string(), Box::new(previous))),
    })
    .await;
    match result {
        Ok(Ok(scanned)) => Ok(scanned),
        Ok(Err((e, previous))) => {
            held.snapshot = *previous;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Judges `snapshot`; `rules_moved` and `known_before` say what changed since the last.
fn judge(
    snapshot: Snapshot,
    rules_moved: HashSet<u64>,
    known_before: HashSet<u64>,
    started: Instant,
) -> Scanned {
    let report = meshleak_core::report::build(&snapshot, started.elapsed().as_millis() as u64);
    let watches = meshleak_core::observe::watches(&snapshot, &report);
    Scanned {
        snapshot,
        report,
        watches,
        rules_moved,
        known_before,
    }
}

/// The namespaces of `new` whose rules differ from what `previous` held of them.
fn rules_moved(previous: Option<&Snapshot>, new: &Snapshot) -> HashSet<u64> {
    new.netns
        .iter()
        .filter(|n| {
            previous
                .and_then(|p| p.netns.iter().find(|o| o.inode == n.inode))
                .is_some_and(|o| o.rules != n.rules)
        })
        .map(|n| n.inode)
        .collect()
}

/// A whole scan (waiting for a running one to finish first), for `/report?fresh=1`.
pub(crate) async fn scan_now(state: &Arc<State>) -> Result<Arc<Rendered>, String> {
    whole(state, BTreeMap::new()).await
}

/// A whole scan, with what events are pending for its namespaces.
async fn whole(
    state: &Arc<State>,
    causes: BTreeMap<u64, Pending>,
) -> Result<Arc<Rendered>, String> {
    let mut held = state.held.lock().await;
    let opts = state.opts.scan.clone();
    let started = Instant::now();
    let result = read(&mut held, opts, move |previous, s| {
        let moved = rules_moved(previous.as_ref(), &s);
        judge(s, moved, known(previous.as_ref()), started)
    })
    .await;
    state
        .metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(scanned) => {
            state.metrics.scans.inc();
            Ok(publish(state, &mut held, scanned, &causes, true))
        }
        Err(e) => {
            failed(state, &e);
            Err(e)
        }
    }
}

/// Reads again only the namespaces `causes` names, and folds them into the last whole
/// scan; without one yet, scans the whole node.
async fn rescan(state: &Arc<State>, causes: BTreeMap<u64, Pending>) -> Result<(), String> {
    let mut held = state.held.lock().await;
    if held.snapshot.is_none() {
        drop(held);
        return whole(state, causes).await.map(|_| ());
    }
    let scope: Vec<u64> = causes.keys().copied().collect();
    let opts = ScanOptions {
        only: scope.clone(),
        ..state.opts.scan.clone()
    };
    let started = Instant::now();
    let result = read(&mut held, opts, move |base, part| {
        let (moved, before) = (rules_moved(base.as_ref(), &part), known(base.as_ref()));
        let whole = match base {
            Some(mut whole) => {
                whole.merge(part, &scope);
                whole
            }
            None => part,
        };
        judge(whole, moved, before, started)
    })
    .await;
    for kind in causes.values().flat_map(Pending::kinds) {
        state
            .metrics
            .rescans
            .get_or_create(&metrics::Cause { cause: kind.into() })
            .inc();
    }
    match result {
        Ok(scanned) => {
            publish(state, &mut held, scanned, &causes, false);
            Ok(())
        }
        Err(e) => {
            failed(state, &e);
            Err(e)
        }
    }
}

fn failed(state: &State, e: &str) {
    state
        .metrics
        .errors
        .get_or_create(&metrics::Stage {
            stage: "scan".into(),
        })
        .inc();
    line(
        state.opts.log_format,
        "error",
        "scan failed",
        json!({ "error": e }),
    );
}

/// Publishes a judged snapshot: followers' plans, metrics, log lines, recent events, the
/// rendered report; keeps the snapshot for the next re-read.
fn publish(
    state: &State,
    held: &mut Held,
    scanned: Scanned,
    causes: &BTreeMap<u64, Pending>,
    whole: bool,
) -> Arc<Rendered> {
    let Scanned {
        snapshot,
        report,
        watches,
        rules_moved,
        known_before,
    } = scanned;
    let fmt = state.opts.log_format;
    state.follower.lock().unwrap().follow(watches);
    // Pods' namespaces (mounted by the runtime, or holding a container's processes) and
    // any with rules: one made by `unshare -n` in a loop is not worth five sockets each.
    state.rules.lock().unwrap().follow(
        snapshot
            .netns
            .iter()
            .filter(|n| {
                !n.host
                    && (!n.paths.is_empty()
                        || !n.rules.tables.is_empty()
                        || n.processes.iter().any(|p| {
                            meshleak_core::attribution::from_cgroup(&p.cgroup)
                                .container_id
                                .is_some()
                        }))
            })
            .map(|n| Entrance {
                inode: n.inode,
                paths: n.paths.clone(),
                pids: n.processes.iter().map(|p| p.pid).collect(),
            })
            .collect(),
    );
    state.metrics.observe(&report);
    let judged = judgements(&report);
    let first = held.index.is_none();
    record_events(state, &report, first, &held.judged, causes, &known_before);
    log_rule_changes(state, &report, held, &judged, causes, &rules_moved, whole);
    held.judged = judged;
    let now_index = changes::index(&report);
    let before = held.index.take().unwrap_or_default();
    for c in changes::diff(&before, &now_index) {
        let level = if c.event == "new" && c.severity == "high" {
            "warn"
        } else {
            "info"
        };
        let msg = format!("finding {}", c.event);
        line(
            fmt,
            level,
            &msg,
            serde_json::to_value(&c).unwrap_or_default(),
        );
    }
    held.index = Some(now_index);
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
        policy_report: meshleak_core::json::to_string_pretty(&meshleak_core::policyreport::build(
            &report,
        ))
        .unwrap_or_default(),
        report,
    });
    *state.last.lock().unwrap() = Some(text.clone());
    held.snapshot = Some(snapshot);
    return_memory();
    text
}

/// `namespace/name` of a namespace's pod, as log lines and events name it.
fn pod_name(ns: &meshleak_core::schema::NetnsReport) -> Option<String> {
    ns.pod
        .as_ref()
        .map(|p| format!("{}/{}", p.namespace, p.name))
}

/// The namespaces a snapshot holds.
fn known(s: Option<&Snapshot>) -> HashSet<u64> {
    s.map(|s| s.netns.iter().map(|n| n.inode).collect())
        .unwrap_or_default()
}

fn judgements(r: &Report) -> Judgements {
    r.netns
        .iter()
        .map(|ns| {
            let own = ns.processes.iter().filter(|p| p.lives_in.is_none());
            let judged = own
                .map(|p| {
                    let j = Judgement {
                        verdict: p.verdict,
                        uid: p.uid,
                        gid: p.gid,
                        comm: p.comm.clone(),
                    };
                    (p.pid, j)
                })
                .collect();
            (ns.inode, judged)
        })
        .collect()
}

/// The recent events a publish shows: processes newly bypassing, ids that changed,
/// namespaces new and gone. `first`: this is the agent's first scan (what it finds is not
/// new, and counters are only made, at 0, so that Prometheus sees their first increase).
fn record_events(
    state: &State,
    report: &Report,
    first: bool,
    before: &Judgements,
    causes: &BTreeMap<u64, Pending>,
    known_before: &HashSet<u64>,
) {
    let at = status::now();
    for ns in &report.netns {
        let pod = pod_name(ns);
        let k8s = metrics::Namespace::of(ns.pod.as_ref());
        let seen = state.metrics.bypassing_seen.get_or_create(&k8s).clone();
        let _ = state.metrics.rule_changes.get_or_create(&k8s);
        if first {
            continue;
        }
        let event = |kind: &'static str,
                     pid: Option<u32>,
                     comm: Option<String>,
                     message: String,
                     rule: Option<String>| AgentEvent {
            at,
            kind,
            netns: ns.inode,
            pod: pod.clone(),
            pid,
            comm,
            message,
            rule,
        };
        let none = HashMap::new();
        let before = before.get(&ns.inode).unwrap_or(&none);
        let bypassed: HashSet<(u32, u32, &str)> = before
            .values()
            .filter(|j| j.verdict.bypasses())
            .map(|j| (j.uid, j.gid, j.comm.as_str()))
            .collect();
        for p in ns.processes.iter().filter(|p| p.lives_in.is_none()) {
            let was = before.get(&p.pid);
            let rule = p.reasons.first().map(|r| r.rule.clone());
            if let Some(w) = was
                && (w.uid, w.gid) != (p.uid, p.gid)
            {
                state.recent.push(event(
                    "identity-changed",
                    Some(p.pid),
                    Some(p.comm.clone()),
                    format!(
                        "{}:{} -> {}:{} ({})",
                        w.uid,
                        w.gid,
                        p.uid,
                        p.gid,
                        p.verdict.name()
                    ),
                    rule.clone(),
                ));
            }
            // Leaves the mesh now: bypasses, or was captured and its capture is gone (the
            // rules flushed while the pod runs on).
            let leaves = p.verdict.bypasses()
                || (p.verdict == ProcessVerdict::Unmeshed
                    && was.is_some_and(|w| {
                        matches!(
                            w.verdict,
                            ProcessVerdict::Captured | ProcessVerdict::Unknown
                        )
                    }));
            let left =
                was.is_some_and(|w| w.verdict.bypasses() || w.verdict == ProcessVerdict::Unmeshed);
            // A worker respawned with the identity and program of one that already bypassed
            // is not news.
            let known = bypassed.contains(&(p.uid, p.gid, p.comm.as_str()));
            if leaves && !left && !known {
                seen.inc();
                state.recent.push(event(
                    "bypass-seen",
                    Some(p.pid),
                    Some(p.comm.clone()),
                    format!(
                        "{} (uid {}, gid {}) {}",
                        p.comm,
                        p.uid,
                        p.gid,
                        if p.verdict == ProcessVerdict::Unmeshed {
                            "leaves the mesh: its namespace's capture rules are gone (unmeshed)"
                                .to_string()
                        } else {
                            format!("bypasses the mesh: {}", p.verdict.name())
                        }
                    ),
                    rule,
                ));
            }
        }
    }
    // Namespaces that came and went since the last publish.
    for (inode, pending) in causes {
        let Some((path, appeared)) = &pending.netns else {
            continue;
        };
        let present = report.netns.iter().any(|n| n.inode == *inode);
        let kind = match (present, known_before.contains(inode)) {
            (true, false) if *appeared => "namespace-new",
            (false, true) => "namespace-gone",
            _ => continue,
        };
        state.recent.push(AgentEvent {
            at,
            kind,
            netns: *inode,
            pod: None,
            pid: None,
            comm: None,
            message: path.clone(),
            rule: None,
        });
    }
}

/// Logs, counts and records a namespace's rule changes with who made them (the committing
/// process of an nf_tables commit; unknown for iptables-legacy) and the verdicts they
/// changed: one line per namespace per re-read, however many commits a storm made. Verdicts
/// are compared with the namespace's judgement before the change (its baseline), not with
/// the last publish: a re-read for another cause (the committer's own exec) may have read
/// the new rules before the commit's event came. Only processes whose ids did not change
/// count; the baseline moves on whenever the rules read are the same as before.
fn log_rule_changes(
    state: &State,
    report: &Report,
    held: &mut Held,
    now: &Judgements,
    causes: &BTreeMap<u64, Pending>,
    rules_moved: &HashSet<u64>,
    whole: bool,
) {
    let at = status::now();
    held.baseline.retain(|inode, _| now.contains_key(inode));
    for ns in &report.netns {
        let current = now.get(&ns.inode).cloned().unwrap_or_default();
        let base = held
            .baseline
            .entry(ns.inode)
            .or_insert_with(|| current.clone());
        // Rules read anew with no event yet (an in-place iptables-legacy replacement, or a
        // commit whose event is on its way): told with the event, or at the next whole scan.
        if rules_moved.contains(&ns.inode) {
            held.unexplained.insert(ns.inode);
        }
        let none = Pending::default();
        let pending = causes.get(&ns.inode).unwrap_or(&none);
        // Read changed when a source began following it: no notification will ever say so.
        let unexplained = held.unexplained.contains(&ns.inode) && (whole || pending.followed);
        if pending.rules.is_empty() && !unexplained {
            if !held.unexplained.contains(&ns.inode) {
                *base = current;
            }
            continue;
        }
        held.unexplained.remove(&ns.inode);
        let mut changed: Vec<String> = current
            .iter()
            .filter_map(|(pid, j)| {
                let b = base.get(pid)?;
                // The same process as it was (ids and program): its verdict moved with the rules.
                let same = (b.uid, b.gid, &b.comm) == (j.uid, j.gid, &j.comm);
                (same && b.verdict != j.verdict).then(|| {
                    format!(
                        "pid {pid} {}: {} -> {}",
                        meshleak_core::sanitize::sanitize(&j.comm),
                        b.verdict.name(),
                        j.verdict.name()
                    )
                })
            })
            .collect();
        changed.sort();
        *base = current;
        let count = (pending.rules.len() + pending.more_rules).max(1);
        let pod = pod_name(ns);
        state
            .metrics
            .rule_changes
            .get_or_create(&metrics::Namespace::of(ns.pod.as_ref()))
            .inc_by(count as u64);
        // Named by the last commit (the usual one); every committer kept is listed.
        let commits: Vec<(&Commit, &Option<String>)> = pending
            .rules
            .iter()
            .filter_map(|r| match r {
                RuleChange::Commit { commit, container } => Some((commit, container)),
                _ => None,
            })
            .collect();
        let last = commits.last();
        let mut committers: Vec<String> = commits
            .iter()
            .map(|(c, _)| {
                format!(
                    "{} ({})",
                    c.comm.as_deref().unwrap_or("?"),
                    c.pid.map_or("?".to_string(), |p| p.to_string())
                )
            })
            .collect();
        committers.dedup();
        let lost = pending.rules.iter().any(|r| matches!(r, RuleChange::Lost));
        let how = match pending.rules.last() {
            _ if lost => "nf_tables notifications lost",
            Some(RuleChange::Commit { .. }) => "nf_tables commit",
            Some(_) => "iptables-legacy tables changed",
            None if pending.followed => {
                "changed before its notifications were followed (no committer known)"
            }
            None => "read at a whole scan, with no notification",
        };
        // Who made a change whose notifications were lost is not known: no name is given
        // rather than another commit's.
        let last = last.filter(|_| !lost);
        let (pid, comm, container) = (
            last.and_then(|(c, _)| c.pid),
            last.and_then(|(c, _)| c.comm.clone()),
            last.and_then(|(_, k)| (*k).clone()),
        );
        line(
            state.opts.log_format,
            if changed.is_empty() { "info" } else { "warn" },
            "rules changed",
            json!({
                "netns": ns.inode,
                "pod": pod,
                "how": how,
                "changes": count,
                "generation": last.map(|(c, _)| c.generation),
                "pid": pid,
                "comm": comm,
                "by_container": container,
                "committers": committers,
                "verdicts_changed": changed,
            }),
        );
        state.recent.push(AgentEvent {
            at,
            kind: "rules-changed",
            netns: ns.inode,
            pod,
            pid,
            comm,
            message: format!(
                "{how}{}{}; {}",
                if count > 1 {
                    format!(" ({count} changes)")
                } else {
                    String::new()
                },
                container.map(|c| format!(" by {c}")).unwrap_or_default(),
                if changed.is_empty() {
                    "no verdict changed".to_string()
                } else {
                    changed.join(", ")
                }
            ),
            rule: None,
        });
    }
}
