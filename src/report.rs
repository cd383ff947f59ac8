//! From a snapshot (facts) to the report (judgements): per network namespace, the mesh that
//! captures it, what is and is not captured, and a verdict for every process with the rules
//! that decide it. Pure: the same report comes from a live scan or a saved snapshot.

use serde::Serialize;

use crate::analyze::{self, Exemption, IdentityReport, IdentityVerdict};
use crate::collect::procs::inside;
use crate::eval::Identity;
use crate::explain::RuleRef;
use crate::model::{Action, Ruleset};
use crate::snapshot::{NetnsFacts, ProcessFacts, Snapshot, SocketProto};

/// Bump when a field changes meaning or is removed (docs/report-schema.md).
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub node: String,
    pub scanned_at: u64,
    pub duration_ms: u64,
    pub netns: Vec<NetnsReport>,
    pub errors: Vec<String>,
    pub vanished_processes: usize,
    pub vanished_netns: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Mesh {
    /// istio-sidecar, istio-sidecar-nft, linkerd, kuma, consul, osm, appmesh, unknown-redirect.
    pub kind: String,
    /// Local ports traffic is redirected to.
    pub proxy_ports: Vec<u16>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Capture {
    /// Families and protocols an ordinary app's traffic is captured on.
    pub families: Vec<&'static str>,
    pub protocols: Vec<String>,
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
    pub container: Option<String>,
    pub verdict: ProcessVerdict,
    /// The rules that decide the verdict.
    pub reasons: Vec<RuleRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<Vec<String>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub kind: &'static str,
    pub severity: &'static str,
    pub pid: Option<u32>,
    pub message: String,
    pub rules: Vec<RuleRef>,
    pub remedy: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct NetnsReport {
    pub inode: u64,
    pub paths: Vec<String>,
    pub pod: Option<Pod>,
    pub mesh: Option<Mesh>,
    pub capture: Capture,
    pub processes: Vec<ProcessReport>,
    pub findings: Vec<Finding>,
}

pub fn build(s: &Snapshot, duration_ms: u64) -> Report {
    let mut errors = s.errors.clone();
    let netns = s
        .netns
        .iter()
        .filter_map(|ns| match netns_report(ns) {
            Ok(r) => Some(r),
            Err(e) => {
                errors.push(format!("network namespace {}: {e}", ns.inode));
                None
            }
        })
        .collect();
    Report {
        schema_version: SCHEMA_VERSION,
        node: s.node.clone(),
        scanned_at: s.scanned_at,
        duration_ms,
        netns,
        errors,
        vanished_processes: s.vanished_processes,
        vanished_netns: s.vanished_netns,
    }
}

/// The identity a process's new sockets get, as the namespace's owner sees it.
pub fn identity(p: &ProcessFacts) -> Identity {
    Identity {
        uid: inside(&p.uid_map, p.fsuid),
        gid: inside(&p.gid_map, p.fsgid),
        groups: p.groups.iter().map(|g| inside(&p.gid_map, *g)).collect(),
    }
}

fn netns_report(ns: &NetnsFacts) -> Result<NetnsReport, analyze::TooLarge> {
    let identities: Vec<Identity> = {
        let mut ids: Vec<Identity> = ns.processes.iter().map(identity).collect();
        ids.sort_by_key(|i| (i.uid, i.gid, i.groups.clone()));
        ids.dedup();
        ids
    };
    let a = analyze::analyze(&ns.rules, &identities)?;
    let mesh = detect_mesh(&ns.rules);
    let proxy_ports: Vec<u16> = mesh
        .as_ref()
        .map(|m| m.proxy_ports.clone())
        .unwrap_or_default();
    let verdict_of = |id: &Identity| {
        a.identities
            .iter()
            .zip(&identities)
            .find(|(_, i)| *i == id)
            .map(|(r, _)| r)
    };

    // The proxy: a process listening on a capture port whose own traffic is exempt, and the
    // processes of its container (cgroup) with the same identity.
    let listens_on_proxy_port = |p: &ProcessFacts| {
        ns.sockets.iter().any(|s| {
            s.proto == SocketProto::Tcp
                && s.state == "listen"
                && proxy_ports.contains(&s.local_port)
                && p.socket_inodes.contains(&s.inode)
        })
    };
    let exempt = |p: &ProcessFacts| {
        verdict_of(&identity(p)).is_some_and(|r| r.verdict == IdentityVerdict::Bypass)
    };
    let proxies: Vec<&ProcessFacts> = ns
        .processes
        .iter()
        .filter(|p| listens_on_proxy_port(p) && exempt(p))
        .collect();
    let is_proxy = |p: &ProcessFacts| {
        proxies
            .iter()
            .any(|q| q.cgroup == p.cgroup && identity(q) == identity(p))
    };

    let mut processes: Vec<ProcessReport> = ns
        .processes
        .iter()
        .map(|p| {
            let id = identity(p);
            let r: Option<&IdentityReport> = verdict_of(&id);
            let verdict = if is_proxy(p) {
                ProcessVerdict::Proxy
            } else {
                match r.map(|r| r.verdict) {
                    Some(IdentityVerdict::Bypass) => ProcessVerdict::Bypass,
                    Some(IdentityVerdict::Partial) => ProcessVerdict::Partial,
                    Some(IdentityVerdict::Captured) => ProcessVerdict::Captured,
                    Some(IdentityVerdict::Unmeshed) => ProcessVerdict::Unmeshed,
                    _ => ProcessVerdict::Unknown,
                }
            };
            ProcessReport {
                pid: p.pid,
                comm: p.comm.clone(),
                uid: id.uid,
                gid: id.gid,
                groups: id.groups.clone(),
                container: None,
                verdict,
                reasons: r.map(|r| r.rules.clone()).unwrap_or_default(),
                cmdline: p.cmdline.clone(),
            }
        })
        .collect();
    // Bypassing processes first, then by pid.
    processes.sort_by_key(|p| {
        (
            !p.verdict.bypasses(),
            p.verdict == ProcessVerdict::Proxy,
            p.pid,
        )
    });

    let findings = processes
        .iter()
        .filter(|p| p.verdict.bypasses())
        .map(|p| Finding {
            kind: "identity-exempt",
            severity: if p.verdict == ProcessVerdict::Bypass { "high" } else { "medium" },
            pid: Some(p.pid),
            message: format!(
                "{} (uid {}, gid {}) is not the proxy, but its traffic {} the mesh",
                p.comm,
                p.uid,
                p.gid,
                if p.verdict == ProcessVerdict::Bypass { "leaves" } else { "partly leaves" }
            ),
            rules: p.reasons.clone(),
            remedy: "run the app with a uid, gid and groups that no exemption rule names (e.g. not runAsGroup 1337)".into(),
        })
        .collect();

    let mut families: Vec<&'static str> = a.captured_on.iter().map(|c| c.family).collect();
    families.dedup();
    let mut protocols: Vec<String> = a.captured_on.iter().map(|c| c.protocol.clone()).collect();
    protocols.sort();
    protocols.dedup();
    Ok(NetnsReport {
        inode: ns.inode,
        paths: ns.paths.clone(),
        pod: None,
        mesh,
        capture: Capture {
            families,
            protocols,
            exemptions: a.exemptions,
        },
        processes,
        findings,
    })
}

/// The mesh whose capture rules these are, from the names its tools give chains and tables.
pub fn detect_mesh(rules: &Ruleset) -> Option<Mesh> {
    let mut ports: Vec<u16> = Vec::new();
    for r in rules
        .tables
        .iter()
        .flat_map(|t| &t.chains)
        .flat_map(|c| &c.rules)
    {
        for a in &r.actions {
            if let Action::Redirect { ports: Some(p) } | Action::Dnat { ports: Some(p), .. } = a
                && !ports.contains(&p.start)
            {
                ports.push(p.start);
            }
        }
    }
    if ports.is_empty() {
        return None;
    }
    ports.sort_unstable();
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
    let kind = if has("istio-proxy") {
        "istio-sidecar-nft"
    } else if has("ISTIO_") {
        "istio-sidecar"
    } else if has("PROXY_INIT_") {
        "linkerd"
    } else if has("KUMA_MESH_") {
        "kuma"
    } else if has("CONSUL_") || has("consul_tproxy") {
        "consul"
    } else if has("OSM_PROXY_") || has("PROXY_") {
        "osm"
    } else if has("APPMESH_") {
        "appmesh"
    } else {
        "unknown-redirect"
    };
    Some(Mesh {
        kind: kind.into(),
        proxy_ports: ports,
    })
}
