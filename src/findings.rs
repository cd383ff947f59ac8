//! Findings: what in a namespace needs attention, each with its evidence, deciding rules and
//! a one-line remedy. Findings that hold for every pod of a mesh by design (UDP, IPv6) are
//! reported only where a live socket or address makes them real, so reports stay short.

use std::net::IpAddr;

use serde::Serialize;

use crate::analyze::{Analysis, CapturedOn};
use crate::eval::{self, Flow, Identity, SourcePort, Verdict};
use crate::explain::RuleRef;
use crate::model::{IpVersion, Ruleset};
use crate::report::{Mesh, ProcessReport, ProcessVerdict};
use crate::snapshot::{NetnsFacts, ProcessFacts, SocketFacts, SocketProto};

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub kind: &'static str,
    /// `high` (live traffic escapes, or the capture is broken), `medium` (a process can make
    /// itself escape), `low` (configured exclusions).
    pub severity: &'static str,
    pub pid: Option<u32>,
    pub message: String,
    pub rules: Vec<RuleRef>,
    /// Sockets, addresses or capabilities that make the finding real.
    pub evidence: Vec<String>,
    pub remedy: String,
}

const CAP_KILL: u32 = 5;
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;

/// Everything the namespace gives to report. `processes` pairs each report with its facts.
pub struct Context<'a> {
    pub ns: &'a NetnsFacts,
    pub analysis: &'a Analysis,
    pub mesh: Option<&'a Mesh>,
    pub processes: &'a [(&'a ProcessReport, &'a ProcessFacts, Identity)],
    /// The kernel release (`6.1.0-...`).
    pub kernel: &'a str,
}

pub fn find(c: &Context) -> Vec<Finding> {
    let mut out = Vec::new();
    identity_exempt(c, &mut out);
    let Some(mesh) = c.mesh else { return out };
    capture_missing(c, mesh, &mut out);
    mark_exempt(c, &mut out);
    shared_pid_namespace(c, &mut out);
    proxy_admin(c, mesh, &mut out);
    exclusions(c, &mut out);
    proxy_listener(c, mesh, &mut out);
    uncaptured_sockets(c, &mut out);
    ipv6(c, &mut out);
    capabilities(c, mesh, &mut out);
    foreign_rules(c, mesh, &mut out);
    let rank = |s: &str| match s {
        "high" => 0,
        "medium" => 1,
        _ => 2,
    };
    out.sort_by_key(|f| rank(f.severity));
    out
}

/// `capture-missing`: the mesh's chains are there, but an ordinary app's traffic is captured
/// nowhere (OUTPUT does not reach them, or they redirect nothing outbound).
fn capture_missing(c: &Context, mesh: &Mesh, out: &mut Vec<Finding>) {
    if c.analysis.captured_on.is_empty() {
        out.push(Finding {
            kind: "capture-missing",
            severity: "high",
            pid: None,
            message: format!("{} chains are present, but no outbound traffic of an ordinary app is captured", mesh.kind),
            rules: Vec::new(),
            evidence: vec![format!("proxy ports {:?}, no captured destination", mesh.proxy_ports)],
            remedy: "check that OUTPUT jumps to the mesh's chain and that the chain redirects (init container or CNI ran?)".into(),
        });
    }
}

/// `mark-exempt-capable`: a packet mark exempts traffic, and a non-proxy process may set
/// SO_MARK (CAP_NET_ADMIN; CAP_NET_RAW too since Linux 5.17).
fn mark_exempt(c: &Context, out: &mut Vec<Finding>) {
    let marks: Vec<&crate::analyze::Exemption> = c
        .analysis
        .exemptions
        .iter()
        .filter(|e| e.kind == "mark")
        .collect();
    if marks.is_empty() {
        return;
    }
    let raw_suffices = kernel_at_least(c.kernel, 5, 17);
    for (p, f, _) in c
        .processes
        .iter()
        .filter(|(p, _, _)| p.verdict != ProcessVerdict::Proxy)
    {
        let cap = if f.has_cap(CAP_NET_ADMIN) {
            "CAP_NET_ADMIN"
        } else if raw_suffices && f.has_cap(CAP_NET_RAW) {
            "CAP_NET_RAW"
        } else {
            continue;
        };
        out.push(Finding {
            kind: "mark-exempt-capable",
            severity: "medium",
            pid: Some(p.pid),
            message: format!(
                "{} can set the socket mark that exempts traffic ({cap}) and leave the mesh",
                p.comm
            ),
            rules: marks.iter().filter_map(|e| e.rule.clone()).collect(),
            evidence: vec![format!(
                "{cap} in CapEff {:016x}, kernel {}",
                f.cap_eff, c.kernel
            )],
            remedy: format!(
                "drop {} from the app container",
                cap.trim_start_matches("CAP_")
            ),
        });
    }
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
    let proxies: Vec<&(&ProcessReport, &ProcessFacts, Identity)> = c
        .processes
        .iter()
        .filter(|(p, _, _)| p.verdict == ProcessVerdict::Proxy)
        .collect();
    for (p, f, id) in c
        .processes
        .iter()
        .filter(|(p, _, _)| p.verdict != ProcessVerdict::Proxy)
    {
        let reachable = proxies.iter().find(|(_, pf, pid)| {
            pf.pidns == f.pidns && f.pidns != 0 && (pid.uid == id.uid || f.has_cap(CAP_KILL))
        });
        if let Some((proxy, _, _)) = reachable {
            out.push(Finding {
                kind: "shared-pid-namespace",
                severity: "medium",
                pid: Some(p.pid),
                message: format!("{} shares a pid namespace with the proxy ({}) and may signal it: killing the proxy breaks or bypasses capture", p.comm, proxy.pid),
                rules: Vec::new(),
                evidence: vec![format!("pid namespace {}", f.pidns)],
                remedy: "do not share the process namespace (shareProcessNamespace: false), or run the app as another uid without CAP_KILL".into(),
            });
        }
    }
}

/// `proxy-admin-reachable`: Envoy's admin port listens where apps reach it, so
/// `POST /quitquitquit` stops the proxy.
fn proxy_admin(c: &Context, mesh: &Mesh, out: &mut Vec<Finding>) {
    let port = match mesh.kind.as_str() {
        "istio-sidecar" | "istio-sidecar-nft" | "osm" => 15000,
        "kuma" | "appmesh" => 9901,
        "consul" => 19000,
        _ => return,
    };
    if let Some(s) =
        c.ns.sockets
            .iter()
            .find(|s| s.proto == SocketProto::Tcp && s.state == "listen" && s.local_port == port)
    {
        out.push(Finding {
            kind: "proxy-admin-reachable",
            severity: "medium",
            pid: None,
            message: format!("the proxy's admin port {port} listens in the pod: any app can stop the proxy (POST /quitquitquit)"),
            rules: Vec::new(),
            evidence: vec![socket_text(s)],
            remedy: "bind the admin interface to a unix socket or protect it; the mesh's defaults may allow this by design".into(),
        });
    }
}

/// Chain and table name prefixes each mesh's tools use: its own layout.
fn layout_prefixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "istio-sidecar" | "istio-ambient" => &["ISTIO_", "istio-"],
        "istio-sidecar-nft" => &["istio-"],
        "linkerd" => &["PROXY_INIT_"],
        "kuma" => &["KUMA_"],
        "consul" => &["CONSUL_", "consul_"],
        "osm" => &["OSM_", "FSM_", "PROXY_"],
        "appmesh" => &["APPMESH_"],
        _ => &[],
    }
}

/// `foreign-rule`: a rule outside the mesh's own chains and tables (inserted ahead of the
/// mesh's jump, or in another table or backend) that changes some verdict: the analysis is
/// run again without it, and any process's verdict or the ordinary app's capture differs.
fn foreign_rules(c: &Context, mesh: &Mesh, out: &mut Vec<Finding>) {
    let prefixes = layout_prefixes(&mesh.kind);
    if prefixes.is_empty() {
        return;
    }
    let ours = |name: &str| prefixes.iter().any(|p| name.starts_with(p));
    let rules = &c.ns.rules;
    let mut candidates = Vec::new();
    for (ti, t) in rules.tables.iter().enumerate() {
        if ours(&t.name) {
            continue;
        }
        for (ci, chain) in t.chains.iter().enumerate() {
            if ours(&chain.name) {
                continue;
            }
            for (ri, r) in chain.rules.iter().enumerate() {
                // The hook's jump into the mesh's chain is the mesh's own.
                let hook_jump = r.actions.iter().any(|a| matches!(a, crate::model::Action::Jump { chain } | crate::model::Action::Goto { chain } if ours(chain)));
                let effect = r
                    .actions
                    .iter()
                    .any(|a| !matches!(a, crate::model::Action::Continue { .. }));
                if !hook_jump && effect {
                    candidates.push((ti, ci, ri));
                }
            }
        }
    }
    // Bounded work on hostile rule sets: the first rules are the ones inserted ahead.
    let ids: Vec<Identity> = c.processes.iter().map(|(_, _, id)| id.clone()).collect();
    let baseline = summary(rules, &ids);
    for (ti, ci, ri) in candidates.into_iter().take(32) {
        let mut without = rules.clone();
        without.tables[ti].chains[ci].rules.remove(ri);
        let changed = summary(&without, &ids);
        if changed.is_none() || changed == baseline {
            continue;
        }
        let affected: Vec<u32> = c
            .processes
            .iter()
            .zip(
                baseline
                    .as_ref()
                    .map(|b| b.0.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .zip(changed.as_ref().map(|x| x.0.as_slice()).unwrap_or_default()),
            )
            .filter(|(_, (a, b))| a != b)
            .map(|((p, _, _), _)| p.pid)
            .collect();
        out.push(Finding {
            kind: "foreign-rule",
            severity: if affected.is_empty() { "medium" } else { "high" },
            pid: None,
            message: format!(
                "a rule outside {}'s own chains changes verdicts{}",
                mesh.kind,
                if affected.is_empty() { String::new() } else { format!(" (of processes {affected:?})") }
            ),
            rules: vec![crate::explain::rule_ref(rules, ti, ci, Some(ri))],
            evidence: Vec::new(),
            remedy: "find who added this rule (a process with NET_ADMIN, a node agent) and whether it is meant to".into(),
        });
    }
}

/// Per-identity verdicts and what an ordinary app gets captured on: what a rule may change.
type Summary = (Vec<crate::analyze::IdentityVerdict>, Vec<CapturedOn>, usize);

fn summary(rules: &Ruleset, ids: &[Identity]) -> Option<Summary> {
    let a = crate::analyze::analyze(rules, ids).ok()?;
    Some((
        a.identities.iter().map(|i| i.verdict).collect(),
        a.captured_on,
        a.escapes.len(),
    ))
}

fn identity_exempt(c: &Context, out: &mut Vec<Finding>) {
    for (p, _, _) in c.processes.iter().filter(|(p, _, _)| p.verdict.bypasses()) {
        let all = p.verdict == ProcessVerdict::Bypass;
        out.push(Finding {
            kind: "identity-exempt",
            severity: if all { "high" } else { "medium" },
            pid: Some(p.pid),
            message: format!(
                "{} (uid {}, gid {}) is not the proxy, but its traffic {} the mesh",
                p.comm,
                p.uid,
                p.gid,
                if all { "leaves" } else { "partly leaves" }
            ),
            rules: p.reasons.clone(),
            evidence: vec![format!("uid {} gid {} groups {:?}", p.uid, p.gid, p.groups)],
            remedy: "run the app with a uid, gid and groups no exemption rule names (e.g. not runAsGroup 1337)".into(),
        });
    }
}

/// Destination exclusions: ports, networks and interfaces that escape for everyone.
/// Loopback exclusions are how every mesh keeps in-pod traffic direct, so not reported.
fn exclusions(c: &Context, out: &mut Vec<Finding>) {
    for e in &c.analysis.exemptions {
        let (kind, what) = match e.kind {
            "port" => ("port-excluded", "destination port"),
            "cidr" => ("cidr-excluded", "destination network"),
            "interface" => ("interface-excluded", "output interface"),
            _ => continue,
        };
        let loopback_only = e.conditions.iter().any(|t| {
            t.contains("127.0.0.")
                || t.contains("::1")
                || t.contains("-o lo")
                || t.contains("\"lo\"")
        });
        if loopback_only && kind != "port-excluded" {
            continue;
        }
        out.push(Finding {
            kind,
            severity: "low",
            pid: None,
            message: format!(
                "traffic matching {what} {} leaves uncaptured, for every process",
                e.conditions.join(" ")
            ),
            rules: e.rule.iter().cloned().collect(),
            evidence: Vec::new(),
            remedy: "check that the exclusion (mesh annotation or config) is still wanted".into(),
        });
    }
}

fn listening(s: &SocketFacts) -> bool {
    (s.proto == SocketProto::Tcp && s.state == "listen")
        || (s.proto == SocketProto::Udp && s.remote.is_unspecified())
}

/// `proxy-absent`: a proxy port nobody listens on; `proxy-impostor`: the listener is a
/// process whose own traffic the rules capture (so it is not the exempt proxy).
fn proxy_listener(c: &Context, mesh: &Mesh, out: &mut Vec<Finding>) {
    for &port in &mesh.proxy_ports {
        let listeners: Vec<&SocketFacts> =
            c.ns.sockets
                .iter()
                .filter(|s| s.local_port == port && listening(s))
                .collect();
        if listeners.is_empty() {
            out.push(Finding {
                kind: "proxy-absent",
                severity: "high",
                pid: None,
                message: format!("traffic is redirected to port {port}, but nothing listens there: the proxy is not running"),
                rules: Vec::new(),
                evidence: vec![format!("no listening socket on port {port}")],
                remedy: "check the proxy container (crash loop, killed, or an unused capture port)".into(),
            });
            continue;
        }
        for s in listeners {
            let owner = c
                .processes
                .iter()
                .find(|(_, f, _)| f.socket_inodes.contains(&s.inode));
            if let Some((p, _, _)) = owner.filter(|(p, _, _)| p.verdict != ProcessVerdict::Proxy) {
                out.push(Finding {
                    kind: "proxy-impostor",
                    severity: "high",
                    pid: Some(p.pid),
                    message: format!("{} (uid {}, gid {}) listens on proxy port {port} but is not the exempt proxy: redirected traffic goes to it", p.comm, p.uid, p.gid),
                    rules: Vec::new(),
                    evidence: vec![socket_text(s)],
                    remedy: "find out why this process holds the proxy's port".into(),
                });
            }
        }
    }
}

fn socket_text(s: &SocketFacts) -> String {
    let proto = match s.proto {
        SocketProto::Tcp => "tcp",
        SocketProto::Udp => "udp",
        SocketProto::Raw => "raw",
    };
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
    for (p, f, id) in c
        .processes
        .iter()
        .filter(|(p, _, _)| p.verdict != ProcessVerdict::Proxy)
    {
        let mut evidence = Vec::new();
        for s in
            c.ns.sockets
                .iter()
                .filter(|s| f.socket_inodes.contains(&s.inode))
        {
            if s.local.is_loopback() || s.proto == SocketProto::Tcp {
                continue;
            }
            let version = IpVersion::of(&s.local);
            let escapes = match s.proto {
                SocketProto::Raw => true,
                SocketProto::Udp if s.remote.is_unspecified() => {
                    !captured(&c.analysis.captured_on, version, "udp")
                }
                _ => trace_socket(&c.ns.rules, id, s) == Verdict::Bypass,
            };
            if escapes {
                evidence.push(socket_text(s));
            }
        }
        if !evidence.is_empty() {
            out.push(Finding {
                kind: "protocol-uncaptured",
                severity: "high",
                pid: Some(p.pid),
                message: format!(
                    "{} holds sockets whose traffic the rules never capture",
                    p.comm
                ),
                rules: Vec::new(),
                evidence,
                remedy: "send this traffic over TCP through the mesh, or capture its protocol"
                    .into(),
            });
        }
    }
}

/// The verdict for a connected UDP socket's traffic, as the kernel decides its first packet.
fn trace_socket(rules: &Ruleset, id: &Identity, s: &SocketFacts) -> Verdict {
    let version = IpVersion::of(&s.remote);
    let flow = Flow {
        version,
        proto: 17,
        src: Some(s.local),
        dst: s.remote,
        sport: SourcePort::Bound(s.local_port),
        dport: s.remote_port,
        oif: if s.remote.is_loopback() { "lo" } else { "eth0" }.into(),
        identity: id.clone(),
        mark: 0,
        local: vec![s.local],
    };
    eval::trace(rules, &flow).outcome.verdict
}

/// `ipv6-uncaptured`: IPv6 is not captured while the namespace has global IPv6 addresses or
/// IPv6 sockets of apps.
fn ipv6(c: &Context, out: &mut Vec<Finding>) {
    if c.analysis.captured_on.iter().any(|x| x.family == "ipv6") {
        return;
    }
    let global = |a: &IpAddr| matches!(a, IpAddr::V6(v) if !v.is_loopback() && (v.segments()[0] & 0xffc0) != 0xfe80 && !v.is_unspecified());
    let mut evidence: Vec<String> =
        c.ns.interfaces
            .iter()
            .flat_map(|i| {
                i.addrs
                    .iter()
                    .filter(|a| global(a))
                    .map(move |a| format!("{} has {a}", i.name))
            })
            .collect();
    let sockets: Vec<String> =
        c.ns.sockets
            .iter()
            .filter(|s| global(&s.local) || global(&s.remote))
            .map(socket_text)
            .collect();
    let live = !sockets.is_empty();
    evidence.extend(sockets);
    if !evidence.is_empty() {
        out.push(Finding {
            kind: "ipv6-uncaptured",
            severity: if live { "high" } else { "medium" },
            pid: None,
            message: "the namespace speaks IPv6, but no rule captures IPv6 traffic".into(),
            rules: Vec::new(),
            evidence,
            remedy: "enable the mesh's IPv6 capture (ip6tables rules or an inet table), or disable IPv6 in the pod".into(),
        });
    }
}

/// `can-modify-rules` (CAP_NET_ADMIN) and `can-become-exempt` (CAP_SETUID/SETGID while
/// owner exemptions exist) for processes that are not the proxy.
fn capabilities(c: &Context, mesh: &Mesh, out: &mut Vec<Finding>) {
    let owner_exempt = !mesh.proxy_uids.is_empty() || !mesh.proxy_gids.is_empty();
    for (p, f, _) in c
        .processes
        .iter()
        .filter(|(p, _, _)| p.verdict != ProcessVerdict::Proxy)
    {
        if f.has_cap(CAP_NET_ADMIN) {
            out.push(Finding {
                kind: "can-modify-rules",
                severity: "medium",
                pid: Some(p.pid),
                message: format!("{} has CAP_NET_ADMIN in this namespace: it can rewrite or delete the capture rules", p.comm),
                rules: Vec::new(),
                evidence: vec![format!("CapEff {:016x}", f.cap_eff)],
                remedy: "drop NET_ADMIN from the app container (capabilities: drop: [ALL])".into(),
            });
        }
        if owner_exempt && (f.has_cap(CAP_SETUID) || f.has_cap(CAP_SETGID)) {
            out.push(Finding {
                kind: "can-become-exempt",
                severity: "medium",
                pid: Some(p.pid),
                message: format!("{} can switch to the proxy's exempt uid/gid (CAP_SETUID/CAP_SETGID) and leave the mesh", p.comm),
                rules: Vec::new(),
                evidence: vec![format!("CapEff {:016x}", f.cap_eff)],
                remedy: "drop SETUID and SETGID from the app container, and run it as non-root".into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::{Hints, combine, parse_dump};
    use crate::report::build;
    use crate::snapshot::*;

    fn process(pid: u32, uid: u32, gid: u32, caps: u64, sockets: &[u64]) -> ProcessFacts {
        ProcessFacts {
            pid,
            comm: format!("p{pid}"),
            exe: None,
            fsuid: uid,
            fsgid: gid,
            groups: vec![],
            cap_eff: caps,
            cap_bnd: caps,
            uid_map: vec![(0, 0, u32::MAX)],
            gid_map: vec![(0, 0, u32::MAX)],
            cgroup: format!("/pod/c{uid}"),
            cmdline: None,
            socket_inodes: sockets.to_vec(),
            pidns: 7,
        }
    }

    fn socket(
        proto: SocketProto,
        local: &str,
        lport: u16,
        remote: &str,
        rport: u16,
        state: &str,
        inode: u64,
    ) -> SocketFacts {
        SocketFacts {
            proto,
            local: local.parse().unwrap(),
            local_port: lport,
            remote: remote.parse().unwrap(),
            remote_port: rport,
            state: state.into(),
            uid: 0,
            inode,
        }
    }

    fn snapshot(
        processes: Vec<ProcessFacts>,
        sockets: Vec<SocketFacts>,
        v6: bool,
        extra_rules: &str,
    ) -> Snapshot {
        let text = include_str!("../testdata/istio-sidecar.rules").replace(
            "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
            &format!("{extra_rules}-A ISTIO_OUTPUT -j ISTIO_REDIRECT"),
        );
        let rules = combine(vec![parse_dump("t", &text, Hints::default()).unwrap()]).unwrap();
        let mut addrs = vec!["169.254.1.2".parse().unwrap()];
        if v6 {
            addrs.push("fd00::5".parse().unwrap());
        }
        Snapshot {
            snapshot_version: SNAPSHOT_VERSION,
            node: "n".into(),
            kernel: "6.1.0".into(),
            scanned_at: 0,
            netns: vec![NetnsFacts {
                inode: 1,
                paths: vec![],
                host: false,
                rules,
                interfaces: vec![Interface {
                    name: "eth0".into(),
                    addrs,
                }],
                routes: vec![],
                sockets,
                processes,
            }],
            errors: vec![],
            vanished_processes: 0,
            vanished_netns: 0,
        }
    }

    fn kinds(s: &Snapshot) -> Vec<(String, Option<u32>)> {
        let r = build(s, 0);
        r.netns[0]
            .findings
            .iter()
            .map(|f| (f.kind.to_string(), f.pid))
            .collect()
    }

    /// The proxy's listeners on both Istio capture ports (socket inodes 100 and 101).
    fn proxy_listeners() -> Vec<SocketFacts> {
        vec![
            socket(
                SocketProto::Tcp,
                "0.0.0.0",
                15001,
                "0.0.0.0",
                0,
                "listen",
                100,
            ),
            socket(
                SocketProto::Tcp,
                "0.0.0.0",
                15006,
                "0.0.0.0",
                0,
                "listen",
                101,
            ),
        ]
    }

    const NET_ADMIN: u64 = 1 << 12;
    const SETUID: u64 = 1 << 7;

    #[test]
    fn rules_inserted_outside_the_mesh_layout_that_change_verdicts() {
        let listeners = proxy_listeners();
        let procs = || {
            vec![
                process(10, 1337, 1337, 0, &[100, 101]),
                process(11, 0, 0, 0, &[]),
                process(12, 10001, 10001, 0, &[]),
            ]
        };
        let istio = include_str!("../testdata/istio-sidecar.rules");
        // A uid 0 RETURN inserted ahead of the mesh's jump: root's traffic escapes.
        let inserted = istio.replace(
            "-A OUTPUT -j ISTIO_OUTPUT",
            "-A OUTPUT -m owner --uid-owner 0 -j RETURN\n-A OUTPUT -j ISTIO_OUTPUT",
        );
        let s = with_rules(snapshot(procs(), listeners.clone(), false, ""), &inserted);
        let r = build(&s, 0);
        let f = r.netns[0]
            .findings
            .iter()
            .find(|f| f.kind == "foreign-rule")
            .expect("foreign-rule found");
        assert_eq!(
            f.rules[0].rule,
            "-A OUTPUT -m owner --uid-owner 0 -j RETURN"
        );
        assert_eq!(f.severity, "high");
        // A foreign rule that changes nothing (a LOG, a filter ACCEPT) is not reported.
        let harmless = format!("{istio}*filter\n-A OUTPUT -p tcp -j ACCEPT\nCOMMIT\n");
        let s = with_rules(snapshot(procs(), listeners, false, ""), &harmless);
        assert!(
            !kinds(&s).iter().any(|(k, _)| k == "foreign-rule"),
            "{:?}",
            kinds(&s)
        );
    }

    #[test]
    fn kernel_versions_compare() {
        assert!(super::kernel_at_least("6.1.0-18-amd64", 5, 17));
        assert!(super::kernel_at_least("5.17.0", 5, 17));
        assert!(!super::kernel_at_least("5.10.200", 5, 17));
        assert!(!super::kernel_at_least("", 5, 17));
    }

    #[test]
    fn a_clean_pod_has_no_findings() {
        let s = snapshot(
            vec![
                process(10, 1337, 1337, 0, &[100, 101]),
                process(11, 10001, 10001, 0, &[102]),
            ],
            proxy_listeners()
                .into_iter()
                .chain([socket(
                    SocketProto::Tcp,
                    "169.254.1.2",
                    40000,
                    "10.0.0.9",
                    443,
                    "established",
                    102,
                )])
                .collect(),
            false,
            "",
        );
        assert_eq!(kinds(&s), vec![]);
    }

    #[test]
    fn every_finding_where_its_situation_is() {
        let s = snapshot(
            vec![
                process(10, 1337, 1337, 0, &[100]),
                process(11, 10001, 1337, 0, &[]),
                process(12, 10001, 10001, NET_ADMIN | SETUID, &[103, 104]),
                process(13, 10001, 10002, 0, &[105]),
            ],
            vec![
                socket(
                    SocketProto::Tcp,
                    "0.0.0.0",
                    15001,
                    "0.0.0.0",
                    0,
                    "listen",
                    100,
                ),
                // Nothing on 15006; an app holds UDP and raw sockets, and a TCP connection
                // to an excluded port; another app listens on the proxy's port for IPv6.
                socket(
                    SocketProto::Udp,
                    "0.0.0.0",
                    5353,
                    "0.0.0.0",
                    0,
                    "unconnected",
                    103,
                ),
                socket(
                    SocketProto::Tcp,
                    "169.254.1.2",
                    40001,
                    "10.0.0.9",
                    3306,
                    "established",
                    104,
                ),
                socket(SocketProto::Tcp, "::", 15001, "::", 0, "listen", 105),
            ],
            true,
            "-A ISTIO_OUTPUT -p tcp -m tcp --dport 3306 -j RETURN\n-A ISTIO_OUTPUT -d 10.96.0.0/12 -j RETURN\n",
        );
        let found = kinds(&s);
        for want in [
            ("identity-exempt", Some(11)),
            ("proxy-absent", None),
            ("proxy-impostor", Some(13)),
            ("protocol-uncaptured", Some(12)),
            ("ipv6-uncaptured", None),
            ("can-modify-rules", Some(12)),
            ("can-become-exempt", Some(12)),
            ("port-excluded", None),
            ("cidr-excluded", None),
        ] {
            assert!(
                found.contains(&(want.0.to_string(), want.1)),
                "{want:?} missing from {found:?}"
            );
        }
        let r = build(&s, 0);
        let f = r.netns[0]
            .findings
            .iter()
            .find(|f| f.kind == "protocol-uncaptured")
            .unwrap();
        assert_eq!(
            f.evidence.len(),
            1,
            "the UDP socket, not the TCP connection: {:?}",
            f.evidence
        );
        assert_eq!(r.netns[0].findings[0].severity, "high", "most severe first");
    }

    fn with_rules(mut s: Snapshot, text: &str) -> Snapshot {
        s.netns[0].rules = combine(vec![parse_dump("t", text, Hints::default()).unwrap()]).unwrap();
        s
    }

    #[test]
    fn capture_missing_when_output_never_reaches_the_mesh_chain() {
        let listeners = proxy_listeners();
        let procs = || {
            vec![
                process(10, 1337, 1337, 0, &[100, 101]),
                process(11, 10001, 10001, 0, &[]),
            ]
        };
        let broken = include_str!("../testdata/istio-sidecar.rules")
            .replace("-A OUTPUT -j ISTIO_OUTPUT\n", "");
        let s = with_rules(snapshot(procs(), listeners.clone(), false, ""), &broken);
        assert!(
            kinds(&s).contains(&("capture-missing".into(), None)),
            "{:?}",
            kinds(&s)
        );
        assert!(
            !kinds(&snapshot(procs(), listeners, false, ""))
                .iter()
                .any(|(k, _)| k == "capture-missing")
        );
    }

    #[test]
    fn mark_exemptions_and_the_capabilities_that_set_marks() {
        const NET_RAW: u64 = 1 << 13;
        let ambient = include_str!("../testdata/meshes/istio-ambient.rules");
        let s = with_rules(
            snapshot(
                vec![process(11, 10001, 10001, NET_RAW, &[])],
                vec![],
                false,
                "",
            ),
            ambient,
        );
        assert!(
            kinds(&s).contains(&("mark-exempt-capable".into(), Some(11))),
            "{:?}",
            kinds(&s)
        );
        let mut old = s.clone();
        old.kernel = "5.10.0".into();
        assert!(
            !kinds(&old).iter().any(|(k, _)| k == "mark-exempt-capable"),
            "CAP_NET_RAW sets SO_MARK only from 5.17"
        );
    }

    #[test]
    fn apps_that_can_stop_the_proxy() {
        const KILL: u64 = 1 << 5;
        let mut sockets = proxy_listeners();
        sockets.push(socket(
            SocketProto::Tcp,
            "127.0.0.1",
            15000,
            "0.0.0.0",
            0,
            "listen",
            102,
        ));
        let s = snapshot(
            vec![
                process(10, 1337, 1337, 0, &[100, 101, 102]),
                process(11, 10001, 10001, KILL, &[]),
            ],
            sockets,
            false,
            "",
        );
        let found = kinds(&s);
        assert!(
            found.contains(&("shared-pid-namespace".into(), Some(11))),
            "{found:?}"
        );
        assert!(
            found.contains(&("proxy-admin-reachable".into(), None)),
            "{found:?}"
        );
        let mut apart = s.clone();
        apart.netns[0].processes[1].pidns = 8;
        assert!(
            !kinds(&apart)
                .iter()
                .any(|(k, _)| k == "shared-pid-namespace")
        );
    }
}
