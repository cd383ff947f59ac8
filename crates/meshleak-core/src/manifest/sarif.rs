//! `check -o sarif`: findings as a SARIF 2.1.0 log for code scanning (GitHub, GitLab):
//! one rule per finding kind, the level from the severity, the file and line of the field
//! that decides.

use serde_json::{Value, json};

use super::check::{Finding, Kind};
use crate::schema::Severity;

fn level(s: Severity) -> &'static str {
    match s {
        Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "note",
    }
}

/// The log for `findings`, made by meshleak `version`.
pub fn log(findings: &[Finding], version: &str) -> Value {
    let rules: Vec<Value> = Kind::ALL
        .iter()
        .map(|k| {
            json!({
                "id": k.name(),
                "shortDescription": {"text": k.description()},
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let index = Kind::ALL.iter().position(|k| *k == f.kind).unwrap_or(0);
            let mut text = format!("{} Fix: {}", f.message, f.remedy);
            if let Some(r) = f.rules.first() {
                text += &format!(" Rule: {}", r.rule);
            }
            json!({
                "ruleId": f.kind.name(),
                "ruleIndex": index,
                "level": level(f.severity),
                "message": {"text": text},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri(&f.file)},
                        "region": {"startLine": f.line.max(1)},
                    }
                }],
                "properties": {
                    "workload": f.workload,
                    "container": f.container,
                    "severity": f.severity.to_string(),
                },
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "meshleak",
                "version": version,
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

/// A path as a URI reference: every byte but RFC 3986's unreserved ones and `/`
/// percent-encoded, so `#`, `?`, `[` or a space in a name never reads as a fragment, a
/// query or another file.
fn uri(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
