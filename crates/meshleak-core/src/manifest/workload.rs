//! The pod templates of a manifest's documents: a Pod's own spec, the template of a
//! Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController or Job, a
//! CronJob's job template's, and the items of a `List` (`kubectl get -o yaml`). Other
//! kinds are skipped, with a note naming them.

use super::doc::{Document, Node};

/// A pod template of one document.
#[derive(Clone, Debug)]
pub struct Workload {
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    /// The document it is in (1-based) and the line its object starts on.
    pub document: usize,
    pub line: usize,
    /// The path of the pod spec in the object (`spec.template.spec`), for field names.
    pub spec_path: String,
    /// The template's metadata (labels, annotations): the pod's own for a Pod.
    pub metadata: Option<Node>,
    pub spec: Node,
}

/// A document (or List item) that is no workload, or one that is broken.
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    pub document: usize,
    pub line: usize,
    pub why: String,
}

/// The workloads of a document, and what was skipped.
pub fn workloads(doc: &Document) -> (Vec<Workload>, Vec<Skipped>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    object(&doc.root, doc.index, &mut out, &mut skipped);
    (out, skipped)
}

/// Where each workload kind keeps its pod template.
fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Pod" => &[],
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job"
        // Argo Rollouts keep a Deployment's template.
        | "Rollout" => &["spec", "template"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template"],
        "PodTemplate" => &["template"],
        _ => return None,
    })
}

fn object(node: &Node, document: usize, out: &mut Vec<Workload>, skipped: &mut Vec<Skipped>) {
    let skip = |why: String| Skipped {
        document,
        line: node.line,
        why,
    };
    if node.entries().is_empty() {
        // An empty document (a lone `---`, or only comments) is nothing to judge.
        if !matches!(node.value, super::doc::Value::Null) {
            skipped.push(skip("not a Kubernetes object (no mapping)".into()));
        }
        return;
    }
    let Some(kind) = node.get("kind").and_then(Node::str) else {
        skipped.push(skip("no `kind`: not a Kubernetes object".into()));
        return;
    };
    if kind == "List" || kind.ends_with("List") {
        for item in node.get("items").map(Node::seq).unwrap_or_default() {
            object(item, document, out, skipped);
        }
        return;
    }
    let name = node
        .at(&["metadata", "name"])
        .and_then(Node::text)
        .or_else(|| {
            node.at(&["metadata", "generateName"])
                .and_then(Node::text)
                .map(|g| format!("{g}*"))
        })
        .unwrap_or_else(|| "?".into());
    // A Knative Service (serving.knative.dev) holds a pod template; a core Service does not.
    let knative = kind == "Service"
        && node
            .get("apiVersion")
            .and_then(Node::str)
            .is_some_and(|v| v.starts_with("serving.knative.dev/"));
    let path = if knative {
        Some(&["spec", "template"][..])
    } else {
        template_path(kind)
    };
    let Some(path) = path else {
        skipped.push(skip(format!("{kind} {name}: not a workload kind, skipped")));
        return;
    };
    let template = if path.is_empty() {
        Some(node)
    } else {
        node.at(path)
    };
    let Some(spec) = template.and_then(|t| t.get("spec")) else {
        skipped.push(skip(format!(
            "{kind} {name}: no pod template at {}",
            [path, &["spec"]].concat().join(".")
        )));
        return;
    };
    out.push(Workload {
        kind: kind.to_string(),
        name,
        namespace: node.at(&["metadata", "namespace"]).and_then(Node::text),
        document,
        line: node.line,
        spec_path: [path, &["spec"]].concat().join("."),
        metadata: template.and_then(|t| t.get("metadata")).cloned(),
        spec: spec.clone(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::doc::documents;

    #[test]
    fn every_workload_kind_and_lists() {
        let text = "\
kind: CronJob
metadata: {name: nightly}
spec:
  jobTemplate:
    spec:
      template:
        spec: {containers: [{name: job}]}
---
kind: List
items:
  - kind: Deployment
    metadata: {name: web, namespace: shop}
    spec: {template: {metadata: {annotations: {a: b}}, spec: {containers: []}}}
  - kind: Service
    metadata: {name: web}
---
kind: Pod
metadata: {name: p}
spec: {containers: []}
---
kind: Deployment
metadata: {name: broken}
";
        let (docs, err) = documents(text);
        assert_eq!(err, None);
        let mut all = Vec::new();
        let mut skipped = Vec::new();
        for d in &docs {
            let (w, s) = workloads(d);
            all.extend(w);
            skipped.extend(s);
        }
        let names: Vec<(&str, &str, &str)> = all
            .iter()
            .map(|w| (w.kind.as_str(), w.name.as_str(), w.spec_path.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("CronJob", "nightly", "spec.jobTemplate.spec.template.spec"),
                ("Deployment", "web", "spec.template.spec"),
                ("Pod", "p", "spec"),
            ]
        );
        assert_eq!(all[1].namespace.as_deref(), Some("shop"));
        assert!(
            all[1]
                .metadata
                .as_ref()
                .unwrap()
                .get("annotations")
                .is_some()
        );
        let why: Vec<&str> = skipped.iter().map(|s| s.why.as_str()).collect();
        assert_eq!(
            why,
            vec![
                "Service web: not a workload kind, skipped",
                "Deployment broken: no pod template at spec.template.spec",
            ]
        );
        assert_eq!((skipped[1].document, skipped[1].line), (4, 21));
    }
}
