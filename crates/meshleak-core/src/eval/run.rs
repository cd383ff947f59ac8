//! One walk of a packet through the base chains of the OUTPUT and POSTROUTING hooks.
//! Unknown matches are resolved by a list of choices, so the caller can explore both ways.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;

use super::matcher::{self, Tri};
use super::{Flow, Outcome, Packet, SourcePort, UnknownAt, Verdict};
use crate::model::{
    Action, Backend, ChainType, Hook, IpVersion, MarkReg, NatPorts, NatSource, Policy, Rule,
    Ruleset, netmap,
};
use crate::range::PortRange;

/// What a step did to the packet.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Jump,
    Goto,
    Return,
    Accept,
    Drop,
    Reject,
    /// Destination rewritten to (address, port).
    Redirect(IpAddr, u16),
    Dnat(IpAddr, u16),
    /// Handed to a transparent socket on this port (PREROUTING of a looped-back packet).
    Tproxy(u16),
    /// Source rewritten (`None`: to an address not known here).
    Snat(Option<IpAddr>, SourcePort),
    Masquerade(SourcePort),
    /// New packet mark and conntrack mark.
    SetMark(u32, u32),
    Notrack,
    /// A rule with no verdict (counter, LOG, ...): evaluation goes on.
    Continue,
    Policy(Policy),
    UnknownTarget(String),
}

/// A step on the path, by index into the ruleset; `rule: None` is the chain's policy.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRef {
    pub table: usize,
    pub chain: usize,
    pub rule: Option<usize>,
    pub effect: Effect,
    /// Whether the step ran inside a nat base chain's traversal of the OUTPUT hook, where
    /// destination NAT (and so capture) happens.
    pub nat: bool,
}

pub(super) struct Run {
    /// Rules visited.
    pub visited: usize,
    pub decisions: Vec<bool>,
    pub unknowns: Vec<Unknown>,
    pub outcome: Outcome,
    pub steps: Vec<StepRef>,
    pub nat_dst: Option<(IpAddr, u16)>,
}

/// Something not modelled a run met, named by where it is: its text is made only for the
/// traces that report it ([`Unknown::cite`]), not in every run of every flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Unknown {
    pub table: usize,
    pub chain: usize,
    pub rule: Option<usize>,
    pub what: What,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum What {
    /// The rule's match at this index.
    Match(usize),
    /// The rule's unknown target (`Action::Unknown`) at this index.
    Target(usize),
    Text(String),
}

impl Unknown {
    /// As traces report it: the match or target named with its text.
    pub(super) fn cite(&self, rules: &Ruleset) -> UnknownAt {
        let rule = self
            .rule
            .map(|r| &rules.tables[self.table].chains[self.chain].rules[r]);
        let what = match (&self.what, rule) {
            (What::Match(k), Some(rule)) => {
                let m = &rule.matches[*k];
                match &m.test {
                    crate::model::Test::Unknown { name } => format!("match {name}: {}", m.text),
                    _ => format!("{} (the packet's value is not known)", m.text),
                }
            }
            (What::Target(k), Some(rule)) => match &rule.actions[*k] {
                Action::Unknown { name } => format!("target {name}"),
                other => format!("target {other:?}"),
            },
            (What::Text(t), _) => t.clone(),
            (_, None) => String::new(),
        };
        UnknownAt {
            table: self.table,
            chain: self.chain,
            rule: self.rule,
            what,
        }
    }
}

/// How a base chain's traversal ended.
enum End {
    Accept,
    Drop,
    Unknown,
}

/// Bounds a traversal: gotos can loop without growing the stack in an offline dump.
const MAX_STEPS: usize = 100_000;

/// The base chains of one family, hook by hook, in the order the kernel runs them: worked
/// out once per ruleset, not once per packet.
pub(super) struct Plan {
    hooks: Vec<(Hook, Vec<Group>)>,
    /// Per table the family sees, per chain and rule: the chain its jump or goto enters
    /// (its first one: a rule's verdict is its first deciding action), resolved by name
    /// here rather than on every visit. `None` for a rule without one, or whose target
    /// does not exist (only an offline dump can hold that).
    targets: Vec<Vec<Vec<Option<usize>>>>,
}

/// Base chains of one hook at one priority. With rules in more than one, their order is
/// the kernel's registration order, which no dump shows.
#[derive(Clone)]
struct Group {
    priority: i32,
    /// What has rules (or a chain with a drop policy): their order can matter.
    busy: Vec<Unit>,
    /// Empty accepting chains: they do nothing, in any order.
    idle: Vec<(usize, usize)>,
}

/// What runs at one place of a hook.
#[derive(Clone)]
enum Unit {
    Chain(usize, usize),
    /// Every nat chain of the hook: the NAT core registers one hook of its own at the
    /// hook's NAT priority ([`nat_priority`]) and runs the nat chains inside it, ordered by
    /// their own priorities (legacy and nf_tables alike; measured on Linux 6.18).
    Nat(Vec<Group>),
}

/// Where the NAT core hooks in (NF_IP_PRI_NAT_DST, NF_IP_PRI_NAT_SRC; IPv6 the same).
fn nat_priority(hook: Hook) -> i32 {
    match hook {
        Hook::Output | Hook::Prerouting => -100,
        Hook::Postrouting | Hook::Input => 100,
        _ => 0,
    }
}

/// Chains sorted by (priority, backend rank), grouped by priority, each split into busy and
/// idle.
fn groups(rules: &Ruleset, mut bases: Vec<(i32, u8, usize, usize)>) -> Vec<Group> {
    bases.sort();
    let mut groups: Vec<Group> = Vec::new();
    for (priority, _, t, c) in bases {
        if groups.last().is_none_or(|g| g.priority != priority) {
            groups.push(Group {
                priority,
                busy: Vec::new(),
                idle: Vec::new(),
            });
        }
        let group = groups.last_mut().expect("pushed above");
        let chain = &rules.tables[t].chains[c];
        let busy = !chain.rules.is_empty()
            || chain
                .base
                .as_ref()
                .is_some_and(|b| b.policy == Policy::Drop);
        if busy {
            group.busy.push(Unit::Chain(t, c));
        } else {
            group.idle.push((t, c));
        }
    }
    groups
}

impl Plan {
    pub(super) fn new(rules: &Ruleset, version: IpVersion) -> Plan {
        let hooks = [
            Hook::Output,
            Hook::Postrouting,
            Hook::Prerouting,
            Hook::Input,
        ]
        .into_iter()
        .map(|hook| {
            let (mut bases, mut nat) = (Vec::new(), Vec::new());
            for (ti, t) in rules.tables.iter().enumerate() {
                if !t.family.sees(version) {
                    continue;
                }
                for (ci, c) in t.chains.iter().enumerate() {
                    if let Some(b) = c.base.as_ref().filter(|b| b.hook == hook) {
                        let into = if b.chain_type == ChainType::Nat {
                            &mut nat
                        } else {
                            &mut bases
                        };
                        into.push((b.priority, backend_rank(t.backend), ti, ci));
                    }
                }
            }
            let mut groups = groups(rules, bases);
            let nat = self::groups(rules, nat);
            if !nat.is_empty() {
                // The nat chains take one place at the NAT priority; alone, or beside the
                // chains of that priority in an order no dump shows.
                let at = nat_priority(hook);
                let i = groups.partition_point(|g| g.priority < at);
                if groups.get(i).is_none_or(|g| g.priority != at) {
                    groups.insert(
                        i,
                        Group {
                            priority: at,
                            busy: Vec::new(),
                            idle: Vec::new(),
                        },
                    );
                }
                if nat.iter().any(|g| !g.busy.is_empty()) {
                    groups[i].busy.push(Unit::Nat(nat));
                } else {
                    groups[i].idle.extend(nat.into_iter().flat_map(|g| g.idle));
                }
            }
            (hook, groups)
        })
        .collect();
        let targets = rules
            .tables
            .iter()
            .map(|t| {
                if !t.family.sees(version) {
                    return Vec::new();
                }
                let index: HashMap<&str, usize> = t
                    .chains
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name.as_str(), i))
                    .collect();
                t.chains
                    .iter()
                    .map(|c| {
                        c.rules
                            .iter()
                            .map(|r| {
                                r.actions.iter().find_map(|a| match a {
                                    Action::Jump { chain } | Action::Goto { chain } => {
                                        Some(index.get(chain.as_str()).copied())
                                    }
                                    _ => None,
                                })?
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        Plan { hooks, targets }
    }
}

struct Walker<'a> {
    rules: &'a Ruleset,
    plan: &'a Plan,
    flow: &'a Flow,
    choices: &'a [bool],
    run: Run,
    pkt: Packet,
    budget: usize,
    /// Per base chain traversal, kept to reuse their memory: the return stack, and the
    /// chains on it or running (a jump into one is a loop).
    stack: Vec<(usize, usize)>,
    running: Vec<bool>,
}

impl Run {
    pub(super) fn execute(rules: &Ruleset, plan: &Plan, flow: &Flow, choices: &[bool]) -> Run {
        let mut w = Walker {
            rules,
            plan,
            stack: Vec::new(),
            running: Vec::new(),
            flow,
            choices,
            run: Run {
                visited: 0,
                decisions: Vec::new(),
                unknowns: Vec::new(),
                outcome: Outcome {
                    verdict: Verdict::Bypass,
                    redirect_port: None,
                },
                steps: Vec::with_capacity(16),
                nat_dst: None,
            },
            pkt: Packet::of(flow),
            budget: MAX_STEPS,
        };
        w.walk();
        w.run.visited = MAX_STEPS - w.budget;
        w.run
    }

    /// The step that decided the verdict: the mapping that captured, the drop, or for a
    /// bypass the last RETURN/ACCEPT that left a capturing nat table without a mapping.
    pub(super) fn deciding(&self, rules: &Ruleset) -> Option<usize> {
        let last = |pred: &dyn Fn(&StepRef) -> bool| self.steps.iter().rposition(pred);
        match self.outcome.verdict {
            Verdict::Captured => {
                last(&|s| matches!(s.effect, Effect::Redirect(..) | Effect::Dnat(..)))
            }
            Verdict::Dropped => last(&|s| {
                matches!(
                    s.effect,
                    Effect::Drop | Effect::Reject | Effect::Policy(Policy::Drop)
                )
            }),
            Verdict::Unknown => last(&|s| matches!(s.effect, Effect::UnknownTarget(_))),
            Verdict::Bypass => {
                let captures = |t: usize| rules.tables[t].captures();
                last(&|s| matches!(s.effect, Effect::Dnat(..)))
                    .or_else(|| last(&|s| s.effect == Effect::Notrack))
                    .or_else(|| {
                        last(&|s| {
                            s.nat
                                && captures(s.table)
                                && matches!(s.effect, Effect::Return | Effect::Accept)
                        })
                    })
                    .or_else(|| last(&|s| s.nat && captures(s.table)))
                    .or_else(|| last(&|s| s.nat))
            }
        }
    }
}

/// Where in the rules a step happens: table, chain, rule, and the hook of the nat base
/// chain it runs in (`None` outside nat chains).
#[derive(Clone, Copy)]
struct At {
    ti: usize,
    chain: usize,
    at: usize,
    nat: Option<Hook>,
}

/// Where evaluation goes after a rule's verdict.
enum Next {
    End(End),
    Return,
    Enter { target: usize, goto: bool },
}

/// The step a matching rule without a verdict leaves: it untracked the packet, set a mark
/// (with the marks as they are now), or only counted or logged.
fn continuing_effect(rule: &Rule, pkt: &Packet) -> Effect {
    if rule.actions.iter().any(|a| matches!(a, Action::Notrack)) {
        Effect::Notrack
    } else if rule.actions.iter().any(|a| matches!(a, Action::SetMark(_))) {
        Effect::SetMark(pkt.mark, pkt.ctmark)
    } else {
        Effect::Continue
    }
}

/// The source port after a source NAT. With a range, the kernel keeps the port where it is
/// in the range (and the connection's tuple unique), else picks one of the range; random
/// flags pick one always (of the range, or of any port); without either, the port stays.
/// A clash with an existing connection's tuple, which could also move a kept port, is not
/// modelled: the pod's own connections never share a source port.
fn nat_sport(from: SourcePort, ports: &NatPorts) -> SourcePort {
    let any = PortRange {
        start: 1,
        end: u16::MAX,
    };
    let within = |r: PortRange| match from {
        SourcePort::Bound(p) => r.contains(p),
        SourcePort::Ephemeral(e) => r.start <= e.start && e.end <= r.end,
    };
    let of = |r: PortRange| {
        if r.start == r.end {
            SourcePort::Bound(r.start)
        } else {
            SourcePort::Ephemeral(r)
        }
    };
    match ports.range {
        _ if ports.unknown => of(any),
        Some(r) if ports.randomized() || !within(r) => of(r),
        None if ports.randomized() => of(any),
        _ => from,
    }
}

/// A unit's first chain, where a decision about its place is recorded.
fn first_chain(unit: &Unit) -> (usize, usize) {
    match unit {
        Unit::Chain(t, c) => (*t, *c),
        Unit::Nat(groups) => groups
            .iter()
            .find_map(|g| g.busy.first().map(first_chain))
            .expect("a busy nat unit has a busy chain"),
    }
}

/// Backends at the same priority: legacy hooks register first when modules load at boot.
fn backend_rank(b: Backend) -> u8 {
    match b {
        Backend::IptablesLegacy => 0,
        Backend::IptablesNft => 1,
        Backend::Nftables => 2,
    }
}

impl Walker<'_> {
    fn walk(&mut self) {
        if !self.hooks(&[Hook::Output, Hook::Postrouting]) {
            return;
        }
        // A destination on this host loops back through lo: PREROUTING and INPUT run on
        // it (NAT is already bound, so nat chains do not), and TPROXY there captures it.
        let local = self.pkt.dst.is_loopback() || self.flow.local.contains(&self.pkt.dst);
        if local {
            self.pkt.looped = true;
            if !self.hooks(&[Hook::Prerouting, Hook::Input]) {
                return;
            }
        }
        if let Some(port) = self.pkt.tproxy {
            self.run.outcome = Outcome {
                verdict: Verdict::Captured,
                redirect_port: Some(port),
            };
        } else if self.pkt.dnat && local {
            // Redirected to another local port or address (a mapping to where the packet
            // was going anyway changes nothing: the app reaches what it asked for).
            self.run.outcome = Outcome {
                verdict: Verdict::Captured,
                redirect_port: Some(self.pkt.dport),
            };
        }
    }

    /// Runs every base chain of these hooks; false when the packet's fate is settled
    /// (dropped, or unknown).
    fn hooks(&mut self, hooks: &[Hook]) -> bool {
        let plan = self.plan;
        for (hook, groups) in plan.hooks.iter().filter(|(h, _)| hooks.contains(h)) {
            for group in groups {
                if !self.group(*hook, group) {
                    return false;
                }
            }
        }
        true
    }

    /// Runs one base chain; false when the packet's fate is settled.
    fn base(&mut self, hook: Hook, ti: usize, ci: usize) -> bool {
        let base = self.rules.tables[ti].chains[ci]
            .base
            .as_ref()
            .expect("base chain");
        let nat = base.chain_type == ChainType::Nat;
        if nat {
            let mapped = match hook {
                Hook::Output => self.pkt.dst_mapped,
                Hook::Postrouting => self.pkt.src_mapped,
                // Both manips were bound on the way out.
                _ => true,
            };
            // Untracked packets skip NAT; a mapping set by an earlier nat chain wins.
            if self.pkt.untracked || mapped {
                return true;
            }
        }
        match self.base_chain(ti, ci, nat.then_some(hook)) {
            End::Accept => true,
            End::Drop => {
                self.run.outcome.verdict = Verdict::Dropped;
                false
            }
            End::Unknown => {
                self.run.outcome.verdict = Verdict::Unknown;
                false
            }
        }
    }

    /// Runs one base chain and the chains it enters, rule by rule, to its end.
    fn base_chain(&mut self, ti: usize, ci: usize, nat: Option<Hook>) -> End {
        let table = &self.rules.tables[ti];
        self.stack.clear();
        self.running.clear();
        self.running.resize(table.chains.len(), false);
        self.running[ci] = true;
        let (mut chain, mut next) = (ci, 0usize);
        loop {
            if self.budget == 0 {
                return self.unknown_end(
                    ti,
                    chain,
                    next,
                    What::Text("rule loop (step limit reached)".into()),
                );
            }
            self.budget -= 1;
            let rules = &table.chains[chain].rules;
            let at = next;
            next += 1;
            let after = match rules.get(at) {
                None => Next::Return,
                Some(rule) if !self.matches(ti, chain, at, rule) => continue,
                Some(rule) => match self.apply(rule) {
                    Some((k, verdict)) => self.verdict(At { ti, chain, at, nat }, k, verdict),
                    None => {
                        let effect = continuing_effect(rule, &self.pkt);
                        self.step(At { ti, chain, at, nat }, effect);
                        continue;
                    }
                },
            };
            match after {
                Next::End(end) => return end,
                Next::Return => {
                    self.running[chain] = false;
                    match self.stack.pop() {
                        Some(frame) => (chain, next) = frame,
                        None => return self.policy(ti, ci, nat == Some(Hook::Output)),
                    }
                }
                Next::Enter { target, goto } => {
                    // Entering a chain that is still running is a loop, which the kernel
                    // refuses to load; only an offline dump can hold one. Any other
                    // nesting is as deep as the kernel allowed (x_tables: one level per
                    // chain; nf_tables: 16).
                    if !goto && self.running[target] {
                        return self.unknown_end(
                            ti,
                            chain,
                            at,
                            What::Text(
                                "a jump loop: this chain is entered again while it runs (the kernel refuses such rules)"
                                    .into(),
                            ),
                        );
                    }
                    if goto {
                        self.running[chain] = false;
                    } else {
                        self.stack.push((chain, next));
                    }
                    self.running[target] = true;
                    (chain, next) = (target, 0);
                }
            }
        }
    }

    /// Applies a matching rule's actions that do not decide (marks, notrack, counters) in
    /// order, up to its verdict: the first that decides, with its index.
    fn apply<'r>(&mut self, rule: &'r Rule) -> Option<(usize, &'r Action)> {
        for (k, action) in rule.actions.iter().enumerate() {
            match action {
                Action::SetMark(set) => {
                    let (m, ct) = (self.pkt.mark, self.pkt.ctmark);
                    match set.reg {
                        MarkReg::Mark => self.pkt.mark = set.apply(m, m, ct),
                        MarkReg::CtMark => self.pkt.ctmark = set.apply(ct, m, ct),
                    }
                }
                Action::Notrack => self.pkt.untracked = true,
                Action::Continue { .. } => {}
                // In an inet table `dnat ip to` does nothing to IPv6 packets (and the
                // reverse): the kernel's nft_nat_inet_eval skips it and the rule goes on.
                Action::Dnat { addr: Some(a), .. }
                | Action::Snat {
                    addr: NatSource::To(a),
                    ..
                }
                | Action::Netmap { to: a, .. }
                    if IpVersion::of(a) != self.flow.version => {}
                other => return Some((k, other)),
            }
        }
        None
    }

    fn step(&mut self, at: At, effect: Effect) {
        self.run.steps.push(StepRef {
            table: at.ti,
            chain: at.chain,
            rule: Some(at.at),
            effect,
            nat: at.nat == Some(Hook::Output),
        });
    }

    /// What a rule's verdict (its action `k`) does: ends the base chain, returns from the
    /// chain, or enters another.
    fn verdict(&mut self, at: At, k: usize, verdict: &Action) -> Next {
        let At {
            ti,
            chain,
            at: ri,
            nat,
        } = at;
        match verdict {
            Action::Accept => {
                self.step(at, Effect::Accept);
                Next::End(End::Accept)
            }
            Action::Drop => {
                self.step(at, Effect::Drop);
                Next::End(End::Drop)
            }
            Action::Reject => {
                self.step(at, Effect::Reject);
                Next::End(End::Drop)
            }
            Action::Return => {
                self.step(at, Effect::Return);
                Next::Return
            }
            Action::Jump { .. } | Action::Goto { .. } => {
                let goto = matches!(verdict, Action::Goto { .. });
                self.step(at, if goto { Effect::Goto } else { Effect::Jump });
                match self.plan.targets[ti][chain][ri] {
                    Some(target) => Next::Enter { target, goto },
                    None => Next::End(self.unknown_end(
                        ti,
                        chain,
                        ri,
                        What::Text("jump to a chain that does not exist".into()),
                    )),
                }
            }
            Action::Redirect { ports } if nat == Some(Hook::Output) => {
                let to = (
                    self.flow.version.loopback(),
                    ports.map_or(self.pkt.dport, |p| p.start),
                );
                self.step(at, Effect::Redirect(to.0, to.1));
                self.map_dst(to);
                Next::End(End::Accept)
            }
            Action::Dnat { addr, ports } if nat == Some(Hook::Output) => {
                let to = (
                    addr.unwrap_or(self.pkt.dst),
                    ports.map_or(self.pkt.dport, |p| p.start),
                );
                self.step(at, Effect::Dnat(to.0, to.1));
                self.map_dst(to);
                Next::End(End::Accept)
            }
            Action::Netmap { to, mask } if nat == Some(Hook::Output) => {
                let Some(dst) = netmap(self.pkt.dst, *to, *mask) else {
                    return Next::End(self.unknown_end(
                        ti,
                        chain,
                        ri,
                        What::Text("NETMAP of another family".into()),
                    ));
                };
                self.step(at, Effect::Dnat(dst, self.pkt.dport));
                self.map_dst((dst, self.pkt.dport));
                Next::End(End::Accept)
            }
            Action::Netmap { to, mask } if nat == Some(Hook::Postrouting) => {
                let src = self.pkt.src.and_then(|s| netmap(s, *to, *mask));
                let changed = self.pkt.src.zip(src).map(|(a, b)| a != b);
                self.map_src(src, changed, &NatPorts::default());
                self.step(at, Effect::Snat(self.pkt.src, self.pkt.sport));
                Next::End(End::Accept)
            }
            Action::Snat { addr, ports } if nat == Some(Hook::Postrouting) => {
                let (src, addr_changed) = match addr {
                    NatSource::Kept => (self.pkt.src, Some(false)),
                    NatSource::To(a) => (Some(*a), self.pkt.src.map(|s| s != *a)),
                    NatSource::Range(..) | NatSource::Unknown => (None, None),
                };
                self.map_src(src, addr_changed, ports);
                self.step(at, Effect::Snat(self.pkt.src, self.pkt.sport));
                Next::End(End::Accept)
            }
            Action::Masquerade { ports } if nat == Some(Hook::Postrouting) => {
                // The address routing picks on the way out, which only the kernel knows
                // (on lo, where 127.0.0.1 is not eligible, one of another device).
                self.map_src(None, None, ports);
                self.step(at, Effect::Masquerade(self.pkt.sport));
                Next::End(End::Accept)
            }
            // TPROXY hands the looped-back packet to the proxy's transparent socket
            // (assumed listening, as the mesh runs it); evaluation of INPUT goes on.
            Action::Tproxy { port } if self.pkt.looped => {
                let port = port.unwrap_or(self.pkt.dport);
                self.step(at, Effect::Tproxy(port));
                self.pkt.tproxy = Some(port);
                Next::End(End::Accept)
            }
            // NAT targets outside nat chains are refused by the kernel, and TPROXY works
            // only in PREROUTING: neither can appear here in a loaded ruleset.
            Action::Tproxy { .. }
            | Action::Redirect { .. }
            | Action::Dnat { .. }
            | Action::Snat { .. }
            | Action::Masquerade { .. }
            | Action::Netmap { .. } => {
                let what = format!("{verdict:?} outside the nat chains its hook allows");
                self.step(at, Effect::UnknownTarget(what.clone()));
                Next::End(self.unknown_end(ti, chain, ri, What::Text(what)))
            }
            Action::Unknown { name } => {
                self.step(at, Effect::UnknownTarget(name.clone()));
                Next::End(self.unknown_end(ti, chain, ri, What::Target(k)))
            }
            Action::SetMark(_) | Action::Notrack | Action::Continue { .. } => {
                unreachable!("not verdicts")
            }
        }
    }

    /// Runs a group's busy units in the order explored for them, then its idle chains;
    /// false when the packet's fate is settled.
    fn group(&mut self, hook: Hook, group: &Group) -> bool {
        let order = self.order_ties(group);
        for unit in order.iter() {
            let goes_on = match unit {
                Unit::Chain(t, c) => self.base(hook, *t, *c),
                Unit::Nat(inner) => inner.iter().all(|g| self.group(hook, g)),
            };
            if !goes_on {
                return false;
            }
        }
        group.idle.iter().all(|&(t, c)| self.base(hook, t, c))
    }

    /// What runs at one place, as a decision names it.
    fn unit_name(&self, unit: &Unit, priority: i32) -> String {
        match unit {
            Unit::Chain(t, c) => {
                let table = &self.rules.tables[*t];
                format!(
                    "{} {} {}/{}",
                    table.backend.name(),
                    table.family.name(),
                    table.name,
                    table.chains[*c].name
                )
            }
            Unit::Nat(_) => format!("the nat chains (the NAT hook at priority {priority})"),
        }
    }

    /// Units on one hook with the same priority run in registration order, newest first,
    /// which no dump shows. When two or more have rules, every order is explored (a
    /// decision per place), so the verdict is unknown only if order matters.
    fn order_ties<'g>(&mut self, group: &'g Group) -> Cow<'g, [Unit]> {
        if group.busy.len() < 2 {
            return Cow::Borrowed(&group.busy);
        }
        let mut busy = group.busy.clone();
        let mut out = Vec::with_capacity(busy.len());
        while busy.len() > 1 {
            let (t, c) = first_chain(&busy[0]);
            let names: Vec<String> = busy
                .iter()
                .map(|u| self.unit_name(u, group.priority))
                .collect();
            let what = format!(
                "order of chains at priority {}: {} (registration order, not shown by dumps)",
                group.priority,
                names.join(", ")
            );
            let pick = (1..busy.len()).find(|_| {
                self.decide(Unknown {
                    table: t,
                    chain: c,
                    rule: None,
                    what: What::Text(what.clone()),
                })
            });
            out.push(busy.remove(pick.unwrap_or(0)));
        }
        out.extend(busy);
        Cow::Owned(out)
    }

    /// Consumes the next choice for something unknown (false when none was given).
    fn decide(&mut self, u: Unknown) -> bool {
        let choice = self
            .choices
            .get(self.run.decisions.len())
            .copied()
            .unwrap_or(false);
        self.run.decisions.push(choice);
        if !self.run.unknowns.contains(&u) {
            self.run.unknowns.push(u);
        }
        choice
    }

    fn map_dst(&mut self, (addr, port): (IpAddr, u16)) {
        // Marked DNAT only if the mapping changes the destination, as the kernel marks it.
        self.pkt.dnat = (addr, port) != (self.pkt.dst, self.pkt.dport);
        self.pkt.dst = addr;
        self.pkt.dport = port;
        self.pkt.dst_mapped = true;
        // The kernel re-routes after a NAT change: local destinations leave through lo.
        if addr.is_loopback() || self.flow.local.contains(&addr) {
            self.pkt.oif = "lo".into();
        }
        self.run.nat_dst = Some((addr, port));
    }

    /// A source NAT: the source becomes `src` (`None`: not known here), its port as
    /// [`nat_sport`] says; the mapping is bound (later nat chains on the hook do not run),
    /// and the connection is marked SNAT only if the address or the port changed, as the
    /// kernel marks it (`addr_changed`: `None` when that is not known).
    fn map_src(&mut self, src: Option<IpAddr>, addr_changed: Option<bool>, ports: &NatPorts) {
        let sport = nat_sport(self.pkt.sport, ports);
        let port_changed = match (self.pkt.sport, sport) {
            (a, b) if a == b && !(ports.randomized() || ports.unknown) => Some(false),
            (SourcePort::Bound(a), SourcePort::Bound(b)) => Some(a != b),
            (SourcePort::Ephemeral(e), SourcePort::Bound(p)) if !e.contains(p) => Some(true),
            (SourcePort::Bound(p), SourcePort::Ephemeral(r)) if !r.contains(p) => Some(true),
            _ => None,
        };
        self.pkt.snat = match (addr_changed, port_changed) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        };
        self.pkt.src = src;
        self.pkt.sport = sport;
        self.pkt.src_mapped = true;
    }

    fn policy(&mut self, ti: usize, ci: usize, nat: bool) -> End {
        let policy = self.rules.tables[ti].chains[ci]
            .base
            .as_ref()
            .map_or(Policy::Accept, |b| b.policy);
        self.run.steps.push(StepRef {
            table: ti,
            chain: ci,
            rule: None,
            effect: Effect::Policy(policy),
            nat,
        });
        match policy {
            Policy::Accept => End::Accept,
            Policy::Drop => End::Drop,
        }
    }

    fn unknown_end(&mut self, table: usize, chain: usize, rule: usize, what: What) -> End {
        self.run.unknowns.push(Unknown {
            table,
            chain,
            rule: Some(rule),
            what,
        });
        End::Unknown
    }

    /// All matches of a rule; definite ones first, so unknown ones only fork when they matter.
    fn matches(&mut self, ti: usize, ci: usize, ri: usize, rule: &Rule) -> bool {
        let mut unknown = Vec::new();
        for (k, m) in rule.matches.iter().enumerate() {
            match matcher::eval(m, self.flow, &self.pkt) {
                Tri::False => return false,
                Tri::True => {}
                Tri::Unknown => unknown.push(k),
            }
        }
        for k in unknown {
            let choice = self.decide(Unknown {
                table: ti,
                chain: ci,
                rule: Some(ri),
                what: What::Match(k),
            });
            if !choice {
                return false;
            }
        }
        true
    }
}
