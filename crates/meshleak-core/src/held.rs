//! What a held socket that has not connected yet will send, judged with what it already
//! carries besides its credentials: the source port it is bound to and its mark (SO_MARK,
//! set while the process could). A rule exempting either lets it out whatever its
//! identity, and no capability is needed any more to use it. Connected sockets are judged
//! by what conntrack saw (`observed-bypass`) instead.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::eval::{self, Flow, Verdict};
use crate::findings::socket_flow;
use crate::schema::ProcessVerdict;
use crate::snapshot::{HeldSocket, NetnsFacts, ProcessFacts};
use crate::ways::{self, Way};

/// Destinations a socket may be connected to next, outside the pod (documentation
/// ranges: only evaluated, never sent to), on the ports apps use most.
const PROBES_V4: [IpAddr; 1] = [IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10))];
const PROBES_V6: [IpAddr; 1] = [IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 10))];
const PORTS: [u16; 3] = [80, 443, 8080];

/// The ways out through held, unconnected sockets whose bound port or mark lets them out
/// where a new socket of the same credentials would be captured: `bypass` when every
/// probe escapes, `partial` when some do, citing the rule that lets it out.
pub fn escapes(p: &ProcessFacts, ns: &NetnsFacts) -> Vec<Way> {
    let mut out = Vec::new();
    for s in p.sockets.iter().filter(|s| unconnected(ns, s)) {
        let port = s.bound.map_or(0, |(_, port)| port);
        let mark = s.mark.unwrap_or(0);
        if port == 0 && mark == 0 {
            continue;
        }
        let Some(probe) = s.probed else { continue };
        let proto = probe.protocol as u8;
        let Some(mut way) = ways::socket(p, ns, s) else {
            continue;
        };
        let src = s.bound.map(|(a, _)| a);
        let dsts: Vec<IpAddr> = match probe.family {
            2 => PROBES_V4.to_vec(),
            10 if s.v6only == Some(true) => PROBES_V6.to_vec(),
            10 => [PROBES_V6, PROBES_V4].concat(),
            _ => continue,
        };
        let (mut escaped, mut probes, mut cites) = (0, 0, Vec::new());
        for dst in dsts {
            for dport in PORTS {
                let held = flow(ns, &way, proto, (src, port), mark, (dst, dport));
                let fresh = Flow {
                    sport: ns.ephemeral(),
                    mark: 0,
                    ..held.clone()
                };
                probes += 1;
                let t = eval::trace(&ns.rules, &held);
                if t.outcome.verdict == Verdict::Bypass
                    && eval::trace(&ns.rules, &fresh).outcome.verdict == Verdict::Captured
                {
                    escaped += 1;
                    if cites.is_empty() {
                        cites.extend(crate::explain::deciding(&ns.rules, &t).map(|s| s.at));
                    }
                }
            }
        }
        if escaped == 0 {
            continue;
        }
        way.decides = Some(if escaped == probes {
            ProcessVerdict::Bypass
        } else {
            ProcessVerdict::Partial
        });
        way.cites = cites;
        let mut carries = Vec::new();
        if let Some((addr, port)) = s.bound.filter(|(_, port)| *port != 0) {
            carries.push(format!("is bound to {addr} port {port}"));
        }
        if mark != 0 {
            carries.push(format!("carries mark {mark:#x}"));
        }
        way.why = format!(
            "{}; it {}, which the rules exempt: what it sends next leaves uncaptured, with no privilege needed any more",
            way.why,
            carries.join(" and ")
        );
        out.push(way);
    }
    out
}

/// An IP socket that may send and has not connected: in no table of the namespace (a
/// bound TCP socket is in none until it listens or connects; a unix, netlink or packet
/// socket is in its own, and meets no IP rule) unless asked and found not to send, or an
/// unconnected UDP one.
pub(crate) fn unconnected(ns: &NetnsFacts, s: &HeldSocket) -> bool {
    match ns.sockets.iter().find(|l| l.inode == s.inode) {
        Some(l) => l.state == "unconnected" || l.state == "close",
        None => s.unlisted && s.probed.is_none_or(|p| p.sends_ip()),
    }
}

/// The first packet of the socket, bound to `(src, port)` (port 0: not bound) with `mark`.
fn flow(
    ns: &NetnsFacts,
    way: &Way,
    proto: u8,
    (src, port): (Option<IpAddr>, u16),
    mark: u32,
    (dst, dport): (IpAddr, u16),
) -> Flow {
    let unspecified = match dst {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    // A v4-mapped or unspecified bind says nothing of the source family's address.
    let src = src
        .map(|a| a.to_canonical())
        .filter(|a| a.is_ipv4() == dst.is_ipv4())
        .unwrap_or(unspecified);
    let mut f = socket_flow(ns, &way.identity, proto, (src, port), (dst, dport));
    if port == 0 {
        f.sport = ns.ephemeral();
    }
    f.mark = mark;
    f
}
