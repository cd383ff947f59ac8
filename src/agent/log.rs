//! The agent's log lines on stderr: readable by default, one JSON object per line for
//! pipelines. Values workloads control (process names in messages) are sanitized in the
//! human form and escaped by JSON in the other.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::sanitize::sanitize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

pub fn line(format: LogFormat, level: &str, msg: &str, fields: Value) {
    let text = match format {
        LogFormat::Json => {
            let mut obj = Map::new();
            let ts = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            obj.insert("ts".into(), json!(ts));
            obj.insert("level".into(), json!(level));
            obj.insert("msg".into(), json!(msg));
            if let Value::Object(f) = fields {
                obj.extend(f);
            }
            crate::json::to_string(&Value::Object(obj)).unwrap_or_default()
        }
        LogFormat::Human => {
            let mut s = format!("meshleak agent: {level}: {}", sanitize(msg));
            if let Value::Object(f) = fields {
                for (k, v) in f {
                    let v = match v {
                        Value::String(s) => sanitize(&s),
                        other => other.to_string(),
                    };
                    s.push_str(&format!(" {k}={v}"));
                }
            }
            s
        }
    };
    // A closed stderr must not stop the agent.
    let _ = writeln!(std::io::stderr(), "{text}");
}
