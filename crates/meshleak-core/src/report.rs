//! From a snapshot (facts) to the report (judgements): per network namespace, the mesh that
//! captures it, what is and is not captured, and a verdict for every process with the rules
//! that decide it. Pure: the same report comes from a live scan or a saved snapshot.

use std::net::IpAddr;

use serde::Serialize;

use crate::analyze::{self, Exemption, IdentityReport, IdentityVerdict};
use crate::attribution::{ContainerFacts, ContainerRef, PodFacts, container_of};
use crate::eval::Identity;
use crate::explain::RuleRef;
pub use crate::findings::Finding;
use crate::model::{Action, Ruleset, Test};
use crate::range::IdRange;
use crate::snapshot::{NetnsFacts, ProcessFacts, Snapshot, UnreadCause, UnreadProcess};
use crate::ways::{self, Source, Way};

/// Bump when a field changes meaning or is removed (docs/report-schema.md).
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub node: String,
    pub scanned_at: u64,
    pub duration_ms: u64,
    pub netns: Vec<NetnsReport>,
    /// Why this report may miss a bypass: what its verdicts need and could not be read
    /// (namespaces, processes, sockets). Empty: everything was read.
    pub incomplete: Vec<String>,
    pub errors: Vec<String>,
    pub vanished_processes: usize,
    pub vanished_netns: usize,
    /// Network namespaces and processes found but not read (processes known to be in a
    /// namespace the report does not cover aside), and tables of read namespaces not read.
    pub unread_netns: usize,
    pub unread_processes: usize,
    pub unread_gaps: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Mesh {
    /// istio-sidecar, istio-sidecar-nft, istio-ambient, linkerd, kuma, consul, osm, appmesh,
    /// unknown-redirect.
    pub kind: String,
    /// Local ports traffic is redirected (or TPROXYed) to.
    pub proxy_ports: Vec<u16>,
    /// The uids and gids whose traffic the capture rules exempt: the proxy's, by design.
    pub proxy_uids: Vec<IdRange>,
    pub proxy_gids: Vec<IdRange>,
}

impl Mesh {
    /// Whether its proxy is told apart by a packet mark, not by owner, and lives outside
    /// the pod (Istio ambient's ztunnel, whose sockets in the pod carry the mark).
    pub fn proxy_by_mark(&self) -> bool {
        self.kind == "istio-ambient"
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Capture {
    /// Families and protocols an ordinary app's traffic is captured on.
    pub families: Vec<&'static str>,
    pub protocols: Vec<String>,
    /// Families and protocols (`ipv4 tcp`) whose capture rules meshleak does not model
    /// decide: neither captured nor uncaptured.
    pub undecided: Vec<String>,
    pub exemptions: Vec<Exemption>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessVerdict {
    /// The mesh proxy's own processes.
    Proxy,
    Bypass,
    Partial,
    Captured,
    Unmeshed,
    Unknown,
}

impl ProcessVerdict {
    pub fn name(self) -> &'static str {
        match self {
            ProcessVerdict::Proxy => "proxy",
            ProcessVerdict::Bypass => "bypass",
            ProcessVerdict::Partial => "partial",
            ProcessVerdict::Captured => "captured",
            ProcessVerdict::Unmeshed => "unmeshed",
            ProcessVerdict::Unknown => "unknown",
        }
    }

    /// Whether this process's traffic leaves the mesh (exit status 1).
    pub fn bypasses(self) -> bool {
        matches!(self, ProcessVerdict::Bypass | ProcessVerdict::Partial)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ProcessReport {
    pub pid: u32,
    pub comm: String,
    /// fsuid and fsgid as the namespace's owner sees them (what owner matches compare).
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub container: Option<ContainerRef>,
    pub verdict: ProcessVerdict,
    /// The rules that decide the verdict.
    pub reasons: Vec<RuleRef>,
    /// The thread or socket whose credentials decide the verdict, when not the process's
    /// own (`/proc/PID/status`): owner matches judge each socket by its creator's
    /// credentials, and each thread's new sockets by that thread's.
    pub decided_by: Option<DecidedBy>,
    /// The network namespace the process lives in, when not this one: it holds sockets
    /// made in this one, and only those are judged here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lives_in: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<Vec<String>>,
}

/// What decides a process's verdict when its own credentials do not.
#[derive(Clone, Debug, Serialize)]
pub struct DecidedBy {
    #[serde(flatten)]
    pub source: Source,
    /// The ids its traffic carries, as the namespace's owner sees them.
    pub uid: u32,
    pub gid: u32,
    /// In words: `socket (fd 3, socket:[81234]) created with uid 10001 gid 1337; the
    /// process is now 10001:10001`.
    pub why: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct NetnsReport {
    pub inode: u64,
    pub paths: Vec<String>,
    pub pod: Option<PodFacts>,
    pub mesh: Option<Mesh>,
    pub capture: Capture,
    pub processes: Vec<ProcessReport>,
    pub findings: Vec<Finding>,
    /// What in this namespace could not be read: its processes missing from `processes`,
    /// sockets, routes. Empty: everything was read.
    pub incomplete: Vec<String>,
}

impl Report {
    /// Whether some process's traffic leaves the mesh, or a live connection did that no
    /// process read holds.
    pub fn bypasses(&self) -> bool {
        self.netns.iter().any(|n| {
            n.processes.iter().any(|p| p.verdict.bypasses())
                || n.findings
                    .iter()
                    .any(|f| f.kind == "observed-bypass" && f.pid.is_none())
        })
    }

    /// Whether some verdict is unknown: a process's, or an ordinary app's capture.
    pub fn unknown(&self) -> bool {
        self.netns.iter().any(|n| {
            n.findings.iter().any(|f| f.kind == "unknown")
                || n.processes
                    .iter()
                    .any(|p| p.verdict == ProcessVerdict::Unknown)
        })
    }
}

pub fn build(s: &Snapshot, duration_ms: u64) -> Report {
    let mut errors = s.errors.clone();
    let mut incomplete = Vec::new();
    if s.unread_netns > 0 {
        incomplete.push(format!(
            "{} network namespace{} could not be read (see errors)",
            s.unread_netns,
            plural(s.unread_netns)
        ));
    }
    let memo = Memo::default();
    let reports = crate::parallel::map(&s.netns, |ns| {
        netns_report(ns, &visitors(s, ns), &s.containers, &s.kernel, &memo)
    });
    let mut netns = Vec::with_capacity(reports.len());
    for (ns, r) in s.netns.iter().zip(reports) {
        match r {
            Ok(mut r) => {
                let unread: Vec<&UnreadProcess> = s
                    .unread_processes
                    .iter()
                    .filter(|u| u.netns == Some(ns.inode))
                    .collect();
                if !unread.is_empty() {
                    r.incomplete
                        .insert(0, format!("processes not read: {}", unread_list(&unread)));
                }
                incomplete.extend(
                    r.incomplete
                        .iter()
                        .map(|i| format!("network namespace {}: {i}", ns.inode)),
                );
                netns.push(r);
            }
            Err(e) => {
                incomplete.push(format!("network namespace {}: not judged ({e})", ns.inode));
                errors.push(format!("network namespace {}: {e}", ns.inode));
            }
        }
    }
    let unseen: Vec<&UnreadProcess> = s
        .unread_processes
        .iter()
        .filter(|u| u.netns.is_none() && !u.elsewhere)
        .collect();
    if !unseen.is_empty() {
        incomplete.push(format!(
            "processes not read, in network namespaces this scan could not tell: {}",
            unread_list(&unseen)
        ));
    }
    // Named once, with the real cause, where more capabilities would not help (a
    // capability problem that matters is an `incomplete` line); no verdict here depends
    // on them.
    let elsewhere: Vec<&UnreadProcess> = s
        .unread_processes
        .iter()
        .filter(|u| u.elsewhere && u.cause == UnreadCause::Forbidden)
        .collect();
    if !elsewhere.is_empty() {
        errors.push(format!(
            "processes not read, in network namespaces this report does not cover (no verdict here depends on them): {}",
            unread_list(&elsewhere)
        ));
    }
    Report {
        schema_version: SCHEMA_VERSION,
        node: s.node.clone(),
        scanned_at: s.scanned_at,
        duration_ms,
        netns,
        incomplete,
        errors,
        vanished_processes: s.vanished_processes,
        vanished_netns: s.vanished_netns,
        unread_netns: s.unread_netns,
        unread_processes: s.unread_processes.iter().filter(|u| !u.elsewhere).count(),
        unread_gaps: s.netns.iter().map(|n| n.gaps.len()).sum(),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Unread processes named with their cause: `pid 1 (init): permission denied although ...`.
fn unread_list(list: &[&UnreadProcess]) -> String {
    const SHOWN: usize = 5;
    let mut by_cause: Vec<(UnreadCause, Vec<String>)> = Vec::new();
    for u in list {
        let name = if u.comm.is_empty() {
            format!("pid {}", u.pid)
        } else {
            format!("pid {} ({})", u.pid, crate::sanitize::sanitize(&u.comm))
        };
        match by_cause.iter_mut().find(|(c, _)| *c == u.cause) {
            Some((_, names)) => names.push(name),
            None => by_cause.push((u.cause, vec![name])),
        }
    }
    by_cause
        .into_iter()
        .map(|(cause, names)| {
            let more = names.len().saturating_sub(SHOWN);
            let mut shown = names.into_iter().take(SHOWN).collect::<Vec<_>>().join(", ");
            if more > 0 {
                shown += &format!(" and {more} more");
            }
            let why = match cause {
                UnreadCause::MissingCapability => {
                    "permission denied: reading other users' processes needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH"
                }
                UnreadCause::Forbidden => {
                    "permission denied although meshleak holds CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH: a security module or the process's own protection (not dumpable, another user namespace) forbids it"
                }
            };
            format!("{shown}: {why}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A way's verdict: what the analysis says of its identity, unless the way itself says
/// more (a socket of another namespace escapes; one not inspected may only).
fn judge(w: &Way, r: Option<&IdentityReport>, groups_matter: bool) -> ProcessVerdict {
    if matches!(w.source, Source::ForeignSocket { .. }) {
        return ProcessVerdict::Bypass;
    }
    let v = match r.map(|r| r.verdict) {
        Some(IdentityVerdict::Bypass) => ProcessVerdict::Bypass,
        Some(IdentityVerdict::Partial) => ProcessVerdict::Partial,
        Some(IdentityVerdict::Captured) => ProcessVerdict::Captured,
        Some(IdentityVerdict::Unmeshed) => ProcessVerdict::Unmeshed,
        _ => ProcessVerdict::Unknown,
    };
    let only_possible = matches!(w.source, Source::UnknownSocket { .. }) && v.bypasses();
    if only_possible || (w.groups_unknown && groups_matter) {
        ProcessVerdict::Unknown
    } else {
        v
    }
}

/// A live connection that did not pass the proxy makes its process a bypass, whatever the
/// rules predict now; a policy-routing rule that routes some of its traffic past the
/// capture makes it partial: the headline, the metrics and the exit status count both.
fn evidence_verdicts(
    processes: &mut [ProcessReport],
    members: &[&ProcessFacts],
    findings: &[Finding],
) {
    for f in findings
        .iter()
        .filter(|f| matches!(f.kind, "observed-bypass" | "policy-routed"))
    {
        let Some(p) = processes.iter_mut().find(|p| Some(p.pid) == f.pid) else {
            continue;
        };
        if p.verdict.bypasses() || p.verdict == ProcessVerdict::Proxy {
            continue;
        }
        if f.kind == "policy-routed" {
            p.verdict = ProcessVerdict::Partial;
            p.reasons = f.rules.clone();
            continue;
        }
        let held = members
            .iter()
            .find(|x| x.pid == p.pid)
            .and_then(|x| x.sockets.iter().find(|s| Some(s.inode) == f.socket));
        p.verdict = ProcessVerdict::Bypass;
        p.reasons = f.rules.clone();
        p.decided_by = held.map(|s| DecidedBy {
            source: Source::Connection {
                fd: s.fd,
                inode: s.inode,
            },
            uid: s.uid,
            gid: s.gid,
            why: format!(
                "live connection {} (fd {}, socket:[{}]): {}",
                f.evidence.first().map_or("", String::as_str),
                s.fd,
                s.inode,
                f.message
            ),
        });
    }
    sort_processes(processes);
}

/// Bypassing processes first, the proxy's last, then by pid.
fn sort_processes(processes: &mut [ProcessReport]) {
    processes.sort_by_key(|p| {
        (
            !p.verdict.bypasses(),
            p.verdict == ProcessVerdict::Proxy,
            p.pid,
        )
    });
}

/// How bad a verdict is, worst first: a process's verdict is its worst way's.
fn rank(v: ProcessVerdict) -> u8 {
    match v {
        ProcessVerdict::Bypass => 0,
        ProcessVerdict::Partial => 1,
        ProcessVerdict::Unknown => 2,
        ProcessVerdict::Captured => 3,
        ProcessVerdict::Unmeshed => 4,
        ProcessVerdict::Proxy => 5,
    }
}

/// Analyses already made in this report, by rules (their origin aside) and identities: the
/// pods of a node mostly carry the same mesh rules, so most namespaces reuse one.
#[derive(Default)]
struct Memo(std::sync::Mutex<std::collections::HashMap<String, analyze::Analysis>>);

impl Memo {
    fn analyze(
        &self,
        rules: &crate::model::Ruleset,
        ids: &[Identity],
    ) -> Result<analyze::Analysis, analyze::TooLarge> {
        let mut plain = rules.clone();
        for t in &mut plain.tables {
            t.origin.clear();
        }
        let key = serde_json::to_string(&(&plain, ids)).unwrap_or_default();
        let known = self.lock().get(&key).cloned();
        if let Some(a) = known {
            return Ok(a);
        }
        // Not held while analysing: two threads may analyse the same rules once each.
        let a = analyze::analyze(rules, ids)?;
        self.lock().insert(key, a.clone());
        Ok(a)
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, analyze::Analysis>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A namespace whose rules were not read whole: its pod and processes, each `unknown`, and
/// a `rules-too-large` finding; never a verdict from part of its rules.
fn unjudged(ns: &NetnsFacts, containers: &[ContainerFacts], why: &str) -> NetnsReport {
    let attributed: Vec<_> = ns
        .processes
        .iter()
        .map(|p| container_of(&p.cgroup, containers))
        .collect();
    let mut processes: Vec<ProcessReport> = ns
        .processes
        .iter()
        .zip(&attributed)
        .map(|(p, a)| {
            let id = ways::leader(p, ns);
            ProcessReport {
                pid: p.pid,
                comm: p.comm.clone(),
                uid: id.uid,
                gid: id.gid,
                groups: id.groups,
                container: a.as_ref().map(|(c, _)| c.clone()),
                verdict: ProcessVerdict::Unknown,
                reasons: Vec::new(),
                decided_by: None,
                lives_in: None,
                cmdline: p.cmdline.clone(),
            }
        })
        .collect();
    sort_processes(&mut processes);
    // Seen, not judged: its processes are `unknown` (exit status 3) and the finding says
    // why; it is not `incomplete`, so one pod cannot keep the agent unready.
    let incomplete = ns.gaps.iter().map(|g| format!("not read: {g}")).collect();
    NetnsReport {
        inode: ns.inode,
        paths: ns.paths.clone(),
        pod: attributed.iter().flatten().find_map(|(_, pod)| pod.clone()),
        mesh: None,
        capture: Capture {
            families: Vec::new(),
            protocols: Vec::new(),
            undecided: Vec::new(),
            exemptions: Vec::new(),
        },
        processes,
        findings: vec![Finding {
            kind: "rules-too-large",
            severity: "high",
            pid: None,
            message: "this namespace holds more rules than meshleak reads from one namespace: none of its processes can be judged, and a pod that loads this many rules is suspicious in itself".into(),
            rules: Vec::new(),
            evidence: vec![why.to_string()],
            socket: None,
            remedy: "find who loaded them (a container with NET_ADMIN) with `nft list ruleset | wc -l` in the pod's namespace".into(),
        }],
        incomplete,
    }
}

/// Processes of the snapshot's other namespaces that hold sockets made in `ns`, with the
/// namespace each lives in: their traffic through those sockets meets `ns`'s rules.
fn visitors<'a>(s: &'a Snapshot, ns: &NetnsFacts) -> Vec<(&'a ProcessFacts, u64)> {
    s.netns
        .iter()
        .filter(|home| home.inode != ns.inode)
        .flat_map(|home| home.processes.iter().map(move |p| (p, home.inode)))
        .filter(|(p, _)| p.sockets.iter().any(|h| ways::made_in(h, ns)))
        .collect()
}

fn netns_report(
    ns: &NetnsFacts,
    visitors: &[(&ProcessFacts, u64)],
    containers: &[ContainerFacts],
    kernel: &str,
    memo: &Memo,
) -> Result<NetnsReport, analyze::TooLarge> {
    if let Some(why) = &ns.rules_unread {
        return Ok(unjudged(ns, containers, why));
    }
    let identity = |p: &ProcessFacts| ways::leader(p, ns);
    // The namespace's processes, then visitors, judged by the ways they have into it.
    let members: Vec<&ProcessFacts> = ns
        .processes
        .iter()
        .chain(visitors.iter().map(|(p, _)| *p))
        .collect();
    let lives_in = |i: usize| i.checked_sub(ns.processes.len()).map(|v| visitors[v].1);
    let all_ways: Vec<Vec<Way>> = members
        .iter()
        .enumerate()
        .map(|(i, p)| match lives_in(i) {
            None => ways::ways(p, ns),
            Some(_) => ways::visiting(p, ns),
        })
        .collect();
    let identities: Vec<Identity> = {
        let mut ids: Vec<Identity> = all_ways
            .iter()
            .flatten()
            .map(|w| w.identity.clone())
            .collect();
        ids.sort_by_key(|i| (i.uid, i.gid, i.groups.clone()));
        ids.dedup();
        ids
    };
    let a = memo.analyze(&ns.rules, &identities)?;
    let groups_matter = ways::matches_groups(&ns.rules);
    let local = ns.local_addrs();
    let mesh = detect_mesh(&ns.rules, &local);
    let verdict_of = |id: &Identity| {
        a.identities
            .iter()
            .zip(&identities)
            .find(|(_, i)| *i == id)
            .map(|(r, _)| r)
    };

    // The proxy: a process holding a listener the capture really delivers to whose own
    // traffic is exempt, and the processes of its container with the same identity (or,
    // without container metadata, of its process tree).
    let targets = crate::proxy::targets(&ns.rules, &local);
    let holds_target = |p: &ProcessFacts| {
        ns.sockets
            .iter()
            .any(|s| crate::proxy::delivered(s, &targets) && p.holds(s.inode))
    };
    // Exempt: its traffic escapes capture. One whose verdict unmodelled rules leave
    // unknown may be the proxy too: it is not called an impostor on an unknown (the
    // `unknown` finding says what was not modelled).
    let exempt = |p: &ProcessFacts| {
        verdict_of(&identity(p)).is_some_and(|r| {
            matches!(
                r.verdict,
                IdentityVerdict::Bypass | IdentityVerdict::Unknown
            )
        })
    };
    let attributed: Vec<Option<(ContainerRef, Option<PodFacts>)>> = members
        .iter()
        .map(|p| container_of(&p.cgroup, containers))
        .collect();
    let proxies: Vec<usize> = (0..members.len())
        .filter(|&i| holds_target(members[i]) && exempt(members[i]))
        .collect();
    let parents: Vec<(u32, u32)> = members.iter().map(|p| (p.pid, p.ppid)).collect();
    let container_id = |i: usize| attributed[i].as_ref().map(|(c, _)| c.id.as_str());
    // A container named like a proxy counts as the proxy when its identity is exempt; when
    // it is not, `proxy-not-exempt` says so.
    let is_proxy = |i: usize, p: &ProcessFacts| {
        let named = attributed[i].as_ref().is_some_and(|(c, _)| c.proxy_name);
        // A mark-based mesh's proxy lives outside the pod and holds the listeners the
        // capture delivers to from there (ztunnel); its sockets carry the exempt mark.
        let outside_proxy = lives_in(i).is_some()
            && holds_target(p)
            && mesh.as_ref().is_some_and(Mesh::proxy_by_mark);
        outside_proxy
            || (named && exempt(p))
            || proxies.iter().any(|&q| {
                let listener = members[q];
                let together = match (container_id(q), container_id(i)) {
                    (Some(a), Some(b)) => a == b,
                    _ => crate::proxy::descends(p.pid, listener.pid, &parents),
                };
                together && identity(listener) == identity(p)
            })
    };
    let pod = attributed[..ns.processes.len()]
        .iter()
        .flatten()
        .find_map(|(_, pod)| pod.clone());

    let mut processes: Vec<ProcessReport> = members
        .iter()
        .enumerate()
        .filter(|(i, _)| !all_ways[*i].is_empty())
        .map(|(i, p)| {
            let id = identity(p);
            let judged: Vec<(ProcessVerdict, &Way)> = all_ways[i]
                .iter()
                .map(|w| (judge(w, verdict_of(&w.identity), groups_matter), w))
                .collect();
            let (worst, way) = judged
                .iter()
                .min_by_key(|(v, _)| rank(*v))
                .copied()
                .unwrap_or((ProcessVerdict::Unknown, &all_ways[i][0]));
            let verdict = if is_proxy(i, p) {
                ProcessVerdict::Proxy
            } else {
                worst
            };
            let decided = verdict != ProcessVerdict::Proxy && way.source != Source::Process;
            let why = match lives_in(i) {
                Some(home) => format!(
                    "{}; held by a process of network namespace {home}, made in this one",
                    way.why
                ),
                None => way.why.clone(),
            };
            let r: Option<&IdentityReport> = verdict_of(&way.identity);
            ProcessReport {
                pid: p.pid,
                comm: p.comm.clone(),
                uid: id.uid,
                gid: id.gid,
                groups: id.groups.clone(),
                container: attributed[i].as_ref().map(|(c, _)| c.clone()),
                verdict,
                reasons: r.map(|r| r.rules.clone()).unwrap_or_default(),
                decided_by: decided.then(|| DecidedBy {
                    source: way.source.clone(),
                    uid: way.identity.uid,
                    gid: way.identity.gid,
                    why,
                }),
                lives_in: lives_in(i),
                cmdline: p.cmdline.clone(),
            }
        })
        .collect();
    sort_processes(&mut processes);

    let paired: Vec<(&ProcessReport, &ProcessFacts, Identity)> = processes
        .iter()
        .filter_map(|r| {
            members
                .iter()
                .find(|f| f.pid == r.pid)
                .map(|f| (r, *f, identity(f)))
        })
        .collect();
    let findings = crate::findings::find(&crate::findings::Context {
        ns,
        analysis: &a,
        mesh: mesh.as_ref(),
        processes: &paired,
        kernel,
    });
    drop(paired);
    evidence_verdicts(&mut processes, &members, &findings);
    let mut families: Vec<&'static str> = a.captured_on.iter().map(|c| c.family).collect();
    families.dedup();
    let mut protocols: Vec<String> = a.captured_on.iter().map(|c| c.protocol.clone()).collect();
    protocols.sort();
    protocols.dedup();
    Ok(NetnsReport {
        inode: ns.inode,
        paths: ns.paths.clone(),
        pod,
        mesh,
        capture: Capture {
            families,
            protocols,
            undecided: a.undecided_on.iter().map(ToString::to_string).collect(),
            exemptions: a.exemptions,
        },
        processes,
        findings,
        incomplete: ns.gaps.iter().map(|g| format!("not read: {g}")).collect(),
    })
}

/// The mesh whose capture rules these are, from the names its tools give chains and tables;
/// its proxy ports and proxy identities come from the live rules, never assumed. `local`:
/// the namespace's addresses, which tell a DNAT that captures from one that sends elsewhere.
pub fn detect_mesh(rules: &Ruleset, local: &[IpAddr]) -> Option<Mesh> {
    let mut ports: Vec<u16> = Vec::new();
    let mut uids: Vec<IdRange> = Vec::new();
    let mut gids: Vec<IdRange> = Vec::new();
    for t in &rules.tables {
        let captures = t.captures();
        for r in t.chains.iter().flat_map(|c| &c.rules) {
            for a in &r.actions {
                if let Some(p) = a.capture_port(local).filter(|p| !ports.contains(p)) {
                    ports.push(p);
                }
            }
            // The proxy's identity: owner matches that let its traffic out uncaptured.
            let exempts = r
                .actions
                .iter()
                .any(|a| matches!(a, Action::Return | Action::Accept));
            if captures && exempts {
                for m in r.matches.iter().filter(|m| !m.negated) {
                    let (list, ranges) = match &m.test {
                        Test::Uid { ranges } => (&mut uids, ranges),
                        Test::Gid { ranges, .. } => (&mut gids, ranges),
                        _ => continue,
                    };
                    for r in ranges {
                        if !list.contains(r) {
                            list.push(*r);
                        }
                    }
                }
            }
        }
    }
    if ports.is_empty() {
        return None;
    }
    ports.sort_unstable();
    uids.sort();
    gids.sort();
    let names: Vec<&str> = rules
        .tables
        .iter()
        .flat_map(|t| {
            t.chains
                .iter()
                .map(|c| c.name.as_str())
                .chain([t.name.as_str()])
        })
        .collect();
    let has = |prefix: &str| names.iter().any(|n| n.starts_with(prefix));
    let kind = if has("istio-proxy-") {
        "istio-sidecar-nft"
    } else if has("istio-ambient-")
        || has("ISTIO_PRERT")
        || (has("ISTIO_") && uids.is_empty() && gids.is_empty() && mark_captured(rules))
    {
        // Ambient's in-pod rules exempt ztunnel by its packet mark, not by owner.
        "istio-ambient"
    } else if has("ISTIO_") {
        "istio-sidecar"
    } else if has("PROXY_INIT_") {
        "linkerd"
    } else if has("KUMA_") {
        "kuma"
    } else if has("CONSUL_") || has("consul_tproxy") {
        "consul"
    } else if has("OSM_PROXY_") || has("FSM_PROXY_") || has("PROXY_REDIRECT") || has("PROXY_OUTPUT")
    {
        // OSM before v1.1 (and its fork FSM) named chains PROXY_*.
        "osm"
    } else if has("APPMESH_") {
        "appmesh"
    } else {
        "unknown-redirect"
    };
    Some(Mesh {
        kind: kind.into(),
        proxy_ports: ports,
        proxy_uids: uids,
        proxy_gids: gids,
    })
}

/// Whether some redirect is conditioned on a packet mark not being set: the proxy is
/// told apart by the mark its sockets carry (SO_MARK), as Istio ambient's ztunnel is.
fn mark_captured(rules: &Ruleset) -> bool {
    rules
        .tables
        .iter()
        .flat_map(|t| &t.chains)
        .flat_map(|c| &c.rules)
        .any(|r| {
            r.actions
                .iter()
                .any(|a| matches!(a, Action::Redirect { .. } | Action::Tproxy { .. }))
                && r.matches.iter().any(|m| {
                    m.negated
                        && matches!(
                            &m.test,
                            Test::Mark {
                                reg: crate::model::MarkReg::Mark,
                                ..
                            }
                        )
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Hints, combine, parse_dump};

    fn rules(text: &str) -> Ruleset {
        combine(vec![
            parse_dump("fixture", text, Hints::default()).expect("parses"),
        ])
        .unwrap()
    }

    fn ids(list: &[IdRange]) -> Vec<String> {
        list.iter().map(IdRange::to_string).collect()
    }

    #[test]
    fn detects_each_mesh_with_its_proxy_ports_and_identities() {
        // (fixture, kind, proxy ports, proxy uids, proxy gids)
        type Case<'a> = (&'a str, &'a str, &'a [u16], &'a [&'a str], &'a [&'a str]);
        let cases: [Case; 10] = [
            (
                include_str!("../../../testdata/istio-sidecar.rules"),
                "istio-sidecar",
                &[15001, 15006],
                &["1337"],
                &["1337"],
            ),
            (
                include_str!("../../../testdata/meshes/istio-sidecar-nft.json"),
                "istio-sidecar-nft",
                &[15001],
                &["1337"],
                &["1337"],
            ),
            (
                include_str!("../../../testdata/meshes/istio-ambient.rules"),
                "istio-ambient",
                &[15001, 15008, 15053],
                &[],
                &[],
            ),
            (
                include_str!("../../../testdata/meshes/istio-ambient-output.rules"),
                "istio-ambient",
                &[15001, 15053],
                &[],
                &[],
            ),
            (
                include_str!("../../../testdata/meshes/linkerd.rules"),
                "linkerd",
                &[4140, 4143],
                &["2102"],
                &[],
            ),
            (
                include_str!("../../../testdata/meshes/kuma.rules"),
                "kuma",
                &[15001, 15053],
                &["5678"],
                &[],
            ),
            (
                include_str!("../../../testdata/meshes/consul.rules"),
                "consul",
                &[15001],
                &["5995", "5996"],
                &[],
            ),
            (
                include_str!("../../../testdata/meshes/osm.rules"),
                "osm",
                &[15001],
                &["1500"],
                &[],
            ),
            (
                include_str!("../../../testdata/meshes/appmesh.rules"),
                "appmesh",
                &[15001],
                &["1337"],
                &[],
            ),
            (
                include_str!("../../../testdata/meshes/custom.rules"),
                "unknown-redirect",
                &[9000],
                &["1000-1999"],
                &[],
            ),
        ];
        for (text, kind, ports, uids, gids) in cases {
            let m = detect_mesh(&rules(text), &[])
                .unwrap_or_else(|| panic!("{kind}: no mesh detected"));
            assert_eq!((m.kind.as_str(), m.proxy_ports.as_slice()), (kind, ports));
            assert_eq!(
                (ids(&m.proxy_uids), ids(&m.proxy_gids)),
                (
                    uids.iter().map(|s| s.to_string()).collect(),
                    gids.iter().map(|s| s.to_string()).collect()
                ),
                "{kind}"
            );
        }
        assert!(
            detect_mesh(
                &rules("*filter\n-A OUTPUT -p tcp --dport 25 -j DROP\nCOMMIT\n"),
                &[]
            )
            .is_none()
        );
    }

    #[test]
    fn only_a_dnat_to_this_host_is_a_capture_port() {
        let text = "*nat\n-A OUTPUT -p tcp --dport 5432 -j DNAT --to-destination 169.254.9.9:6432\n\
                    -A OUTPUT -p tcp --dport 80 -j DNAT --to-destination 10.1.0.5:15001\nCOMMIT\n";
        let elsewhere = detect_mesh(&rules(text), &[]);
        assert!(elsewhere.is_none(), "{elsewhere:?}");
        let pod_ip = ["10.1.0.5".parse().unwrap()];
        let m = detect_mesh(&rules(text), &pod_ip).expect("the DNAT to the pod's address");
        assert_eq!(m.proxy_ports, [15001]);
    }
}
