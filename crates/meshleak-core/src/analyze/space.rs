//! Splits the space of first packets (protocol, output interface, source and destination
//! address and port) into cells inside which every rule's tests give the same answer.
//!
//! The constants in the rules are the only places where a test can change its answer, so
//! evaluating one representative packet per cell is an exact, exhaustive analysis.

use std::net::IpAddr;

use crate::model::{Dir, IpVersion, Ruleset, Test};
use crate::range::{AddrRange, addr_from_key, addr_key, addr_max};

/// One dimension: sorted interval starts over `0..=max`; interval i is
/// `starts[i] ..= starts[i+1]-1`.
#[derive(Clone, Debug)]
pub(super) struct Axis {
    pub starts: Vec<u128>,
    pub max: u128,
}

impl Axis {
    fn new(max: u128, bounds: impl IntoIterator<Item = (u128, u128)>) -> Axis {
        let mut starts = vec![0u128];
        for (a, b) in bounds {
            starts.push(a);
            if b < max {
                starts.push(b + 1);
            }
        }
        starts.sort_unstable();
        starts.dedup();
        Axis { starts, max }
    }

    pub(super) fn len(&self) -> usize {
        self.starts.len()
    }

    /// Inclusive bounds of interval `i`.
    pub(super) fn interval(&self, i: usize) -> (u128, u128) {
        let end = self.starts.get(i + 1).map_or(self.max, |n| n - 1);
        (self.starts[i], end)
    }
}

/// The partition for one IP version.
#[derive(Clone, Debug)]
pub(super) struct Space {
    pub version: IpVersion,
    /// Protocol numbers, one per class.
    pub protos: Vec<u8>,
    /// Interface names, one per class; "lo" first.
    pub oifs: Vec<String>,
    /// How each class is shown: its name, or "*" for interfaces no rule names.
    pub oif_labels: Vec<String>,
    pub src: Axis,
    pub dst: Axis,
    pub sport: Axis,
    pub dport: Axis,
}

/// Protocols with ports: only these split along the port axes.
pub(super) use crate::model::has_ports;

impl Space {
    pub(super) fn build(rules: &Ruleset, version: IpVersion) -> Space {
        let tests: Vec<&Test> = rules
            .tables
            .iter()
            .filter(|t| t.family.sees(version))
            .flat_map(|t| t.chains.iter())
            .flat_map(|c| c.rules.iter())
            .flat_map(|r| r.matches.iter())
            .map(|m| &m.test)
            .collect();

        let icmp = match version {
            IpVersion::V4 => 1,
            IpVersion::V6 => 58,
        };
        let mut protos = vec![6, 17, 132, icmp];
        for t in &tests {
            let listed: &[u8] = match t {
                Test::Protocol { protos } | Test::Port { protos, .. } => protos,
                _ => &[],
            };
            for p in listed {
                if !protos.contains(p) {
                    protos.push(*p);
                }
            }
        }

        let special: Vec<AddrRange> = match version {
            IpVersion::V4 => [
                "127.0.0.0/8",
                "0.0.0.0/8",
                "224.0.0.0/4",
                "255.255.255.255/32",
            ]
            .as_slice(),
            IpVersion::V6 => ["::1/128", "::/128", "ff00::/8"].as_slice(),
        }
        .iter()
        .map(|s| AddrRange::parse(s).expect("valid literal"))
        .collect();
        let addr_bounds = |dir: Dir| {
            let mut bounds: Vec<(u128, u128)> = Vec::new();
            let mut any = false;
            for t in &tests {
                match t {
                    Test::Addr {
                        dir: d,
                        version: v,
                        ranges,
                    } if *d == dir && *v == version => {
                        any = true;
                        bounds.extend(
                            ranges
                                .iter()
                                .map(|r| (addr_key(&r.start), addr_key(&r.end))),
                        );
                    }
                    Test::AddrType { dir: d, .. } if *d == dir => any = true,
                    _ => {}
                }
            }
            // Destinations always split at loopback: it decides the output interface.
            if any || dir == Dir::Dst {
                bounds.extend(
                    special
                        .iter()
                        .map(|r| (addr_key(&r.start), addr_key(&r.end))),
                );
            }
            Axis::new(addr_max(version), bounds)
        };
        let port_bounds = |dir: Dir| {
            let bounds = tests.iter().flat_map(|t| match t {
                Test::Port { dir: d, ranges, .. } if *d == dir => ranges.clone(),
                _ => Vec::new(),
            });
            Axis::new(
                u16::MAX as u128,
                bounds.map(|r| (r.start as u128, r.end as u128)),
            )
        };

        let (oifs, oif_labels) = interface_classes(&tests);
        Space {
            version,
            protos,
            oifs,
            oif_labels,
            src: addr_bounds(Dir::Src),
            dst: addr_bounds(Dir::Dst),
            sport: port_bounds(Dir::Src),
            dport: port_bounds(Dir::Dst),
        }
    }

    pub(super) fn addr(&self, key: u128) -> IpAddr {
        addr_from_key(self.version, key)
    }

    /// How many cells there are (the analysis's cost).
    pub(super) fn size(&self) -> usize {
        let with_ports = self.protos.iter().filter(|p| has_ports(**p)).count();
        let without = self.protos.len() - with_ports;
        let addr = self.oifs.len() * self.src.len() * self.dst.len();
        addr * (with_ports * self.sport.len() * self.dport.len() + without)
    }
}

/// Output interfaces that rules tell apart: `lo`, each literal name, one name per
/// wildcard, and one that no rule names (shown as "*"). Returns names and labels.
fn interface_classes(tests: &[&Test]) -> (Vec<String>, Vec<String>) {
    let patterns: Vec<_> = tests
        .iter()
        .flat_map(|t| match t {
            Test::Iface {
                dir: Dir::Dst,
                patterns,
            } => patterns.clone(),
            _ => Vec::new(),
        })
        .collect();
    let mut candidates = vec!["eth0".to_string(), "meshleak-if0".into(), "z0".into()];
    for p in &patterns {
        candidates.push(if p.wildcard {
            format!("{}x", p.name)
        } else {
            p.name.clone()
        });
    }
    let mut seen: Vec<Vec<bool>> = Vec::new();
    let (mut names, mut labels) = (vec!["lo".to_string()], vec!["lo".to_string()]);
    for c in candidates {
        let signature: Vec<bool> = patterns.iter().map(|p| p.matches(&c)).collect();
        if c == "lo" || seen.contains(&signature) {
            continue;
        }
        labels.push(if signature.iter().any(|m| *m) {
            c.clone()
        } else {
            "*".into()
        });
        seen.push(signature);
        names.push(c);
    }
    (names, labels)
}

/// Whether traffic to `dst` from `src` can leave through `oif` at all.
pub(super) fn routable(oif: &str, src: &IpAddr, dst: &IpAddr) -> bool {
    oif == "lo" || !(dst.is_loopback() || src.is_loopback())
}
