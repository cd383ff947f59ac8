//! The exemptions a ruleset grants: every rule on the capture path that lets matching
//! traffic leave without being redirected, classified by what it matches on, plus the
//! families and protocols that nothing captures at all.

use crate::named::named_enum;
use std::net::IpAddr;

use serde::Serialize;

use super::Coverage;
use crate::explain::{self, RuleRef};
use crate::model::{Action, ChainType, Dir, Hook, IpVersion, Match, Ruleset, Test, proto_name};
use crate::range::PortRange;

#[derive(Clone, Debug, Serialize)]
pub struct Exemption {
    /// What it turns on; `family` / `protocol` with no rule when nothing captures them.
    pub kind: ExemptionKind,
    /// The conditions, as the rule writes them (`-m owner --gid-owner 1337`).
    pub conditions: Vec<String>,
    pub family: Option<&'static str>,
    pub rule: Option<RuleRef>,
    /// The source ports a `source` exemption lets out: an app chooses its own (bind before
    /// connect), so they are an exemption anyone can take.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_ports: Vec<PortRange>,
    /// The rule's tests, typed: what findings judge it by (loopback only, an address the
    /// mesh's own layout exempts), never by its text.
    #[serde(skip)]
    pub tests: Vec<Match>,
}

named_enum! {
    /// What an exemption turns on, most specific first; the serde name is the report's `kind`.
    pub enum ExemptionKind {
        Uid = "uid",
        Gid = "gid",
        Mark = "mark",
        Port = "port",
        Cidr = "cidr",
        Interface = "interface",
        Source = "source",
        Protocol = "protocol",
        Conntrack = "conntrack",
        AddressType = "address-type",
        Unknown = "unknown",
        Other = "other",
        Family = "family",
    }
}

impl Exemption {
    /// Whether it holds only for loopback traffic (in-pod, by design): a test, not negated,
    /// that only loopback destinations or sources, or only the `lo` interface, pass.
    pub(crate) fn loopback_only(&self) -> bool {
        self.tests.iter().any(|m| {
            !m.negated
                && match &m.test {
                    Test::Addr { ranges, .. } => {
                        !ranges.is_empty()
                            && ranges
                                .iter()
                                .all(|r| r.start.is_loopback() && r.end.is_loopback())
                    }
                    Test::Iface { patterns, .. } => {
                        !patterns.is_empty()
                            && patterns.iter().all(|p| p.name == "lo" && !p.wildcard)
                    }
                    _ => false,
                }
        })
    }

    /// Whether it exempts exactly one of these destination addresses, and nothing else
    /// decides it but where traffic goes.
    pub(crate) fn only_to(&self, addrs: &[IpAddr]) -> bool {
        self.tests.iter().any(|m| {
            !m.negated
                && matches!(&m.test, Test::Addr { dir: Dir::Dst, ranges, .. }
                    if ranges.len() == 1
                        && ranges[0].start == ranges[0].end
                        && addrs.contains(&ranges[0].start))
        })
    }
}

/// `coverage`: per family and protocol, whether an ordinary app's traffic is captured;
/// what an unmodelled rule may capture is not reported as uncaptured.
pub(super) fn find(rules: &Ruleset, coverage: &[(IpVersion, u8, Coverage)]) -> Vec<Exemption> {
    let mut out = Vec::new();
    // A RETURN lets traffic escape only the table that would capture it; a DNAT elsewhere
    // takes it out of every capture (the first nat mapping wins). With no capture at all,
    // no rule is an exemption from one.
    let captures: Vec<bool> = rules.tables.iter().map(|t| t.captures()).collect();
    let scanned = if captures.contains(&true) {
        rules.tables.len()
    } else {
        0
    };
    for (ti, table) in rules.tables.iter().enumerate().take(scanned) {
        let captures = captures[ti];
        // Chains reachable from the table's nat OUTPUT base chains, in order.
        let mut reach: Vec<usize> = table
            .chains
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.base
                    .as_ref()
                    .is_some_and(|b| b.hook == Hook::Output && b.chain_type == ChainType::Nat)
            })
            .map(|(i, _)| i)
            .collect();
        let mut i = 0;
        while i < reach.len() {
            let chain = &table.chains[reach[i]];
            for rule in &chain.rules {
                for a in &rule.actions {
                    if let Action::Jump { chain } | Action::Goto { chain } = a
                        && let Some(t) = table.chains.iter().position(|c| &c.name == chain)
                        && !reach.contains(&t)
                    {
                        reach.push(t);
                    }
                }
            }
            i += 1;
        }
        for &ci in &reach {
            for (ri, rule) in table.chains[ci].rules.iter().enumerate() {
                let exempts = captures
                    && rule
                        .actions
                        .iter()
                        .any(|a| matches!(a, Action::Return | Action::Accept));
                let sent_on = rule.actions.iter().find_map(|a| match a {
                    Action::Dnat { addr, ports } if !a.nat_captures(&[]) => Some((addr, ports)),
                    _ => None,
                });
                if !(exempts || sent_on.is_some()) || rule.matches.is_empty() {
                    continue;
                }
                let mut conditions: Vec<String> = Vec::new();
                for m in &rule.matches {
                    if !conditions.contains(&m.text) {
                        conditions.push(m.text.clone());
                    }
                }
                if let Some((addr, ports)) = sent_on {
                    conditions.push(format!(
                        "sent on to {}{} (DNAT to a remote address: not the proxy)",
                        addr.map_or("the same address".into(), |a| a.to_string()),
                        ports.map_or(String::new(), |p| format!(" port {}", p.start))
                    ));
                }
                out.push(Exemption {
                    kind: kind_of(rule.matches.iter().map(|m| &m.test)),
                    conditions,
                    family: Some(table.family.name()),
                    rule: Some(explain::rule_ref(rules, ti, ci, Some(ri))),
                    source_ports: source_ports(&rule.matches),
                    tests: rule.matches.clone(),
                });
            }
        }
    }
    for version in [IpVersion::V4, IpVersion::V6] {
        let of_family: Vec<_> = coverage.iter().filter(|(v, _, _)| *v == version).collect();
        if of_family.iter().all(|(_, _, c)| *c == Coverage::Uncaptured) {
            out.push(Exemption {
                kind: ExemptionKind::Family,
                conditions: vec![format!(
                    "no rule captures {} traffic",
                    version.family().name()
                )],
                family: Some(version.family().name()),
                rule: None,
                source_ports: Vec::new(),
                tests: Vec::new(),
            });
            continue;
        }
        for (_, proto, _) in of_family
            .iter()
            .filter(|(_, _, c)| *c == Coverage::Uncaptured)
        {
            out.push(Exemption {
                kind: ExemptionKind::Protocol,
                conditions: vec![format!("no rule captures {} traffic", proto_name(*proto))],
                family: Some(version.family().name()),
                rule: None,
                source_ports: Vec::new(),
                tests: Vec::new(),
            });
        }
    }
    out
}

/// What an exemption turns on, most specific first: an identity exemption matters most.
fn kind_of<'a>(tests: impl Iterator<Item = &'a Test> + Clone) -> ExemptionKind {
    type Kind = (ExemptionKind, fn(&Test) -> bool);
    let order: [Kind; 11] = [
        (ExemptionKind::Uid, |t| matches!(t, Test::Uid { .. })),
        (ExemptionKind::Gid, |t| matches!(t, Test::Gid { .. })),
        (ExemptionKind::Mark, |t| matches!(t, Test::Mark { .. })),
        (ExemptionKind::Port, |t| {
            matches!(t, Test::Port { dir: Dir::Dst, .. })
        }),
        (ExemptionKind::Cidr, |t| {
            matches!(t, Test::Addr { dir: Dir::Dst, .. })
        }),
        (ExemptionKind::Interface, |t| {
            matches!(t, Test::Iface { .. })
        }),
        (ExemptionKind::Source, |t| {
            matches!(
                t,
                Test::Addr { dir: Dir::Src, .. } | Test::Port { dir: Dir::Src, .. }
            )
        }),
        (ExemptionKind::Protocol, |t| {
            matches!(t, Test::Protocol { .. })
        }),
        (ExemptionKind::Conntrack, |t| {
            matches!(t, Test::CtState { .. })
        }),
        (ExemptionKind::AddressType, |t| {
            matches!(t, Test::AddrType { .. })
        }),
        (ExemptionKind::Unknown, |t| {
            matches!(t, Test::Unknown { .. })
        }),
    ];
    order
        .iter()
        .find(|(_, pred)| tests.clone().any(pred))
        .map_or(ExemptionKind::Other, |(kind, _)| *kind)
}

/// The source ports a rule matches (`--sport 15000:15100`; `! --sport 1:1023` is every
/// other port); empty when it matches none in particular.
fn source_ports(matches: &[Match]) -> Vec<PortRange> {
    let Some((negated, ranges)) = matches.iter().find_map(|m| match &m.test {
        Test::Port {
            dir: Dir::Src,
            ranges,
            ..
        } => Some((m.negated, ranges)),
        _ => None,
    }) else {
        return Vec::new();
    };
    if !negated {
        return ranges.clone();
    }
    let mut sorted = ranges.clone();
    sorted.sort();
    let mut out = Vec::new();
    let mut next: u32 = 0;
    for r in sorted {
        if u32::from(r.start) > next {
            out.push(PortRange {
                start: next as u16,
                end: r.start - 1,
            });
        }
        next = next.max(u32::from(r.end) + 1);
    }
    if next <= 65535 {
        out.push(PortRange {
            start: next as u16,
            end: 65535,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::ExemptionKind;

    /// The report's exemption kinds keep the names they had as strings.
    #[test]
    fn names_are_the_serde_names() {
        for k in ExemptionKind::ALL {
            assert_eq!(serde_json::to_string(k).unwrap(), format!("\"{k}\""));
        }
        assert_eq!(ExemptionKind::AddressType.name(), "address-type");
    }
}
