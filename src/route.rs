//! Which interface and source address the kernel picks for a destination, from a
//! namespace's routes and addresses (longest prefix wins; local addresses go through lo).

use std::net::IpAddr;

use crate::range::AddrRange;
use crate::snapshot::{Interface, Route};

/// The output interface and source address for `dst`, or None when no route matches.
pub fn lookup(routes: &[Route], interfaces: &[Interface], dst: IpAddr) -> Option<(String, IpAddr)> {
    let local = interfaces.iter().any(|i| i.addrs.contains(&dst));
    if local || dst.is_loopback() {
        let src = if local {
            dst
        } else {
            crate::model::IpVersion::of(&dst).loopback()
        };
        return Some(("lo".into(), src));
    }
    let best = routes
        .iter()
        .filter(|r| {
            AddrRange::parse(&format!("{}/{}", r.dst, r.prefix))
                .is_some_and(|net| net.contains(&dst))
        })
        .max_by_key(|r| r.prefix)?;
    let src = interfaces
        .iter()
        .filter(|i| i.name == best.oif)
        .flat_map(|i| i.addrs.iter())
        .filter(|a| a.is_ipv4() == dst.is_ipv4())
        .min_by_key(|a| matches!(a, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80))
        .copied()?;
    Some((best.oif.clone(), src))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_and_local_addresses() {
        let routes = vec![
            Route {
                dst: "0.0.0.0".into(),
                prefix: 0,
                oif: "eth0".into(),
                gateway: Some("10.0.0.1".parse().unwrap()),
            },
            Route {
                dst: "10.0.0.0".into(),
                prefix: 24,
                oif: "eth1".into(),
                gateway: None,
            },
        ];
        let ifs = vec![
            Interface {
                name: "eth0".into(),
                addrs: vec!["192.168.1.5".parse().unwrap()],
            },
            Interface {
                name: "eth1".into(),
                addrs: vec!["10.0.0.7".parse().unwrap()],
            },
        ];
        assert_eq!(
            lookup(&routes, &ifs, "10.0.0.9".parse().unwrap()),
            Some(("eth1".into(), "10.0.0.7".parse().unwrap()))
        );
        assert_eq!(
            lookup(&routes, &ifs, "8.8.8.8".parse().unwrap()),
            Some(("eth0".into(), "192.168.1.5".parse().unwrap()))
        );
        assert_eq!(
            lookup(&routes, &ifs, "10.0.0.7".parse().unwrap())
                .unwrap()
                .0,
            "lo"
        );
        assert_eq!(lookup(&routes, &ifs, "fd00::1".parse().unwrap()), None);
    }
}
