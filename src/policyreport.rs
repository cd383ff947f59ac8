//! Findings as PolicyReport objects (`wgpolicyk8s.io/v1alpha2`, the format Kyverno's Policy
//! Reporter, the Trivy operator and kube-bench adapters read): one PolicyReport per
//! Kubernetes namespace with pods on this node, one ClusterPolicyReport for what is in no
//! known pod, all in a `v1` `List` that `kubectl apply -f -` takes. Names carry the node, so
//! the agents of different nodes never overwrite each other's reports. Pure: built from a
//! report.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::report::{Finding, NetnsReport, Report};
use crate::sanitize::sanitize;

/// `source` of every result, and the `policy` they belong to.
const SOURCE: &str = "meshleak";
/// The rule of the pass result a pod with no finding above `low` gets.
const PASS_RULE: &str = "no-bypass";

/// The `List` of reports for `r`.
pub fn build(r: &Report) -> Value {
    let name = object_name(&r.node);
    let mut by_namespace: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    let mut outside: Vec<Value> = Vec::new();
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
    let labels = json!({
        "app.kubernetes.io/managed-by": "meshleak",
        "meshleak.dev/node": label_value(&r.node),
    });
    let mut items: Vec<Value> = by_namespace
        .into_iter()
        .map(|(namespace, results)| {
            json!({
                "apiVersion": "wgpolicyk8s.io/v1alpha2",
                "kind": "PolicyReport",
                "metadata": {"name": name, "namespace": namespace, "labels": labels},
                "scope": {"apiVersion": "v1", "kind": "Namespace", "name": namespace},
                "summary": summary(&results),
                "results": results,
            })
        })
        .collect();
    if !outside.is_empty() {
        items.push(json!({
            "apiVersion": "wgpolicyk8s.io/v1alpha2",
            "kind": "ClusterPolicyReport",
            "metadata": {"name": name, "labels": labels},
            "scope": {"apiVersion": "v1", "kind": "Node", "name": r.node},
            "summary": summary(&outside),
            "results": outside,
        }));
    }
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// One result per finding; a pod with none above `low` also gets a pass.
fn results(r: &Report, ns: &NetnsReport) -> Vec<Value> {
    let resources: Vec<Value> = ns
        .pod
        .iter()
        .map(|p| {
            json!({"apiVersion": "v1", "kind": "Pod", "namespace": p.namespace,
                   "name": p.name, "uid": p.uid})
        })
        .collect();
    let timestamp = json!({"seconds": r.scanned_at, "nanos": 0});
    let mut out: Vec<Value> = ns
        .findings
        .iter()
        .map(|f| {
            json!({
                "source": SOURCE,
                "policy": SOURCE,
                "rule": f.kind,
                "category": "Service mesh",
                "severity": f.severity,
                "result": if f.severity == "low" { "warn" } else { "fail" },
                "scored": true,
                "message": sanitize(&f.message),
                "resources": resources,
                "properties": properties(r, ns, f),
                "timestamp": timestamp,
            })
        })
        .collect();
    let serious = ns.findings.iter().any(|f| f.severity != "low");
    if ns.pod.is_some() && ns.mesh.is_some() && !serious {
        out.push(json!({
            "source": SOURCE,
            "policy": SOURCE,
            "rule": PASS_RULE,
            "category": "Service mesh",
            "result": "pass",
            "scored": true,
            "message": "no process of this pod bypasses the mesh",
            "resources": resources,
            "properties": {"node": r.node, "netns": ns.inode.to_string()},
            "timestamp": timestamp,
        }));
    }
    out
}

/// Strings only (the schema's `properties` map): where, the evidence, the deciding rule and
/// the remedy.
fn properties(r: &Report, ns: &NetnsReport, f: &Finding) -> Value {
    let mut p = serde_json::Map::new();
    p.insert("node".into(), json!(r.node));
    p.insert("netns".into(), json!(ns.inode.to_string()));
    if let Some(pid) = f.pid {
        p.insert("pid".into(), json!(pid.to_string()));
    }
    if let Some(rule) = f.rules.first() {
        p.insert(
            "rule".into(),
            json!(format!("{}: {}", rule.place(), sanitize(&rule.rule))),
        );
    }
    if !f.evidence.is_empty() {
        p.insert("evidence".into(), json!(sanitize(&f.evidence.join("; "))));
    }
    p.insert("remedy".into(), json!(sanitize(&f.remedy)));
    Value::Object(p)
}

fn summary(results: &[Value]) -> Value {
    let count = |r: &str| results.iter().filter(|x| x["result"] == r).count();
    json!({"pass": count("pass"), "fail": count("fail"), "warn": count("warn"),
           "error": count("error"), "skip": count("skip")})
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
