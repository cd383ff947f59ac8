//! The agent's log lines on stderr: logfmt by default (`ts=... level=info node=... msg="scan
//! done" netns=3`), as log collectors and people grep it; one JSON object per line for
//! pipelines. Every line carries the time and the node's name, so lines from a DaemonSet's
//! pods can be told apart once collected. Values workloads control (process names) are
//! sanitized and quoted in logfmt and escaped by JSON.

use std::io::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use meshleak_core::sanitize::sanitize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// logfmt.
    Human,
    Json,
}

static NODE: OnceLock<String> = OnceLock::new();

/// The node's name on every line from now on (set once, when the agent starts).
pub(crate) fn set_node(name: &str) {
    let _ = NODE.set(name.to_string());
}

pub(crate) fn line(format: LogFormat, level: &str, msg: &str, fields: Value) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let node = NODE.get().map(String::as_str);
    let text = match format {
        LogFormat::Json => {
            let mut obj = Map::new();
            obj.insert("ts".into(), json!(now.as_secs_f64()));
            obj.insert("level".into(), json!(level));
            if let Some(node) = node {
                obj.insert("node".into(), json!(node));
            }
            obj.insert("msg".into(), json!(msg));
            if let Value::Object(f) = fields {
                obj.extend(f.into_iter().filter(|(k, _)| k != "node"));
            }
            meshleak_core::json::to_string(&Value::Object(obj)).unwrap_or_default()
        }
        LogFormat::Human => {
            let mut s = format!("ts={} level={level}", rfc3339(now.as_millis()));
            if let Some(node) = node {
                s += &format!(" node={}", logfmt_value(node));
            }
            s += &format!(" msg={}", logfmt_value(msg));
            if let Value::Object(f) = fields {
                for (k, v) in f.into_iter().filter(|(k, _)| k != "node") {
                    let v = match v {
                        Value::String(s) => logfmt_value(&s),
                        other => logfmt_value(&other.to_string()),
                    };
                    s += &format!(" {k}={v}");
                }
            }
            s
        }
    };
    // A closed stderr must not stop the agent.
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// A value as logfmt writes it: bare when it is one plain word, else double-quoted with
/// `"` and `\` escaped; control characters are made visible first.
fn logfmt_value(v: &str) -> String {
    let v = sanitize(v);
    let bare = !v.is_empty()
        && v.chars()
            .all(|c| !c.is_whitespace() && c != '"' && c != '=' && c != '\\');
    if bare {
        v
    } else {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// `2026-12-03T13:20:01.123Z` for a time in milliseconds since the epoch (UTC).
fn rfc3339(millis: u128) -> String {
    let secs = (millis / 1000) as i64;
    format!("{}.{:03}Z", meshleak_core::civil::utc(secs), millis % 1000)
}

#[cfg(test)]
mod tests {
    use super::{logfmt_value, rfc3339};

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_304_001_123), "2026-12-03T13:20:01.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn values_are_quoted_where_logfmt_needs_it() {
        assert_eq!(logfmt_value("vm-1"), "vm-1");
        assert_eq!(logfmt_value("scan done"), "\"scan done\"");
        assert_eq!(logfmt_value(""), "\"\"");
        assert_eq!(logfmt_value("a=\"b\""), "\"a=\\\"b\\\"\"");
        // Made visible by sanitize, then its backslash escaped as logfmt escapes it.
        assert_eq!(logfmt_value("x\u{1b}[31m"), "\"x\\\\u{1b}[31m\"");
    }
}
