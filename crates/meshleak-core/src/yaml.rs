//! `-o yaml`: any JSON output as block YAML, the same document kubectl users read. Written
//! from the JSON value so both forms hold the same fields in the same order. Strings are
//! plain only where no YAML reader could take them for anything else; otherwise they are
//! double-quoted with JSON's escapes, which YAML's double-quoted style shares.

use serde::Serialize;
use serde_json::Value;

/// The YAML text of `value` (ends with a newline).
pub fn to_string<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let v = serde_json::to_value(value)?;
    let mut out = String::new();
    match &v {
        Value::Object(m) if !m.is_empty() => mapping(&v, 0, &mut out),
        Value::Array(a) if !a.is_empty() => sequence(&v, 0, &mut out),
        _ => {
            out.push_str(&scalar(&v));
            out.push('\n');
        }
    }
    Ok(out)
}

/// A non-empty collection goes on its own lines; anything else stays on the key's line.
fn nested(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

fn mapping(v: &Value, indent: usize, out: &mut String) {
    let Value::Object(m) = v else { return };
    for (i, (k, val)) in m.iter().enumerate() {
        // The first key of a sequence item sits after its `- `.
        if i > 0 || !out.ends_with("- ") {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(&string(k));
        entry(val, indent, out);
    }
}

fn entry(val: &Value, indent: usize, out: &mut String) {
    if nested(val) {
        out.push_str(":\n");
        match val {
            Value::Object(_) => mapping(val, indent + 2, out),
            _ => sequence(val, indent + 2, out),
        }
    } else {
        out.push_str(": ");
        out.push_str(&scalar(val));
        out.push('\n');
    }
}

fn sequence(v: &Value, indent: usize, out: &mut String) {
    let Value::Array(a) = v else { return };
    for item in a {
        out.push_str(&" ".repeat(indent));
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => mapping(item, indent + 2, out),
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                sequence(item, indent + 2, out);
            }
            _ => {
                out.push_str(&scalar(item));
                out.push('\n');
            }
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// Words a YAML 1.1 or 1.2 reader resolves to a boolean or null when plain.
const RESERVED: &[&str] = &[
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
];

fn string(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || " _./@+=,()-".contains(c))
        && !s.ends_with(' ')
        && !s.contains(" #")
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        crate::json::to_string(s).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn writes_block_yaml() {
        let v = json!({
            "kind": "List",
            "items": [{"a": 1, "b": ["x", "y: z"]}, [], {}],
            "empty": {},
            "n": null,
            "yes": "no",
            "cmd": "a #b",
            "esc": "\u{1b}[31m",
        });
        let text = super::to_string(&v).unwrap();
        assert_eq!(
            text,
            "kind: List\nitems:\n  - a: 1\n    b:\n      - x\n      - \"y: z\"\n  - []\n  - {}\nempty: {}\n\"n\": null\n\"yes\": \"no\"\ncmd: \"a #b\"\nesc: \"\\u001b[31m\"\n"
        );
    }

    #[test]
    fn a_scalar_alone() {
        assert_eq!(super::to_string(&3).unwrap(), "3\n");
        assert_eq!(super::to_string(&"10.0.0.1").unwrap(), "\"10.0.0.1\"\n");
    }
}
