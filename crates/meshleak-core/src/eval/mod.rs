//! Evaluates the first packet of a locally generated connection along the OUTPUT and
//! POSTROUTING hooks exactly as the kernel orders them, and explains the result.
//!
//! Kernel facts this follows (each has a differential test against the real kernel):
//! every base chain on a hook runs, in priority order, legacy and nft tables alike; a nat
//! chain is skipped once an earlier one set a mapping, so RETURN/ACCEPT in one nat table
//! does not stop a REDIRECT in another; later chains see the destination after NAT; owner
//! matches compare the socket's fsuid/fsgid.

pub mod matcher;
mod run;

use std::net::IpAddr;

use serde::Serialize;

use crate::model::{IpVersion, Ruleset, Test};
use crate::range::PortRange;
pub use matcher::Tri;
pub use run::{Effect, StepRef};

/// The credentials a socket was created with (what owner matches see).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups; only `--suppl-groups` matches look at them.
    pub groups: Vec<u32>,
}

/// What is known of a connection's first packet before any rule touches it.
#[derive(Clone, Debug)]
pub struct Flow {
    pub version: IpVersion,
    pub proto: u8,
    /// `None`: not known (tests on it are unknown).
    pub src: Option<IpAddr>,
    pub dst: IpAddr,
    pub sport: SourcePort,
    pub dport: u16,
    pub oif: String,
    pub identity: Identity,
    /// The socket's SO_MARK, the packet's initial mark.
    pub mark: u32,
    /// The namespace's own addresses (route type LOCAL), besides loopback.
    pub local: Vec<IpAddr>,
}

/// A connection's source port: bound by the app, or an ephemeral port the kernel picks
/// from `net.ipv4.ip_local_port_range`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourcePort {
    Bound(u16),
    Ephemeral(PortRange),
}

impl SourcePort {
    /// Linux's default `ip_local_port_range`.
    pub const DEFAULT_EPHEMERAL: SourcePort = SourcePort::Ephemeral(PortRange {
        start: 32768,
        end: 60999,
    });
}

/// The packet's state as rules change it.
#[derive(Clone, Debug)]
pub struct Packet {
    /// The source address as rules see it: the flow's until a source NAT maps it (`None`:
    /// not known).
    pub src: Option<IpAddr>,
    pub sport: SourcePort,
    pub dst: IpAddr,
    pub dport: u16,
    pub oif: String,
    pub mark: u32,
    pub ctmark: u32,
    pub untracked: bool,
    /// A destination or source mapping is bound: later nat chains on the hook do not run.
    pub dst_mapped: bool,
    pub src_mapped: bool,
    /// The connection's DNAT and SNAT status (conntrack's IPS_DST_NAT, IPS_SRC_NAT): set
    /// only when a mapping changed the address or port (`snat` `None`: not known whether).
    pub dnat: bool,
    pub snat: Option<bool>,
    /// Back in through lo to a local destination (PREROUTING/INPUT): no output device,
    /// input device `lo`.
    pub looped: bool,
    /// The port a TPROXY rule handed the packet to.
    pub tproxy: Option<u16>,
}

impl Packet {
    /// The flow's first packet before any rule has touched it.
    pub fn of(flow: &Flow) -> Packet {
        Packet {
            src: flow.src,
            sport: flow.sport,
            dst: flow.dst,
            dport: flow.dport,
            oif: flow.oif.clone(),
            mark: flow.mark,
            ctmark: 0,
            untracked: false,
            dst_mapped: false,
            src_mapped: false,
            dnat: false,
            snat: Some(false),
            looped: false,
            tproxy: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Redirected or DNATed to a local port (the proxy's).
    Captured,
    /// Leaves with its own destination (or is DNATed elsewhere): the proxy never sees it.
    Bypass,
    Dropped,
    /// An unmodelled match or target decides between different outcomes.
    Unknown,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Captured => "captured",
            Verdict::Bypass => "bypass",
            Verdict::Dropped => "dropped",
            Verdict::Unknown => "unknown",
        }
    }
}

/// One possible end of the packet's path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Outcome {
    pub verdict: Verdict,
    /// The local port a captured connection reaches.
    pub redirect_port: Option<u16>,
}

/// The result of evaluating one flow.
#[derive(Clone, Debug)]
pub struct Trace {
    pub outcome: Outcome,
    /// The path of the run where every unknown match was taken as not matching.
    pub path: Vec<StepRef>,
    /// Index into `path` of the step that decided the verdict.
    pub deciding: Option<usize>,
    /// With `Unknown`: the different outcomes possible, and the matches or targets that
    /// choose between them, as (table index, chain index, rule index, what is unknown).
    pub possible: Vec<Outcome>,
    pub unknowns: Vec<UnknownAt>,
    /// Destination after NAT, when NAT changed it.
    pub nat_dst: Option<(IpAddr, u16)>,
    /// Rules visited over all runs: what this trace cost.
    pub visited: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownAt {
    pub table: usize,
    pub chain: usize,
    /// `None`: the chain as a whole (e.g. its place among same-priority chains).
    pub rule: Option<usize>,
    pub what: String,
}

/// Groups identities that `rules` cannot tell apart: for each identity, the index of its
/// class, and for each class, the first identity in it. Every owner test of the rules gives
/// the same answer for identities of one class, so one trace per class stands for all.
pub(crate) fn identity_classes<'a>(
    rules: &Ruleset,
    ids: &'a [Identity],
) -> (Vec<&'a Identity>, Vec<usize>) {
    let tests: Vec<&Test> = rules
        .tables
        .iter()
        .flat_map(|t| &t.chains)
        .flat_map(|c| &c.rules)
        .flat_map(|r| &r.matches)
        .map(|m| &m.test)
        .collect();
    let mut signatures: Vec<Vec<bool>> = Vec::new();
    let mut reps = Vec::new();
    let class_of = ids
        .iter()
        .map(|id| {
            let sig: Vec<bool> = tests.iter().filter_map(|t| matcher::owner(t, id)).collect();
            match signatures.iter().position(|s| *s == sig) {
                Some(c) => c,
                None => {
                    signatures.push(sig);
                    reps.push(id);
                    reps.len() - 1
                }
            }
        })
        .collect();
    (reps, class_of)
}

/// How many runs the evaluator makes at most when unknown matches fork it.
const MAX_RUNS: usize = 256;

/// Evaluates `flow` against `rules`, planning only its own family's chains (a [`Tracer`]
/// plans both, once, for many flows).
pub fn trace(rules: &Ruleset, flow: &Flow) -> Trace {
    run_all(rules, &run::Plan::new(rules, flow.version), flow)
}

/// Evaluates many flows against one ruleset, ordering its base chains once.
pub struct Tracer<'a> {
    rules: &'a Ruleset,
    v4: run::Plan,
    v6: run::Plan,
}

impl<'a> Tracer<'a> {
    pub fn new(rules: &'a Ruleset) -> Tracer<'a> {
        Tracer {
            rules,
            v4: run::Plan::new(rules, IpVersion::V4),
            v6: run::Plan::new(rules, IpVersion::V6),
        }
    }

    /// Evaluates `flow`.
    pub fn trace(&self, flow: &Flow) -> Trace {
        let plan = match flow.version {
            IpVersion::V4 => &self.v4,
            IpVersion::V6 => &self.v6,
        };
        run_all(self.rules, plan, flow)
    }
}

/// Every run `flow` can take when unknown matches fork it, and the outcome they agree on.
fn run_all(rules: &Ruleset, plan: &run::Plan, flow: &Flow) -> Trace {
    let mut pending: Vec<Vec<bool>> = vec![Vec::new()];
    let mut first: Option<run::Run> = None;
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut unknowns: Vec<run::Unknown> = Vec::new();
    let mut runs = 0;
    let mut visited = 0;
    while let Some(choices) = pending.pop() {
        runs += 1;
        if runs > MAX_RUNS {
            outcomes.push(Outcome {
                verdict: Verdict::Unknown,
                redirect_port: None,
            });
            break;
        }
        let r = run::Run::execute(rules, plan, flow, &choices);
        visited += r.visited;
        for j in choices.len()..r.decisions.len() {
            let mut next = r.decisions[..j].to_vec();
            next.push(true);
            pending.push(next);
        }
        for u in &r.unknowns {
            if !unknowns.contains(u) {
                unknowns.push(u.clone());
            }
        }
        if !outcomes.contains(&r.outcome) {
            outcomes.push(r.outcome);
        }
        first.get_or_insert(r);
    }
    let first = first.expect("at least one run");
    outcomes.sort();
    let outcome = match outcomes.as_slice() {
        [only] => *only,
        _ => Outcome {
            verdict: Verdict::Unknown,
            redirect_port: None,
        },
    };
    let decided = outcome.verdict != Verdict::Unknown || outcomes.len() == 1;
    Trace {
        outcome,
        deciding: first.deciding(rules),
        path: first.steps,
        possible: if decided { Vec::new() } else { outcomes },
        unknowns: if outcome.verdict == Verdict::Unknown {
            unknowns.iter().map(|u| u.cite(rules)).collect()
        } else {
            Vec::new()
        },
        nat_dst: first.nat_dst,
        visited,
    }
}

#[cfg(test)]
mod tests;
