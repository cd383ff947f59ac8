//! One match against the packet, with the kernel's semantics. Three-valued: a test on
//! something meshleak does not know (an unmodelled extension, an unknown source port) is
//! `Unknown`, and the evaluator explores both outcomes.

use std::net::IpAddr;

use super::{Flow, Identity, Packet, SourcePort};
use crate::model::{AddrType, CtState, Dir, MarkReg, Match, Test};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tri {
    True,
    False,
    Unknown,
}

impl From<bool> for Tri {
    fn from(b: bool) -> Self {
        if b { Tri::True } else { Tri::False }
    }
}

pub fn eval(m: &Match, flow: &Flow, pkt: &Packet) -> Tri {
    // `None`: the test does not apply to this packet (wrong family or protocol, no such
    // device): false, whatever the negation says, as the kernel's match/`NFT_BREAK` does.
    let raw: Option<Tri> = match &m.test {
        Test::Protocol { protos } => Some(protos.contains(&flow.proto).into()),
        Test::NfProto { version } => Some((*version == flow.version).into()),
        Test::Addr {
            dir,
            version,
            ranges,
        } => {
            if *version != flow.version {
                None
            } else {
                match addr_of(*dir, pkt) {
                    Some(a) => Some(ranges.iter().any(|r| r.contains(&a)).into()),
                    None => Some(Tri::Unknown),
                }
            }
        }
        // Leaving, a packet has an output device and no input device; looped back to a
        // local destination, it has input device lo and no output device.
        Test::Iface { dir, patterns } => match (dir, pkt.looped) {
            (Dir::Dst, false) => Some(patterns.iter().any(|p| p.matches(&pkt.oif)).into()),
            (Dir::Src, true) => Some(patterns.iter().any(|p| p.matches("lo")).into()),
            _ => None,
        },
        Test::Port {
            dir,
            protos,
            ranges,
        } => {
            let applies = if protos.is_empty() {
                crate::model::has_ports(flow.proto)
            } else {
                protos.contains(&flow.proto)
            };
            if !applies {
                None
            } else {
                let port = match dir {
                    Dir::Dst => SourcePort::Bound(pkt.dport),
                    Dir::Src => pkt.sport,
                };
                Some(match port {
                    SourcePort::Bound(p) => ranges.iter().any(|r| r.contains(p)).into(),
                    // Any port of the range may be picked: decided only if all agree.
                    SourcePort::Ephemeral(e) => {
                        if ranges.iter().any(|r| r.start <= e.start && e.end <= r.end) {
                            Tri::True
                        } else if ranges.iter().all(|r| r.end < e.start || e.end < r.start) {
                            Tri::False
                        } else {
                            Tri::Unknown
                        }
                    }
                })
            }
        }
        Test::Uid { .. } | Test::Gid { .. } => owner(&m.test, &flow.identity).map(Tri::from),
        Test::SocketExists => Some(Tri::True),
        Test::TcpFlags { mask, cmp } => (flow.proto == 6).then(|| first_syn(*mask, *cmp)),
        Test::Mark { reg, mask, values } => {
            let v = match reg {
                MarkReg::Mark => pkt.mark,
                MarkReg::CtMark => pkt.ctmark,
            } & mask;
            Some(values.iter().any(|(a, b)| (*a..=*b).contains(&v)).into())
        }
        Test::CtState { states } => Some(pkt.ct_state_test(states)),
        Test::AddrType { dir, types, .. } => match addr_of(*dir, pkt) {
            Some(a) => Some(types.contains(&addr_type(&a, flow)).into()),
            None => Some(Tri::Unknown),
        },
        Test::Always => Some(Tri::True),
        Test::Unknown { .. } => Some(Tri::Unknown),
    };
    match (raw, m.negated) {
        (None, _) => Tri::False,
        (Some(Tri::Unknown), _) => Tri::Unknown,
        (Some(t), false) => t,
        (Some(Tri::True), true) => Tri::False,
        (Some(_), true) => Tri::True,
    }
}

/// An owner test on a socket's credentials; `None` for every other test. The only place
/// an identity enters evaluation, so identities that agree on every owner test of a ruleset
/// share every verdict.
pub fn owner(test: &Test, id: &Identity) -> Option<bool> {
    match test {
        Test::Uid { ranges } => Some(ranges.iter().any(|r| r.contains(id.uid))),
        Test::Gid {
            ranges,
            suppl_groups,
        } => Some(ranges.iter().any(|r| {
            r.contains(id.gid) || (*suppl_groups && id.groups.iter().any(|g| r.contains(*g)))
        })),
        _ => None,
    }
}

/// A TCP flags test on a connection's first packet: SYN, and SYN|ECE|CWR when the socket
/// asks for ECN (`net.ipv4.tcp_ecn=1`, a route's `features ecn`, or a congestion control
/// such as dctcp that an app may pick). Decided only where both agree.
fn first_syn(mask: u8, cmp: u8) -> Tri {
    const SYN: u8 = 0x02;
    const ECE_CWR: u8 = 0xc0;
    let plain = SYN & mask == cmp;
    let ecn = (SYN | ECE_CWR) & mask == cmp;
    if plain == ecn {
        plain.into()
    } else {
        Tri::Unknown
    }
}

fn addr_of(dir: Dir, pkt: &Packet) -> Option<IpAddr> {
    match dir {
        Dir::Dst => Some(pkt.dst),
        Dir::Src => pkt.src,
    }
}

/// The route type of an address as seen from the pod: its own addresses are LOCAL.
fn addr_type(addr: &IpAddr, flow: &Flow) -> AddrType {
    if addr.is_loopback() || flow.local.contains(addr) {
        return AddrType::Local;
    }
    if addr.is_multicast() {
        return AddrType::Multicast;
    }
    if addr.is_unspecified() {
        return AddrType::Unspec;
    }
    if let IpAddr::V4(v4) = addr
        && v4.is_broadcast()
    {
        return AddrType::Broadcast;
    }
    AddrType::Unicast
}

impl Packet {
    /// Whether the first packet's conntrack state is one of `wanted`: untracked, or new
    /// with the DNAT and SNAT status its mappings set.
    fn ct_state_test(&self, wanted: &[CtState]) -> Tri {
        if self.untracked {
            return wanted.contains(&CtState::Untracked).into();
        }
        let has = |s: CtState| wanted.contains(&s);
        if has(CtState::New) || (self.dnat && has(CtState::Dnat)) {
            return Tri::True;
        }
        match self.snat {
            Some(true) if has(CtState::Snat) => Tri::True,
            None if has(CtState::Snat) => Tri::Unknown,
            _ => Tri::False,
        }
    }
}
