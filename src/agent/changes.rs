//! What changed between two scans: findings that appeared and findings that went away, so
//! the agent logs one line per change instead of the whole report each interval.

use std::collections::BTreeMap;

use serde::Serialize;

use meshleak_core::schema::Report;

/// Findings by (pod, kind, pid).
pub(super) type Index = BTreeMap<(String, String, Option<u32>), Change>;

/// A finding as the change log shows it; `key` identifies it across scans.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(super) struct Change {
    pub event: &'static str,
    pub kind: String,
    pub severity: String,
    /// `namespace/pod`, or the namespace's path or inode when it is not a known pod.
    pub pod: String,
    pub pid: Option<u32>,
    pub message: String,
}

/// Findings keyed by where they are, what they are and whom they concern; the message
/// stays out of the key so a changed detail (a count) is not a new finding.
pub(super) fn index(r: &Report) -> Index {
    let mut out = BTreeMap::new();
    for ns in &r.netns {
        let pod = match (&ns.pod, ns.paths.first()) {
            (Some(p), _) => format!("{}/{}", p.namespace, p.name),
            (None, Some(path)) => path.clone(),
            (None, None) => format!("netns:{}", ns.inode),
        };
        for f in &ns.findings {
            out.insert(
                (pod.clone(), f.kind.to_string(), f.pid),
                Change {
                    event: "new",
                    kind: f.kind.to_string(),
                    severity: f.severity.to_string(),
                    pod: pod.clone(),
                    pid: f.pid,
                    message: f.message.clone(),
                },
            );
        }
    }
    out
}

/// New findings (in `now`, not in `before`) then resolved ones (the other way round).
pub(super) fn diff(before: &Index, now: &Index) -> Vec<Change> {
    let new = now
        .iter()
        .filter(|(k, _)| !before.contains_key(*k))
        .map(|(_, c)| c.clone());
    let resolved = before
        .iter()
        .filter(|(k, _)| !now.contains_key(*k))
        .map(|(_, c)| Change {
            event: "resolved",
            ..c.clone()
        });
    new.chain(resolved).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(
        pod: &str,
        kind: &str,
        pid: Option<u32>,
        message: &str,
    ) -> ((String, String, Option<u32>), Change) {
        (
            (pod.into(), kind.into(), pid),
            Change {
                event: "new",
                kind: kind.into(),
                severity: "high".into(),
                pod: pod.into(),
                pid,
                message: message.into(),
            },
        )
    }

    #[test]
    fn new_and_resolved_findings_only() {
        let before: Index = [
            change("shop/web", "identity-exempt", Some(7), "a"),
            change("shop/web", "proxy-absent", None, "b"),
        ]
        .into_iter()
        .collect();
        let now: Index = [
            // Same finding, different detail: not a change.
            change("shop/web", "identity-exempt", Some(7), "a, more"),
            change("shop/db", "observed-bypass", Some(9), "c"),
        ]
        .into_iter()
        .collect();
        let changes = diff(&before, &now);
        let got: Vec<(&str, &str)> = changes.iter().map(|c| (c.event, c.kind.as_str())).collect();
        assert_eq!(
            got,
            vec![("new", "observed-bypass"), ("resolved", "proxy-absent")]
        );
        assert!(diff(&now, &now).is_empty());
    }
}
