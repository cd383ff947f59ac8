//! Findings as PolicyReport objects (`wgpolicyk8s.io/v1alpha2`, the format Kyverno's Policy
//! Reporter, the Trivy operator and kube-bench adapters read): one PolicyReport per
//! Kubernetes namespace with pods on this node, one ClusterPolicyReport for what is in no
//! known pod, all in a `v1` `List` that `kubectl apply -f -` takes. Names carry the node, so
//! the agents of different nodes never overwrite each other's reports. Pure: built from a
//! report.
//!
//! Typed, and borrowing from the report: written out as it is serialized, where a
//! `serde_json::Value` tree of it took 10 MiB more than its text at 100 pods (the agent
//! renders it every scan). Fields are in alphabetical order, the order the JSON has had.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::sanitize::sanitize;
use crate::schema::{Finding, NetnsReport, Report, Severity};

/// `source` of every result, and the `policy` they belong to.
const SOURCE: &str = "meshleak";
/// The rule of the pass result a pod with no finding above `low` gets.
const PASS_RULE: &str = "no-bypass";
const CATEGORY: &str = "Service mesh";

/// A `v1` `List` of reports.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct List<'a> {
    api_version: &'static str,
    items: Vec<PolicyReport<'a>>,
    kind: &'static str,
}

/// A PolicyReport (of a namespace) or a ClusterPolicyReport.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyReport<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata<'a>,
    results: Vec<Outcome<'a>>,
    scope: Scope<'a>,
    summary: Summary,
}

#[derive(Serialize)]
struct Metadata<'a> {
    labels: Labels,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
}

#[derive(Serialize)]
struct Labels {
    #[serde(rename = "app.kubernetes.io/managed-by")]
    managed_by: &'static str,
    #[serde(rename = "meshleak.dev/node")]
    node: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Scope<'a> {
    api_version: &'static str,
    kind: &'static str,
    name: &'a str,
}

#[derive(Serialize)]
struct Summary {
    error: usize,
    fail: usize,
    pass: usize,
    skip: usize,
    warn: usize,
}

/// One result (`PolicyReportResult`).
#[derive(Serialize)]
struct Outcome<'a> {
    category: &'static str,
    message: String,
    policy: &'static str,
    properties: Properties<'a>,
    resources: Vec<Resource<'a>>,
    result: &'static str,
    rule: &'a str,
    scored: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<&'a str>,
    source: &'static str,
    timestamp: Timestamp,
}

/// Strings only (the schema's `properties` map): where, the evidence, the deciding rule and
/// the remedy.
#[derive(Serialize)]
struct Properties<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    evidence: Option<String>,
    netns: String,
    node: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remedy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<String>,
}

#[derive(Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
struct Resource<'a> {
    api_version: &'static str,
    kind: &'static str,
    name: &'a str,
    namespace: &'a str,
    uid: &'a str,
}

#[derive(Clone, Copy, Serialize)]
struct Timestamp {
    nanos: u32,
    seconds: u64,
}

/// The `List` of reports for `r`.
pub fn build(r: &Report) -> List<'_> {
    let mut by_namespace: BTreeMap<&str, Vec<Outcome>> = BTreeMap::new();
    let mut outside: Vec<Outcome> = Vec::new();
    for ns in &r.netns {
        let results = results(r, ns);
        match &ns.pod {
            Some(pod) => by_namespace
                .entry(pod.namespace.as_str())
                .or_default()
                .extend(results),
            None => outside.extend(results),
        }
    }
    let mut items: Vec<PolicyReport> = by_namespace
        .into_iter()
        .map(|(namespace, results)| {
            let scope = Scope {
                api_version: "v1",
                kind: "Namespace",
                name: namespace,
            };
            report(r, "PolicyReport", Some(namespace), scope, results)
        })
        .collect();
    if !outside.is_empty() {
        let scope = Scope {
            api_version: "v1",
            kind: "Node",
            name: &r.node,
        };
        items.push(report(r, "ClusterPolicyReport", None, scope, outside));
    }
    List {
        api_version: "v1",
        items,
        kind: "List",
    }
}

fn report<'a>(
    r: &Report,
    kind: &'static str,
    namespace: Option<&'a str>,
    scope: Scope<'a>,
    results: Vec<Outcome<'a>>,
) -> PolicyReport<'a> {
    PolicyReport {
        api_version: "wgpolicyk8s.io/v1alpha2",
        kind,
        metadata: Metadata {
            labels: Labels {
                managed_by: "meshleak",
                node: label_value(&r.node),
            },
            name: object_name(&r.node),
            namespace,
        },
        summary: summary(&results),
        results,
        scope,
    }
}

/// One result per finding; a pod with none above `low` also gets a pass.
fn results<'a>(r: &'a Report, ns: &'a NetnsReport) -> Vec<Outcome<'a>> {
    let resources: Vec<Resource> = ns
        .pod
        .iter()
        .map(|p| Resource {
            api_version: "v1",
            kind: "Pod",
            name: &p.name,
            namespace: &p.namespace,
            uid: &p.uid,
        })
        .collect();
    let timestamp = Timestamp {
        nanos: 0,
        seconds: r.scanned_at,
    };
    let outcome = |rule, severity, result, message, properties| Outcome {
        category: CATEGORY,
        message,
        policy: SOURCE,
        properties,
        resources: resources.clone(),
        result,
        rule,
        scored: true,
        severity,
        source: SOURCE,
        timestamp,
    };
    let mut out: Vec<Outcome> = ns
        .findings
        .iter()
        .map(|f| {
            outcome(
                f.kind.name(),
                Some(f.severity.name()),
                if f.severity == Severity::Low {
                    "warn"
                } else {
                    "fail"
                },
                sanitize(&f.message),
                properties(r, ns, f),
            )
        })
        .collect();
    let serious = ns.findings.iter().any(|f| f.severity != Severity::Low);
    if ns.pod.is_some() && ns.mesh.is_some() && !serious {
        let properties = Properties {
            evidence: None,
            netns: ns.inode.to_string(),
            node: &r.node,
            pid: None,
            remedy: None,
            rule: None,
        };
        out.push(outcome(
            PASS_RULE,
            None,
            "pass",
            "no process of this pod bypasses the mesh".into(),
            properties,
        ));
    }
    out
}

fn properties<'a>(r: &'a Report, ns: &NetnsReport, f: &Finding) -> Properties<'a> {
    Properties {
        evidence: (!f.evidence.is_empty()).then(|| sanitize(&f.evidence.join("; "))),
        netns: ns.inode.to_string(),
        node: &r.node,
        pid: f.pid.map(|p| p.to_string()),
        remedy: Some(sanitize(&f.remedy)),
        rule: f
            .rules
            .first()
            .map(|rule| format!("{}: {}", rule.place(), sanitize(&rule.rule))),
    }
}

fn summary(results: &[Outcome]) -> Summary {
    let count = |r: &str| results.iter().filter(|x| x.result == r).count();
    Summary {
        error: count("error"),
        fail: count("fail"),
        pass: count("pass"),
        skip: count("skip"),
        warn: count("warn"),
    }
}

/// `meshleak-NODE` as a DNS subdomain (lowercase, `-` for anything else, at most 253).
fn object_name(node: &str) -> String {
    let mut name: String = format!("meshleak-{node}")
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '.' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .take(253)
        .collect();
    while name.ends_with(['-', '.']) {
        name.pop();
    }
    name
}

/// A label value: at most 63 of `[A-Za-z0-9._-]`, starting and ending alphanumeric.
fn label_value(text: &str) -> String {
    let v: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_kubernetes_names() {
        assert_eq!(object_name("Node_A.example"), "meshleak-node-a.example");
        assert_eq!(object_name("n-"), "meshleak-n");
        assert_eq!(object_name(&"x".repeat(300)).len(), 253);
        assert_eq!(label_value("-node a-"), "node-a");
        assert_eq!(label_value(&"y".repeat(80)).len(), 63);
    }
}
