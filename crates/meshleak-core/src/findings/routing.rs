//! `policy-routed`: a policy-routing rule (`ip rule ... uidrange`, `from`, ports) sends a
//! process's traffic through another table, out by an interface or from a source the
//! capture exempts, while the main table's route would have been captured. The identity
//! analysis looks at every interface for everyone; only a route lookup per identity shows
//! which one its traffic really takes.

use std::net::IpAddr;

use super::Context;
use crate::eval::{self, Flow, Identity, Verdict};
use crate::explain;
use crate::model::{AddrType, IpVersion};
use crate::route::{Query, Routed, Routing};
use crate::schema::{Finding, FindingKind, Severity};
use crate::snapshot::{RoutingRule, RuleAction};
use crate::ways::Source;

/// Destination ports probed per destination: a port exclusion that spares one of them
/// leaves the others to tell a route's effect.
const PROBE_PORTS: [u16; 3] = [443, 80, 8080];
/// At most this many destinations per family (TEST-NET first, then one per routed network).
const MAX_DESTINATIONS: usize = 16;
/// Evidence lines per finding.
const SHOWN: usize = 4;

pub(super) fn policy_routed(c: &Context, out: &mut Vec<Finding>) {
    let Some(rules) = c.ns.routing_rules.as_deref() else {
        return;
    };
    if !rules.iter().any(selective) {
        return;
    }
    let routing = c.ns.routing();
    let local: Vec<IpAddr> = c.ns.local_addrs();
    let families: Vec<IpVersion> = [IpVersion::V4, IpVersion::V6]
        .into_iter()
        .filter(|v| {
            c.analysis
                .captured_on
                .iter()
                .any(|x| x.family == v.family().name())
        })
        .collect();
    let destinations: Vec<IpAddr> = families
        .iter()
        .flat_map(|v| destinations(c, *v, &local))
        .collect();
    for p in c.apps() {
        let f = p.facts;
        let mut identities: Vec<Identity> = Vec::new();
        for w in crate::ways::ways(f, c.ns) {
            if !matches!(w.source, Source::ForeignSocket { .. })
                && !identities.contains(&w.identity)
            {
                identities.push(w.identity);
            }
        }
        let mut escapes: Vec<Escape> = Vec::new();
        for id in &identities {
            for dst in &destinations {
                if let Some(e) = escape(c, routing, &local, id, *dst) {
                    escapes.push(e);
                }
            }
        }
        let Some(first) = escapes.first() else {
            continue;
        };
        let mut evidence: Vec<String> =
            escapes.iter().take(SHOWN).map(|e| e.text.clone()).collect();
        if escapes.len() > SHOWN {
            evidence.push(format!("and {} more destinations", escapes.len() - SHOWN));
        }
        let mut cited = Vec::new();
        for e in &escapes {
            if let Some(r) = &e.rule
                && !cited.contains(r)
            {
                cited.push(r.clone());
            }
        }
        out.push(Finding {
            kind: FindingKind::PolicyRouted,
            severity: Severity::High,
            pid: Some(p.facts.pid),
            message: format!(
                "{}'s traffic (uid {}) is routed by ip rule `{}` out by {}, which the capture rules let out uncaptured; the main table's route would have been captured",
                p.facts.comm,
                first.uid,
                first.ip_rule,
                first.oif
            ),
            rules: cited,
            evidence,
            socket: None,
            remedy: "remove the policy-routing rule (ip rule) that selects the app's traffic, or capture the interface it routes to (drop it from excludeInterfaces)".into(),
        });
    }
}

struct Escape {
    uid: u32,
    ip_rule: String,
    oif: String,
    rule: Option<explain::RuleRef>,
    text: String,
}

/// Whether `id`'s TCP traffic to `dst` leaves uncaptured by its own route where the
/// reference identity's route (the one the main table gives an ordinary app) would have
/// been captured, on some probed port.
fn escape(
    c: &Context,
    routing: Routing,
    local: &[IpAddr],
    id: &Identity,
    dst: IpAddr,
) -> Option<Escape> {
    let reference = c.analysis.reference_identity.uid;
    for dport in PROBE_PORTS {
        let query = |uid| Query {
            uid,
            dport,
            ..Query::to(dst)
        };
        let (Some(own), Some(usual)) = (
            routing.lookup(&query(id.uid)),
            routing.lookup(&query(reference)),
        ) else {
            continue;
        };
        if (own.oif == usual.oif && own.src == usual.src) || own.oif == "lo" {
            continue;
        }
        let flow = |r: &Routed| Flow {
            version: IpVersion::of(&dst),
            proto: 6,
            src: Some(r.src),
            dst,
            sport: routing.ephemeral,
            dport,
            oif: r.oif.clone(),
            identity: id.clone(),
            mark: 0,
            local: local.to_vec(),
        };
        let t = eval::trace(&c.ns.rules, &flow(&own));
        if t.outcome.verdict != Verdict::Bypass
            || eval::trace(&c.ns.rules, &flow(&usual)).outcome.verdict != Verdict::Captured
        {
            continue;
        }
        // On one line: `ip rule` puts a tab after the priority.
        let ip_rule = own.rule.clone().unwrap_or_default().replace('\t', " ");
        let uncertain = if own.uncertain.is_empty() {
            String::new()
        } else {
            format!(" (uncertain: {})", own.uncertain.join("; "))
        };
        return Some(Escape {
            uid: id.uid,
            text: format!(
                "uid {} to {}: ip rule `{}` gives table {}, out by {} from {} (the main table: {} from {}){uncertain}",
                id.uid,
                explain::addr_port(&dst, dport),
                ip_rule,
                own.table,
                own.oif,
                own.src,
                usual.oif,
                usual.src
            ),
            ip_rule,
            oif: own.oif,
            rule: explain::deciding(&c.ns.rules, &t).map(|s| s.at),
        });
    }
    None
}

/// A rule other than the three every namespace starts with (local, main, default): one
/// that may route some traffic differently.
fn selective(r: &RoutingRule) -> bool {
    let default = matches!(r.action, RuleAction::Table(253..=255))
        && !r.invert
        && r.src.is_none_or(|s| s.1 == 0)
        && r.dst.is_none_or(|d| d.1 == 0)
        && r.iif.is_none()
        && r.oif.is_none()
        && r.fwmark.is_none()
        && r.uids.is_none()
        && r.ip_proto.is_none()
        && r.sport.is_none()
        && r.dport.is_none()
        && r.suppress_prefixlen.is_none()
        && r.unmodelled.is_empty();
    !default
}

/// Where to probe: an outside address (TEST-NET, never sent anywhere), then one address of
/// each network some table routes (not the namespace's own, not loopback).
fn destinations(c: &Context, version: IpVersion, local: &[IpAddr]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = vec![version.outside()];
    for r in &c.ns.routes {
        if out.len() >= MAX_DESTINATIONS {
            break;
        }
        if r.prefix == 0 || r.table == 255 || !matches!(r.kind, AddrType::Unicast) {
            continue;
        }
        let Ok(net) = r.dst.parse::<IpAddr>() else {
            continue;
        };
        if IpVersion::of(&net) != version || net.is_loopback() {
            continue;
        }
        let host = (1..=2u128)
            .filter_map(|k| offset(net, r.prefix, k))
            .find(|a| !local.contains(a));
        if let Some(a) = host
            && !out.contains(&a)
        {
            out.push(a);
        }
    }
    out
}

/// The `k`th address of `net/prefix`, if the network holds it.
fn offset(net: IpAddr, prefix: u8, k: u128) -> Option<IpAddr> {
    match net {
        IpAddr::V4(v) => {
            let size = 1u128 << (32 - u32::from(prefix.min(32)));
            (k < size).then(|| IpAddr::from(std::net::Ipv4Addr::from(u32::from(v) + k as u32)))
        }
        IpAddr::V6(v) => {
            let bits = 128 - u32::from(prefix.min(128));
            (bits >= 2 || k < (1u128 << bits))
                .then(|| IpAddr::from(std::net::Ipv6Addr::from(u128::from(v) + k)))
        }
    }
}
