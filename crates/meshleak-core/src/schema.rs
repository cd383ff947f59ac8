//! The report's records: what `meshleak scan`/`analyze -o json` prints, the agent serves and
//! snapshots' readers parse. The JSON is a contract (docs/report-schema.md): serde names
//! never change meaning; [`SCHEMA_VERSION`] says when one does. Built by [`crate::report`],
//! with findings from [`crate::findings`]; this module depends on neither.

use crate::named::named_enum;

use serde::Serialize;

use crate::analyze::Exemption;
use crate::attribution::{ContainerRef, PodFacts};
use crate::explain::RuleRef;
use crate::meshes::Mesh;
use crate::ways::Source;

/// Bump when a field changes meaning or is removed (docs/report-schema.md).
pub(crate) const SCHEMA_VERSION: u32 = 1;

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
    /// Where held sockets' owners were read from: the kernel's `f_cred` (BPF) or, where
    /// BPF could not load, the inodes' (`stat`), with why.
    pub owners: crate::snapshot::OwnersRead,
}

#[derive(Clone, Debug, Default, Serialize)]
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
    /// The pod's sandbox (pause) process, holding no socket: infrastructure the runtime
    /// makes, with the pod-level identity; it sends nothing, so no traffic to judge.
    Sandbox,
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
            ProcessVerdict::Sandbox => "sandbox",
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
                    .any(|f| f.kind == FindingKind::ObservedBypass && f.pid.is_none())
        })
    }

    /// Whether some verdict is unknown: a process's, or an ordinary app's capture.
    pub fn unknown(&self) -> bool {
        self.netns.iter().any(|n| {
            n.findings.iter().any(|f| f.kind == FindingKind::Unknown)
                || n.processes
                    .iter()
                    .any(|p| p.verdict == ProcessVerdict::Unknown)
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub severity: Severity,
    pub pid: Option<u32>,
    pub message: String,
    pub rules: Vec<RuleRef>,
    /// Sockets, addresses or capabilities that make the finding real.
    pub evidence: Vec<String>,
    /// The inode of the socket that makes it real, when one does (an observed bypass's
    /// first connection).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<u64>,
    pub remedy: String,
}

named_enum! {
    /// What a finding is about; its name is the report's `kind`. Listed in the order
    /// docs/report-schema.md lists them.
    #[derive(PartialOrd, Ord)]
    pub enum FindingKind {
        IdentityExempt = "identity-exempt",
        PortExcluded = "port-excluded",
        CidrExcluded = "cidr-excluded",
        InterfaceExcluded = "interface-excluded",
        PolicyRouted = "policy-routed",
        SourcePortExempt = "source-port-exempt",
        PacketSocket = "packet-socket",
        CanSendBelowMesh = "can-send-below-mesh",
        ProtocolUncaptured = "protocol-uncaptured",
        Ipv6Uncaptured = "ipv6-uncaptured",
        Ipv4Uncaptured = "ipv4-uncaptured",
        ProxyAbsent = "proxy-absent",
        ProxyImpostor = "proxy-impostor",
        CanModifyRules = "can-modify-rules",
        CanBecomeExempt = "can-become-exempt",
        CaptureMissing = "capture-missing",
        MarkExemptCapable = "mark-exempt-capable",
        SharedPidNamespace = "shared-pid-namespace",
        ProxyAdminReachable = "proxy-admin-reachable",
        ForeignRule = "foreign-rule",
        ForeignRuleUnchecked = "foreign-rule-unchecked",
        ProxyNotExempt = "proxy-not-exempt",
        IdentityChanged = "identity-changed",
        Unknown = "unknown",
        RulesTooLarge = "rules-too-large",
        ObservedBypass = "observed-bypass",
        ForeignSocket = "foreign-socket",
        HeldSocketExempt = "held-socket-exempt",
        OwnerChanged = "owner-changed",
        UnixRelay = "unix-relay",
        CgroupProgram = "cgroup-program",
    }
}

impl FindingKind {
    /// Findings that say traffic leaves the mesh (not what could make it leave, nor what is
    /// unknown or could not be read).
    pub fn escapes(self) -> bool {
        matches!(
            self,
            FindingKind::IdentityExempt
                | FindingKind::ObservedBypass
                | FindingKind::PolicyRouted
                | FindingKind::CaptureMissing
                | FindingKind::ProxyAbsent
                | FindingKind::ProxyImpostor
                | FindingKind::ForeignRule
                | FindingKind::PortExcluded
                | FindingKind::CidrExcluded
                | FindingKind::InterfaceExcluded
                | FindingKind::ProtocolUncaptured
                | FindingKind::Ipv6Uncaptured
                | FindingKind::Ipv4Uncaptured
                | FindingKind::PacketSocket
                | FindingKind::ForeignSocket
                | FindingKind::HeldSocketExempt
                | FindingKind::UnixRelay
        )
    }
}

named_enum! {
    /// How serious a finding is, ordered worst first (`High < Medium < Low`).
    #[derive(PartialOrd, Ord)]
    pub enum Severity {
        /// Live traffic escapes, or the capture is broken.
        High = "high",
        /// A process can make itself escape.
        Medium = "medium",
        /// Configured exclusions.
        Low = "low",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serde_names() {
        for k in FindingKind::ALL {
            assert_eq!(serde_json::to_string(k).unwrap(), format!("\"{k}\""));
        }
        for s in Severity::ALL {
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{s}\""));
        }
        assert!(Severity::High < Severity::Medium && Severity::Medium < Severity::Low);
    }

    /// The schema documents every kind a report can hold.
    #[test]
    fn every_kind_is_documented() {
        let doc = include_str!("../../../docs/report-schema.md");
        for k in FindingKind::ALL {
            assert!(
                doc.contains(&format!("`{k}`")),
                "docs/report-schema.md lacks `{k}`"
            );
        }
    }
}

/// What the agent adds to its `/report` (absent from `scan`'s): how each of its event
/// sources is watching, what it dropped, and what it has seen recently, pods already gone
/// included.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AgentStatus {
    pub sources: Vec<SourceStatus>,
    /// Times a source's kernel buffer overran and events were lost: each time the node (or
    /// the namespace) was read again whole, so nothing stays unseen past it.
    pub overruns: u64,
    /// The most recent events, oldest first (a bounded ring).
    pub events: Vec<AgentEvent>,
}

/// One event source and how it works now.
#[derive(Clone, Debug, Serialize)]
pub struct SourceStatus {
    /// `namespaces`, `rules`, `processes`, `connections`.
    pub name: &'static str,
    /// `events` (the kernel tells at once), `polling` (looked at every `detail` says), or
    /// `failed` (only the periodic scan sees it).
    pub mode: &'static str,
    pub detail: String,
}

/// Something the agent saw between or at scans.
#[derive(Clone, Debug, Serialize)]
pub struct AgentEvent {
    /// Seconds since the Unix epoch, to the millisecond.
    pub at: f64,
    /// `bypass-seen` (a process whose traffic bypasses the mesh), `observed-bypass` (a
    /// connection that did), `rules-changed`, `identity-changed`, `namespace-new`,
    /// `namespace-gone`.
    pub kind: &'static str,
    pub netns: u64,
    /// `namespace/name` of the pod, when known.
    pub pod: Option<String>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub message: String,
    /// The rule that decides (the first of the verdict's reasons), when there is one.
    pub rule: Option<String>,
}
