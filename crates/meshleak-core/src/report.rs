//! From a snapshot (facts) to the report (judgements): per network namespace, the mesh that
//! captures it, what is and is not captured, and a verdict for every process with the rules
//! that decide it. Pure: the same report comes from a live scan or a saved snapshot.

use crate::analyze::{self, IdentityReport, IdentityVerdict};
use crate::attribution::{ContainerFacts, ContainerRef, PodFacts, container_of};
use crate::eval::Identity;
use crate::findings::Judged;
use crate::meshes::{self, Mesh};
use crate::schema::{
    Capture, DecidedBy, Finding, FindingKind, NetnsReport, ProcessReport, ProcessVerdict, Report,
    SCHEMA_VERSION, Severity,
};
use crate::snapshot::{
    NetnsFacts, OwnerSource, ProcessFacts, Snapshot, UnreadCause, UnreadProcess,
};
use crate::ways::{self, Source, Way};

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
    let meshed: std::collections::BTreeMap<u64, bool> = s
        .netns
        .iter()
        .map(|ns| {
            (
                ns.inode,
                meshes::detect(&ns.rules, &ns.local_addrs()).is_some(),
            )
        })
        .collect();
    let reports = crate::parallel::map(&s.netns, |ns| {
        netns_report(
            ns,
            &visitors(s, ns),
            &s.containers,
            &s.kernel,
            &memo,
            &meshed,
        )
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
                // Where nothing captures, no verdict depends on a socket's owner.
                if meshed.get(&ns.inode) == Some(&true) {
                    r.incomplete.extend(owners_unverified(s, ns));
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
    if let Some(why) = &s.programs_unread {
        errors.push(format!(
            "cgroup BPF programs, which act on sockets before netfilter, were not read: {why}"
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
        owners: s.owners.clone(),
    }
}

/// Where owners were read from inodes (no BPF), a held IP socket that has not connected
/// may carry credentials its inode no longer shows (`fchown`), and in a meshed namespace
/// its holder's verdict may be wrong: said, with the sockets counted. A connected one
/// shows in conntrack instead.
fn owners_unverified(s: &Snapshot, ns: &NetnsFacts) -> Option<String> {
    if s.owners.source == OwnerSource::FCred {
        return None;
    }
    let unconnected = ns
        .processes
        .iter()
        .flat_map(|p| &p.sockets)
        .filter(|h| crate::held::unconnected(ns, h))
        .count();
    if unconnected == 0 {
        return None;
    }
    Some(format!(
        "the credentials of {unconnected} held, unconnected socket{} (what owner matches compare) were not read, only their inodes' owners, which fchown changes: {}",
        plural(unconnected),
        s.owners
            .why
            .as_deref()
            .unwrap_or("this snapshot does not say how owners were read")
    ))
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

/// A way's verdict: what the analysis says of its identity, unless the way itself decides
/// (a socket of another namespace escapes; a ring not read is unknown; one not inspected
/// may only escape).
fn judge(w: &Way, r: Option<&IdentityReport>, groups_matter: bool) -> ProcessVerdict {
    if let Some(v) = w.decides {
        return v;
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

/// The verdict a finding imposes on its process, whatever the rules predict now, so a
/// verdict never says `captured` beside a finding that says otherwise: a live connection
/// that did not pass the proxy, or a packet socket (it sends below netfilter with no
/// privilege left), makes it a bypass, and so does a unix relay into a namespace nothing
/// captures; a policy-routing rule that routes some of its traffic past the capture makes
/// it partial; a relay into a namespace not read, or a cgroup program meshleak does not
/// know, makes it unknown. The headline, the metrics and the exit status count them all.
fn imposed(f: &Finding) -> Option<ProcessVerdict> {
    match (f.kind, f.severity) {
        (FindingKind::ObservedBypass | FindingKind::PacketSocket, _)
        | (FindingKind::UnixRelay, Severity::High) => Some(ProcessVerdict::Bypass),
        (FindingKind::PolicyRouted, _) => Some(ProcessVerdict::Partial),
        (FindingKind::UnixRelay, Severity::Medium)
        | (FindingKind::CgroupProgram, Severity::High) => Some(ProcessVerdict::Unknown),
        _ => None,
    }
}

/// Each finding's imposed verdict on its process, with the fact that decides it.
fn evidence_verdicts(processes: &mut [Judged], findings: &[Finding]) {
    for f in findings {
        let Some(verdict) = imposed(f) else { continue };
        let Some(p) = processes.iter_mut().find(|p| Some(p.facts.pid) == f.pid) else {
            continue;
        };
        let known_worse = p.verdict.bypasses() || p.verdict == ProcessVerdict::Proxy;
        if known_worse || (verdict == ProcessVerdict::Unknown && p.verdict == verdict) {
            continue;
        }
        p.verdict = verdict;
        p.reasons = f.rules.clone();
        let held = p.facts.sockets.iter().find(|s| Some(s.inode) == f.socket);
        let because = format!("{}: {}", f.evidence.join("; "), f.message);
        p.decided_by = match f.kind {
            // The routing rule decides; the way out stays the one the rules judged.
            FindingKind::PolicyRouted => continue,
            FindingKind::CgroupProgram => p.facts.cgroup_programs.first().map(|g| DecidedBy {
                source: Source::CgroupProgram {
                    id: g.id,
                    name: g.name.clone(),
                    attach: g.attach.clone(),
                },
                uid: p.identity.uid,
                gid: p.identity.gid,
                why: because,
            }),
            FindingKind::ObservedBypass => held.map(|s| DecidedBy {
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
            }),
            _ => held.map(|s| {
                let (fd, inode) = (s.fd, s.inode);
                DecidedBy {
                    source: if f.kind == FindingKind::PacketSocket {
                        Source::PacketSocket { fd, inode }
                    } else {
                        Source::UnixRelay { fd, inode }
                    },
                    uid: p.identity.uid,
                    gid: p.identity.gid,
                    why: because,
                }
            }),
        };
    }
    sort_processes(processes);
}

/// Bypassing processes first, the proxy's last, then by pid.
fn sort_processes(processes: &mut [Judged]) {
    processes.sort_by_key(|p| {
        (
            !p.verdict.bypasses(),
            p.verdict == ProcessVerdict::Proxy,
            p.facts.pid,
        )
    });
}

/// The report's record of a judged process.
fn record(p: Judged) -> ProcessReport {
    ProcessReport {
        pid: p.facts.pid,
        comm: p.facts.comm.clone(),
        uid: p.identity.uid,
        gid: p.identity.gid,
        groups: p.identity.groups,
        container: p.container,
        verdict: p.verdict,
        reasons: p.reasons,
        decided_by: p.decided_by,
        lives_in: p.lives_in,
        cmdline: p.facts.cmdline.clone(),
    }
}

/// How bad a verdict is, worst first: a process's verdict is its worst way's.
fn rank(v: ProcessVerdict) -> u8 {
    match v {
        ProcessVerdict::Bypass => 0,
        ProcessVerdict::Partial => 1,
        ProcessVerdict::Unknown => 2,
        ProcessVerdict::Captured => 3,
        ProcessVerdict::Unmeshed => 4,
        ProcessVerdict::Sandbox => 5,
        ProcessVerdict::Proxy => 6,
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
    let mut processes: Vec<Judged> = ns
        .processes
        .iter()
        .zip(&attributed)
        .map(|(p, a)| Judged {
            facts: p,
            identity: ways::leader(p, ns),
            container: a.as_ref().map(|(c, _)| c.clone()),
            verdict: ProcessVerdict::Unknown,
            reasons: Vec::new(),
            decided_by: None,
            lives_in: None,
            by_way: false,
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
        capture: Capture::default(),
        processes: processes.into_iter().map(record).collect(),
        findings: vec![Finding {
            kind: FindingKind::RulesTooLarge,
            severity: Severity::High,
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
    meshed: &std::collections::BTreeMap<u64, bool>,
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
    // Unconnected sockets that already carry an exempt source port or mark.
    let all_ways: Vec<Vec<Way>> = all_ways
        .into_iter()
        .zip(&members)
        .map(|(mut w, p)| {
            w.extend(crate::held::escapes(p, ns));
            w
        })
        .collect();
    let groups_matter = ways::matches_groups(&ns.rules);
    let local = ns.local_addrs();
    let mesh = meshes::detect(&ns.rules, &local);
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
    // The pod's sandbox (pause) as its runtime says: the init of the sandbox's pid
    // namespace, with the user the runtime gave it, while it holds nothing to send with.
    // Anything else in the sandbox (`ctr task exec` into it, say) is judged as any process.
    let is_sandbox = |i: usize, p: &ProcessFacts| {
        let as_started = |c: &ContainerRef| {
            c.configured_user
                .as_ref()
                .is_some_and(|u| (u.uid, u.gid) == (p.fsuid, p.fsgid))
        };
        attributed[i]
            .as_ref()
            .is_some_and(|(c, _)| c.sandbox && as_started(c))
            && lives_in(i).is_none()
            && p.ns_pid == Some(1)
            && p.sockets.is_empty()
            && p.rings.is_empty()
            && p.threads.is_empty()
    };
    let pod = attributed[..ns.processes.len()]
        .iter()
        .flatten()
        .find_map(|(_, pod)| pod.clone());

    let mut processes: Vec<Judged> = members
        .iter()
        .enumerate()
        .filter(|(i, _)| !all_ways[*i].is_empty())
        .map(|(i, p)| {
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
            } else if is_sandbox(i, p) {
                ProcessVerdict::Sandbox
            } else {
                worst
            };
            let decided = !matches!(verdict, ProcessVerdict::Proxy | ProcessVerdict::Sandbox)
                && way.source != Source::Process;
            let why = match lives_in(i) {
                Some(home) => format!(
                    "{}; held by a process of network namespace {home}, made in this one",
                    way.why
                ),
                None => way.why.clone(),
            };
            let r: Option<&IdentityReport> = verdict_of(&way.identity);
            Judged {
                facts: p,
                identity: identity(p),
                container: attributed[i].as_ref().map(|(c, _)| c.clone()),
                verdict,
                reasons: if way.decides.is_some() {
                    way.cites.clone()
                } else {
                    r.map(|r| r.rules.clone()).unwrap_or_default()
                },
                decided_by: decided.then(|| DecidedBy {
                    source: way.source.clone(),
                    uid: way.identity.uid,
                    gid: way.identity.gid,
                    why,
                }),
                lives_in: lives_in(i),
                by_way: way.decides.is_some() && verdict != ProcessVerdict::Proxy,
            }
        })
        .collect();
    // Findings see the processes in the report's order.
    sort_processes(&mut processes);
    let findings = crate::findings::find(&crate::findings::Context {
        ns,
        analysis: &a,
        mesh: mesh.as_ref(),
        processes: &processes,
        kernel,
        meshed,
    });
    evidence_verdicts(&mut processes, &findings);
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
        processes: processes.into_iter().map(record).collect(),
        findings,
        incomplete: ns.gaps.iter().map(|g| format!("not read: {g}")).collect(),
    })
}
