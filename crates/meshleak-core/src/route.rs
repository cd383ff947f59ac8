//! Which interface and source address the kernel picks for a flow, from a namespace's
//! policy-routing rules, every routing table and its addresses: the rules in order (by
//! uid, mark, source, destination, protocol, ports), then the longest prefix of the table
//! a rule names, as `fib_rules_lookup` and the FIB do.

use std::net::IpAddr;

use crate::model::{AddrType, IpVersion};
use crate::snapshot::{Interface, MAIN_TABLE, Route, RoutingRule, RuleAction};

/// What a route lookup depends on besides the destination: the socket's uid (`sk_uid`, the
/// creator's fsuid as the namespace's owner sees it) and mark, the bound source, the
/// protocol and ports.
#[derive(Clone, Debug)]
pub struct Query {
    pub dst: IpAddr,
    /// The bound source address; `None`: the kernel picks one (from the route found first).
    pub src: Option<IpAddr>,
    pub uid: u32,
    pub mark: u32,
    pub proto: u8,
    /// `None`: an ephemeral port, not known before the connection is made.
    pub sport: Option<u16>,
    pub dport: u16,
}

impl Query {
    /// A lookup that depends on the destination only (uid 0, no mark, TCP).
    pub fn to(dst: IpAddr) -> Query {
        Query {
            dst,
            src: None,
            uid: 0,
            mark: 0,
            proto: 6,
            sport: None,
            dport: 0,
        }
    }
}

/// Where a lookup sends the flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routed {
    pub oif: String,
    pub src: IpAddr,
    pub table: u32,
    /// The policy-routing rule whose table gave the route (as `ip rule` prints it); `None`
    /// when the rules were not read.
    pub rule: Option<String>,
    /// What may make the kernel choose otherwise: a rule on something meshleak does not
    /// model, a multipath route, a nexthop object.
    pub uncertain: Vec<String>,
    /// Delivered to this host (a local route, or one of its own addresses): the packet
    /// loops back through lo into PREROUTING and INPUT.
    pub local: bool,
}

impl Routed {
    /// The addresses a flow to `dst` counts as this host's: `local`, and `dst` too when
    /// this route delivers it here (`ip route add local 10.77.0.0/16 dev lo`).
    pub fn local_addrs(route: Option<&Routed>, dst: IpAddr, mut local: Vec<IpAddr>) -> Vec<IpAddr> {
        if route.is_some_and(|r| r.local) && !local.contains(&dst) {
            local.push(dst);
        }
        local
    }
}

/// The namespace's routing facts a lookup reads.
#[derive(Clone, Copy)]
pub struct Routing<'a> {
    pub routes: &'a [Route],
    /// `None`: not read; only the main table (and the interfaces' own addresses) decide.
    pub rules: Option<&'a [RoutingRule]>,
    pub interfaces: &'a [Interface],
    /// The source port connect() picks (its `ip_local_port_range`): what a rule on the
    /// source port sees when the app binds none.
    pub ephemeral: crate::eval::SourcePort,
}

impl Routing<'_> {
    /// The route of `q`'s first packet, or `None` when no route takes it (the connection
    /// fails: nothing leaves).
    pub fn lookup(&self, q: &Query) -> Option<Routed> {
        let Some(rules) = self.rules else {
            return self.main_only(q);
        };
        let first = self.resolve(rules, q)?;
        if q.src.is_some() {
            return Some(first);
        }
        // connect() looks up twice: once to pick a source, again with it, so a rule on
        // the source (`from 169.254.78.1`) decides the second lookup.
        let again = Query {
            src: Some(first.src),
            ..q.clone()
        };
        self.resolve(rules, &again)
    }

    /// The lookup where only the main table is known: local addresses go through lo,
    /// everything else by the longest prefix.
    fn main_only(&self, q: &Query) -> Option<Routed> {
        let dst = q.dst;
        let local = self.interfaces.iter().any(|i| i.addrs.contains(&dst));
        if local || dst.is_loopback() {
            let src = if local {
                dst
            } else {
                IpVersion::of(&dst).loopback()
            };
            return Some(Routed {
                oif: "lo".into(),
                src,
                table: MAIN_TABLE,
                rule: None,
                uncertain: Vec::new(),
                local: true,
            });
        }
        let route = self.table_route(None, q)?;
        self.routed(route, q, MAIN_TABLE, None, Vec::new())
    }

    /// The rules in order, as `fib_rules_lookup` tries them.
    fn resolve(&self, rules: &[RoutingRule], q: &Query) -> Option<Routed> {
        let version = IpVersion::of(&q.dst);
        let rules: Vec<&RoutingRule> = rules.iter().filter(|r| r.family == version).collect();
        let mut uncertain = Vec::new();
        let mut i = 0;
        while let Some(rule) = rules.get(i) {
            i += 1;
            match matches(rule, q, self.ephemeral) {
                Fit::No => continue,
                Fit::Unsure(why) => {
                    uncertain.push(format!("ip rule `{rule}` may apply ({why})"));
                    continue;
                }
                Fit::Yes => {}
            }
            let table = match rule.action {
                RuleAction::Table(t) => t,
                // Forward only, as the kernel allows: a snapshot may say otherwise, and a
                // jump back would loop.
                RuleAction::Goto(p) => {
                    if let Some(j) = rules.iter().position(|r| r.priority == p)
                        && j >= i
                    {
                        i = j;
                    }
                    continue;
                }
                RuleAction::Nop => continue,
                RuleAction::Blackhole | RuleAction::Unreachable | RuleAction::Prohibit => {
                    return None;
                }
                RuleAction::Other(code) => {
                    uncertain.push(format!("ip rule `{rule}` has action {code}"));
                    continue;
                }
            };
            let Some(route) = self.table_route(Some(table), q) else {
                continue;
            };
            match route.kind {
                AddrType::Throw => continue,
                AddrType::Blackhole | AddrType::Unreachable | AddrType::Prohibit => {
                    return None;
                }
                _ => {}
            }
            if rule
                .suppress_prefixlen
                .is_some_and(|n| u32::from(route.prefix) <= n)
            {
                continue;
            }
            return self.routed(route, q, table, Some(rule.to_string()), uncertain);
        }
        None
    }

    /// The longest-prefix route for `q` in `table` (`None`: any table, the main-only
    /// case), the lowest metric among equals.
    fn table_route(&self, table: Option<u32>, q: &Query) -> Option<&Route> {
        let src = q.src.unwrap_or(IpVersion::of(&q.dst).unspecified());
        self.routes
            .iter()
            .filter(|r| table.is_none_or(|t| r.table == t))
            .filter(|r| {
                r.dst
                    .parse::<IpAddr>()
                    .is_ok_and(|net| within(&q.dst, &net, r.prefix))
            })
            .filter(|r| r.from.is_none_or(|(net, len)| within(&src, &net, len)))
            .max_by_key(|r| (r.prefix, std::cmp::Reverse(r.metric)))
    }

    fn routed(
        &self,
        route: &Route,
        q: &Query,
        table: u32,
        rule: Option<String>,
        mut uncertain: Vec<String>,
    ) -> Option<Routed> {
        if route.kind == AddrType::Local {
            return Some(Routed {
                oif: "lo".into(),
                src: q.src.unwrap_or(q.dst),
                table,
                rule,
                uncertain,
                local: true,
            });
        }
        if !route.other_oifs.is_empty() {
            uncertain.push(format!(
                "multipath route to {}/{}: the kernel may pick {} instead of {}",
                route.dst,
                route.prefix,
                route.other_oifs.join(" or "),
                route.oif
            ));
        }
        if route.nexthop_object {
            uncertain.push(format!(
                "route to {}/{} uses a nexthop object, whose interface meshleak does not read",
                route.dst, route.prefix
            ));
        }
        let same_family = |a: &&IpAddr| a.is_ipv4() == q.dst.is_ipv4();
        let of_oif = self
            .interfaces
            .iter()
            .filter(|i| i.name == route.oif)
            .flat_map(|i| i.addrs.iter())
            .filter(same_family)
            .min_by_key(|a| crate::model::is_link_local(a));
        // Without an address of its own on that interface, IPv4 takes one of another.
        let any = || {
            self.interfaces
                .iter()
                .flat_map(|i| i.addrs.iter())
                .filter(same_family)
                .find(|a| !a.is_loopback())
        };
        let src = q
            .src
            .or(route.prefsrc)
            .or_else(|| of_oif.or_else(any).copied())?;
        Some(Routed {
            oif: route.oif.clone(),
            src,
            table,
            rule,
            uncertain,
            local: false,
        })
    }
}

enum Fit {
    Yes,
    No,
    Unsure(String),
}

/// Whether a rule selects `q`, as `fib_rule_match` and the family's match decide for a
/// locally generated packet (input interface lo, no output interface bound).
fn matches(rule: &RoutingRule, q: &Query, ephemeral: crate::eval::SourcePort) -> Fit {
    if rule.detached {
        return Fit::No;
    }
    let src = q.src.unwrap_or(IpVersion::of(&q.dst).unspecified());
    let within_opt = |net: Option<(IpAddr, u8)>, a: &IpAddr| {
        net.is_none_or(|(net, len)| len == 0 || within(a, &net, len))
    };
    let port = |range: Option<(u16, u16)>, p: u16| range.is_none_or(|(a, b)| (a..=b).contains(&p));
    let plain = rule.iif.as_ref().is_none_or(|i| i == "lo")
        && rule.oif.is_none()
        && rule
            .fwmark
            .is_none_or(|(mark, mask)| (mark ^ q.mark) & mask == 0)
        && rule.uids.is_none_or(|(a, b)| (a..=b).contains(&q.uid))
        && within_opt(rule.src, &src)
        && within_opt(rule.dst, &q.dst)
        && rule.ip_proto.is_none_or(|p| p == q.proto)
        && port(rule.dport, q.dport);
    if !plain {
        return if rule.invert { Fit::Yes } else { Fit::No };
    }
    if !rule.unmodelled.is_empty() {
        return Fit::Unsure(rule.unmodelled.join(", "));
    }
    let sport = match (rule.sport, q.sport) {
        (None, _) => true,
        (Some(_), Some(p)) => port(rule.sport, p),
        (Some((a, b)), None) => {
            let ephemeral = match ephemeral {
                crate::eval::SourcePort::Ephemeral(r) => r,
                crate::eval::SourcePort::Bound(p) => crate::range::PortRange { start: p, end: p },
            };
            if a <= ephemeral.start && b >= ephemeral.end {
                true
            } else if b < ephemeral.start || a > ephemeral.end {
                false
            } else {
                return Fit::Unsure("the ephemeral source port decides".into());
            }
        }
    };
    if sport != rule.invert {
        Fit::Yes
    } else {
        Fit::No
    }
}

/// Whether `a` is in `net/len` (both of one family).
fn within(a: &IpAddr, net: &IpAddr, len: u8) -> bool {
    let (a, net, bits) = match (a.to_canonical(), net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u128::from(u32::from(a)), u128::from(u32::from(*n)), 32),
        (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a), u128::from(*n), 128),
        _ => return false,
    };
    let len = u32::from(len).min(bits);
    if len == 0 {
        return true;
    }
    let shift = bits - len;
    (a >> shift) == (net >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dst: &str, prefix: u8, oif: &str, table: u32) -> Route {
        Route {
            dst: dst.into(),
            prefix,
            oif: oif.into(),
            gateway: None,
            table,
            kind: AddrType::Unicast,
            metric: 0,
            prefsrc: None,
            from: None,
            other_oifs: Vec::new(),
            nexthop_object: false,
        }
    }

    fn rule(priority: u32, table: u32) -> RoutingRule {
        RoutingRule {
            family: IpVersion::V4,
            priority,
            invert: false,
            src: None,
            dst: None,
            iif: None,
            oif: None,
            detached: false,
            fwmark: None,
            uids: None,
            ip_proto: None,
            sport: None,
            dport: None,
            action: RuleAction::Table(table),
            suppress_prefixlen: None,
            unmodelled: Vec::new(),
        }
    }

    fn with<'a>(
        routes: &'a [Route],
        rules: Option<&'a [RoutingRule]>,
        interfaces: &'a [Interface],
    ) -> Routing<'a> {
        Routing {
            routes,
            rules,
            interfaces,
            ephemeral: crate::eval::SourcePort::DEFAULT_EPHEMERAL,
        }
    }

    fn interfaces() -> Vec<Interface> {
        vec![
            Interface {
                name: "eth0".into(),
                addrs: vec!["192.168.1.5".parse().unwrap()],
            },
            Interface {
                name: "eth1".into(),
                addrs: vec!["10.0.0.7".parse().unwrap()],
            },
        ]
    }

    #[test]
    fn main_table_only_longest_prefix_and_local_addresses() {
        let routes = vec![
            route("0.0.0.0", 0, "eth0", MAIN_TABLE),
            route("10.0.0.0", 24, "eth1", MAIN_TABLE),
        ];
        let ifs = interfaces();
        let r = with(&routes, None, &ifs);
        let at = |d: &str| {
            r.lookup(&Query::to(d.parse().unwrap()))
                .map(|x| (x.oif, x.src.to_string()))
        };
        assert_eq!(at("10.0.0.9"), Some(("eth1".into(), "10.0.0.7".into())));
        assert_eq!(at("8.8.8.8"), Some(("eth0".into(), "192.168.1.5".into())));
        assert_eq!(at("10.0.0.7").unwrap().0, "lo");
        assert_eq!(at("fd00::1"), None);
    }

    /// `ip rule add uidrange 2000-2000 lookup 100`, `ip rule add fwmark 0x10/0xf0 lookup
    /// 100`, with table 100 leaving by eth1: those uids and marks leave by eth1, the rest
    /// by the main table's eth0; a throw route in table 100 hands back to the next rule.
    #[test]
    fn uid_and_mark_rules_pick_another_table() {
        let routes = vec![
            route("0.0.0.0", 0, "eth0", MAIN_TABLE),
            route("0.0.0.0", 0, "eth1", 100),
            Route {
                kind: AddrType::Throw,
                ..route("203.0.113.0", 24, "", 100)
            },
        ];
        let rules = vec![
            rule(0, 255),
            RoutingRule {
                uids: Some((2000, 2000)),
                ..rule(100, 100)
            },
            RoutingRule {
                fwmark: Some((0x10, 0xf0)),
                ..rule(101, 100)
            },
            rule(32766, MAIN_TABLE),
        ];
        let ifs = interfaces();
        let r = with(&routes, Some(&rules), &ifs);
        let q = |uid, mark, dst: &str| Query {
            uid,
            mark,
            ..Query::to(dst.parse().unwrap())
        };
        let own = r.lookup(&q(2000, 0, "192.0.2.1")).unwrap();
        assert_eq!((own.oif.as_str(), own.table), ("eth1", 100));
        assert_eq!(own.src.to_string(), "10.0.0.7");
        assert_eq!(
            own.rule.as_deref(),
            Some("100:\tfrom all uidrange 2000-2000 lookup 100")
        );
        assert_eq!(r.lookup(&q(2001, 0, "192.0.2.1")).unwrap().oif, "eth0");
        assert_eq!(r.lookup(&q(2001, 0x13, "192.0.2.1")).unwrap().oif, "eth1");
        assert_eq!(r.lookup(&q(2001, 0x23, "192.0.2.1")).unwrap().oif, "eth0");
        assert_eq!(r.lookup(&q(2000, 0, "203.0.113.9")).unwrap().oif, "eth0");
    }

    #[test]
    fn prohibit_suppress_goto_invert_and_unmodelled_selectors() {
        let routes = vec![
            route("0.0.0.0", 0, "eth0", MAIN_TABLE),
            route("0.0.0.0", 0, "eth1", 100),
            route("192.0.2.0", 24, "eth1", 100),
        ];
        let ifs = interfaces();
        let lookup = |rules: Vec<RoutingRule>, uid: u32| {
            let r = with(&routes, Some(&rules), &ifs);
            r.lookup(&Query {
                uid,
                ..Query::to("192.0.2.1".parse().unwrap())
            })
        };
        let main = rule(32766, MAIN_TABLE);
        let prohibit = RoutingRule {
            uids: Some((5, 5)),
            action: RuleAction::Prohibit,
            ..rule(10, 0)
        };
        assert_eq!(lookup(vec![prohibit.clone(), main.clone()], 5), None);
        assert!(lookup(vec![prohibit, main.clone()], 6).is_some());
        // suppress_prefixlength 0 refuses table 100's default route but not its /24.
        let suppress = RoutingRule {
            suppress_prefixlen: Some(0),
            ..rule(10, 100)
        };
        assert_eq!(
            lookup(vec![suppress.clone(), main.clone()], 0).unwrap().oif,
            "eth1"
        );
        let two = [suppress, main.clone()];
        let only_default = with(&routes[..2], Some(&two), &ifs);
        assert_eq!(
            only_default
                .lookup(&Query::to("192.0.2.1".parse().unwrap()))
                .unwrap()
                .oif,
            "eth0"
        );
        // `not uidrange 0-999 lookup 100`: uid 1000 is taken there, uid 0 is not.
        let not_system = RoutingRule {
            invert: true,
            uids: Some((0, 999)),
            ..rule(10, 100)
        };
        assert_eq!(
            lookup(vec![not_system.clone(), main.clone()], 1000)
                .unwrap()
                .oif,
            "eth1"
        );
        assert_eq!(
            lookup(vec![not_system, main.clone()], 0).unwrap().oif,
            "eth0"
        );
        // goto skips the rule between.
        let goto = RoutingRule {
            action: RuleAction::Goto(30),
            ..rule(10, 0)
        };
        let skipped = rule(20, 100);
        assert_eq!(
            lookup(vec![goto, skipped, rule(30, MAIN_TABLE)], 0)
                .unwrap()
                .oif,
            "eth0"
        );
        // A tos selector is not modelled: the route is uncertain, never silently certain.
        let tos = RoutingRule {
            unmodelled: vec!["tos 0x10".into()],
            ..rule(10, 100)
        };
        let got = lookup(vec![tos, main], 0).unwrap();
        assert_eq!(got.oif, "eth0");
        assert_eq!(
            got.uncertain,
            vec!["ip rule `10:\tfrom all tos 0x10 lookup 100` may apply (tos 0x10)".to_string()]
        );
    }

    /// A rule on the source decides the second lookup, made with the source the first
    /// one picked.
    #[test]
    fn source_rules_apply_to_the_picked_source() {
        let routes = vec![
            route("0.0.0.0", 0, "eth0", MAIN_TABLE),
            route("0.0.0.0", 0, "eth1", 100),
        ];
        let rules = vec![
            RoutingRule {
                src: Some(("192.168.1.5".parse().unwrap(), 32)),
                ..rule(10, 100)
            },
            rule(32766, MAIN_TABLE),
        ];
        let ifs = interfaces();
        let r = with(&routes, Some(&rules), &ifs);
        let got = r.lookup(&Query::to("192.0.2.1".parse().unwrap())).unwrap();
        assert_eq!(got.oif, "eth1");
        assert_eq!(got.src.to_string(), "192.168.1.5");
    }
}
