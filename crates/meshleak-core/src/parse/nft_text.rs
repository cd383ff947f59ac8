//! Renders `nft -j` expressions and statements back into the text `nft -s list ruleset`
//! prints, so verdicts on native nftables rules cite the rule as users know it.

use serde_json::Value;

/// Meta keys nft prints without the `meta` keyword.
const UNQUALIFIED_META: &[&str] = &["iif", "oif", "iifname", "oifname", "iifgroup", "oifgroup"];

/// The left-hand side of a match (`ip daddr`, `meta skuid`, `meta mark & 0x00000fff`).
pub(super) fn lhs(v: &Value) -> String {
    if let Some(p) = v.get("payload") {
        return format!("{} {}", s(&p["protocol"]), s(&p["field"]));
    }
    if let Some(m) = v.get("meta") {
        let key = s(&m["key"]);
        return if UNQUALIFIED_META.contains(&key.as_str()) {
            key
        } else {
            format!("meta {key}")
        };
    }
    if let Some(ct) = v.get("ct") {
        return format!("ct {}", s(&ct["key"]));
    }
    if let Some(fib) = v.get("fib") {
        let flags: Vec<String> = fib["flags"]
            .as_array()
            .map(|a| a.iter().map(s).collect())
            .unwrap_or_default();
        return format!("fib {} {}", flags.join(" . "), s(&fib["result"]));
    }
    if let Some(parts) = v.get("concat").and_then(Value::as_array) {
        let parts: Vec<String> = parts.iter().map(lhs).collect();
        return parts.join(" . ");
    }
    if let Some(and) = v.get("&").and_then(Value::as_array)
        && let [l, r] = and.as_slice()
    {
        return format!("{} & {}", lhs(l), hex_or_value(r, true));
    }
    compact(v)
}

/// The right-hand side, formatted for the field it is compared with.
pub(super) fn rhs(v: &Value, left: &Value) -> String {
    let quote = left
        .get("meta")
        .is_some_and(|m| matches!(m["key"].as_str(), Some("iifname" | "oifname")));
    let hex = is_mark(left);
    value(v, quote, hex)
}

fn is_mark(left: &Value) -> bool {
    let inner = left.get("&").and_then(|a| a.get(0)).unwrap_or(left);
    inner.get("meta").is_some_and(|m| m["key"] == "mark")
        || inner.get("ct").is_some_and(|m| m["key"] == "mark")
}

fn value(v: &Value, quote: bool, hex: bool) -> String {
    match v {
        Value::String(text) if quote => format!("\"{text}\""),
        Value::String(text) => text.clone(),
        Value::Number(_) => hex_or_value(v, hex),
        Value::Array(items) => items
            .iter()
            .map(|i| value(i, quote, hex))
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(o) => {
            if let Some(set) = o.get("set").and_then(Value::as_array) {
                let items: Vec<String> = set.iter().map(|i| value(i, quote, hex)).collect();
                return format!("{{ {} }}", items.join(", "));
            }
            if let Some(r) = o.get("range").and_then(Value::as_array)
                && let [a, b] = r.as_slice()
            {
                return format!("{}-{}", value(a, quote, hex), value(b, quote, hex));
            }
            if let Some(p) = o.get("prefix") {
                return format!("{}/{}", s(&p["addr"]), p["len"]);
            }
            if let Some(e) = o.get("elem") {
                return value(&e["val"], quote, hex);
            }
            if o.contains_key("payload") || o.contains_key("meta") || o.contains_key("ct") {
                return lhs(v);
            }
            compact(v)
        }
        other => compact(other),
    }
}

fn hex_or_value(v: &Value, hex: bool) -> String {
    match (v.as_u64(), hex) {
        (Some(n), true) => format!("0x{n:08x}"),
        _ => v.to_string().trim_matches('"').to_string(),
    }
}

/// One statement of a rule.
pub(super) fn statement(stmt: &Value) -> String {
    let Some((key, body)) = stmt.as_object().and_then(|o| o.iter().next()) else {
        return compact(stmt);
    };
    // What the text listing's reader kept as it was pasted.
    if let Some(text) = body
        .get("listing")
        .or_else(|| body.get("text").filter(|_| key == "listing"))
    {
        return s(text);
    }
    match key.as_str() {
        "match" => {
            let left = &body["left"];
            // nft spells out `==` after a bitwise expression, where it would be ambiguous.
            let op = match body["op"].as_str().unwrap_or("==") {
                "==" if left.get("&").is_some() => "== ".to_string(),
                "==" | "in" => String::new(),
                other => format!("{other} "),
            };
            format!("{} {op}{}", lhs(left), rhs(&body["right"], left))
        }
        "counter" => "counter".into(),
        "vmap" => {
            let data = &body["data"];
            let map = match data.get("set").and_then(Value::as_array) {
                Some(pairs) => {
                    let items: Vec<String> = pairs
                        .iter()
                        .map(|p| match p.as_array().map(Vec::as_slice) {
                            Some([k, v]) => {
                                format!("{} : {}", value(k, false, false), statement(v))
                            }
                            _ => compact(p),
                        })
                        .collect();
                    format!("{{ {} }}", items.join(", "))
                }
                None => value(data, false, false),
            };
            format!("{} vmap {map}", lhs(&body["key"]))
        }
        "accept" | "drop" | "return" | "continue" | "notrack" | "masquerade" => key.clone(),
        "jump" | "goto" => format!("{key} {}", s(&body["target"])),
        "reject" => match body.get("type") {
            Some(t) if !t.is_null() => format!("reject with {}", s(t)),
            _ => "reject".into(),
        },
        "redirect" => match body.get("port") {
            Some(p) => format!("redirect to :{}", value(p, false, false)),
            None => "redirect".into(),
        },
        "dnat" | "snat" | "tproxy" => {
            let family = body
                .get("family")
                .map(|f| format!(" {}", s(f)))
                .unwrap_or_default();
            let addr = body
                .get("addr")
                .map(|a| value(a, false, false))
                .unwrap_or_default();
            let port = body
                .get("port")
                .map(|p| format!(":{}", value(p, false, false)))
                .unwrap_or_default();
            let addr = if addr.contains(':') && !port.is_empty() {
                format!("[{addr}]")
            } else {
                addr
            };
            format!("{key}{family} to {addr}{port}")
        }
        "mangle" => {
            let target = &body["key"];
            format!(
                "{} set {}",
                lhs(target),
                mangle_value(&body["value"], is_mark(target))
            )
        }
        "log" => match body.get("prefix") {
            Some(p) => format!("log prefix \"{}\"", s(p)),
            None => "log".into(),
        },
        "xt" => format!("xt {} \"{}\"", s(&body["type"]), s(&body["name"])),
        _ => compact(stmt),
    }
}

fn mangle_value(v: &Value, hex: bool) -> String {
    for op in ["&", "|", "^"] {
        if let Some([l, r]) = v.get(op).and_then(Value::as_array).map(Vec::as_slice) {
            return format!("{} {op} {}", mangle_value(l, hex), mangle_value(r, hex));
        }
    }
    value(v, false, hex)
}

fn s(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

/// Anything the renderer does not know, shown as compact JSON rather than dropped.
fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}
