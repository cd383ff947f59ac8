//! Identity analysis: for every socket identity, which part of the traffic that the mesh
//! captures for an ordinary app escapes for this identity, and which rules decide it.
//!
//! "Ordinary app" is the reference identity: a uid and gid that no owner rule names, no
//! supplementary groups, mark 0. What is captured for it is what the mesh means to capture.

mod bits;
mod exemptions;
mod regions;
mod space;

use std::collections::HashMap;

use serde::Serialize;

use crate::eval::{self, Flow, Identity, SourcePort, Verdict};
use crate::explain::{self, RuleRef, UnknownCite};
use crate::model::{IpVersion, Ruleset, Test};
pub use exemptions::{Exemption, ExemptionKind};
use regions::Coord;
pub use regions::Region;
use space::{Space, has_ports, routable};

/// More cells than this per family is refused rather than left to run for minutes.
pub(crate) const MAX_CELLS: usize = 2_000_000;

/// An identity's verdict. Cells an ordinary app's fate is unknown in count as maybe
/// captured: they never make a verdict `unmeshed`, and traffic escaping there is unknown,
/// not an escape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityVerdict {
    /// Nothing is captured even for an ordinary app, and nothing of this identity's own
    /// traffic is (or may be) captured either: there is no working capture for it.
    Unmeshed,
    /// Everything that is or may be captured for an ordinary app definitely escapes for
    /// this identity.
    Bypass,
    /// Some of it definitely escapes.
    Partial,
    /// None of it escapes.
    Captured,
    /// Unmodelled rules decide some of it and nothing definitely escapes.
    Unknown,
}

#[derive(Clone, Debug, Serialize)]
pub struct IdentityReport {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub verdict: IdentityVerdict,
    /// The rules that let this identity's traffic escape.
    pub rules: Vec<RuleRef>,
    /// Captured-for-everyone traffic that escapes for this identity.
    pub escapes: Vec<Region>,
    /// Captured-for-everyone traffic whose fate for this identity is unknown.
    pub unknown: Vec<Region>,
    /// This identity's traffic that is captured, whatever an ordinary app's fate (rules
    /// that capture only some identities capture those).
    pub captured: Vec<Region>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Analysis {
    pub reference_identity: Identity,
    pub exemptions: Vec<Exemption>,
    /// Traffic of the reference identity that is not captured, by deciding rule.
    pub escapes: Vec<Region>,
    pub identities: Vec<IdentityReport>,
    /// The families and protocols on which an ordinary app's traffic is captured at all.
    pub captured_on: Vec<CapturedOn>,
    /// The families and protocols on which nothing is definitely captured for an ordinary
    /// app, but an unmodelled rule decides whether some of it is.
    pub undecided_on: Vec<CapturedOn>,
    /// What meshleak does not model and decides some verdict: where, and what.
    pub unknowns: Vec<UnknownCite>,
    /// What this analysis cost: cases traced times identities times rules. Callers that
    /// re-analyse variants (foreign-rule) budget with it.
    #[serde(skip)]
    pub work: usize,
    /// The protocols analysed, per family: those the rules name, TCP, UDP, SCTP and ICMP.
    /// Another protocol's traffic is in no region.
    #[serde(skip)]
    pub protocols: Vec<(IpVersion, u8)>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CapturedOn {
    pub family: &'static str,
    pub protocol: String,
}

/// `ipv4 tcp`.
impl std::fmt::Display for CapturedOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.family, self.protocol)
    }
}

/// More rule visits than this per family is refused rather than left to run for minutes:
/// each visit is one rule tried against one case (~35 ns), and unknown matches fork a case
/// into up to 256 runs. Real mesh rule sets take well under a million (Istio: 64,000).
pub(crate) const MAX_VISITS: usize = 50_000_000;

/// A rule set too large to analyse whole; `trace` still answers single flows.
#[derive(Debug, thiserror::Error)]
pub enum TooLarge {
    #[error(
        "the {family} rules split traffic into {cells} cases, more than meshleak analyses ({max}); use `trace` for single flows"
    )]
    Cells {
        family: &'static str,
        cells: usize,
        max: usize,
    },
    #[error(
        "the {family} rules take more than {max} rule evaluations to analyse (unknown matches fork each case into every way they could go); use `trace` for single flows"
    )]
    Visits { family: &'static str, max: usize },
}

/// One identity's result in a cell: the verdict and the deciding rule (index into cites).
type CellResult = (Verdict, Option<usize>);

/// Per family: each cell's coordinates and, per identity (reference first), its outcome.
struct Evaluated {
    space: Space,
    cells: Vec<(Coord, Vec<CellResult>)>,
}

pub fn analyze(rules: &Ruleset, identities: &[Identity]) -> Result<Analysis, TooLarge> {
    let reference = reference_identity(rules);
    let mut all = vec![reference.clone()];
    all.extend(identities.iter().cloned());
    // One trace per class of identities the rules cannot tell apart; the reference is
    // class 0. Cells hold one result per class.
    let (classes, class_of) = eval::identity_classes(rules, &all);
    let tracer = eval::Tracer::new(rules);
    let mut cites = Cites::default();
    let mut families = Vec::new();
    for version in [IpVersion::V4, IpVersion::V6] {
        families.push(evaluate(rules, &tracer, version, &classes, &mut cites)?);
    }

    let mut escapes = Vec::new();
    for f in &families {
        let cells: Vec<_> = f
            .cells
            .iter()
            .filter(|(_, r)| r[0].0 != Verdict::Captured)
            .map(|(c, r)| (*c, r[0].0, r[0].1))
            .collect();
        escapes.extend(regions::merge(&f.space, &cells, &cites.list));
    }

    let mut by_class: HashMap<usize, IdentityReport> = HashMap::new();
    let reports = identities
        .iter()
        .zip(&class_of[1..])
        .map(|(id, &class)| {
            let report = by_class
                .entry(class)
                .or_insert_with(|| identity_report(id, class, &families, &cites.list));
            IdentityReport {
                uid: id.uid,
                gid: id.gid,
                groups: id.groups.clone(),
                ..report.clone()
            }
        })
        .collect();

    let coverage = families_coverage(&families);
    let on = |want: Coverage| {
        coverage
            .iter()
            .filter(|(_, _, c)| *c == want)
            .map(|(v, p, _)| CapturedOn {
                family: v.family().name(),
                protocol: crate::model::proto_name(*p),
            })
            .collect()
    };
    let (captured_on, undecided_on) = (on(Coverage::Captured), on(Coverage::Undecided));
    let rule_count: usize = rules
        .tables
        .iter()
        .flat_map(|t| &t.chains)
        .map(|c| c.rules.len() + 1)
        .sum();
    let cells: usize = families.iter().map(|f| f.cells.len()).sum();
    let protocols = families
        .iter()
        .flat_map(|f| f.space.protos.iter().map(|p| (f.space.version, *p)))
        .collect();
    Ok(Analysis {
        protocols,
        work: cells * classes.len() * rule_count,
        captured_on,
        undecided_on,
        unknowns: cites.unknowns,
        exemptions: exemptions::find(rules, &coverage),
        reference_identity: reference,
        escapes,
        identities: reports,
    })
}

/// The report of `id`, whose results are those of identity class `idx`. Only cells where
/// an ordinary app is (or may be) captured count: what escapes for everyone is a property
/// of the rules, not of the identity.
fn identity_report(
    id: &Identity,
    idx: usize,
    families: &[Evaluated],
    cites: &[RuleRef],
) -> IdentityReport {
    let (mut escapes, mut unknown) = (Vec::new(), Vec::new());
    // Cells where an ordinary app is captured, or may be; of those, the ones that
    // definitely escape for this identity.
    let (mut captured_cells, mut maybe_cells, mut escaping_cells, mut leaving_cells) =
        (0usize, 0usize, 0usize, 0usize);
    // Where this identity's own traffic is captured (or may be), whatever the reference's
    // fate: rules that capture only some identities (opt-in) capture those.
    let (mut own_captured, mut own_maybe) = (0usize, 0usize);
    let mut captured = Vec::new();
    let mut rules: Vec<RuleRef> = Vec::new();
    // What leaves the fate of this identity's traffic unknown, cited when nothing escapes.
    let mut unknown_rules: Vec<RuleRef> = Vec::new();
    for f in families {
        let mut esc = Vec::new();
        let mut unk = Vec::new();
        let mut cap = Vec::new();
        for (c, r) in &f.cells {
            match r[idx] {
                (Verdict::Captured, rule) => {
                    own_captured += 1;
                    cap.push((*c, Verdict::Captured, rule));
                }
                (Verdict::Unknown, _) => own_maybe += 1,
                _ => {}
            }
            let reference = r[0].0;
            match reference {
                Verdict::Captured => captured_cells += 1,
                Verdict::Unknown => maybe_cells += 1,
                Verdict::Bypass | Verdict::Dropped => continue,
            }
            let (verdict, rule) = r[idx];
            match (reference, verdict) {
                (Verdict::Captured, Verdict::Bypass) => {
                    escaping_cells += 1;
                    leaving_cells += 1;
                    esc.push((*c, verdict, rule));
                    cite_once(&mut rules, rule, cites);
                }
                // It leaves uncaptured where an ordinary app's fate is unknown: whether
                // that is an escape from the mesh is unknown too.
                (_, Verdict::Bypass) => {
                    leaving_cells += 1;
                    unk.push((*c, verdict, rule));
                    cite_once(&mut rules, rule, cites);
                }
                (_, Verdict::Unknown) => {
                    unk.push((*c, verdict, rule));
                    cite_once(&mut unknown_rules, rule, cites);
                }
                (_, Verdict::Captured | Verdict::Dropped) => {}
            }
        }
        captured.extend(regions::merge(&f.space, &cap, cites));
        escapes.extend(regions::merge(&f.space, &esc, cites));
        unknown.extend(regions::merge(&f.space, &unk, cites));
    }
    let relevant = captured_cells + maybe_cells;
    let verdict = if relevant == 0 {
        // Nothing is captured for an ordinary app: this identity's verdict is what the
        // rules capture of its own traffic (see `captured`).
        if own_captured > 0 {
            IdentityVerdict::Captured
        } else if own_maybe > 0 {
            IdentityVerdict::Unknown
        } else {
            IdentityVerdict::Unmeshed
        }
    } else if leaving_cells == relevant {
        IdentityVerdict::Bypass
    } else if escaping_cells > 0 {
        IdentityVerdict::Partial
    } else if !unknown.is_empty() {
        IdentityVerdict::Unknown
    } else {
        IdentityVerdict::Captured
    };
    match verdict {
        IdentityVerdict::Bypass => unknown.clear(),
        IdentityVerdict::Unknown if rules.is_empty() => rules = unknown_rules,
        _ => {}
    }
    IdentityReport {
        uid: id.uid,
        gid: id.gid,
        groups: id.groups.clone(),
        verdict,
        rules,
        escapes,
        unknown,
        captured,
    }
}

/// Adds the citation of `rule` (an index into `cites`) to `list`, once.
fn cite_once(list: &mut Vec<RuleRef>, rule: Option<usize>, cites: &[RuleRef]) {
    if let Some(cite) = rule.map(|i| &cites[i])
        && !list.contains(cite)
    {
        list.push(cite.clone());
    }
}

/// Deciding rules, interned so cells refer to them by index, and every unmodelled rule
/// that left some cell's verdict unknown.
#[derive(Default)]
struct Cites {
    list: Vec<RuleRef>,
    index: HashMap<(usize, usize, Option<usize>), usize>,
    unknowns: Vec<UnknownCite>,
    seen: std::collections::HashSet<(usize, usize, Option<usize>, String)>,
}

impl Cites {
    /// The index of a rule's citation, interned.
    fn cite(&mut self, rules: &Ruleset, (t, c, r): (usize, usize, Option<usize>)) -> usize {
        *self.index.entry((t, c, r)).or_insert_with(|| {
            self.list.push(explain::rule_ref(rules, t, c, r));
            self.list.len() - 1
        })
    }

    /// Keeps what a trace could not decide (each once).
    fn unknown(&mut self, rules: &Ruleset, u: &eval::UnknownAt) {
        if self.seen.insert((u.table, u.chain, u.rule, u.what.clone())) {
            self.unknowns.push(explain::unknown(rules, u));
        }
    }
}

fn evaluate(
    rules: &Ruleset,
    tracer: &eval::Tracer,
    version: IpVersion,
    ids: &[&Identity],
    cites: &mut Cites,
) -> Result<Evaluated, TooLarge> {
    let space = Space::build(rules, version);
    let size = space.size();
    if size > MAX_CELLS {
        return Err(TooLarge::Cells {
            family: version.family().name(),
            cells: size,
            max: MAX_CELLS,
        });
    }
    // One flow per identity, its packet fields rewritten for each cell: no allocation
    // per trace for the identity and device name.
    let unspecified = space.addr(0);
    let mut flows: Vec<Flow> = ids
        .iter()
        .map(|id| Flow {
            version,
            proto: 0,
            src: Some(unspecified),
            dst: unspecified,
            sport: SourcePort::Bound(0),
            dport: 0,
            oif: String::new(),
            identity: (*id).clone(),
            mark: 0,
            local: Vec::new(),
        })
        .collect();
    let mut visits = 0usize;
    let mut cells = Vec::with_capacity(size);
    for (pi, &proto) in space.protos.iter().enumerate() {
        let (sports, dports) = if has_ports(proto) {
            (space.sport.len(), space.dport.len())
        } else {
            (1, 1)
        };
        for (oi, oif) in space.oifs.iter().enumerate() {
            for si in 0..space.src.len() {
                let src = space.addr(space.src.starts[si]);
                for di in 0..space.dst.len() {
                    let dst = space.addr(space.dst.starts[di]);
                    if !routable(oif, &src, &dst) {
                        continue;
                    }
                    for spi in 0..sports {
                        for dpi in 0..dports {
                            let results = flows
                                .iter_mut()
                                .map(|flow| {
                                    flow.proto = proto;
                                    flow.src = Some(src);
                                    flow.dst = dst;
                                    flow.sport = SourcePort::Bound(space.sport.starts[spi] as u16);
                                    flow.dport = space.dport.starts[dpi] as u16;
                                    flow.oif.clone_from(oif);
                                    let t = tracer.trace(flow);
                                    visits += t.visited;
                                    for u in &t.unknowns {
                                        cites.unknown(rules, u);
                                    }
                                    // An unknown verdict cites the first thing not modelled.
                                    let at = t
                                        .deciding
                                        .map(|i| &t.path[i])
                                        .map(|s| (s.table, s.chain, s.rule))
                                        .or_else(|| {
                                            t.unknowns.first().map(|u| (u.table, u.chain, u.rule))
                                        });
                                    (t.outcome.verdict, at.map(|at| cites.cite(rules, at)))
                                })
                                .collect();
                            cells.push(([pi, oi, si, di, spi, dpi], results));
                            if visits > MAX_VISITS {
                                return Err(TooLarge::Visits {
                                    family: version.family().name(),
                                    max: MAX_VISITS,
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(Evaluated { space, cells })
}

/// Whether an ordinary app's traffic of one family and protocol is captured anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Coverage {
    Captured,
    /// Not definitely captured anywhere, but an unmodelled rule decides some of it.
    Undecided,
    Uncaptured,
}

/// Which (family, protocol) pairs the reference identity gets captured on at all.
fn families_coverage(families: &[Evaluated]) -> Vec<(IpVersion, u8, Coverage)> {
    let mut out = Vec::new();
    for f in families {
        for (pi, &proto) in f.space.protos.iter().enumerate() {
            let of_proto = || f.cells.iter().filter(|(c, _)| c[0] == pi);
            let coverage = if of_proto().any(|(_, r)| r[0].0 == Verdict::Captured) {
                Coverage::Captured
            } else if of_proto().any(|(_, r)| r[0].0 == Verdict::Unknown) {
                Coverage::Undecided
            } else {
                Coverage::Uncaptured
            };
            out.push((f.space.version, proto, coverage));
        }
    }
    out
}

/// An identity no owner rule names: the first of a few usual app ids outside every range.
fn reference_identity(rules: &Ruleset) -> Identity {
    let (mut uids, mut gids) = (Vec::new(), Vec::new());
    for t in &rules.tables {
        for c in &t.chains {
            for r in &c.rules {
                for m in &r.matches {
                    match &m.test {
                        Test::Uid { ranges } => uids.extend(ranges.iter().copied()),
                        Test::Gid { ranges, .. } => gids.extend(ranges.iter().copied()),
                        _ => {}
                    }
                }
            }
        }
    }
    Identity {
        uid: free_id(&mut uids),
        gid: free_id(&mut gids),
        groups: Vec::new(),
    }
}

/// A usual app id outside every range, else the lowest id outside them (or the highest
/// id if rules name them all).
fn free_id(used: &mut [crate::range::IdRange]) -> u32 {
    let is_free = |id: u32| !used.iter().any(|r| r.contains(id));
    if let Some(id) = [10001u32, 65534, 1000, 4242, 99999]
        .into_iter()
        .find(|id| is_free(*id))
    {
        return id;
    }
    used.sort();
    let mut next = 0u32;
    for r in used.iter() {
        if r.start > next {
            return next;
        }
        match r.end.checked_add(1) {
            Some(n) => next = next.max(n),
            None => return u32::MAX,
        }
    }
    next
}

#[cfg(test)]
mod tests;
