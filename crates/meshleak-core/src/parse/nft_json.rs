//! `nft -j list ruleset` output: native nftables tables, and iptables-nft tables whose xt
//! matches and targets arrive without their values (they become unknown).

use std::collections::HashMap;
use std::net::IpAddr;

use serde_json::Value;

use super::{ParseError, nft_text};
use crate::model::{
    Action, AddrType, Backend, BaseChain, Chain, ChainType, CtState, Dir, DumpFormat, Family, Hook,
    IfacePattern, IpVersion, MarkReg, MarkSet, Match, NAT_FLAGS, NatPorts, NatSource, Policy, Rule,
    Table, Test, netmap_mask, proto_number,
};
use crate::range::{AddrRange, IdRange, PortRange};

pub(super) fn parse(file: &str, text: &str) -> Result<Vec<Table>, ParseError> {
    let err = |line: usize, token: Option<String>, message: String| ParseError {
        file: file.to_string(),
        line,
        token,
        message,
    };
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        err(
            e.line(),
            None,
            format!("not valid JSON ({e}); expected `nft -j list ruleset` output"),
        )
    })?;
    from_doc(file, &doc, None)
}

/// The tables of an `nft -j` document. `lines`: where each of its items was read, when it
/// was built from nft's text listing, so errors name the line.
pub(super) fn from_doc(
    file: &str,
    doc: &Value,
    lines: Option<&[usize]>,
) -> Result<Vec<Table>, ParseError> {
    let err = |line: usize, token: Option<String>, message: String| ParseError {
        file: file.to_string(),
        line,
        token,
        message,
    };
    let items = doc
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            err(
                0,
                None,
                "no top-level \"nftables\" array; expected `nft -j list ruleset` output".into(),
            )
        })?;

    let mut tables: Vec<Table> = Vec::new();
    let mut sets: HashMap<(String, String, String), NamedSet> = HashMap::new();
    let key = |o: &Value, table_key: &str| -> (String, String) {
        (str_of(&o["family"]), str_of(&o[table_key]))
    };
    for (i, item) in items.iter().enumerate() {
        let at = |what: &str, msg: &str| match lines.and_then(|l| l.get(i)) {
            Some(line) => err(*line, None, msg.to_string()),
            None => err(0, Some(format!("nftables[{i}] {what}")), msg.to_string()),
        };
        if let Some(t) = item.get("table") {
            let Some(family) = family_of(&str_of(&t["family"])) else {
                continue; // arp, bridge, netdev: never see a locally generated IP packet's OUTPUT
            };
            tables.push(Table {
                backend: Backend::Nftables,
                family,
                name: str_of(&t["name"]),
                chains: Vec::new(),
                origin: file.to_string(),
                format: DumpFormat::NftJson,
            });
        } else if let Some(c) = item.get("chain") {
            let (fam, tname) = key(c, "table");
            let Some(table) = find_table(&mut tables, &fam, &tname) else {
                continue;
            };
            table.chains.push(Chain {
                name: str_of(&c["name"]),
                base: base_chain(c).map_err(|m| at("chain", &m))?,
                rules: Vec::new(),
            });
        } else if let Some(s) = item.get("set").or_else(|| item.get("map")) {
            // A map's elements are [key, value] pairs; a verdict map's values verdicts.
            let (fam, tname) = key(s, "table");
            sets.insert(
                (fam, tname, str_of(&s["name"])),
                NamedSet {
                    elem: s.get("elem").cloned().unwrap_or(Value::Array(vec![])),
                    fields: declared_fields(&s["type"]),
                },
            );
        } else if let Some(r) = item.get("rule") {
            let (fam, tname) = key(r, "table");
            let chain_name = str_of(&r["chain"]);
            let table_sets: Sets = sets
                .iter()
                .filter(|((f, t, _), _)| *f == fam && *t == tname)
                .map(|((_, _, n), v)| (n.clone(), v.clone()))
                .collect();
            let Some(table) = find_table(&mut tables, &fam, &tname) else {
                continue;
            };
            let family = table.family;
            let chain = table
                .chains
                .iter_mut()
                .find(|c| c.name == chain_name)
                .ok_or_else(|| at("rule", &format!("rule for unknown chain {chain_name}")))?;
            let exprs = r["expr"]
                .as_array()
                .ok_or_else(|| at("rule", "rule has no \"expr\" array"))?;
            let position = chain.rules.last().map_or(0, |r| r.position) + 1;
            for mut rule in rule_from(exprs, family, &table_sets) {
                if let Some(text) = r.get("listing").and_then(Value::as_str) {
                    rule.text = text.to_string();
                }
                rule.position = position;
                rule.comment = r.get("comment").and_then(Value::as_str).map(Box::from);
                chain.rules.push(rule);
            }
        }
    }
    refused(&tables, items, &err, lines)?;
    for table in &mut tables {
        if table.looks_like_iptables_nft() {
            table.backend = Backend::IptablesNft;
        }
    }
    Ok(tables)
}

/// What nft would refuse to load: a jump or goto to a chain its table does not have
/// ("No such file or directory"), and jumps that loop ("Too many levels of symbolic links").
fn refused(
    tables: &[Table],
    items: &[Value],
    err: &dyn Fn(usize, Option<String>, String) -> ParseError,
    lines: Option<&[usize]>,
) -> Result<(), ParseError> {
    let at = |i: usize| lines.and_then(|l| l.get(i).copied()).unwrap_or(0);
    for (i, item) in items.iter().enumerate() {
        let Some(r) = item.get("rule") else { continue };
        let Some(table) = family_of(&str_of(&r["family"])).and_then(|f| {
            tables
                .iter()
                .find(|t| t.family == f && t.name == str_of(&r["table"]))
        }) else {
            continue;
        };
        for stmt in r["expr"].as_array().into_iter().flatten() {
            let target = ["jump", "goto"]
                .iter()
                .find_map(|k| stmt.get(*k))
                .map(|b| str_of(&b["target"]));
            if let Some(target) = target
                && !table.chains.iter().any(|c| c.name == target)
            {
                return Err(err(
                    at(i),
                    lines.is_none().then(|| format!("nftables[{i}] rule")),
                    format!(
                        "chain `{target}` does not exist in table {}; nft refuses this rule set",
                        table.name
                    ),
                ));
            }
        }
    }
    for table in tables {
        if let Some(cycle) = super::jump_loop(table) {
            return Err(err(
                0,
                None,
                format!(
                    "jumps loop ({}) in table {}; the kernel refuses this rule set (ELOOP)",
                    cycle.join(" -> "),
                    table.name
                ),
            ));
        }
    }
    Ok(())
}

fn find_table<'t>(tables: &'t mut [Table], family: &str, name: &str) -> Option<&'t mut Table> {
    let family = family_of(family)?;
    tables
        .iter_mut()
        .find(|t| t.family == family && t.name == name)
}

fn family_of(name: &str) -> Option<Family> {
    match name {
        "ip" => Some(Family::Ipv4),
        "ip6" => Some(Family::Ipv6),
        "inet" => Some(Family::Inet),
        _ => None,
    }
}

fn base_chain(c: &Value) -> Result<Option<BaseChain>, String> {
    let Some(hook) = c.get("hook").and_then(Value::as_str) else {
        return Ok(None);
    };
    let hook = match Hook::from_name(hook) {
        Some(h) => h,
        None => return Ok(None), // ingress/egress hooks of netdev-style chains
    };
    let chain_type = match c["type"].as_str().unwrap_or("filter") {
        "filter" => ChainType::Filter,
        "nat" => ChainType::Nat,
        "route" => ChainType::Route,
        other => return Err(format!("unknown chain type {other}")),
    };
    let priority = c["prio"]
        .as_i64()
        .ok_or("chain has a hook but no numeric \"prio\"")? as i32;
    let policy = match c["policy"].as_str().unwrap_or("accept") {
        "accept" => Policy::Accept,
        "drop" => Policy::Drop,
        other => return Err(format!("unknown policy {other}")),
    };
    Ok(Some(BaseChain {
        hook,
        priority,
        chain_type,
        policy,
    }))
}

/// One rule as the model's rules: one, or one per element of its verdict map (all at the
/// rule's position, with its text): the element's test after the rule's matches, its
/// verdict after the statements before it. A key in no element ends the rule unmatched.
fn rule_from(exprs: &[Value], family: Family, sets: &Sets) -> Vec<Rule> {
    let text = exprs
        .iter()
        .map(nft_text::statement)
        .collect::<Vec<_>>()
        .join(" ");
    let mut matches = Vec::new();
    let mut actions = Vec::new();
    for stmt in exprs {
        let stmt_text = nft_text::statement(stmt);
        if let Some(m) = stmt.get("match") {
            matches.extend(match_from(m, family, sets, &stmt_text));
            continue;
        }
        if let Some(v) = stmt.get("vmap")
            && let Some(arms) = vmap_arms(v, family, sets, &stmt_text)
        {
            return arms
                .into_iter()
                .map(|(arm, verdict)| Rule {
                    position: 0,
                    text: text.clone(),
                    matches: matches.iter().cloned().chain(arm).collect(),
                    actions: actions.iter().cloned().chain([verdict]).collect(),
                    comment: None,
                })
                .collect();
        }
        // `reject with icmp ...` in an inet table holds an implied `meta nfproto ipv4`
        // (icmpv6: ipv6) that nft loads but leaves out of its JSON.
        let implied = match stmt.get("reject").map(|r| str_of(&r["type"])).as_deref() {
            Some("icmp") => Some(IpVersion::V4),
            Some("icmpv6") => Some(IpVersion::V6),
            _ => None,
        };
        if let (Some(version), Family::Inet) = (implied, family) {
            matches.push(Match {
                negated: false,
                test: Test::NfProto { version },
                text: String::new(),
            });
        }
        match action_from(stmt) {
            Some(Some(action)) => actions.push(action),
            Some(None) => {}
            None => matches.push(Match {
                negated: false,
                test: Test::Unknown {
                    name: unknown_name(stmt),
                },
                text: stmt_text,
            }),
        }
    }
    vec![Rule {
        position: 0,
        text,
        matches,
        actions,
        comment: None,
    }]
}

/// A verdict map's elements (`{"key": K, "data": {"set": [[V, VERDICT], ...]}}` or
/// `"data": "@name"`), each as the test `K == V` and its verdict; `None` (the rule's outcome
/// stays unknown) when a map cannot be read, an element's test is not modelled, or a
/// verdict is one meshleak does not follow (`continue`).
fn vmap_arms(
    v: &Value,
    family: Family,
    sets: &Sets,
    text: &str,
) -> Option<Vec<(Vec<Match>, Action)>> {
    let elems = match &v["data"] {
        Value::String(name) => &sets.get(name.strip_prefix('@')?)?.elem,
        data => data.get("set")?,
    };
    let mut arms = Vec::new();
    for e in elems.as_array()? {
        let [value, verdict] = e.as_array()?.as_slice() else {
            return None;
        };
        let test = serde_json::json!({"op": "==", "left": v["key"], "right": value});
        let m = match_from(&test, family, sets, text);
        if m.iter().any(|m| matches!(m.test, Test::Unknown { .. })) {
            return None;
        }
        let action = match action_from(verdict)?? {
            a @ (Action::Accept
            | Action::Drop
            | Action::Return
            | Action::Jump { .. }
            | Action::Goto { .. }) => a,
            _ => return None,
        };
        arms.push((m, action));
    }
    (!arms.is_empty()).then_some(arms)
}

/// `Some(Some(action))`, `Some(None)` for statements without effect (counter),
/// `None` for statements meshleak does not model (they may stop the rule matching).
fn action_from(stmt: &Value) -> Option<Option<Action>> {
    let (key, body) = stmt.as_object()?.iter().next()?;
    let action = match key.as_str() {
        "counter" => return Some(None),
        "log" => Action::Continue { name: "log".into() },
        "accept" => Action::Accept,
        "drop" => Action::Drop,
        "reject" => Action::Reject,
        "return" => Action::Return,
        "jump" => Action::Jump {
            chain: str_of(&body["target"]),
        },
        "goto" => Action::Goto {
            chain: str_of(&body["target"]),
        },
        "dnat" | "snat" if flag_names(body).contains(&"netmap") => {
            netmap_of(body).unwrap_or(Action::Unknown {
                name: format!("{key} prefix to a value looked up"),
            })
        }
        "notrack" => Action::Notrack,
        "masquerade" => Action::Masquerade {
            ports: source_ports(body),
        },
        "snat" => Action::Snat {
            addr: source_addr(body),
            ports: source_ports(body),
        },
        "redirect" => Action::Redirect {
            ports: body.get("port").and_then(port_range_of),
        },
        "dnat" => Action::Dnat {
            addr: body
                .get("addr")
                .and_then(|a| a.as_str())
                .and_then(|a| a.parse::<IpAddr>().ok()),
            ports: body.get("port").and_then(port_range_of),
        },
        "tproxy" => Action::Tproxy {
            port: body.get("port").and_then(Value::as_u64).map(|p| p as u16),
        },
        "mangle" => match mark_set(body) {
            Some(set) => Action::SetMark(set),
            None => Action::Continue {
                name: nft_text::statement(stmt),
            },
        },
        "xt" if body["type"] == "target" => Action::Unknown {
            name: format!(
                "xt target {} (values lost in nft -j; give iptables-nft-save output instead)",
                str_of(&body["name"])
            ),
        },
        "queue" => Action::Unknown {
            name: "queue".into(),
        },
        // What the text listing's reader does not know, with the rest of its rule.
        "listing" => Action::Unknown {
            name: format!("`{}` (not modelled)", str_of(&body["text"])),
        },
        // A verdict map meshleak cannot follow (see `vmap_arms`): the rule's outcome is
        // unknown wherever it is reached (never dropped).
        "vmap" => Action::Unknown {
            name: "verdict map (vmap) meshleak cannot follow".into(),
        },
        _ => return None,
    };
    Some(Some(action))
}

/// How an unmodelled statement is named in "unknown" verdicts.
fn unknown_name(stmt: &Value) -> String {
    match stmt.get("xt") {
        Some(xt) => format!(
            "xt match {} (values lost in nft -j; give iptables-nft-save output instead)",
            str_of(&xt["name"])
        ),
        None => stmt
            .as_object()
            .and_then(|o| o.keys().next().cloned())
            .unwrap_or_default(),
    }
}

/// A `snat`'s address: one, a range (`{"range": [A, B]}`), or an expression meshleak does
/// not evaluate (a map lookup, a prefix: unknown).
fn source_addr(body: &Value) -> NatSource {
    let ip = |v: &Value| v.as_str().and_then(|a| a.parse::<IpAddr>().ok());
    match body.get("addr") {
        None => NatSource::Kept,
        Some(a) => match (ip(a), a.get("range").and_then(Value::as_array)) {
            (Some(one), _) => NatSource::To(one),
            (None, Some(r)) => match (r.first().and_then(ip), r.get(1).and_then(ip)) {
                (Some(first), Some(last)) => NatSource::of(Some(first), Some(last)),
                _ => NatSource::Unknown,
            },
            _ => NatSource::Unknown,
        },
    }
}

/// A NAT statement's `flags`, one name or a list.
fn flag_names(body: &Value) -> Vec<&str> {
    match body.get("flags") {
        Some(Value::String(f)) => vec![f.as_str()],
        Some(Value::Array(fs)) => fs.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// `dnat`/`snat ... prefix to NET` (flag `netmap`): NETMAP to a prefix or a range.
fn netmap_of(body: &Value) -> Option<Action> {
    let addr = body.get("addr")?;
    let ip = |v: &Value| v.as_str()?.parse::<IpAddr>().ok();
    let (min, max) = if let Some(p) = addr.get("prefix") {
        let net = format!("{}/{}", p.get("addr")?.as_str()?, p.get("len")?.as_u64()?);
        let r = AddrRange::parse(&net)?;
        (r.start, r.end)
    } else {
        let r = addr.get("range")?.as_array()?;
        (ip(r.first()?)?, ip(r.get(1)?)?)
    };
    Some(Action::Netmap {
        to: min,
        mask: netmap_mask(min, max)?,
    })
}

/// A `snat`'s or `masquerade`'s ports and flags; unknown when the ports are an expression.
fn source_ports(body: &Value) -> NatPorts {
    let range = body.get("port").and_then(port_range_of);
    let names = flag_names(body);
    let flags = NAT_FLAGS
        .into_iter()
        .filter(|(_, nft, _)| names.contains(nft))
        .fold(0, |flags, (bit, _, _)| flags | bit);
    NatPorts {
        unknown: body.get("port").is_some() && range.is_none(),
        ..NatPorts::of(range, flags)
    }
}

fn port_range_of(v: &Value) -> Option<PortRange> {
    match v {
        Value::Number(n) => n.as_u64().map(|p| PortRange::single(p as u16)),
        _ => {
            let r = v.get("range")?.as_array()?;
            Some(PortRange {
                start: r.first()?.as_u64()? as u16,
                end: r.get(1)?.as_u64()? as u16,
            })
        }
    }
}

fn mark_reg(v: &Value) -> Option<MarkReg> {
    if v.get("meta").is_some_and(|m| m["key"] == "mark") {
        Some(MarkReg::Mark)
    } else if v.get("ct").is_some_and(|m| m["key"] == "mark") {
        Some(MarkReg::CtMark)
    } else {
        None
    }
}

/// `meta mark set VALUE` where VALUE is a constant, another mark register, or
/// `REG & A | B ^ C` as nft writes bitwise operations.
fn mark_set(body: &Value) -> Option<MarkSet> {
    let reg = mark_reg(&body["key"])?;
    let mut set = MarkSet {
        reg,
        keep: 0,
        or: 0,
        xor: 0,
        copy: None,
    };
    fold_mark(&body["value"], reg, &mut set)?;
    Some(set)
}

fn fold_mark(v: &Value, reg: MarkReg, set: &mut MarkSet) -> Option<()> {
    if let Some(n) = v.as_u64() {
        set.xor = n as u32;
        return Some(());
    }
    if let Some(src) = mark_reg(v) {
        if src == reg {
            set.keep = u32::MAX;
        } else {
            set.copy = Some((src, u32::MAX));
        }
        return Some(());
    }
    for op in ["&", "|", "^"] {
        if let Some([l, r]) = v.get(op).and_then(Value::as_array).map(Vec::as_slice) {
            fold_mark(l, reg, set)?;
            let n = r.as_u64()? as u32;
            match op {
                "&" => {
                    set.keep &= n;
                    set.or &= n;
                    set.xor &= n;
                    if let Some((_, mask)) = &mut set.copy {
                        *mask &= n;
                    }
                }
                "|" => {
                    set.or |= n;
                    set.xor &= !n;
                }
                _ => set.xor ^= n,
            }
            return Some(());
        }
    }
    None
}

/// A named set or map as rules use it: its elements (a map's as `[key, value]` pairs),
/// and how many fields its declared key has, which an empty set shows nowhere else.
#[derive(Clone)]
struct NamedSet {
    elem: Value,
    fields: usize,
}

/// A table's named sets by name.
type Sets = HashMap<String, NamedSet>;

/// The fields of a set's declared key as `nft -j` writes it: `"ipv4_addr"` one,
/// `["ipv4_addr", "inet_service"]` a concatenation of two, `{"typeof": EXPR}` (nft 1.1 on)
/// as many as EXPR concatenates; 0 when not declared.
fn declared_fields(ty: &Value) -> usize {
    match ty {
        Value::String(_) => 1,
        Value::Array(names) => names.len(),
        Value::Object(o) => o.get("typeof").map_or(0, |e| {
            e.get("concat")
                .and_then(Value::as_array)
                .map_or(1, Vec::len)
        }),
        _ => 0,
    }
}

/// The right-hand side of a match, flattened: one entry per set element.
enum Item {
    Scalar(Value),
    Range(Value, Value),
    Prefix(String, u8),
}

fn items(v: &Value, sets: &Sets) -> Option<Vec<Item>> {
    let mut out = Vec::new();
    collect_items(v, sets, &mut out, 0)?;
    Some(out)
}

fn collect_items(v: &Value, sets: &Sets, out: &mut Vec<Item>, depth: u8) -> Option<()> {
    if depth > 4 {
        return None;
    }
    match v {
        Value::String(s) if s.starts_with('@') => {
            collect_items(&sets.get(&s[1..])?.elem, sets, out, depth + 1)?;
        }
        Value::Array(a) => {
            for i in a {
                collect_items(i, sets, out, depth + 1)?;
            }
        }
        Value::Object(o) => {
            if let Some(set) = o.get("set") {
                collect_items(set, sets, out, depth + 1)?;
            } else if let Some(e) = o.get("elem") {
                collect_items(&e["val"], sets, out, depth + 1)?;
            } else if let Some([a, b]) = o.get("range").and_then(Value::as_array).map(Vec::as_slice)
            {
                out.push(Item::Range(a.clone(), b.clone()));
            } else if let Some(p) = o.get("prefix") {
                out.push(Item::Prefix(
                    p["addr"].as_str()?.to_string(),
                    p["len"].as_u64()? as u8,
                ));
            } else {
                return None;
            }
        }
        other => out.push(Item::Scalar(other.clone())),
    }
    Some(())
}

fn match_from(m: &Value, family: Family, sets: &Sets, text: &str) -> Vec<Match> {
    if let Some(out) = empty_concatenation(m, family, sets, text) {
        return out;
    }
    let op = m["op"].as_str().unwrap_or("==");
    let unknown = |name: String| {
        vec![Match {
            negated: false,
            test: Test::Unknown { name },
            text: text.to_string(),
        }]
    };
    let Some(list) = items(&m["right"], sets) else {
        return unknown("match value".into());
    };
    let negated = op == "!=";
    let list = match op {
        "==" | "!=" | "in" => list,
        "<" | ">" | "<=" | ">=" => match ordered(op, &list) {
            Some(l) => l,
            None => return unknown(format!("comparison {op}")),
        },
        other => return unknown(format!("operator {other}")),
    };
    let (test, dependency) = match test_from(&m["left"], &list) {
        Some(t) => t,
        None => return unknown(nft_text::lhs(&m["left"])),
    };
    let mut out = Vec::new();
    // In an inet table `ip daddr` also means "IPv4 packet"; that part is never negated.
    if let (Some(version), Family::Inet) = (dependency, family) {
        out.push(Match {
            negated: false,
            test: Test::NfProto { version },
            text: text.to_string(),
        });
    }
    out.push(Match {
        negated,
        test,
        text: text.to_string(),
    });
    out
}

/// `a . b @s` (or `!= @s`) where `s` is empty and declares a key of as many fields: no
/// key is in it, so the lookup is each field's test with no values, each false (negated:
/// each true) where it applies, which keeps each field's own condition (`tcp dport` only
/// for TCP). `None` when the match is not that: a set with elements (a concatenation is
/// not modelled), or one whose declared key is not this concatenation.
fn empty_concatenation(m: &Value, family: Family, sets: &Sets, text: &str) -> Option<Vec<Match>> {
    let parts = m["left"].get("concat")?.as_array()?;
    let set = sets.get(m["right"].as_str()?.strip_prefix('@')?)?;
    if set.fields != parts.len() || set.elem.as_array().is_none_or(|e| !e.is_empty()) {
        return None;
    }
    let out = parts
        .iter()
        .flat_map(|part| {
            let one = serde_json::json!({"op": m["op"], "left": part, "right": {"set": []}});
            match_from(&one, family, sets, text)
        })
        .collect();
    Some(out)
}

/// `< N` and friends as a range over the field's values.
fn ordered(op: &str, list: &[Item]) -> Option<Vec<Item>> {
    let [Item::Scalar(v)] = list else { return None };
    let n = v.as_u64()?;
    let (lo, hi) = match op {
        "<" => (0, n.checked_sub(1)?),
        "<=" => (0, n),
        ">" => (n + 1, u32::MAX as u64),
        _ => (n, u32::MAX as u64),
    };
    Some(vec![Item::Range(lo.into(), hi.into())])
}

/// The test a match's left side and values make, and the IP version it implies.
fn test_from(left: &Value, list: &[Item]) -> Option<(Test, Option<IpVersion>)> {
    if let Some(p) = left.get("payload") {
        let proto = p["protocol"].as_str()?;
        let field = p["field"].as_str()?;
        return match (proto, field) {
            ("ip" | "ip6", "saddr" | "daddr") => {
                let version = if proto == "ip" {
                    IpVersion::V4
                } else {
                    IpVersion::V6
                };
                let ranges = list.iter().map(addr_item).collect::<Option<Vec<_>>>()?;
                let dir = if field == "saddr" { Dir::Src } else { Dir::Dst };
                Some((
                    Test::Addr {
                        dir,
                        version,
                        ranges,
                    },
                    Some(version),
                ))
            }
            ("ip", "protocol") | ("ip6", "nexthdr") => {
                let version = if proto == "ip" {
                    IpVersion::V4
                } else {
                    IpVersion::V6
                };
                Some((
                    Test::Protocol {
                        protos: protos(list)?,
                    },
                    Some(version),
                ))
            }
            (_, "sport" | "dport") => {
                let protos = match proto {
                    "th" => vec![],
                    p => vec![proto_number(p)?],
                };
                let ranges = list
                    .iter()
                    .map(|i| num_range(i, u16::MAX as u64))
                    .collect::<Option<Vec<_>>>()?;
                let ranges = ranges
                    .into_iter()
                    .map(|(a, b)| PortRange {
                        start: a as u16,
                        end: b as u16,
                    })
                    .collect();
                let dir = if field == "sport" { Dir::Src } else { Dir::Dst };
                Some((
                    Test::Port {
                        dir,
                        protos,
                        ranges,
                    },
                    None,
                ))
            }
            _ => None,
        };
    }
    if let Some(meta) = left.get("meta") {
        return match meta["key"].as_str()? {
            "l4proto" => Some((
                Test::Protocol {
                    protos: protos(list)?,
                },
                None,
            )),
            "nfproto" => {
                let [Item::Scalar(Value::String(v))] = list else {
                    return None;
                };
                let version = match v.as_str() {
                    "ipv4" => IpVersion::V4,
                    "ipv6" => IpVersion::V6,
                    _ => return None,
                };
                Some((Test::NfProto { version }, None))
            }
            "skuid" | "skgid" => {
                let ranges = list
                    .iter()
                    .map(|i| {
                        num_range(i, u32::MAX as u64).map(|(a, b)| IdRange {
                            start: a as u32,
                            end: b as u32,
                        })
                    })
                    .collect::<Option<Vec<_>>>()?;
                Some((
                    if meta["key"] == "skuid" {
                        Test::Uid { ranges }
                    } else {
                        Test::Gid {
                            ranges,
                            suppl_groups: false,
                        }
                    },
                    None,
                ))
            }
            "oifname" | "iifname" => {
                let patterns = strings(list, |s| Some(IfacePattern::parse(s)))?;
                let dir = if meta["key"] == "oifname" {
                    Dir::Dst
                } else {
                    Dir::Src
                };
                Some((Test::Iface { dir, patterns }, None))
            }
            "mark" => mark_test(MarkReg::Mark, u32::MAX, list),
            _ => None,
        };
    }
    if let Some(ct) = left.get("ct") {
        return match ct["key"].as_str()? {
            "state" => {
                let states = strings(list, CtState::from_name)?;
                Some((Test::CtState { states }, None))
            }
            "mark" => mark_test(MarkReg::CtMark, u32::MAX, list),
            _ => None,
        };
    }
    if let Some([reg, mask]) = left.get("&").and_then(Value::as_array).map(Vec::as_slice) {
        return mark_test(mark_reg(reg)?, mask.as_u64()? as u32, list);
    }
    if let Some(fib) = left.get("fib") {
        let flags: Vec<&str> = fib["flags"]
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if fib["result"] != "type" || !(flags.contains(&"daddr") || flags.contains(&"saddr")) {
            return None;
        }
        let types = strings(list, AddrType::from_name)?;
        let dir = if flags.contains(&"daddr") {
            Dir::Dst
        } else {
            Dir::Src
        };
        return Some((
            Test::AddrType {
                dir,
                types,
                limit_iface_out: flags.contains(&"oif"),
            },
            None,
        ));
    }
    None
}

/// String items (`ct state`, `fib ... type`, interface names), each mapped by `f`.
fn strings<T>(list: &[Item], f: impl Fn(&str) -> Option<T>) -> Option<Vec<T>> {
    list.iter()
        .map(|i| match i {
            Item::Scalar(Value::String(s)) => f(s),
            _ => None,
        })
        .collect()
}

fn mark_test(reg: MarkReg, mask: u32, list: &[Item]) -> Option<(Test, Option<IpVersion>)> {
    let values = list
        .iter()
        .map(|i| num_range(i, u32::MAX as u64).map(|(a, b)| (a as u32, b as u32)))
        .collect::<Option<Vec<_>>>()?;
    Some((Test::Mark { reg, mask, values }, None))
}

fn protos(list: &[Item]) -> Option<Vec<u8>> {
    list.iter()
        .map(|i| match i {
            Item::Scalar(Value::String(s)) => proto_number(s),
            Item::Scalar(Value::Number(n)) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
            _ => None,
        })
        .collect()
}

fn num_range(item: &Item, max: u64) -> Option<(u64, u64)> {
    let num = |v: &Value| v.as_u64().filter(|&n| n <= max);
    match item {
        Item::Scalar(v) => num(v).map(|n| (n, n)),
        Item::Range(a, b) => Some((num(a)?, num(b).or_else(|| b.as_u64().map(|_| max))?)),
        Item::Prefix(..) => None,
    }
}

fn addr_item(item: &Item) -> Option<AddrRange> {
    match item {
        Item::Scalar(Value::String(s)) => AddrRange::parse(s),
        Item::Range(Value::String(a), Value::String(b)) => AddrRange::parse(&format!("{a}-{b}")),
        Item::Prefix(addr, len) => AddrRange::parse(&format!("{addr}/{len}")),
        _ => None,
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_default()
}
