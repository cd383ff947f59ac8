//! Merges cells with the same result into a few readable regions: for each protocol,
//! interface, verdict and deciding rule, the address and port ranges it covers.

use std::collections::BTreeMap;

use serde::Serialize;

use super::bits::IndexSet;
use super::space::{Axis, Space, has_ports};
use crate::eval::Verdict;
use crate::explain::RuleRef;
use crate::model::proto_name;
use crate::range::{AddrRange, PortRange};

/// A cell's coordinates: protocol, interface, src, dst, sport, dport (indices into `Space`).
pub(super) type Coord = [usize; 6];

/// A part of the destination space with one outcome and one deciding rule.
#[derive(Clone, Debug, Serialize)]
pub struct Region {
    pub family: &'static str,
    pub protocol: String,
    /// Output interfaces: `lo`, names the rules use, `*` for any other; `["any"]` for all.
    pub oif: Vec<String>,
    /// Address and port ranges; `["any"]` for the whole space; ports empty for protocols
    /// without ports.
    pub src: Vec<String>,
    pub dst: Vec<String>,
    pub sport: Vec<String>,
    pub dport: Vec<String>,
    pub verdict: Verdict,
    pub rule: Option<RuleRef>,
}

/// Groups cells by (protocol, verdict, rule) and merges each group's cells dimension by
/// dimension (dport, sport, dst, src, interface), which keeps every region a product.
pub(super) fn merge(
    space: &Space,
    cells: &[(Coord, Verdict, Option<usize>)],
    rules: &[RuleRef],
) -> Vec<Region> {
    type Key = (usize, Verdict, Option<usize>);
    const DIMS: usize = 5;
    let lens = [
        space.oifs.len(),
        space.src.len(),
        space.dst.len(),
        space.sport.len(),
        space.dport.len(),
    ];
    let mut groups: BTreeMap<Key, Vec<[IndexSet; DIMS]>> = BTreeMap::new();
    for (c, verdict, rule) in cells {
        let mut b: [IndexSet; DIMS] = std::array::from_fn(|d| IndexSet::single(c[d + 1], lens[d]));
        // Loopback addresses never leave through another interface: counting those
        // impossible cells in lets "any" show where all possible traffic is covered.
        if space.oifs[c[1]] != "lo" {
            for (dim, axis) in [(1, &space.src), (2, &space.dst)] {
                for i in (0..axis.len()).filter(|i| space.addr(axis.starts[*i]).is_loopback()) {
                    b[dim].insert(i);
                }
            }
        }
        groups.entry((c[0], *verdict, *rule)).or_default().push(b);
    }
    let mut out = Vec::new();
    for ((proto, verdict, rule), mut boxes) in groups {
        for dim in (0..DIMS).rev() {
            // Boxes equal in every other dimension become one, in the order of those
            // other dimensions.
            let key = |a: &[IndexSet; DIMS], b: &[IndexSet; DIMS]| {
                (0..DIMS)
                    .filter(|d| *d != dim)
                    .map(|d| a[d].cmp(&b[d]))
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            };
            boxes.sort_by(key);
            let mut merged: Vec<[IndexSet; DIMS]> = Vec::with_capacity(boxes.len());
            for b in boxes {
                match merged.last_mut() {
                    Some(last) if key(last, &b).is_eq() => last[dim].union_with(&b[dim]),
                    _ => merged.push(b),
                }
            }
            boxes = merged;
        }
        let p = space.protos[proto];
        for mut b in boxes {
            // Without lo, the loopback intervals were only filled in to reach "any".
            if !b[0].iter().any(|i| space.oifs[i] == "lo") {
                for (dim, axis) in [(1, &space.src), (2, &space.dst)] {
                    if b[dim].len() != axis.len() {
                        b[dim].retain(|i| !space.addr(axis.starts[i]).is_loopback());
                    }
                }
            }
            let ports = |axis: &Axis, set: &IndexSet| {
                if has_ports(p) {
                    show(axis, set, |a, b| {
                        PortRange {
                            start: a as u16,
                            end: b as u16,
                        }
                        .to_string()
                    })
                } else {
                    vec![]
                }
            };
            let addrs = |axis: &Axis, set: &IndexSet| {
                show(axis, set, |a, b| {
                    AddrRange {
                        start: space.addr(a),
                        end: space.addr(b),
                    }
                    .to_string()
                })
            };
            let oif = if b[0].len() == space.oifs.len() {
                vec!["any".to_string()]
            } else {
                b[0].iter().map(|i| space.oif_labels[i].clone()).collect()
            };
            out.push(Region {
                family: space.version.family().name(),
                protocol: proto_name(p),
                oif,
                src: addrs(&space.src, &b[1]),
                dst: addrs(&space.dst, &b[2]),
                sport: ports(&space.sport, &b[3]),
                dport: ports(&space.dport, &b[4]),
                verdict,
                rule: rule.map(|r| rules[r].clone()),
            });
        }
    }
    out
}

/// Adjacent intervals joined into ranges; the whole axis is "any".
fn show(axis: &Axis, set: &IndexSet, fmt: impl Fn(u128, u128) -> String) -> Vec<String> {
    if set.len() == axis.len() {
        return vec!["any".into()];
    }
    let mut out = Vec::new();
    let mut run: Option<(usize, usize)> = None;
    for i in set.iter() {
        run = match run {
            Some((a, b)) if b + 1 == i => Some((a, i)),
            Some((a, b)) => {
                out.push(fmt(axis.interval(a).0, axis.interval(b).1));
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    if let Some((a, b)) = run {
        out.push(fmt(axis.interval(a).0, axis.interval(b).1));
    }
    out
}
