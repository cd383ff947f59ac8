//! Narrowing a node report to what its reader asked for (`-n`, `--pod`, `--bypassing`,
//! `--severity`), and what makes a run fail (`--fail-on`). Pure: it works on a report, so
//! a saved snapshot is narrowed as a live scan is.

use crate::schema::{FindingKind, NetnsReport, Report, Severity};

/// What the reader asked to see. Empty: everything.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Only pods of this Kubernetes namespace.
    pub namespace: Option<String>,
    /// Only pods whose name starts with this.
    pub pod_prefix: Option<String>,
    /// Only what escapes: bypassing processes, the findings about them or about no one
    /// process, and the namespaces holding them.
    pub bypassing: bool,
    /// Only findings at least this severe, and the namespaces holding one or a bypass.
    pub severity: Option<Severity>,
}

/// When a run's exit status is 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailOn {
    /// A process bypasses the mesh, or a live connection did (the default).
    #[default]
    Bypass,
    /// A finding at least this severe.
    Severity(Severity),
    /// Never: a report that could be made exits 0.
    Never,
}

/// Why a selection kept nothing: what the report held, for an error that helps.
#[derive(Debug, PartialEq, Eq)]
pub struct NoMatch {
    /// `namespace/name` of every pod the report held.
    pub pods: Vec<String>,
}

impl Selection {
    fn names_pods(&self) -> bool {
        self.namespace.is_some() || self.pod_prefix.is_some()
    }

    /// Narrows `report` in place. A pod filter that matches no pod is an error: a typo
    /// must not read as an all-clear.
    pub fn apply(&self, report: &mut Report) -> Result<(), NoMatch> {
        let all_pods: Vec<String> = report
            .netns
            .iter()
            .filter_map(|ns| ns.pod.as_ref())
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .collect();
        report.netns.retain(|ns| self.wants_pod(ns));
        if self.names_pods() && report.netns.is_empty() {
            let mut pods = all_pods;
            pods.sort();
            pods.dedup();
            return Err(NoMatch { pods });
        }
        if self.bypassing {
            for ns in &mut report.netns {
                ns.processes.retain(|p| p.verdict.bypasses());
                let kept: Vec<u32> = ns.processes.iter().map(|p| p.pid).collect();
                ns.findings
                    .retain(|f| f.pid.is_none_or(|pid| kept.contains(&pid)) && f.kind.escapes());
            }
            report
                .netns
                .retain(|ns| !ns.processes.is_empty() || has_observed_bypass(ns));
        }
        if let Some(level) = self.severity {
            for ns in &mut report.netns {
                ns.findings.retain(|f| f.severity <= level);
            }
            report.netns.retain(|ns| {
                !ns.findings.is_empty() || ns.processes.iter().any(|p| p.verdict.bypasses())
            });
        }
        Ok(())
    }

    fn wants_pod(&self, ns: &NetnsReport) -> bool {
        if !self.names_pods() {
            return true;
        }
        let Some(pod) = &ns.pod else { return false };
        self.namespace.as_ref().is_none_or(|n| *n == pod.namespace)
            && self
                .pod_prefix
                .as_ref()
                .is_none_or(|p| pod.name.starts_with(p.as_str()))
    }
}

fn has_observed_bypass(ns: &NetnsReport) -> bool {
    ns.findings
        .iter()
        .any(|f| f.kind == FindingKind::ObservedBypass && f.pid.is_none())
}

impl FailOn {
    /// Whether `report` (as narrowed) fails the run.
    pub fn fails(self, report: &Report) -> bool {
        match self {
            FailOn::Bypass => report.bypasses(),
            FailOn::Severity(level) => report
                .netns
                .iter()
                .flat_map(|ns| &ns.findings)
                .any(|f| f.severity <= level),
            FailOn::Never => false,
        }
    }
}

#[cfg(test)]
mod tests;
