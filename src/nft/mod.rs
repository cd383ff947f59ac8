//! nf_tables as the kernel holds it (a netlink dump) into the rule model: tables, base
//! chains with hook, priority and policy, sets, and rules lifted from their expressions.
//! Tables that iptables-nft made get their rules' text in `iptables-save` form; native
//! tables get nft syntax. Pure: the dump is data read elsewhere.

pub mod guard;
pub mod ir;
pub mod lift;

use std::collections::HashMap;

use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, DataAttribute, Hook as NlHook, HookNumber, InetHookNumber,
    ListAttribute, RuleAttribute, RuleMessage, SetAttribute, SetElementAttribute, SetElementList,
    SetElementMessage, SetMessage, TableAttribute, TableMessage,
};

use crate::model::{
    Backend, BaseChain, Chain, ChainType, DumpFormat, Family, Hook, Policy, Rule, Table,
};
use lift::{Lifter, SetElems};

/// The objects of one namespace's nf_tables, each with its NFPROTO_* family.
pub struct Objects<'a> {
    pub tables: &'a [(u8, TableMessage)],
    pub chains: &'a [(u8, ChainMessage)],
    pub rules: &'a [(u8, RuleMessage)],
    pub sets: &'a [(u8, SetMessage)],
    pub elements: &'a [(u8, SetElementMessage)],
}

fn family(nfproto: u8) -> Option<Family> {
    match nfproto {
        1 => Some(Family::Inet),
        2 => Some(Family::Ipv4),
        10 => Some(Family::Ipv6),
        _ => None, // arp, bridge, netdev: never on a locally generated IP packet's path
    }
}

pub fn tables(o: &Objects, origin: &str) -> Vec<Table> {
    let mut builder = Builder::new(o, origin);
    for (f, r) in o.rules {
        builder.add_rule(*f, r);
    }
    builder.finish()
}

/// Tables built rule by rule: a caller holding many rules can decode and add them one at a
/// time (`objects.rules` is not read here).
pub struct Builder {
    tables: Vec<Table>,
    sets: SetMap,
}

impl Builder {
    pub fn new(o: &Objects, origin: &str) -> Builder {
        let mut tables: Vec<Table> = o
            .tables
            .iter()
            .filter_map(|(f, t)| {
                let name = t.attributes.iter().find_map(|a| match a {
                    TableAttribute::Name(n) => Some(n.clone()),
                    _ => None,
                })?;
                Some(Table {
                    backend: Backend::Nftables,
                    family: family(*f)?,
                    name,
                    chains: Vec::new(),
                    origin: origin.to_string(),
                    format: DumpFormat::IptablesSave,
                })
            })
            .collect();
        for (f, c) in o.chains {
            let (Some(fam), Some((table, chain))) = (family(*f), chain(c)) else {
                continue;
            };
            if let Some(t) = tables
                .iter_mut()
                .find(|t| t.family == fam && t.name == table)
            {
                t.chains.push(chain);
            }
        }
        for t in &mut tables {
            if t.looks_like_iptables_nft() {
                t.backend = Backend::IptablesNft;
            }
        }
        Builder {
            tables,
            sets: sets(o),
        }
    }

    /// Adds one rule (of NFPROTO family `f`) at the end of its chain.
    pub fn add_rule(&mut self, f: u8, r: &RuleMessage) {
        let Some(fam) = family(f) else { return };
        let attr = |k: fn(&RuleAttribute) -> Option<String>| r.attributes.iter().find_map(k);
        let (Some(table), Some(chain)) = (
            attr(|a| {
                if let RuleAttribute::Table(t) = a {
                    Some(t.clone())
                } else {
                    None
                }
            }),
            attr(|a| {
                if let RuleAttribute::Chain(c) = a {
                    Some(c.clone())
                } else {
                    None
                }
            }),
        ) else {
            return;
        };
        let Some(t) = self
            .tables
            .iter_mut()
            .find(|t| t.family == fam && t.name == table)
        else {
            return;
        };
        let empty = HashMap::new();
        let table_sets = self.sets.get(&(fam, table.clone())).unwrap_or(&empty);
        let rule = rule(r, fam, t.backend, &chain, table_sets);
        if let Some(c) = t.chains.iter_mut().find(|c| c.name == chain) {
            let mut rule = rule;
            rule.position = c.rules.len() + 1;
            c.rules.push(rule);
        }
    }

    pub fn finish(self) -> Vec<Table> {
        self.tables
    }
}

fn chain(c: &ChainMessage) -> Option<(String, Chain)> {
    let (mut table, mut name, mut hook, mut prio, mut policy, mut ty) =
        (None, None, None, None, Policy::Accept, ChainType::Filter);
    for a in &c.attributes {
        match a {
            ChainAttribute::Table(t) => table = Some(t.clone()),
            ChainAttribute::Name(n) => name = Some(n.clone()),
            ChainAttribute::Policy(p) => {
                policy = if *p == 0 {
                    Policy::Drop
                } else {
                    Policy::Accept
                }
            }
            ChainAttribute::Type(t) => {
                ty = match t.as_str() {
                    "nat" => ChainType::Nat,
                    "route" => ChainType::Route,
                    _ => ChainType::Filter,
                }
            }
            ChainAttribute::Hook(h) => {
                for x in h {
                    match x {
                        NlHook::Number(HookNumber::Inet(n)) => {
                            hook = match n {
                                InetHookNumber::PreRouting => Some(Hook::Prerouting),
                                InetHookNumber::LocalIn => Some(Hook::Input),
                                InetHookNumber::Forward => Some(Hook::Forward),
                                InetHookNumber::LocalOut => Some(Hook::Output),
                                InetHookNumber::PostRouting => Some(Hook::Postrouting),
                                _ => None,
                            }
                        }
                        NlHook::Priority(p) => prio = Some(*p as i32),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let base = match (hook, prio) {
        (Some(hook), Some(priority)) => Some(BaseChain {
            hook,
            priority,
            chain_type: ty,
            policy,
        }),
        _ => None,
    };
    Some((
        table?,
        Chain {
            name: name?,
            base,
            rules: Vec::new(),
        },
    ))
}

type SetMap = HashMap<(Family, String), HashMap<String, (SetElems, bool)>>;

/// One set element as dumped: key, explicit key end, and whether it closes an interval.
type RawElem = (Vec<u8>, Option<Vec<u8>>, bool);

/// Every set's elements as ranges of keys, per (family, table).
fn sets(o: &Objects) -> SetMap {
    let mut interval: HashMap<(u8, String, String), bool> = HashMap::new();
    for (f, s) in o.sets {
        let (mut table, mut name, mut flags) = (None, None, 0u32);
        for a in &s.attributes {
            match a {
                SetAttribute::Table(t) => table = Some(t.clone()),
                SetAttribute::Name(n) => name = Some(n.clone()),
                SetAttribute::Flags(fl) => flags = fl.bits(),
                _ => {}
            }
        }
        if let (Some(t), Some(n)) = (table, name) {
            interval.insert((*f, t, n), flags & 0x4 != 0);
        }
    }
    let mut raw: HashMap<(u8, String, String), Vec<RawElem>> = HashMap::new();
    for (f, e) in o.elements {
        let (mut table, mut set, mut elems) = (None, None, Vec::new());
        for a in &e.attributes {
            match a {
                SetElementList::Table(t) => table = Some(t.clone()),
                SetElementList::Set(s) => set = Some(s.clone()),
                SetElementList::Elements(list) => {
                    for item in list {
                        let ListAttribute::Element(attrs) = item else {
                            continue;
                        };
                        let (mut key, mut end, mut key_end) = (None, false, None);
                        for x in attrs {
                            match x {
                                SetElementAttribute::Key(DataAttribute::Value(v)) => {
                                    key = Some(v.clone())
                                }
                                SetElementAttribute::Flags(fl) => end = fl.bits() & 1 != 0,
                                SetElementAttribute::KeyEnd(nlas) => {
                                    key_end = nlas.first().map(raw_value)
                                }
                                _ => {}
                            }
                        }
                        if let Some(k) = key {
                            elems.push((k, key_end, end));
                        }
                    }
                }
                _ => {}
            }
        }
        if let (Some(t), Some(s)) = (table, set) {
            raw.entry((*f, t, s)).or_default().extend(elems);
        }
    }
    let mut out: SetMap = HashMap::new();
    for ((f, t, s), elems) in raw {
        let Some(fam) = family(f) else { continue };
        let is_interval = interval
            .get(&(f, t.clone(), s.clone()))
            .copied()
            .unwrap_or(false);
        let ranges = if is_interval {
            intervals(elems)
        } else {
            elems
                .into_iter()
                .map(|(k, e, _)| (k.clone(), e.unwrap_or(k)))
                .collect()
        };
        out.entry((fam, t))
            .or_default()
            .insert(s, (SetElems { ranges }, is_interval));
    }
    out
}

fn raw_value(nla: &netlink_packet_core::DefaultNla) -> Vec<u8> {
    use netlink_packet_core::Nla;
    let mut buf = vec![0; nla.value_len()];
    nla.emit_value(&mut buf);
    // A nested NFTA_DATA_VALUE: skip its 4-byte header.
    buf.get(4..).map(<[u8]>::to_vec).unwrap_or_default()
}

/// Interval set elements: starts, and ends flagged as such (exclusive), in key order; or
/// explicit key-end values (inclusive).
fn intervals(mut elems: Vec<RawElem>) -> Vec<(Vec<u8>, Vec<u8>)> {
    elems.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    let mut open: Option<Vec<u8>> = None;
    for (key, key_end, is_end) in elems {
        if let Some(end) = key_end {
            out.push((key, end));
        } else if is_end {
            if let Some(start) = open.take() {
                out.push((start, minus_one(&key)));
            }
        } else {
            if let Some(start) = open.take() {
                out.push((start.clone(), start));
            }
            open = Some(key);
        }
    }
    if let Some(start) = open {
        let max = vec![0xff; start.len()];
        out.push((start, max));
    }
    out
}

fn minus_one(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    for b in v.iter_mut().rev() {
        if *b > 0 {
            *b -= 1;
            break;
        }
        *b = 0xff;
    }
    v
}

fn rule(
    r: &RuleMessage,
    fam: Family,
    backend: Backend,
    chain: &str,
    sets: &HashMap<String, (SetElems, bool)>,
) -> Rule {
    let exprs = r
        .attributes
        .iter()
        .find_map(|a| match a {
            RuleAttribute::Expressions(e) => Some(ir::exprs(e)),
            _ => None,
        })
        .unwrap_or_default();
    let comment = r.attributes.iter().find_map(|a| match a {
        RuleAttribute::UserData(u) => udata_comment(u),
        _ => None,
    });
    let lifted = Lifter::new(fam, sets).lift(&exprs);
    let text = match backend {
        Backend::Nftables => {
            // What the renderer cannot print is shown as the expressions themselves.
            let body = crate::render::nft_rule(&lifted.matches, &lifted.actions)
                .unwrap_or_else(|| format!("(expressions: {exprs:?})"));
            match comment {
                Some(c) => format!("{body} comment \"{c}\""),
                None => body,
            }
        }
        _ => {
            let mut generic = lifted.generic.clone();
            generic.sort_by_key(|(order, _)| *order);
            let mut parts: Vec<String> = vec![format!("-A {chain}")];
            parts.extend(generic.into_iter().map(|(_, t)| t));
            if let Some(c) = comment {
                parts.push(format!(
                    "-m comment --comment{}",
                    crate::xt::matches::save_string(&c)
                ));
            }
            parts.extend(lifted.modules.iter().cloned());
            if !lifted.target.is_empty() {
                parts.push(lifted.target.clone());
            }
            parts.join(" ")
        }
    };
    Rule {
        position: 0,
        text,
        matches: lifted.matches,
        actions: lifted.actions,
    }
}

/// The comment in a rule's user data (libnftnl TLVs: type, length, value; comment is 0).
fn udata_comment(u: &[u8]) -> Option<String> {
    let mut at = 0;
    while at + 2 <= u.len() {
        let (kind, len) = (u[at], u[at + 1] as usize);
        let value = u.get(at + 2..at + 2 + len)?;
        if kind == 0 {
            let text = value.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        at += 2 + len;
    }
    None
}

#[cfg(test)]
mod tests;
