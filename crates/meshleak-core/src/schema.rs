//! The report's records: what `meshleak scan`/`analyze -o json` prints, the agent serves and
//! snapshots' readers parse. The JSON is a contract (docs/report-schema.md): serde names
//! never change meaning; [`SCHEMA_VERSION`] says when one does. Built by [`crate::report`],
//! with findings from [`crate::findings`]; this module depends on neither.

use std::fmt;

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

/// What a finding is about; its serde name is the report's `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    IdentityExempt,
    PortExcluded,
    CidrExcluded,
    InterfaceExcluded,
    PolicyRouted,
    SourcePortExempt,
    PacketSocket,
    CanSendBelowMesh,
    ProtocolUncaptured,
    Ipv6Uncaptured,
    Ipv4Uncaptured,
    ProxyAbsent,
    ProxyImpostor,
    CanModifyRules,
    CanBecomeExempt,
    CaptureMissing,
    MarkExemptCapable,
    SharedPidNamespace,
    ProxyAdminReachable,
    ForeignRule,
    ForeignRuleUnchecked,
    ProxyNotExempt,
    IdentityChanged,
    Unknown,
    RulesTooLarge,
    ObservedBypass,
}

impl FindingKind {
    /// Every kind, in the order docs/report-schema.md lists them.
    pub const ALL: [FindingKind; 26] = [
        FindingKind::IdentityExempt,
        FindingKind::PortExcluded,
        FindingKind::CidrExcluded,
        FindingKind::InterfaceExcluded,
        FindingKind::PolicyRouted,
        FindingKind::SourcePortExempt,
        FindingKind::PacketSocket,
        FindingKind::CanSendBelowMesh,
        FindingKind::ProtocolUncaptured,
        FindingKind::Ipv6Uncaptured,
        FindingKind::Ipv4Uncaptured,
        FindingKind::ProxyAbsent,
        FindingKind::ProxyImpostor,
        FindingKind::CanModifyRules,
        FindingKind::CanBecomeExempt,
        FindingKind::CaptureMissing,
        FindingKind::MarkExemptCapable,
        FindingKind::SharedPidNamespace,
        FindingKind::ProxyAdminReachable,
        FindingKind::ForeignRule,
        FindingKind::ForeignRuleUnchecked,
        FindingKind::ProxyNotExempt,
        FindingKind::IdentityChanged,
        FindingKind::Unknown,
        FindingKind::RulesTooLarge,
        FindingKind::ObservedBypass,
    ];

    /// The report's name for it (its serde name).
    pub fn name(self) -> &'static str {
        match self {
            FindingKind::IdentityExempt => "identity-exempt",
            FindingKind::PortExcluded => "port-excluded",
            FindingKind::CidrExcluded => "cidr-excluded",
            FindingKind::InterfaceExcluded => "interface-excluded",
            FindingKind::PolicyRouted => "policy-routed",
            FindingKind::SourcePortExempt => "source-port-exempt",
            FindingKind::PacketSocket => "packet-socket",
            FindingKind::CanSendBelowMesh => "can-send-below-mesh",
            FindingKind::ProtocolUncaptured => "protocol-uncaptured",
            FindingKind::Ipv6Uncaptured => "ipv6-uncaptured",
            FindingKind::Ipv4Uncaptured => "ipv4-uncaptured",
            FindingKind::ProxyAbsent => "proxy-absent",
            FindingKind::ProxyImpostor => "proxy-impostor",
            FindingKind::CanModifyRules => "can-modify-rules",
            FindingKind::CanBecomeExempt => "can-become-exempt",
            FindingKind::CaptureMissing => "capture-missing",
            FindingKind::MarkExemptCapable => "mark-exempt-capable",
            FindingKind::SharedPidNamespace => "shared-pid-namespace",
            FindingKind::ProxyAdminReachable => "proxy-admin-reachable",
            FindingKind::ForeignRule => "foreign-rule",
            FindingKind::ForeignRuleUnchecked => "foreign-rule-unchecked",
            FindingKind::ProxyNotExempt => "proxy-not-exempt",
            FindingKind::IdentityChanged => "identity-changed",
            FindingKind::Unknown => "unknown",
            FindingKind::RulesTooLarge => "rules-too-large",
            FindingKind::ObservedBypass => "observed-bypass",
        }
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
        )
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// How serious a finding is, ordered worst first (`High < Medium < Low`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Live traffic escapes, or the capture is broken.
    High,
    /// A process can make itself escape.
    Medium,
    /// Configured exclusions.
    Low,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serde_names() {
        for k in FindingKind::ALL {
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        for s in [Severity::High, Severity::Medium, Severity::Low] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
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
