//! Who the proxy is: the listener the capture rules really deliver to, not any socket on
//! a proxy port. REDIRECT sends a locally generated IPv4 connection to 127.0.0.1 (an
//! inbound one to the interface's address), an IPv6 one to `::1`; TPROXY hands it to a
//! socket on its port. So an IPv4 capture reaches IPv4 listeners and dual-stack `::`
//! ones, never a v6-only listener, and an IPv6 capture reaches IPv6 listeners only.

use std::net::IpAddr;

use crate::model::{Family, IpVersion, Ruleset};
use crate::snapshot::{SocketFacts, SocketProto};

/// The local ports capture rules deliver to, with the family each reaches them in.
/// `local`: the namespace's addresses (a DNAT to one of them is a capture, one elsewhere
/// is not).
pub fn targets(rules: &Ruleset, local: &[IpAddr]) -> Vec<(u16, IpVersion)> {
    let mut out = Vec::new();
    for t in &rules.tables {
        let versions: &[IpVersion] = match t.family {
            Family::Ipv4 => &[IpVersion::V4],
            Family::Ipv6 => &[IpVersion::V6],
            Family::Inet => &[IpVersion::V4, IpVersion::V6],
        };
        for a in t
            .chains
            .iter()
            .flat_map(|c| &c.rules)
            .flat_map(|r| &r.actions)
        {
            let port = a.capture_port(local);
            for v in versions {
                if let Some(p) = port.filter(|p| !out.contains(&(*p, *v))) {
                    out.push((p, *v));
                }
            }
        }
    }
    out
}

/// Whether captured traffic reaches this socket: a TCP listener (or an unconnected UDP
/// socket, for DNS capture) on a target port, bound where that family's capture arrives.
/// A v6-only flag not known counts as dual-stack: it may be reached.
pub(crate) fn delivered(s: &SocketFacts, targets: &[(u16, IpVersion)]) -> bool {
    let listening = match s.proto {
        SocketProto::Tcp => s.state == "listen",
        SocketProto::Udp => s.remote.is_unspecified(),
        SocketProto::Raw | SocketProto::Ping => false,
    };
    listening
        && targets.iter().any(|&(port, v)| {
            port == s.local_port
                && match (v, s.local) {
                    (IpVersion::V4, IpAddr::V4(_)) => true,
                    (IpVersion::V4, IpAddr::V6(a)) => {
                        a.to_ipv4_mapped().is_some()
                            || (a.is_unspecified() && s.v6only != Some(true))
                    }
                    (IpVersion::V6, IpAddr::V6(a)) => a.to_ipv4_mapped().is_none(),
                    (IpVersion::V6, IpAddr::V4(_)) => false,
                }
        })
}

/// Whether `p` is `ancestor` or descends from it, by parent pids among `parents`
/// (pid, ppid): without container metadata, the proxy's processes are its listener's tree.
pub(crate) fn descends(p: u32, ancestor: u32, parents: &[(u32, u32)]) -> bool {
    let mut at = p;
    for _ in 0..parents.len() + 1 {
        if at == ancestor {
            return true;
        }
        match parents.iter().find(|(pid, _)| *pid == at) {
            Some(&(_, ppid)) if ppid != at => at = ppid,
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(local: &str, port: u16, v6only: Option<bool>) -> SocketFacts {
        SocketFacts {
            proto: SocketProto::Tcp,
            local: local.parse().unwrap(),
            local_port: port,
            remote: "0.0.0.0".parse().unwrap(),
            remote_port: 0,
            state: "listen".into(),
            uid: 0,
            inode: 1,
            v6only,
            mark: None,
        }
    }

    #[test]
    fn a_capture_reaches_listeners_of_its_family_only() {
        let v4 = [(15006, IpVersion::V4)];
        assert!(delivered(&listener("0.0.0.0", 15006, None), &v4));
        assert!(delivered(&listener("::", 15006, Some(false)), &v4));
        assert!(delivered(&listener("::", 15006, None), &v4));
        assert!(!delivered(&listener("::", 15006, Some(true)), &v4));
        assert!(!delivered(&listener("0.0.0.0", 15001, None), &v4));
        let v6 = [(15006, IpVersion::V6)];
        assert!(!delivered(&listener("0.0.0.0", 15006, None), &v6));
        assert!(delivered(&listener("::", 15006, Some(true)), &v6));
    }

    #[test]
    fn descendants_by_parent_pids() {
        let parents = [(10, 1), (11, 10), (12, 11), (20, 1), (30, 30)];
        assert!(descends(12, 10, &parents));
        assert!(descends(10, 10, &parents));
        assert!(!descends(20, 10, &parents));
        assert!(!descends(30, 10, &parents));
    }
}
