//! Turns evaluation steps (indices into a ruleset) into citations people and tools can read:
//! backend, family, table, chain, position and the rule text as its tool prints it.

use serde::Serialize;

use crate::eval::{Effect, SourcePort, StepRef, Trace, UnknownAt};
use crate::model::{Action, Backend, DumpFormat, Policy, Ruleset, Table};

/// A rule (or a chain's policy, with `position: None`) as cited in every output.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RuleRef {
    pub backend: Backend,
    pub family: &'static str,
    pub table: String,
    pub chain: String,
    pub position: Option<usize>,
    pub rule: String,
}

/// One step of a trace's path.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    #[serde(flatten)]
    pub at: RuleRef,
    pub effect: String,
}

impl RuleRef {
    /// Where the rule is: `iptables-nft ipv4 nat/ISTIO_OUTPUT #7` (`policy` for a chain's
    /// policy).
    pub fn place(&self) -> String {
        let pos = self.position.map_or("policy".into(), |p| format!("#{p}"));
        format!(
            "{} {} {}/{} {pos}",
            self.backend.name(),
            self.family,
            self.table,
            self.chain
        )
    }
}

pub(crate) fn rule_ref(
    rules: &Ruleset,
    table: usize,
    chain: usize,
    rule: Option<usize>,
) -> RuleRef {
    let t = &rules.tables[table];
    let c = &t.chains[chain];
    let text = match rule {
        Some(r) => c.rules[r].text.clone(),
        None => policy_text(
            t,
            &c.name,
            c.base.as_ref().map_or(Policy::Accept, |b| b.policy),
        ),
    };
    RuleRef {
        backend: t.backend,
        family: t.family.name(),
        table: t.name.clone(),
        chain: c.name.clone(),
        position: rule.map(|r| c.rules[r].position),
        rule: text,
    }
}

fn policy_text(table: &Table, chain: &str, policy: Policy) -> String {
    let word = match policy {
        Policy::Accept => "ACCEPT",
        Policy::Drop => "DROP",
    };
    match table.format {
        DumpFormat::IptablesSave if table.backend != Backend::Nftables => {
            format!(":{chain} {word}")
        }
        _ => format!("policy {};", word.to_lowercase()),
    }
}

pub fn step(rules: &Ruleset, s: &StepRef) -> Step {
    let target = || {
        let rule = &rules.tables[s.table].chains[s.chain].rules[s.rule.expect("jumps are rules")];
        rule.actions
            .iter()
            .find_map(|a| match a {
                Action::Jump { chain } | Action::Goto { chain } => Some(chain.clone()),
                _ => None,
            })
            .unwrap_or_default()
    };
    let effect = match &s.effect {
        Effect::Jump => format!("jump {}", target()),
        Effect::Goto => format!("goto {}", target()),
        Effect::Return => "return".into(),
        Effect::Accept => "accept".into(),
        Effect::Drop => "drop".into(),
        Effect::Reject => "reject".into(),
        Effect::Redirect(a, p) => format!("redirect to {}", addr_port(a, *p)),
        Effect::Dnat(a, p) => format!("dnat to {}", addr_port(a, *p)),
        Effect::Tproxy(p) => format!("tproxy to local port {p}"),
        Effect::Snat(a, p) => format!("snat to {}", source_text(*a, *p)),
        Effect::Masquerade(p) => format!(
            "masquerade to the outgoing device's address, {}",
            port_text(*p)
        ),
        Effect::SetMark(m, ct) => format!("mark 0x{m:x}, ctmark 0x{ct:x}"),
        Effect::Notrack => "notrack (NAT skipped)".into(),
        Effect::Continue => "continue".into(),
        Effect::Policy(Policy::Accept) => "policy accept".into(),
        Effect::Policy(Policy::Drop) => "policy drop".into(),
        Effect::UnknownTarget(name) => format!("unknown: {name}"),
    };
    Step {
        at: rule_ref(rules, s.table, s.chain, s.rule),
        effect,
    }
}

pub fn addr_port(addr: &std::net::IpAddr, port: u16) -> String {
    match addr {
        std::net::IpAddr::V6(a) => format!("[{a}]:{port}"),
        std::net::IpAddr::V4(a) => format!("{a}:{port}"),
    }
}

/// A source after source NAT: `ADDR:PORT`, with what is not known said so.
fn source_text(addr: Option<std::net::IpAddr>, port: SourcePort) -> String {
    match (addr, port) {
        (Some(a), SourcePort::Bound(p)) => addr_port(&a, p),
        (Some(a), p) => format!("{a}, {}", port_text(p)),
        (None, p) => format!("an address not known here, {}", port_text(p)),
    }
}

/// A source port as NAT leaves it.
fn port_text(port: SourcePort) -> String {
    match port {
        SourcePort::Bound(p) => format!("port {p}"),
        SourcePort::Ephemeral(r) if r.start == r.end => format!("port {}", r.start),
        SourcePort::Ephemeral(r) => format!("a port of {r}"),
    }
}

/// The deciding step of a trace as a citation.
pub fn deciding(rules: &Ruleset, trace: &Trace) -> Option<Step> {
    trace.deciding.map(|i| step(rules, &trace.path[i]))
}

/// What makes a verdict unknown, cited.
#[derive(Clone, Debug, Serialize)]
pub struct UnknownCite {
    #[serde(flatten)]
    pub at: RuleRef,
    pub unknown: String,
}

pub fn unknown(rules: &Ruleset, u: &UnknownAt) -> UnknownCite {
    UnknownCite {
        at: rule_ref(rules, u.table, u.chain, u.rule),
        unknown: u.what.clone(),
    }
}
