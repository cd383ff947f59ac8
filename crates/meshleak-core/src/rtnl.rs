//! rtnetlink (NETLINK_ROUTE) dump requests and replies for routes of every table and
//! policy-routing rules, without I/O.
//!
//! Why not `/proc/net/route`: it shows the main table only, and policy routing (`ip rule`
//! with `uidrange`, `fwmark`, ports) sends some sockets' traffic through other tables and
//! interfaces, past an interface exclusion for instance. Every length is checked; an error
//! names the message and the offset.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::{AddrType, IpVersion};
use crate::snapshot::{Route, RoutingRule, RuleAction};

use crate::nlmsg::NLMSG_HDRLEN;

const RTM_GETROUTE: u16 = 26;
const RTM_GETRULE: u16 = 34;
/// `struct rtmsg` and `struct fib_rule_hdr`: both 12 bytes.
const HDR_LEN: usize = 12;
/// `struct ifinfomsg`.
const LINK_HDR_LEN: usize = 16;
/// `struct ifaddrmsg`.
const ADDR_HDR_LEN: usize = 8;
const RTM_GETLINK: u16 = 18;
const RTM_GETADDR: u16 = 22;
const IFLA_IFNAME: u16 = 3;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
/// A clone made for one flow (IPv6's cache entries), not a configured route.
const RTM_F_CLONED: u32 = 0x200;

const RTA_DST: u16 = 1;
const RTA_SRC: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_PREFSRC: u16 = 7;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const RTA_NH_ID: u16 = 30;

const FRA_DST: u16 = 1;
const FRA_SRC: u16 = 2;
const FRA_IIFNAME: u16 = 3;
const FRA_GOTO: u16 = 4;
const FRA_PRIORITY: u16 = 6;
const FRA_FWMARK: u16 = 10;
const FRA_FLOW: u16 = 11;
const FRA_TUN_ID: u16 = 12;
const FRA_SUPPRESS_IFGROUP: u16 = 13;
const FRA_SUPPRESS_PREFIXLEN: u16 = 14;
const FRA_TABLE: u16 = 15;
const FRA_FWMASK: u16 = 16;
const FRA_OIFNAME: u16 = 17;
const FRA_PAD: u16 = 18;
const FRA_L3MDEV: u16 = 19;
const FRA_UID_RANGE: u16 = 20;
const FRA_PROTOCOL: u16 = 21;
const FRA_IP_PROTO: u16 = 22;
const FRA_SPORT_RANGE: u16 = 23;
const FRA_DPORT_RANGE: u16 = 24;

const FIB_RULE_INVERT: u32 = 0x2;
const FIB_RULE_IIF_DETACHED: u32 = 0x8;
const FIB_RULE_OIF_DETACHED: u32 = 0x10;

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum RtnlError {
    #[error("a {what} message of {len} bytes is shorter than its header")]
    Short { what: &'static str, len: usize },
    #[error("a {what} message's attribute at offset {at} claims {len} bytes where {left} remain")]
    Attribute {
        what: &'static str,
        at: usize,
        len: usize,
        left: usize,
    },
    #[error("a {what} message's attribute {kind} holds {len} bytes where {want} are needed")]
    Value {
        what: &'static str,
        kind: u16,
        len: usize,
        want: usize,
    },
}

/// The dump request for every route of both families, all tables (`ip route show table all`).
pub fn route_request() -> Vec<u8> {
    request(RTM_GETROUTE)
}

/// The dump request for the policy-routing rules of both families (`ip rule`).
pub fn rule_request() -> Vec<u8> {
    request(RTM_GETRULE)
}

/// The dump request for every interface (`ip link`): their indexes and names.
pub fn link_request() -> Vec<u8> {
    request_sized(RTM_GETLINK, LINK_HDR_LEN)
}

/// The dump request for every address of both families (`ip addr`).
pub fn addr_request() -> Vec<u8> {
    request_sized(RTM_GETADDR, ADDR_HDR_LEN)
}

fn request(kind: u16) -> Vec<u8> {
    request_sized(kind, HDR_LEN)
}

fn request_sized(kind: u16, header: usize) -> Vec<u8> {
    // An AF_UNSPEC header: the kernel dumps every family that has any.
    crate::nlmsg::request(kind, crate::nlmsg::NLM_F_REQUEST_DUMP, &vec![0u8; header])
}

/// One route reply (whole, with its netlink header); `name` turns an interface index into
/// the interface's name. `None`: a per-flow clone, or a family other than IPv4 and IPv6
/// (multicast routing tables, MPLS), which no socket's first packet uses.
pub fn decode_route(
    msg: &[u8],
    name: &mut dyn FnMut(u32) -> String,
) -> Result<Option<Route>, RtnlError> {
    const WHAT: &str = "route";
    let (hdr, attrs) = split(msg, WHAT)?;
    let Some(version) = version(hdr[0]) else {
        return Ok(None);
    };
    let flags = u32::from_ne_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]);
    if flags & RTM_F_CLONED != 0 {
        return Ok(None);
    }
    let mut route = Route {
        dst: version.unspecified().to_string(),
        prefix: hdr[1],
        oif: String::new(),
        gateway: None,
        table: u32::from(hdr[4]),
        kind: AddrType::from_rtn(u32::from(hdr[7])).unwrap_or(AddrType::Unspec),
        metric: 0,
        prefsrc: None,
        from: None,
        other_oifs: Vec::new(),
        nexthop_object: false,
    };
    for (kind, value) in attributes(attrs, WHAT, HDR_LEN)? {
        match kind {
            RTA_DST => route.dst = addr(version, value, WHAT, kind)?.to_string(),
            RTA_SRC => route.from = Some((addr(version, value, WHAT, kind)?, hdr[2])),
            RTA_OIF => route.oif = name(word(value, WHAT, kind)?),
            RTA_GATEWAY => route.gateway = Some(addr(version, value, WHAT, kind)?),
            RTA_PRIORITY => route.metric = word(value, WHAT, kind)?,
            RTA_PREFSRC => route.prefsrc = Some(addr(version, value, WHAT, kind)?),
            RTA_TABLE => route.table = word(value, WHAT, kind)?,
            RTA_MULTIPATH => {
                for oif in nexthops(value)? {
                    let oif = name(oif);
                    if route.oif.is_empty() {
                        route.oif = oif;
                    } else if oif != route.oif && !route.other_oifs.contains(&oif) {
                        route.other_oifs.push(oif);
                    }
                }
            }
            RTA_NH_ID => route.nexthop_object = true,
            _ => {}
        }
    }
    Ok(Some(route))
}

/// The interface indexes of a multipath route's nexthops (`struct rtnexthop` each: len u16,
/// flags u8, hops u8, ifindex i32, then its own attributes).
fn nexthops(mut bytes: &[u8]) -> Result<Vec<u32>, RtnlError> {
    let mut out = Vec::new();
    let mut at = 0;
    while bytes.len() >= 8 {
        let len = u16::from_ne_bytes([bytes[0], bytes[1]]) as usize;
        if len < 8 || len > bytes.len() {
            return Err(RtnlError::Attribute {
                what: "route nexthop",
                at,
                len,
                left: bytes.len(),
            });
        }
        out.push(u32::from_ne_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]));
        let step = ((len + 3) & !3).min(bytes.len());
        bytes = &bytes[step..];
        at += step;
    }
    Ok(out)
}

/// One rule reply (whole, with its netlink header). `None`: a family other than IPv4 and
/// IPv6.
pub fn decode_rule(msg: &[u8]) -> Result<Option<RoutingRule>, RtnlError> {
    const WHAT: &str = "routing rule";
    let (hdr, attrs) = split(msg, WHAT)?;
    let Some(family) = version(hdr[0]) else {
        return Ok(None);
    };
    let flags = u32::from_ne_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]);
    let (dst_len, src_len, tos, table, action) = (hdr[1], hdr[2], hdr[3], hdr[4], hdr[7]);
    let mut rule = RoutingRule {
        family,
        priority: 0,
        invert: flags & FIB_RULE_INVERT != 0,
        src: None,
        dst: None,
        iif: None,
        oif: None,
        detached: flags & (FIB_RULE_IIF_DETACHED | FIB_RULE_OIF_DETACHED) != 0,
        fwmark: None,
        uids: None,
        ip_proto: None,
        sport: None,
        dport: None,
        action: RuleAction::from_code(action, u32::from(table)),
        suppress_prefixlen: None,
        unmodelled: Vec::new(),
    };
    if tos != 0 {
        rule.unmodelled.push(format!("tos 0x{tos:02x}"));
    }
    let mut mask = None;
    for (kind, value) in attributes(attrs, WHAT, HDR_LEN)? {
        match kind {
            FRA_DST => rule.dst = Some((addr(family, value, WHAT, kind)?, dst_len)),
            FRA_SRC => rule.src = Some((addr(family, value, WHAT, kind)?, src_len)),
            FRA_IIFNAME => rule.iif = Some(text(value)),
            FRA_OIFNAME => rule.oif = Some(text(value)),
            FRA_GOTO => rule.action = RuleAction::Goto(word(value, WHAT, kind)?),
            FRA_PRIORITY => rule.priority = word(value, WHAT, kind)?,
            FRA_FWMARK => rule.fwmark = Some((word(value, WHAT, kind)?, u32::MAX)),
            FRA_FWMASK => mask = Some(word(value, WHAT, kind)?),
            FRA_TABLE => {
                if let RuleAction::Table(t) = &mut rule.action {
                    *t = word(value, WHAT, kind)?;
                }
            }
            FRA_SUPPRESS_PREFIXLEN => {
                // The kernel sends -1 (all ones) for "not set".
                let n = word(value, WHAT, kind)?;
                rule.suppress_prefixlen = (n != u32::MAX).then_some(n);
            }
            FRA_UID_RANGE => {
                let (start, end) = pair_u32(value, WHAT, kind)?;
                // Every rule carries one; the full range selects nothing.
                if (start, end) != (0, u32::MAX) {
                    rule.uids = Some((start, end));
                }
            }
            FRA_IP_PROTO => rule.ip_proto = value.first().copied(),
            FRA_SPORT_RANGE => rule.sport = Some(pair_u16(value, WHAT, kind)?),
            FRA_DPORT_RANGE => rule.dport = Some(pair_u16(value, WHAT, kind)?),
            FRA_TUN_ID => rule.unmodelled.push(format!("tun_id {}", u64_value(value))),
            FRA_L3MDEV if value.first().is_some_and(|b| *b != 0) => {
                rule.unmodelled.push("l3mdev".into());
            }
            FRA_SUPPRESS_IFGROUP => {
                let group = word(value, WHAT, kind)?;
                if group != u32::MAX {
                    rule.unmodelled.push(format!("suppress_ifgroup {group}"));
                }
            }
            // Who added it, realms (a classifier's tag) and padding select nothing.
            FRA_PROTOCOL | FRA_FLOW | FRA_PAD | FRA_L3MDEV => {}
            other => rule.unmodelled.push(format!("attribute {other}")),
        }
    }
    if let (Some((mark, _)), Some(mask)) = (rule.fwmark, mask) {
        rule.fwmark = Some((mark, mask));
    } else if let (None, Some(mask)) = (rule.fwmark, mask)
        && mask != 0
    {
        rule.fwmark = Some((0, mask));
    }
    Ok(Some(rule))
}

/// One link reply: the interface's index and name.
pub fn decode_link(msg: &[u8]) -> Result<(u32, String), RtnlError> {
    const WHAT: &str = "link";
    let (hdr, attrs) = split_sized(msg, WHAT, LINK_HDR_LEN)?;
    let index = u32::from_ne_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
    let name = attributes(attrs, WHAT, LINK_HDR_LEN)?
        .into_iter()
        .find(|(kind, _)| *kind == IFLA_IFNAME)
        .map(|(_, v)| text(v))
        .unwrap_or_else(|| format!("if{index}"));
    Ok((index, name))
}

/// One address reply: the interface index and the address (an IPv4 one's local address,
/// as getifaddrs gives it: on a point-to-point link `IFA_ADDRESS` is the peer's). `None`:
/// another family.
pub fn decode_addr(msg: &[u8]) -> Result<Option<(u32, IpAddr)>, RtnlError> {
    const WHAT: &str = "address";
    let (hdr, attrs) = split_sized(msg, WHAT, ADDR_HDR_LEN)?;
    let Some(version) = version(hdr[0]) else {
        return Ok(None);
    };
    let index = u32::from_ne_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
    let (mut address, mut local) = (None, None);
    for (kind, value) in attributes(attrs, WHAT, ADDR_HDR_LEN)? {
        match kind {
            IFA_ADDRESS => address = Some(addr(version, value, WHAT, kind)?),
            IFA_LOCAL => local = Some(addr(version, value, WHAT, kind)?),
            _ => {}
        }
    }
    Ok(local.or(address).map(|a| (index, a)))
}

/// The fixed header and the attributes after it.
fn split<'a>(msg: &'a [u8], what: &'static str) -> Result<(&'a [u8], &'a [u8]), RtnlError> {
    split_sized(msg, what, HDR_LEN)
}

fn split_sized<'a>(
    msg: &'a [u8],
    what: &'static str,
    header: usize,
) -> Result<(&'a [u8], &'a [u8]), RtnlError> {
    let short = RtnlError::Short {
        what,
        len: msg.len(),
    };
    let len = msg
        .get(..4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or(short.clone())?;
    let msg = msg.get(..len.min(msg.len())).ok_or(short.clone())?;
    let hdr = msg.get(NLMSG_HDRLEN..NLMSG_HDRLEN + header).ok_or(short)?;
    Ok((hdr, &msg[NLMSG_HDRLEN + header..]))
}

/// `struct rtattr { u16 len; u16 type; }` then the value, each padded to 4 bytes.
fn attributes<'a>(
    mut bytes: &'a [u8],
    what: &'static str,
    header: usize,
) -> Result<Vec<(u16, &'a [u8])>, RtnlError> {
    let mut out = Vec::new();
    let mut at = NLMSG_HDRLEN + header;
    while bytes.len() >= 4 {
        let len = u16::from_ne_bytes([bytes[0], bytes[1]]) as usize;
        let kind = u16::from_ne_bytes([bytes[2], bytes[3]]) & 0x3fff;
        if len < 4 || len > bytes.len() {
            return Err(RtnlError::Attribute {
                what,
                at,
                len,
                left: bytes.len(),
            });
        }
        out.push((kind, &bytes[4..len]));
        let step = ((len + 3) & !3).min(bytes.len());
        bytes = &bytes[step..];
        at += step;
    }
    Ok(out)
}

fn version(family: u8) -> Option<IpVersion> {
    match i32::from(family) {
        libc::AF_INET => Some(IpVersion::V4),
        libc::AF_INET6 => Some(IpVersion::V6),
        _ => None,
    }
}

fn addr(
    version: IpVersion,
    value: &[u8],
    what: &'static str,
    kind: u16,
) -> Result<IpAddr, RtnlError> {
    let bad = |want| RtnlError::Value {
        what,
        kind,
        len: value.len(),
        want,
    };
    match version {
        IpVersion::V4 => {
            let b: [u8; 4] = value.try_into().map_err(|_| bad(4))?;
            Ok(IpAddr::V4(Ipv4Addr::from(b)))
        }
        IpVersion::V6 => {
            let b: [u8; 16] = value.try_into().map_err(|_| bad(16))?;
            Ok(IpAddr::V6(Ipv6Addr::from(b)))
        }
    }
}

fn word(value: &[u8], what: &'static str, kind: u16) -> Result<u32, RtnlError> {
    value
        .get(..4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(RtnlError::Value {
            what,
            kind,
            len: value.len(),
            want: 4,
        })
}

fn pair_u32(value: &[u8], what: &'static str, kind: u16) -> Result<(u32, u32), RtnlError> {
    let second = value.get(4..).unwrap_or_default();
    Ok((word(value, what, kind)?, word(second, what, kind)?))
}

fn pair_u16(value: &[u8], what: &'static str, kind: u16) -> Result<(u16, u16), RtnlError> {
    match value {
        [a, b, c, d, ..] => Ok((u16::from_ne_bytes([*a, *b]), u16::from_ne_bytes([*c, *d]))),
        _ => Err(RtnlError::Value {
            what,
            kind,
            len: value.len(),
            want: 4,
        }),
    }
}

fn u64_value(value: &[u8]) -> u64 {
    value
        .get(..8)
        .map_or(0, |b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
}

/// A NUL-terminated interface name.
fn text(value: &[u8]) -> String {
    let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(hdr: [u8; 12], attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = hdr.to_vec();
        for (kind, value) in attrs {
            body.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
            body.extend_from_slice(&kind.to_ne_bytes());
            body.extend_from_slice(value);
            while !body.len().is_multiple_of(4) {
                body.push(0);
            }
        }
        let mut out = ((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes().to_vec();
        out.extend_from_slice(&[0u8; 12]);
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn a_uid_range_rule() {
        let mut range = 2000u32.to_ne_bytes().to_vec();
        range.extend_from_slice(&2001u32.to_ne_bytes());
        let msg = message(
            [libc::AF_INET as u8, 0, 0, 0, 100, 0, 0, 1, 0, 0, 0, 0],
            &[
                (FRA_PRIORITY, 100u32.to_ne_bytes().to_vec()),
                (FRA_TABLE, 100u32.to_ne_bytes().to_vec()),
                (FRA_UID_RANGE, range),
                (FRA_PROTOCOL, vec![0]),
            ],
        );
        let rule = decode_rule(&msg).unwrap().unwrap();
        assert_eq!(rule.priority, 100);
        assert_eq!(rule.uids, Some((2000, 2001)));
        assert_eq!(rule.action, RuleAction::Table(100));
        assert!(rule.unmodelled.is_empty());
        assert_eq!(
            rule.to_string(),
            "100:\tfrom all uidrange 2000-2001 lookup 100"
        );
    }

    #[test]
    fn a_route_of_another_table_and_a_multipath_one() {
        let mut name = |i: u32| format!("if{i}");
        let mut nh = Vec::new();
        for ifindex in [3u32, 4] {
            nh.extend_from_slice(&8u16.to_ne_bytes());
            nh.extend_from_slice(&[0, 0]);
            nh.extend_from_slice(&ifindex.to_ne_bytes());
        }
        let msg = message(
            [libc::AF_INET as u8, 24, 0, 0, 252, 3, 0, 1, 0, 0, 0, 0],
            &[
                (RTA_TABLE, 100u32.to_ne_bytes().to_vec()),
                (RTA_DST, vec![169, 254, 78, 0]),
                (RTA_MULTIPATH, nh),
            ],
        );
        let route = decode_route(&msg, &mut name).unwrap().unwrap();
        assert_eq!(
            (route.dst.as_str(), route.prefix, route.table),
            ("169.254.78.0", 24, 100)
        );
        assert_eq!(route.oif, "if3");
        assert_eq!(route.other_oifs, vec!["if4".to_string()]);
        assert_eq!(route.kind, AddrType::Unicast);
    }

    #[test]
    fn links_and_addresses() {
        let mut msg = vec![0u8; NLMSG_HDRLEN];
        let mut link = [0u8; 16];
        link[4..8].copy_from_slice(&7u32.to_ne_bytes());
        msg.extend_from_slice(&link);
        msg.extend_from_slice(&9u16.to_ne_bytes());
        msg.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
        msg.extend_from_slice(b"eth0\0\0\0\0");
        let len = msg.len() as u32;
        msg[..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(decode_link(&msg).unwrap(), (7, "eth0".to_string()));
        // An IPv4 address on a point-to-point link: the local one, not the peer's.
        let mut msg = vec![0u8; NLMSG_HDRLEN];
        msg.extend_from_slice(&[libc::AF_INET as u8, 32, 0, 0]);
        msg.extend_from_slice(&7u32.to_ne_bytes());
        for (kind, a) in [(IFA_ADDRESS, [10, 0, 0, 2]), (IFA_LOCAL, [10, 0, 0, 1])] {
            msg.extend_from_slice(&8u16.to_ne_bytes());
            msg.extend_from_slice(&kind.to_ne_bytes());
            msg.extend_from_slice(&a);
        }
        let len = msg.len() as u32;
        msg[..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(
            decode_addr(&msg).unwrap(),
            Some((7, "10.0.0.1".parse().unwrap()))
        );
        assert!(decode_addr(&msg[..20]).is_err());
    }

    #[test]
    fn truncated_input_is_an_error_naming_the_offset() {
        let mut msg = message(
            [libc::AF_INET as u8, 0, 0, 0, 254, 0, 0, 1, 0, 0, 0, 0],
            &[(RTA_OIF, 2u32.to_ne_bytes().to_vec())],
        );
        msg[NLMSG_HDRLEN + HDR_LEN] = 40;
        let err = decode_route(&msg, &mut |_| String::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a route message's attribute at offset 28 claims 40 bytes where 8 remain"
        );
        assert!(decode_rule(&msg[..20]).is_err());
        // A 2-byte value where an address belongs.
        let msg = message(
            [libc::AF_INET as u8, 0, 0, 0, 254, 0, 0, 1, 0, 0, 0, 0],
            &[(RTA_DST, vec![1, 2])],
        );
        assert!(matches!(
            decode_route(&msg, &mut |_| String::new()),
            Err(RtnlError::Value { want: 4, .. })
        ));
    }
}
