//! nf_tables as the kernel holds it (a netlink dump) into the rule model: tables, base
//! chains with hook, priority and policy, sets, and rules lifted from their expressions.
//! Tables that iptables-nft made get their rules' text in `iptables-save` form; native
//! tables get nft syntax. Pure: the dump is data read elsewhere.

pub mod ir;
pub mod lift;
pub mod msg;
pub mod replies;

use std::collections::HashMap;

use crate::model::{
    Action, Backend, BaseChain, Chain, ChainType, DumpFormat, Family, Hook, Match, Policy, Rule,
    Table,
};
use ir::Jump;
use lift::{Lifter, SetElems, SetRange};
use msg::{Element, HookSpec, Object};

fn family(nfproto: u8) -> Option<Family> {
    match nfproto {
        1 => Some(Family::Inet),
        2 => Some(Family::Ipv4),
        10 => Some(Family::Ipv6),
        _ => None, // arp, bridge, netdev: never on a locally generated IP packet's path
    }
}

/// The tables of one namespace's nf_tables objects (each with its NFPROTO_* family).
pub fn tables(objects: &[(u8, Object)], origin: &str) -> Vec<Table> {
    let mut builder = Builder::new(objects, origin);
    for (f, o) in objects {
        builder.add_rule(*f, o);
    }
    builder.finish()
}

/// Tables built rule by rule: a caller holding many rules can decode and add them one at a
/// time (rules among `objects` are not read by `new`).
pub struct Builder {
    tables: Vec<Table>,
    sets: SetMap,
}

impl Builder {
    pub fn new(objects: &[(u8, Object)], origin: &str) -> Builder {
        let mut tables: Vec<Table> = objects
            .iter()
            .filter_map(|(f, o)| match o {
                Object::Table { name } => Some(Table {
                    backend: Backend::Nftables,
                    family: family(*f)?,
                    name: name.clone(),
                    chains: Vec::new(),
                    origin: origin.to_string(),
                    format: DumpFormat::IptablesSave,
                }),
                _ => None,
            })
            .collect();
        for (f, o) in objects {
            let (Some(fam), Some((table, chain))) = (family(*f), chain(o)) else {
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
            sets: sets(objects),
        }
    }

    /// Adds one rule (of NFPROTO family `f`) at the end of its chain; other objects are
    /// ignored.
    pub(crate) fn add_rule(&mut self, f: u8, o: &Object) {
        let Object::Rule {
            table,
            chain,
            exprs,
            userdata,
        } = o
        else {
            return;
        };
        let Some(fam) = family(f) else { return };
        let Some(t) = self
            .tables
            .iter_mut()
            .find(|t| t.family == fam && t.name == *table)
        else {
            return;
        };
        let empty = HashMap::new();
        let table_sets = self
            .sets
            .get(&fam)
            .and_then(|m| m.get(table.as_str()))
            .unwrap_or(&empty);
        let comment = userdata.as_deref().and_then(udata_comment);
        let rules = rule(exprs, comment, fam, t.backend, chain, table_sets);
        if let Some(c) = t.chains.iter_mut().find(|c| c.name == *chain) {
            let position = c.rules.last().map_or(0, |r| r.position) + 1;
            for mut rule in rules {
                rule.position = position;
                c.rules.push(rule);
            }
        }
    }

    pub fn finish(self) -> Vec<Table> {
        self.tables
    }
}

fn chain(o: &Object) -> Option<(String, Chain)> {
    let Object::Chain {
        table,
        name,
        hook,
        policy,
        chain_type,
    } = o
    else {
        return None;
    };
    let chain_type = match chain_type.as_deref() {
        Some("nat") => ChainType::Nat,
        Some("route") => ChainType::Route,
        _ => ChainType::Filter,
    };
    // NF_INET_PRE_ROUTING 0 .. POST_ROUTING 4; ingress and others are no IP hook.
    let base = hook.as_ref().and_then(|HookSpec { number, priority }| {
        let hook = match number {
            0 => Hook::Prerouting,
            1 => Hook::Input,
            2 => Hook::Forward,
            3 => Hook::Output,
            4 => Hook::Postrouting,
            _ => return None,
        };
        Some(BaseChain {
            hook,
            priority: *priority,
            chain_type,
            policy: if *policy == Some(0) {
                Policy::Drop
            } else {
                Policy::Accept
            },
        })
    });
    Some((
        table.clone(),
        Chain {
            name: name.clone(),
            base,
            rules: Vec::new(),
        },
    ))
}

/// Per family and table, each set's elements (and whether it is an interval set).
type SetMap = HashMap<Family, HashMap<String, HashMap<String, (SetElems, bool)>>>;

/// Every set's elements as ranges of keys, with its declared key, per (family, table). A
/// set is read only once its elements were (the kernel sends an element message for an
/// empty set too): a declaration alone does not say it is empty.
fn sets(objects: &[(u8, Object)]) -> SetMap {
    let mut declared: HashMap<(u8, &str, &str), (bool, &msg::KeyShape)> = HashMap::new();
    let mut raw: HashMap<(u8, &str, &str), Vec<Element>> = HashMap::new();
    for (f, o) in objects {
        match o {
            // NFT_SET_INTERVAL 0x4
            Object::Set {
                table,
                name,
                flags,
                key,
            } => {
                declared.insert((*f, table, name), (flags & 0x4 != 0, key));
            }
            Object::Elements { table, set, elems } => raw
                .entry((*f, table, set))
                .or_default()
                .extend(elems.iter().cloned()),
            _ => {}
        }
    }
    let mut out: SetMap = HashMap::new();
    for ((f, t, s), elems) in raw {
        let Some(fam) = family(f) else { continue };
        let (is_interval, key) = declared
            .get(&(f, t, s))
            .map_or((false, Default::default()), |(i, k)| (*i, (*k).clone()));
        let ranges = if is_interval {
            intervals(elems)
        } else {
            elems
                .into_iter()
                .map(|e| SetRange {
                    end: e.key_end.unwrap_or_else(|| e.key.clone()),
                    start: e.key,
                    verdict: e.verdict,
                })
                .collect()
        };
        out.entry(fam)
            .or_default()
            .entry(t.to_string())
            .or_default()
            .insert(s.to_string(), (SetElems { ranges, key }, is_interval));
    }
    out
}

/// Interval set elements: starts, and ends flagged as such (exclusive), in key order; or
/// explicit key-end values (inclusive).
fn intervals(mut elems: Vec<Element>) -> Vec<SetRange> {
    elems.sort_by(|a, b| a.key.cmp(&b.key));
    let mut out = Vec::new();
    let mut open: Option<(Vec<u8>, Option<Jump>)> = None;
    for Element {
        key,
        key_end,
        interval_end,
        verdict,
    } in elems
    {
        if let Some(end) = key_end {
            out.push(SetRange {
                start: key,
                end,
                verdict,
            });
        } else if interval_end {
            if let Some((start, verdict)) = open.take() {
                out.push(SetRange {
                    start,
                    end: minus_one(&key),
                    verdict,
                });
            }
        } else {
            if let Some((start, verdict)) = open.take() {
                out.push(SetRange {
                    end: start.clone(),
                    start,
                    verdict,
                });
            }
            open = Some((key, verdict));
        }
    }
    if let Some((start, verdict)) = open {
        out.push(SetRange {
            end: vec![0xff; start.len()],
            start,
            verdict,
        });
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

/// One rule as the model's rules: one, or one per element of its verdict map, all at the
/// rule's position and with its text.
fn rule(
    exprs: &[ir::Expr],
    comment: Option<String>,
    fam: Family,
    backend: Backend,
    chain: &str,
    sets: &HashMap<String, (SetElems, bool)>,
) -> Vec<Rule> {
    let lifted = Lifter::new(fam, sets).lift(exprs);
    let text = match backend {
        Backend::Nftables => {
            // What the renderer cannot print is shown as the expressions themselves.
            let body = crate::render::nft_rule(&lifted.matches, &lifted.actions)
                .and_then(|body| match lifted.arms.as_slice() {
                    [] => Some(body),
                    arms => {
                        crate::render::nft_vmap(arms.iter().map(|a| (&a.matches[..], &a.action)))
                            .map(|vmap| [body, vmap].join(" ").trim_start().to_string())
                    }
                })
                .unwrap_or_else(|| format!("(expressions: {exprs:?})"));
            match &comment {
                Some(c) => format!("{body} comment \"{c}\""),
                None => body,
            }
        }
        _ => {
            let mut generic = lifted.generic.clone();
            generic.sort_by_key(|(order, _)| *order);
            let mut parts: Vec<String> = vec![format!("-A {chain}")];
            parts.extend(generic.into_iter().map(|(_, t)| t));
            if let Some(c) = &comment {
                parts.push(format!(
                    "-m comment --comment{}",
                    crate::xt::matches::save_string(c)
                ));
            }
            parts.extend(lifted.modules.iter().cloned());
            if !lifted.target.is_empty() {
                parts.push(lifted.target.clone());
            }
            parts.join(" ")
        }
    };
    let one = |mut matches: Vec<Match>, mut actions: Vec<Action>, text: String| {
        // Kept for the whole scan: no spare capacity (20,000 rules held 14 MB of it).
        matches.shrink_to_fit();
        actions.shrink_to_fit();
        Rule {
            position: 0,
            text,
            matches,
            actions,
            comment: comment.as_deref().map(Box::from),
        }
    };
    if lifted.arms.is_empty() {
        return vec![one(lifted.matches, lifted.actions, text)];
    }
    lifted
        .arms
        .iter()
        .map(|arm| {
            let matches = lifted.matches.iter().chain(&arm.matches).cloned().collect();
            let mut actions = lifted.actions.clone();
            actions.push(arm.action.clone());
            one(matches, actions, text.clone())
        })
        .collect()
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
