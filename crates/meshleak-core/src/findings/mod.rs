//! Findings: what in a namespace needs attention, each with its evidence, deciding rules and
//! a one-line remedy. Findings that hold for every pod of a mesh by design (UDP, IPv6) are
//! reported only where a live socket or address makes them real, so reports stay short.

use std::net::IpAddr;

mod containers;
mod identity;
mod observed;
mod routing;

use crate::analyze::{Analysis, CapturedOn, ExemptionKind};
use crate::attribution::ContainerRef;
use crate::eval::{self, Flow, Identity, SourcePort, Verdict};
use crate::explain::RuleRef;
use crate::meshes::{Excluded, Mesh};
use crate::model::{IpVersion, Ruleset};
use crate::range::IdRange;
use crate::schema::{DecidedBy, Finding, FindingKind, ProcessVerdict, Severity};
use crate::snapshot::{NetnsFacts, ProcessFacts, SocketFacts, SocketProto};
use crate::ways::Source;

const CAP_KILL: u32 = 5;
const CAP_NET_BIND_SERVICE: u32 = 10;
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;

/// A process as the report judges it: its facts, the identity its traffic carries, and its
/// verdict with what decides it. Findings read these; the report's JSON record
/// ([`crate::schema::ProcessReport`]) is made from them afterwards.
#[derive(Clone, Debug)]
pub struct Judged<'a> {
    pub facts: &'a ProcessFacts,
    /// Its identity as the namespace's owner sees it (the leader's fsuid, fsgid, groups).
    pub identity: Identity,
    pub container: Option<ContainerRef>,
    pub verdict: ProcessVerdict,
    /// The rules that decide the verdict.
    pub reasons: Vec<RuleRef>,
    pub decided_by: Option<DecidedBy>,
    /// The network namespace it lives in, when not the one judged.
    pub lives_in: Option<u64>,
    /// Its verdict was decided by the way itself (a socket of another namespace, one bound
    /// to an exempt source port, a ring not read), not by its identity: `identity-exempt`
    /// would name the wrong cause.
    pub by_way: bool,
}

/// Everything the namespace gives to report.
pub struct Context<'a> {
    pub ns: &'a NetnsFacts,
    pub analysis: &'a Analysis,
    pub mesh: Option<&'a Mesh>,
    pub processes: &'a [Judged<'a>],
    /// The kernel release (`6.1.0-...`).
    pub kernel: &'a str,
    /// The snapshot's other namespaces, by inode, and whether a mesh captures each: where a
    /// unix socket's peer lives decides whether what it relays is captured.
    pub meshed: &'a std::collections::BTreeMap<u64, bool>,
}

impl<'a> Context<'a> {
    /// The uids and gids the running proxy holds (its processes' fs, real, effective and
    /// saved ids, and groups): the identities the mesh writes its exemptions for. `None`
    /// when no proxy runs: which exemptions are the mesh's own cannot be told then.
    fn proxy_ids(&self) -> Option<(Vec<u32>, Vec<u32>)> {
        let proxies: Vec<&Judged> = self
            .processes
            .iter()
            .filter(|p| p.verdict == ProcessVerdict::Proxy && p.lives_in.is_none())
            .collect();
        if proxies.is_empty() {
            return None;
        }
        let mut uids: Vec<u32> = Vec::new();
        let mut gids: Vec<u32> = Vec::new();
        for p in proxies {
            uids.push(p.identity.uid);
            uids.extend(&p.facts.all_uids);
            gids.push(p.identity.gid);
            gids.extend(&p.facts.all_gids);
            gids.extend(&p.identity.groups);
        }
        uids.sort_unstable();
        uids.dedup();
        gids.sort_unstable();
        gids.dedup();
        Some((uids, gids))
    }

    /// Whether a rule in the mesh's own chains is an owner exemption the mesh did not write
    /// for the proxy that runs: it names a uid or gid no proxy process holds and the mesh
    /// does not exempt by default (`-I ISTIO_OUTPUT 1 -m owner --uid-owner 10001 -j RETURN`). Negated owner matches (the
    /// mesh's `! --uid-owner 1337`) are not exemptions.
    fn foreign_exemption(&self, r: &crate::model::Rule) -> bool {
        use crate::model::{Action, Test};
        let Some((mut uids, gids)) = self.proxy_ids() else {
            return false;
        };
        uids.extend(self.mesh.map_or(&[][..], |m| m.profile().own_uids));
        if !r
            .actions
            .iter()
            .any(|a| matches!(a, Action::Return | Action::Accept))
        {
            return false;
        }
        let outside = |ranges: &[IdRange], held: &[u32]| {
            ranges
                .iter()
                .any(|r| !held.iter().any(|id| r.contains(*id)))
        };
        r.matches
            .iter()
            .filter(|m| !m.negated)
            .any(|m| match &m.test {
                Test::Uid { ranges } => outside(ranges, &uids),
                Test::Gid { ranges, .. } => outside(ranges, &gids),
                _ => false,
            })
    }

    /// The processes that are not the proxy: the ones whose escape is a finding.
    /// The processes that are neither the proxy nor the pod's sandbox.
    fn apps(&self) -> impl Iterator<Item = &Judged<'a>> {
        self.processes
            .iter()
            .filter(|p| !matches!(p.verdict, ProcessVerdict::Proxy | ProcessVerdict::Sandbox))
    }
}

pub fn find(c: &Context) -> Vec<Finding> {
    let mut out = Vec::new();
    unknown_rules(c, &mut out);
    identity::identity_exempt(c, &mut out);
    owner_changed(c, &mut out);
    let Some(mesh) = c.mesh else { return out };
    containers::proxy_not_exempt(c, mesh, &mut out);
    containers::identity_changed(c, &mut out);
    capture_missing(c, mesh, &mut out);
    mark_exempt(c, &mut out);
    shared_pid_namespace(c, &mut out);
    proxy_admin(c, mesh, &mut out);
    exclusions(c, &mut out);
    source_port_exempt(c, &mut out);
    routing::policy_routed(c, &mut out);
    proxy_listener(c, mesh, &mut out);
    uncaptured_sockets(c, &mut out);
    below_netfilter(c, &mut out);
    family_uncaptured(c, IpVersion::V6, &mut out);
    family_uncaptured(c, IpVersion::V4, &mut out);
    capabilities(c, mesh, &mut out);
    foreign_rules(c, mesh, &mut out);
    observed::observed_bypass(c, &mut out);
    unix_relay(c, &mut out);
    cgroup_programs(c, &mut out);
    out.sort_by_key(|f| f.severity);
    out
}

/// Rules cited in one `unknown` finding; the rest are counted in its message.
const UNKNOWN_SHOWN: usize = 8;

/// `unknown`: rules meshleak does not model decide some traffic's fate, so the verdicts
/// that depend on them are `unknown`, never an answer either way. Names what and where.
fn unknown_rules(c: &Context, out: &mut Vec<Finding>) {
    let unknowns = &c.analysis.unknowns;
    if unknowns.is_empty() {
        return;
    }
    let undecided: Vec<u32> = c
        .processes
        .iter()
        .filter(|p| p.verdict == ProcessVerdict::Unknown)
        .map(|p| p.facts.pid)
        .collect();
    let capture_unknown = !c.analysis.undecided_on.is_empty();
    let mut message = format!(
        "{} rule{} meshleak does not model decide{} where some traffic goes",
        unknowns.len(),
        if unknowns.len() == 1 { "" } else { "s" },
        if unknowns.len() == 1 { "s" } else { "" },
    );
    if capture_unknown {
        let on: Vec<String> = c
            .analysis
            .undecided_on
            .iter()
            .map(ToString::to_string)
            .collect();
        message += &format!(
            ": whether an ordinary app's {} traffic is captured is unknown",
            on.join(", ")
        );
    }
    if !undecided.is_empty() {
        message += &format!("; the verdicts of processes {undecided:?} are unknown");
    }
    if unknowns.len() > UNKNOWN_SHOWN {
        message += &format!(" ({} more not listed)", unknowns.len() - UNKNOWN_SHOWN);
    }
    let shown = &unknowns[..unknowns.len().min(UNKNOWN_SHOWN)];
    out.push(Finding {
        kind: FindingKind::Unknown,
        severity: if capture_unknown || !undecided.is_empty() {
            Severity::High
        } else {
            Severity::Medium
        },
        pid: None,
        message,
        rules: shown.iter().map(|u| u.at.clone()).collect(),
        evidence: shown
            .iter()
            .map(|u| format!("{}: {}", u.at.place(), u.unknown))
            .collect(),
        socket: None,
        remedy: "check these rules by hand (or `meshleak trace` the flows that matter); meshleak cannot say whether the traffic they decide is captured".into(),
    });
}

/// `capture-missing`: the mesh's chains are there, but an ordinary app's traffic is captured
/// nowhere (OUTPUT does not reach them, or they redirect nothing outbound).
fn capture_missing(c: &Context, mesh: &Mesh, out: &mut Vec<Finding>) {
    if c.analysis.captured_on.is_empty() && c.analysis.undecided_on.is_empty() {
        out.push(Finding {
            kind: FindingKind::CaptureMissing,
            severity: Severity::High,
            pid: None,
            message: format!("{} chains are present, but no outbound traffic of an ordinary app is captured", mesh.kind),
            rules: Vec::new(),
            evidence: vec![format!("proxy ports {:?}, no captured destination", mesh.proxy_ports)],
            socket: None,
            remedy: "check that OUTPUT jumps to the mesh's chain and that the chain redirects (init container or CNI ran?)".into(),
        });
    }
}

/// `mark-exempt-capable`: a packet mark exempts traffic, and a non-proxy process may set
/// SO_MARK (CAP_NET_ADMIN; CAP_NET_RAW too since Linux 5.17).
fn mark_exempt(c: &Context, out: &mut Vec<Finding>) {
    let marks = mark_rules(c);
    if marks.is_empty() {
        return;
    }
    for p in c.apps() {
        let f = p.facts;
        let Some(cap) = mark_capability(c, f) else {
            continue;
        };
        out.push(Finding {
            kind: FindingKind::MarkExemptCapable,
            severity: Severity::Medium,
            pid: Some(p.facts.pid),
            message: format!(
                "{} can set the socket mark that exempts traffic ({cap}) and leave the mesh",
                p.facts.comm
            ),
            rules: marks.clone(),
            evidence: vec![format!(
                "{cap} in CapEff|CapPrm {:016x}, kernel {}",
                f.caps(),
                c.kernel
            )],
            socket: None,
            remedy: format!(
                "drop {} from the app container",
                cap.trim_start_matches("CAP_")
            ),
        });
    }
}

/// The rules that exempt traffic by packet mark.
fn mark_rules(c: &Context) -> Vec<RuleRef> {
    c.analysis
        .exemptions
        .iter()
        .filter(|e| e.kind == ExemptionKind::Mark)
        .filter_map(|e| e.rule.clone())
        .collect()
}

/// The capability that lets a process set SO_MARK on its sockets, if it has one.
fn mark_capability(c: &Context, f: &ProcessFacts) -> Option<&'static str> {
    if acts(c, f, CAP_NET_ADMIN) {
        Some("CAP_NET_ADMIN")
    } else if acts(c, f, CAP_NET_RAW) && kernel_at_least(c.kernel, 5, 17) {
        Some("CAP_NET_RAW")
    } else {
        None
    }
}

/// Whether a capability of the process acts on this namespace: held (by any of its
/// threads) in the user namespace owning it or an ancestor.
fn acts(c: &Context, f: &ProcessFacts, bit: u32) -> bool {
    f.has_cap(bit) && crate::ways::caps_count(f, c.ns)
}

/// Whether a kernel release (`6.1.0-18-amd64`) is at least major.minor.
fn kernel_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|x| x.parse::<u32>().ok());
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

/// `shared-pid-namespace`: an app in the proxy's pid namespace that may signal it (same uid,
/// or CAP_KILL) can stop the proxy.
fn shared_pid_namespace(c: &Context, out: &mut Vec<Finding>) {
    let proxies: Vec<&Judged> = c
        .processes
        .iter()
        .filter(|p| p.verdict == ProcessVerdict::Proxy)
        .collect();
    for p in c.apps() {
        let (f, id) = (p.facts, &p.identity);
        let reachable = proxies.iter().find(|proxy| {
            proxy.facts.pidns == f.pidns
                && f.pidns != 0
                && (proxy.identity.uid == id.uid || acts(c, f, CAP_KILL))
        });
        if let Some(proxy) = reachable {
            out.push(Finding {
                kind: FindingKind::SharedPidNamespace,
                severity: Severity::Medium,
                pid: Some(p.facts.pid),
                message: format!("{} shares a pid namespace with the proxy ({}) and may signal it: killing the proxy breaks or bypasses capture", p.facts.comm, proxy.facts.pid),
                rules: Vec::new(),
                evidence: vec![format!("pid namespace {}", f.pidns)],
                socket: None,
                remedy: "do not share the process namespace (shareProcessNamespace: false), or run the app as another uid without CAP_KILL".into(),
            });
        }
    }
}

/// `proxy-admin-reachable`: Envoy's admin port listens where apps reach it, so
/// `POST /quitquitquit` stops the proxy.
fn proxy_admin(c: &Context, mesh: &Mesh, out: &mut Vec<Finding>) {
    let Some(port) = mesh.profile().admin_port else {
        return;
    };
    if let Some(s) =
        c.ns.sockets
            .iter()
            .find(|s| s.proto == SocketProto::Tcp && s.state == "listen" && s.local_port == port)
    {
        out.push(Finding {
            kind: FindingKind::ProxyAdminReachable,
            severity: Severity::Medium,
            pid: None,
            message: format!("the proxy's admin port {port} listens in the pod: any app can stop the proxy (POST /quitquitquit)"),
            rules: Vec::new(),
            evidence: vec![socket_text(s)],
            socket: None,
            remedy: "bind the admin interface to a unix socket or protect it; the mesh's defaults may allow this by design".into(),
        });
    }
}

/// Rules a mesh writes straight into the hook chains: its jump into its own chain, a
/// redirect to one of its proxy ports (Kuma's DNS capture), or a rule carrying its comment.
fn mesh_hook_rule(mesh: &Mesh, r: &crate::model::Rule) -> bool {
    use crate::model::Action;
    let to_proxy = |p: Option<u16>| p.is_some_and(|p| mesh.proxy_ports.contains(&p));
    let acts = r.actions.iter().any(|a| match a {
        Action::Jump { chain } | Action::Goto { chain } => mesh.profile().owns(chain),
        Action::Redirect { ports } | Action::Dnat { ports, .. } => to_proxy(ports.map(|p| p.start)),
        Action::Tproxy { port } => to_proxy(*port),
        _ => false,
    });
    let Some(marker) = mesh.profile().comment else {
        return acts;
    };
    acts || r.comment.as_deref().is_some_and(|c| c.starts_with(marker))
}

/// `foreign-rule`: a rule outside the mesh's own chains and tables (inserted ahead of the
/// mesh's jump, or in another table or backend), or an owner exemption inside them that
/// names an id the running proxy does not hold, that changes some verdict: the analysis is
/// run again without it, and any process's verdict or the ordinary app's capture differs.
fn foreign_rules(c: &Context, mesh: &Mesh, out: &mut Vec<Finding>) {
    let profile = mesh.profile();
    if profile.layout.is_empty() {
        return;
    }
    let ours = |name: &str| profile.owns(name);
    let rules = &c.ns.rules;
    let mut candidates = Vec::new();
    for (ti, t) in rules.tables.iter().enumerate() {
        for (ci, chain) in t.chains.iter().enumerate() {
            let own = ours(&t.name) || ours(&chain.name);
            for (ri, r) in chain.rules.iter().enumerate() {
                let effect = r
                    .actions
                    .iter()
                    .any(|a| !matches!(a, crate::model::Action::Continue { .. }));
                let foreign = if own {
                    c.foreign_exemption(r)
                } else {
                    effect && !mesh_hook_rule(mesh, r)
                };
                if foreign {
                    candidates.push((ti, ci, ri));
                }
            }
        }
    }
    if candidates.is_empty() {
        return;
    }
    // Every identity a process goes out with (its threads' and its sockets' too), and the
    // identities the candidates name that no process has now: a container can exec as
    // root, or as any id a rule names, at any time, so an exemption nobody uses yet is
    // still one.
    let held: Vec<Vec<Identity>> = c
        .processes
        .iter()
        .map(|p| {
            crate::ways::ways(p.facts, c.ns)
                .into_iter()
                .map(|w| w.identity)
                .collect()
        })
        .collect();
    let mut ids: Vec<Identity> = held.iter().flatten().cloned().collect();
    let reference = &c.analysis.reference_identity;
    for &(ti, ci, ri) in &candidates {
        ids.extend(named_identities(
            &rules.tables[ti].chains[ci].rules[ri],
            reference,
        ));
    }
    ids.sort_by_key(|i| (i.uid, i.gid, i.groups.clone()));
    ids.dedup();
    // Bounded work on hostile rule sets: the first rules are the ones inserted ahead, and
    // together the re-analyses may cost at most WORK_BUDGET (a few Istio-sized analyses'
    // worth per candidate; a rule set whose own analysis is that dear gets fewer).
    let Some((baseline, work)) = summary(rules, &ids) else {
        return;
    };
    let affordable = (WORK_BUDGET / work.max(1)).min(MAX_CANDIDATES);
    if affordable < candidates.len() {
        out.push(Finding {
            kind: FindingKind::ForeignRuleUnchecked,
            severity: Severity::Low,
            pid: None,
            message: format!(
                "{} of {} rules outside {}'s own chains were not checked for changed verdicts (re-analysing this rule set for each is beyond meshleak's work bound)",
                candidates.len() - affordable,
                candidates.len(),
                mesh.kind
            ),
            rules: candidates
                .iter()
                .skip(affordable)
                .take(8)
                .map(|(ti, ci, ri)| crate::explain::rule_ref(rules, *ti, *ci, Some(*ri)))
                .collect(),
            evidence: vec![format!("analysis work {work}, bound {WORK_BUDGET}")],
            socket: None,
            remedy: "check these rules by hand, or with `meshleak trace` for the flows that matter".into(),
        });
    }
    for (ti, ci, ri) in candidates.into_iter().take(affordable) {
        let mut without = rules.clone();
        without.tables[ti].chains[ci].rules.remove(ri);
        let Some((changed, _)) = summary(&without, &ids) else {
            continue;
        };
        if changed == baseline {
            continue;
        }
        // The identities whose verdict the rule decides; `ids` and the verdicts align.
        let differ: Vec<&Identity> = ids
            .iter()
            .zip(baseline.0.iter().zip(&changed.0))
            .filter(|(_, (a, b))| a != b)
            .map(|(id, _)| id)
            .collect();
        let affected: Vec<u32> = c
            .processes
            .iter()
            .zip(&held)
            .filter(|(_, ways)| ways.iter().any(|w| differ.contains(&w)))
            .map(|(p, _)| p.facts.pid)
            .collect();
        let latent: Vec<String> = differ
            .iter()
            .filter(|id| !held.iter().flatten().any(|w| w == **id))
            .map(|id| identity_text(id, reference))
            .collect();
        let own = ours(&rules.tables[ti].name) || ours(&rules.tables[ti].chains[ci].name);
        let mut message = if own {
            format!(
                "an exemption in {}'s own chain names an id its running proxy does not hold: the mesh writes one only when told to exclude that id (an exclusion setting), else someone inserted it; it changes verdicts",
                mesh.kind
            )
        } else {
            format!("a rule outside {}'s own chains changes verdicts", mesh.kind)
        };
        if !affected.is_empty() {
            message.push_str(&format!(" (of processes {affected:?})"));
        }
        if !latent.is_empty() {
            message.push_str(&format!(
                "{} for {}, which no running process has now: any process that becomes it (an exec as that user, a new container) is decided by it",
                if affected.is_empty() { "" } else { ", and" },
                latent.join(", ")
            ));
        }
        out.push(Finding {
            kind: FindingKind::ForeignRule,
            severity: if affected.is_empty() { Severity::Medium } else { Severity::High },
            pid: None,
            message,
            rules: vec![crate::explain::rule_ref(rules, ti, ci, Some(ri))],
            evidence: Vec::new(),
            socket: None,
            remedy: "find who added this rule (a process with NET_ADMIN, a node agent) and whether it is meant to".into(),
        });
    }
}

/// The identities a rule's owner matches name, each with the reference identity's other
/// ids: what a process would be to be decided by that match alone.
fn named_identities(r: &crate::model::Rule, reference: &Identity) -> Vec<Identity> {
    use crate::model::Test;
    let mut out = Vec::new();
    for m in r.matches.iter().filter(|m| !m.negated) {
        match &m.test {
            Test::Uid { ranges } => out.extend(ranges.iter().map(|r| Identity {
                uid: r.start,
                ..reference.clone()
            })),
            Test::Gid {
                ranges,
                suppl_groups,
            } => out.extend(ranges.iter().map(|r| {
                if *suppl_groups {
                    Identity {
                        groups: vec![r.start],
                        ..reference.clone()
                    }
                } else {
                    Identity {
                        gid: r.start,
                        ..reference.clone()
                    }
                }
            })),
            _ => {}
        }
    }
    out
}

/// `uid 0`, `gid 1337`, `group 1337`: what sets an identity apart from the reference one.
fn identity_text(id: &Identity, reference: &Identity) -> String {
    let mut parts = Vec::new();
    if id.uid != reference.uid {
        parts.push(format!("uid {}", id.uid));
    }
    if id.gid != reference.gid {
        parts.push(format!("gid {}", id.gid));
    }
    if !id.groups.is_empty() {
        parts.push(format!("groups {:?}", id.groups));
    }
    if parts.is_empty() {
        parts.push(format!("uid {} gid {}", id.uid, id.gid));
    }
    parts.join(" ")
}

/// Per-identity verdicts and what an ordinary app gets captured on: what a rule may change.
type Summary = (Vec<crate::analyze::IdentityVerdict>, Vec<CapturedOn>, usize);

/// The summary of an analysis, and what the analysis cost.
fn summary(rules: &Ruleset, ids: &[Identity]) -> Option<(Summary, usize)> {
    let a = crate::analyze::analyze(rules, ids).ok()?;
    Some((
        (
            a.identities.iter().map(|i| i.verdict).collect(),
            a.captured_on,
            a.escapes.len(),
        ),
        a.work,
    ))
}

/// At most this many rules are re-analysed for foreign-rule.
const MAX_CANDIDATES: usize = 32;
/// The total analysis work (see `Analysis::work`) foreign-rule may spend in one namespace:
/// about a second on a 2-core VM (an Istio pod's analysis is ~40,000; one of a pod holding
/// Istio's rules in legacy, iptables-nft and native nft at once ~520,000, 0.24 s).
const WORK_BUDGET: usize = 2_000_000;

/// A process whose escape its decisive way names, not its identity: a socket of another
/// network namespace, or one that carries a source port or mark the rules exempt.
fn way_escape(p: &Judged, out: &mut Vec<Finding>) {
    let Some(by) = &p.decided_by else { return };
    let (kind, message, remedy, socket) = match &by.source {
        Source::ForeignSocket { inode, netns, .. } => (
            FindingKind::ForeignSocket,
            format!(
                "{} holds a socket made in network namespace {netns}: what it sends meets that namespace's rules, never this pod's capture",
                p.facts.comm
            ),
            "find how the socket got there (made after setns, or passed over a unix socket with SCM_RIGHTS) and keep pods from joining other network namespaces (no CAP_SYS_ADMIN, no hostPath to /run/netns)".to_string(),
            Some(*inode),
        ),
        Source::Socket { inode, .. } => (
            FindingKind::HeldSocketExempt,
            format!(
                "{} holds a socket that already carries what the rules exempt (a bound source port, a mark): what it sends next leaves uncaptured, whatever its identity, with no privilege needed any more",
                p.facts.comm
            ),
            "exempt the proxy by its identity (an owner match), never by source port; where a mark exempts, keep NET_ADMIN and NET_RAW from every app container, also at start".to_string(),
            Some(*inode),
        ),
        _ => return,
    };
    out.push(Finding {
        kind,
        severity: Severity::High,
        pid: Some(p.facts.pid),
        message,
        rules: p.reasons.clone(),
        evidence: vec![by.why.clone()],
        socket,
        remedy,
    });
}

/// `owner-changed`: a held socket whose inode's owner (what `stat` and /proc-based tools
/// show) is not the credentials owner matches compare (its file's, fixed at creation):
/// someone ran `fchown` on it, which changes nothing the kernel checks and hides who made
/// it.
fn owner_changed(c: &Context, out: &mut Vec<Finding>) {
    for p in c.apps() {
        for s in &p.facts.sockets {
            let Some((iu, ig)) = s.inode_owner else {
                continue;
            };
            out.push(Finding {
                kind: FindingKind::OwnerChanged,
                severity: Severity::Medium,
                pid: Some(p.facts.pid),
                message: format!(
                    "{} holds socket:[{}], whose inode's owner ({iu}:{ig}) was changed from the credentials it was created with ({}:{}): owner matches compare the latter, tools that stat /proc show the former",
                    p.facts.comm, s.inode, s.uid, s.gid
                ),
                rules: Vec::new(),
                evidence: vec![format!(
                    "fd {}: f_cred fsuid {} fsgid {}, inode owner {iu}:{ig}",
                    s.fd, s.uid, s.gid
                )],
                socket: Some(s.inode),
                remedy: "find why the app disguises its socket's owner; judge it by the credentials it was made with".into(),
            });
        }
    }
}

/// `unix-relay`: an app holds a unix socket connected to one of another network
/// namespace (a path socket crosses namespaces; a passed descriptor does too): the peer's
/// process can send whatever the app hands it, from where the peer lives. The host's
/// namespace and an unmeshed one capture nothing: `high`, and the app bypasses; where
/// meshedness is not known (a namespace this scan did not read), `medium` and `unknown`;
/// a meshed one judges the peer by its own rules: `low`.
fn unix_relay(c: &Context, out: &mut Vec<Finding>) {
    for p in c.apps() {
        for s in &p.facts.sockets {
            let Some(peer) = &s.unix_peer else { continue };
            let meshed = if peer.host {
                Some(false)
            } else {
                c.meshed.get(&peer.netns).copied()
            };
            let (severity, state) = match meshed {
                Some(false) if peer.host => {
                    (Severity::High, "the host's, where nothing is captured")
                }
                Some(false) => (Severity::High, "not meshed: nothing is captured there"),
                None => (
                    Severity::Medium,
                    "not read by this scan: whether it is captured is unknown",
                ),
                Some(true) => (
                    Severity::Low,
                    "meshed: the peer's own verdict judges what it sends",
                ),
            };
            let holders = peer
                .holders
                .iter()
                .map(|h| format!("{} (pid {})", h.comm, h.pid))
                .collect::<Vec<_>>()
                .join(", ");
            out.push(Finding {
                kind: FindingKind::UnixRelay,
                severity,
                pid: Some(p.facts.pid),
                message: format!(
                    "{} is connected over a unix socket to {holders} in network namespace {} ({state}): what it hands over leaves from there",
                    p.facts.comm, peer.netns
                ),
                rules: Vec::new(),
                evidence: vec![format!(
                    "fd {}, socket:[{}] connected to socket:[{}] of network namespace {}",
                    s.fd, s.inode, peer.inode, peer.netns
                )],
                socket: Some(s.inode),
                remedy: "do not mount sockets of node daemons or other pods into the app's container (hostPath, shared volumes); if the peer must relay, mesh it".into(),
            });
        }
    }
}

/// Whether a cgroup program is Cilium's socket load balancing, which rewrites a
/// connection to a service into one to a backend: capture still happens, to the backend.
fn cilium_socket_lb(name: &str) -> bool {
    name.starts_with("cil_sock")
}

/// `cgroup-program`: BPF programs on an app's cgroup act on its sockets before netfilter
/// (connect4/6 and sendmsg4/6 rewrite destinations, bind4/6 sources, sock_create marks and
/// interfaces). What an unknown one does is not modelled, so the app's capture is
/// `unknown` (`high`); Cilium's socket load balancing is known: capture still happens, but
/// the proxy sees the backend pod's address, not the service's (`medium`).
fn cgroup_programs(c: &Context, out: &mut Vec<Finding>) {
    for p in c.apps() {
        let programs = &p.facts.cgroup_programs;
        if programs.is_empty() {
            continue;
        }
        let evidence: Vec<String> = programs
            .iter()
            .map(|g| format!("{} program {} ({})", g.attach, g.id, g.name))
            .collect();
        let known = programs.iter().all(|g| cilium_socket_lb(&g.name));
        let (severity, message, remedy) = if known {
            (
                Severity::Medium,
                format!(
                    "Cilium's socket load balancing on {}'s cgroup rewrites its connections to services into connections to backend pods before the capture sees them: they are still captured, but the proxy sees the backend's address, not the service's, so routing and policy by service do not apply",
                    p.facts.comm
                ),
                "set Cilium's socketLB.hostNamespaceOnly=true (bpf-lb-sock-hostns-only) so pods' connections keep the service's address for the proxy".to_string(),
            )
        } else {
            (
                Severity::High,
                format!(
                    "BPF programs on {}'s cgroup act on its sockets before netfilter: they can rewrite where it connects or sends, its source or its mark, which meshleak does not model, so whether its traffic is captured is unknown",
                    p.facts.comm
                ),
                "find who attached them (`bpftool cgroup tree`) and what they do; detach them from pods' cgroups unless they keep the mesh's capture".to_string(),
            )
        };
        out.push(Finding {
            kind: FindingKind::CgroupProgram,
            severity,
            pid: Some(p.facts.pid),
            message,
            rules: Vec::new(),
            evidence,
            socket: None,
            remedy,
        });
    }
}

/// Destination exclusions: ports, networks and interfaces that escape for everyone.
/// Loopback exclusions are how every mesh keeps in-pod traffic direct, so not reported.
fn exclusions(c: &Context, out: &mut Vec<Finding>) {
    for e in &c.analysis.exemptions {
        let (kind, what, excluded) = match e.kind {
            ExemptionKind::Port => (
                FindingKind::PortExcluded,
                "destination port",
                Excluded::Ports,
            ),
            ExemptionKind::Cidr => (
                FindingKind::CidrExcluded,
                "destination network",
                Excluded::Cidrs,
            ),
            ExemptionKind::Interface => (
                FindingKind::InterfaceExcluded,
                "output interface",
                Excluded::Interfaces,
            ),
            _ => continue,
        };
        // Loopback is every mesh's by design, and so are the addresses a mesh's own layout
        // exempts (ambient's health-probe address).
        let by_design = excluded == Excluded::Cidrs
            && c.mesh.is_some_and(|m| e.only_to(m.profile().own_addresses));
        if e.loopback_only() && kind != FindingKind::PortExcluded || by_design {
            continue;
        }
        out.push(Finding {
            kind,
            severity: Severity::Low,
            pid: None,
            message: format!(
                "traffic matching {what} {} leaves uncaptured, for every process",
                e.conditions.join(" ")
            ),
            rules: e.rule.iter().cloned().collect(),
            evidence: Vec::new(),
            socket: None,
            remedy: match c.mesh.and_then(|m| m.profile().annotation(excluded)) {
                Some(annotation) => format!(
                    "the pod's {annotation} annotation (or the mesh's defaults) sets this; remove the entry if this traffic must go through the proxy"
                ),
                None => "check that the exclusion (the mesh's annotation or config) is still wanted"
                    .into(),
            },
        });
    }
}

/// `source-port-exempt`: traffic from some source ports leaves uncaptured, and the source
/// port is the app's to choose (bind before connect). Ports from the namespace's
/// `ip_unprivileged_port_start` up (1024 by default; some runtimes set 0) need nothing;
/// lower ones need CAP_NET_BIND_SERVICE, in every container runtime's default set.
fn source_port_exempt(c: &Context, out: &mut Vec<Finding>) {
    for e in c.analysis.exemptions.iter().filter(|e| {
        e.kind == ExemptionKind::Source && !e.source_ports.is_empty() && !e.loopback_only()
    }) {
        let ports: Vec<String> = e
            .source_ports
            .iter()
            .map(|r| {
                if r.start == r.end {
                    r.start.to_string()
                } else {
                    format!("{}-{}", r.start, r.end)
                }
            })
            .collect();
        let start = c.ns.unprivileged_port_start.unwrap_or(1024);
        let sysctl = match c.ns.unprivileged_port_start {
            Some(n) => format!("ip_unprivileged_port_start is {n} in this namespace"),
            None => "ip_unprivileged_port_start not read: 1024 assumed".into(),
        };
        let unprivileged = e.source_ports.iter().any(|r| r.end >= start);
        let mut evidence = vec![format!("source ports {}", ports.join(","))];
        if unprivileged {
            evidence.push(format!(
                "ports from {start} up: any process may bind them ({sysctl})"
            ));
        } else {
            let holders: Vec<String> = c
                .apps()
                .filter(|p| p.facts.has_cap(CAP_NET_BIND_SERVICE))
                .map(|p| {
                    format!(
                        "{} (pid {}) has CAP_NET_BIND_SERVICE",
                        p.facts.comm, p.facts.pid
                    )
                })
                .collect();
            evidence.push(format!("ports below {start}: binding them needs CAP_NET_BIND_SERVICE (default in containers; {sysctl})"));
            evidence.extend(holders);
        }
        out.push(Finding {
            kind: FindingKind::SourcePortExempt,
            severity: Severity::Medium,
            pid: None,
            message: format!(
                "traffic from source ports {} leaves uncaptured, and a process chooses its own source port: binding one before connecting takes it out of the mesh",
                ports.join(",")
            ),
            rules: e.rule.iter().cloned().collect(),
            evidence,
            socket: None,
            remedy: "exempt the proxy by its identity (owner match or mark), never by source port".into(),
        });
    }
}

/// `proxy-absent`: a proxy port where nothing the capture delivers to listens;
/// `proxy-impostor`: that listener is a process whose own traffic the rules capture (so it
/// is not the exempt proxy). A listener the capture never reaches (a v6-only one where
/// only IPv4 is captured) receives nothing redirected: it is neither.
fn proxy_listener(c: &Context, mesh: &Mesh, out: &mut Vec<Finding>) {
    let targets = crate::proxy::targets(&c.ns.rules, &c.ns.local_addrs());
    for &port in &mesh.proxy_ports {
        let here: Vec<_> = targets
            .iter()
            .copied()
            .filter(|(p, _)| *p == port)
            .collect();
        let listeners: Vec<&SocketFacts> =
            c.ns.sockets
                .iter()
                .filter(|s| crate::proxy::delivered(s, &here))
                .collect();
        if listeners.is_empty() {
            out.push(Finding {
                kind: FindingKind::ProxyAbsent,
                severity: Severity::High,
                pid: None,
                message: format!("traffic is redirected to port {port}, but nothing listens there where the redirect delivers: the proxy is not running"),
                rules: Vec::new(),
                evidence: vec![format!("no listening socket on port {port} of a family the capture reaches ({})", here.iter().map(|(_, v)| v.family().name()).collect::<Vec<_>>().join(", "))],
                socket: None,
                remedy: "check the proxy container (crash loop, killed, or an unused capture port)".into(),
            });
            continue;
        }
        for s in listeners {
            let owner = c.processes.iter().find(|p| p.facts.holds(s.inode));
            if let Some(p) = owner.filter(|p| p.verdict != ProcessVerdict::Proxy) {
                out.push(Finding {
                    kind: FindingKind::ProxyImpostor,
                    severity: Severity::High,
                    pid: Some(p.facts.pid),
                    message: format!("{} (uid {}, gid {}) listens on proxy port {port} but is not the exempt proxy: redirected traffic goes to it", p.facts.comm, p.identity.uid, p.identity.gid),
                    rules: Vec::new(),
                    evidence: vec![socket_text(s)],
                    socket: None,
                    remedy: "find out why this process holds the proxy's port".into(),
                });
            }
        }
    }
}

fn socket_text(s: &SocketFacts) -> String {
    let proto = s.proto.name();
    let ep = |a: &IpAddr, p: u16| crate::explain::addr_port(a, p);
    format!(
        "{proto} {} -> {} ({})",
        ep(&s.local, s.local_port),
        ep(&s.remote, s.remote_port),
        s.state
    )
}

fn captured(on: &[CapturedOn], version: IpVersion, proto: &str) -> bool {
    on.iter()
        .any(|c| c.family == version.family().name() && c.protocol == proto)
}

/// `protocol-uncaptured`: live non-TCP sockets of non-proxy processes that the rules never
/// capture: raw sockets, and UDP sockets whose connected destination escapes (or, unconnected,
/// when nothing captures UDP). TCP escapes are identity or destination findings.
fn uncaptured_sockets(c: &Context, out: &mut Vec<Finding>) {
    for p in c.apps() {
        let (f, id) = (p.facts, &p.identity);
        let mut evidence = Vec::new();
        for s in c.ns.sockets.iter().filter(|s| f.holds(s.inode)) {
            if s.local.is_loopback() || s.proto == SocketProto::Tcp {
                continue;
            }
            let version = IpVersion::of(&s.local);
            let escapes = match s.proto {
                SocketProto::Raw => true,
                // Unconnected, it may send anywhere: it escapes when any UDP beyond the
                // pod does (with DNS capture only port 53 is captured), datagram or not.
                SocketProto::Udp if s.remote.is_unspecified() => escapes_somewhere(c, version, 17),
                // Echo requests to wherever it sends them: judged as ICMP.
                SocketProto::Ping => escapes_somewhere(c, version, icmp(version)),
                _ => {
                    let flow = socket_flow(
                        c.ns,
                        id,
                        17,
                        (s.local, s.local_port),
                        (s.remote, s.remote_port),
                    );
                    eval::trace(&c.ns.rules, &flow).outcome.verdict == Verdict::Bypass
                }
            };
            if escapes {
                let unconnected = s.proto == SocketProto::Udp && s.remote.is_unspecified();
                evidence.push(if unconnected {
                    format!(
                        "{} (unconnected: it may send to any destination)",
                        socket_text(s)
                    )
                } else {
                    socket_text(s)
                });
            }
        }
        evidence.extend(unbound_datagram_sockets(c, f));
        if !evidence.is_empty() {
            out.push(Finding {
                kind: FindingKind::ProtocolUncaptured,
                severity: Severity::High,
                pid: Some(p.facts.pid),
                message: format!(
                    "{} holds sockets whose traffic the rules never capture",
                    p.facts.comm
                ),
                rules: Vec::new(),
                evidence,
                socket: None,
                remedy: "send this traffic over TCP through the mesh, or capture its protocol"
                    .into(),
            });
        }
    }
}

/// Sockets made in this namespace that are in none of the tables meshleak reads: a ping or
/// UDP socket not bound yet (hashed on its first send), UDP-Lite, SCTP, raw: what the
/// socket itself says (`SO_PROTOCOL`) is judged, since it may send anywhere.
fn unbound_datagram_sockets(c: &Context, f: &ProcessFacts) -> Vec<String> {
    f.sockets
        .iter()
        .filter_map(|h| Some((h, h.probed.as_ref()?)))
        // A TCP socket (MPTCP's too) not yet connected is judged as the process's way out.
        .filter(|(_, q)| {
            q.netns == c.ns.inode
                && q.sends_ip()
                && !(q.sock_type == 1 && matches!(q.protocol, 0 | 6 | 262))
        })
        .filter_map(|(h, q)| {
            let version = if q.family == 10 {
                IpVersion::V6
            } else {
                IpVersion::V4
            };
            let proto = match (q.sock_type, q.protocol) {
                (3, _) => None,
                (_, 1 | 58) => Some(icmp(version)),
                (2, 0) => Some(17),
                (_, p) => Some(p as u8),
            };
            let what = match proto {
                None => "raw".to_string(),
                Some(1 | 58) => "ping".to_string(),
                Some(p) => crate::model::proto_name(p),
            };
            let escapes = proto.is_none_or(|p| escapes_somewhere(c, version, p));
            escapes.then(|| {
                format!(
                    "{what} socket:[{}] (fd {}, in no socket table meshleak reads or not bound yet: it may send to any destination)",
                    h.inode, h.fd
                )
            })
        })
        .collect()
}

/// Whether some traffic of this protocol an ordinary app sends beyond loopback definitely
/// leaves uncaptured. A protocol the analysis does not cover (no rule names it: UDP-Lite,
/// DCCP, ...) is traced once to an outside address (TEST-NET-1, never sent anywhere):
/// escaping there, some of it escapes.
fn escapes_somewhere(c: &Context, version: IpVersion, proto: u8) -> bool {
    if !c.analysis.protocols.contains(&(version, proto)) {
        let flow = socket_flow(
            c.ns,
            &c.analysis.reference_identity,
            proto,
            (version.unspecified(), 40000),
            (version.outside(), 9),
        );
        return eval::trace(&c.ns.rules, &flow).outcome.verdict == Verdict::Bypass;
    }
    let name = crate::model::proto_name(proto);
    c.analysis.escapes.iter().any(|r| {
        r.family == version.family().name()
            && r.protocol == name
            && r.verdict == Verdict::Bypass
            && r.oif.iter().any(|o| o != "lo")
    })
}

/// ICMP's protocol number in this family.
fn icmp(version: IpVersion) -> u8 {
    match version {
        IpVersion::V4 => 1,
        IpVersion::V6 => 58,
    }
}

/// `packet-socket`: a non-proxy process holds an AF_PACKET socket, whose frames skip the
/// IP stack and netfilter (no rule, so no capture, sees them); `can-send-below-mesh`: one
/// that holds none yet has CAP_NET_RAW over the namespace (effective or permitted), which
/// every common container runtime grants by default, and may open one at will.
fn below_netfilter(c: &Context, out: &mut Vec<Finding>) {
    for p in c.apps() {
        let f = p.facts;
        let packets: Vec<&crate::snapshot::PacketSocket> =
            c.ns.packet_sockets
                .iter()
                .filter(|s| f.holds(s.inode))
                .collect();
        let held: Vec<String> = packets
            .iter()
            .map(|s| {
                let on = match s.ifindex {
                    0 => "every interface".to_string(),
                    i => format!("interface index {i}"),
                };
                format!(
                    "packet socket socket:[{}] ({}, ethertype 0x{:04x}, on {on})",
                    s.inode, s.kind, s.ethertype
                )
            })
            .collect();
        if !held.is_empty() {
            out.push(Finding {
                kind: FindingKind::PacketSocket,
                severity: Severity::High,
                pid: Some(p.facts.pid),
                message: format!("{} holds a packet socket: the frames it sends skip netfilter, so no capture rule and no proxy ever sees them; sending on it needs no privilege", p.facts.comm),
                rules: Vec::new(),
                evidence: held,
                socket: packets.first().map(|s| s.inode),
                remedy: "drop NET_RAW from the app container (capabilities: drop: [ALL])".into(),
            });
        } else if acts(c, f, CAP_NET_RAW) {
            out.push(Finding {
                kind: FindingKind::CanSendBelowMesh,
                severity: Severity::Medium,
                pid: Some(p.facts.pid),
                message: format!("{} has CAP_NET_RAW in this namespace: it can open a packet socket and send hand-made packets that skip netfilter and the mesh", p.facts.comm),
                rules: Vec::new(),
                evidence: vec![format!("CapEff|CapPrm {:016x}", f.caps())],
                socket: None,
                remedy: "drop NET_RAW from the app container (capabilities: drop: [ALL]); Pod Security \"restricted\" requires it".into(),
            });
        }
    }
}

/// The first packet a socket sends from `src` to `dst`, as the kernel would route it.
pub(crate) fn socket_flow(
    ns: &NetnsFacts,
    id: &Identity,
    proto: u8,
    (src, sport): (IpAddr, u16),
    (dst, dport): (IpAddr, u16),
) -> Flow {
    let (src, dst) = (src.to_canonical(), dst.to_canonical());
    let query = crate::route::Query {
        dst,
        src: (!src.is_unspecified()).then_some(src),
        uid: id.uid,
        mark: 0,
        proto,
        sport: Some(sport),
        dport,
    };
    let route = ns.routing().lookup(&query);
    let local = crate::route::Routed::local_addrs(
        route.as_ref(),
        dst,
        ns.interfaces
            .iter()
            .flat_map(|i| i.addrs.iter().copied())
            .collect(),
    );
    let oif = route.map_or_else(
        || if dst.is_loopback() { "lo" } else { "eth0" }.to_string(),
        |r| r.oif,
    );
    Flow {
        version: IpVersion::of(&dst),
        proto,
        src: (!src.is_unspecified()).then_some(src),
        dst,
        sport: SourcePort::Bound(sport),
        dport,
        oif,
        identity: id.clone(),
        mark: 0,
        local,
    }
}

/// `ipv6-uncaptured` / `ipv4-uncaptured`: one family is not captured while the namespace
/// has addresses or sockets of it that reach beyond the pod (IPv6: global ones; IPv4: any
/// but loopback). A dual-stack pod whose capture covers one family leaves by the other.
fn family_uncaptured(c: &Context, version: IpVersion, out: &mut Vec<Finding>) {
    let family = version.family().name();
    if c.analysis
        .captured_on
        .iter()
        .chain(&c.analysis.undecided_on)
        .any(|x| x.family == family)
    {
        return;
    }
    // Link-local IPv6 (fe80::/10, on every interface with IPv6 on) reaches the node and
    // the pods on the same bridge: a way out too, only a narrower one.
    let reaches = |a: &IpAddr| match (version, a.to_canonical()) {
        (IpVersion::V4, IpAddr::V4(v)) => !v.is_loopback() && !v.is_unspecified(),
        (IpVersion::V6, IpAddr::V6(v)) => !v.is_loopback() && !v.is_unspecified(),
        _ => false,
    };
    let link_local = crate::model::is_link_local;
    let addrs: Vec<(&str, &IpAddr)> =
        c.ns.interfaces
            .iter()
            .flat_map(|i| i.addrs.iter().map(move |a| (i.name.as_str(), a)))
            .filter(|(_, a)| reaches(a))
            .collect();
    let live_sockets: Vec<&SocketFacts> =
        c.ns.sockets
            .iter()
            .filter(|s| reaches(&s.local) || reaches(&s.remote))
            .collect();
    let narrow = |a: &IpAddr| link_local(a) || a.is_unspecified();
    let only_link_local = addrs.iter().all(|(_, a)| link_local(a))
        && live_sockets
            .iter()
            .all(|s| narrow(&s.local) && narrow(&s.remote));
    let mut evidence: Vec<String> = addrs
        .iter()
        .map(|(name, a)| format!("{name} has {a}"))
        .collect();
    let sockets: Vec<String> = live_sockets.into_iter().map(socket_text).collect();
    let live = !sockets.is_empty();
    evidence.extend(sockets);
    if evidence.is_empty() {
        return;
    }
    let (kind, name, tool) = match version {
        IpVersion::V4 => (FindingKind::Ipv4Uncaptured, "IPv4", "iptables"),
        IpVersion::V6 => (FindingKind::Ipv6Uncaptured, "IPv6", "ip6tables"),
    };
    out.push(Finding {
        kind,
        severity: if live { Severity::High } else { Severity::Medium },
        pid: None,
        message: if only_link_local {
            format!("the namespace reaches {name} link-local neighbours (fe80::/10 on its interfaces: the node, pods on the same bridge), but no rule captures {name} traffic")
        } else {
            format!("the namespace speaks {name}, but no rule captures {name} traffic")
        },
        rules: Vec::new(),
        evidence,
        socket: None,
        remedy: format!("enable the mesh's {name} capture ({tool} rules or an inet table), or disable {name} in the pod"),
    });
}

/// `can-modify-rules` (CAP_NET_ADMIN acting on the namespace) and `can-become-exempt`
/// (CAP_SETUID/SETGID in its own user namespace, which maps an exempt id) for processes
/// that are not the proxy and do not bypass already.
fn capabilities(c: &Context, mesh: &Mesh, out: &mut Vec<Finding>) {
    let owner = c.ns.owner.as_ref();
    for p in c.apps() {
        let f = p.facts;
        if acts(c, f, CAP_NET_ADMIN) {
            out.push(Finding {
                kind: FindingKind::CanModifyRules,
                severity: Severity::Medium,
                pid: Some(p.facts.pid),
                message: format!("{} has CAP_NET_ADMIN in this namespace: it can rewrite or delete the capture rules", p.facts.comm),
                rules: Vec::new(),
                evidence: vec![format!("CapEff|CapPrm {:016x}", f.caps())],
                socket: None,
                remedy: "drop NET_ADMIN from the app container (capabilities: drop: [ALL])".into(),
            });
        }
        let takes = |bit: u32,
                     ids: &[IdRange],
                     own: &[(u32, u32, u32)],
                     map: Option<&[(u32, u32, u32)]>| {
            f.has_cap(bit) && ids.iter().any(|r| crate::ways::can_take(own, map, *r))
        };
        let uid = takes(
            CAP_SETUID,
            &mesh.proxy_uids,
            &f.uid_map,
            owner.and_then(|o| o.uid_map.as_deref()),
        );
        let gid = takes(
            CAP_SETGID,
            &mesh.proxy_gids,
            &f.gid_map,
            owner.and_then(|o| o.gid_map.as_deref()),
        );
        if p.verdict.bypasses() {
            continue;
        }
        // An exempt id among its real, effective and saved ids is one it may switch to
        // with no capability at all.
        let held = |ids: &[u32], exempt: &[IdRange], of: fn(&Identity) -> u32| {
            ids.iter()
                .map(|&id| of(&crate::ways::in_owner(c.ns, id, id, &[])))
                .find(|id| exempt.iter().any(|r| r.contains(*id)))
        };
        let held_uid = held(&f.all_uids, &mesh.proxy_uids, |i| i.uid);
        let held_gid = held(&f.all_gids, &mesh.proxy_gids, |i| i.gid);
        if !(uid || gid) && (held_uid.is_some() || held_gid.is_some()) {
            let which = match (held_uid, held_gid) {
                (Some(u), _) => format!("uid {u}"),
                (None, Some(g)) => format!("gid {g}"),
                _ => unreachable!("one is set"),
            };
            out.push(Finding {
                kind: FindingKind::CanBecomeExempt,
                severity: Severity::Medium,
                pid: Some(p.facts.pid),
                message: format!("{} has {which} among its real, effective and saved ids, which the capture rules exempt: switching to it (setresuid/setresgid, setfsuid/setfsgid) needs no capability, and its traffic then leaves the mesh", p.facts.comm),
                rules: Vec::new(),
                evidence: vec![format!(
                    "Uid (real, effective, saved, fs) {:?}, Gid {:?}",
                    f.all_uids, f.all_gids
                )],
                socket: None,
                remedy: format!("start the app with no exempt id at all (runAsUser/runAsGroup, and no setuid wrapper that keeps {which} as its real or saved id)"),
            });
        }
        let setgid_exec = setgid_exec_group(c, f, &mesh.proxy_gids);
        if let Some(g) =
            setgid_exec.filter(|_| !(uid || gid) && held_uid.is_none() && held_gid.is_none())
        {
            let nnp = match f.no_new_privs {
                Some(_) => "NoNewPrivs 0",
                None => "NoNewPrivs not read",
            };
            out.push(Finding {
                kind: FindingKind::CanBecomeExempt,
                severity: Severity::Medium,
                pid: Some(p.facts.pid),
                message: format!("{} belongs to supplementary group {g}, which the capture rules exempt, and may gain privileges on exec ({nnp}): a copy of any binary given group {g} and made setgid (chgrp, chmod g+s, on a filesystem without nosuid) runs with gid {g}, and its traffic leaves the mesh", p.facts.comm),
                rules: Vec::new(),
                evidence: vec![format!("Groups {:?}, {nnp}", f.groups)],
                socket: None,
                remedy: format!("drop group {g} from the app (supplementalGroups, fsGroup) or set allowPrivilegeEscalation: false (NoNewPrivs)"),
            });
        }
        if uid || gid {
            out.push(Finding {
                kind: FindingKind::CanBecomeExempt,
                severity: Severity::Medium,
                pid: Some(p.facts.pid),
                message: format!("{} can switch to the proxy's exempt uid/gid (CAP_SETUID/CAP_SETGID) and leave the mesh; such a process can also fchown its sockets so that they look like another identity's", p.facts.comm),
                rules: Vec::new(),
                evidence: vec![format!("CapEff|CapPrm {:016x}", f.caps())],
                socket: None,
                remedy: "drop SETUID and SETGID from the app container, and run it as non-root".into(),
            });
        }
    }
}

/// An exempt gid among a process's supplementary groups (as the namespace's owner sees it)
/// when it may gain privileges on exec: `chgrp` to a group one belongs to and `chmod g+s`
/// need no capability, and exec of that file makes the group effective (and fs) gid.
/// Supplementary membership alone is captured; this is the way up.
fn setgid_exec_group(c: &Context, f: &ProcessFacts, exempt: &[IdRange]) -> Option<u32> {
    if f.no_new_privs == Some(true) {
        return None;
    }
    f.groups
        .iter()
        .map(|&g| crate::ways::in_owner(c.ns, g, g, &[]).gid)
        .find(|g| exempt.iter().any(|r| r.contains(*g)))
}

#[cfg(test)]
mod tests;
