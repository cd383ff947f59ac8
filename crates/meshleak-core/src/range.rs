//! Inclusive ranges of addresses, ports and ids: the one value shape every match uses, so a
//! CIDR, an `iprange`, an nft interval and a single value are all the same thing.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::IpVersion;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AddrRange {
    pub start: IpAddr,
    pub end: IpAddr,
}

impl AddrRange {
    pub fn single(addr: IpAddr) -> Self {
        AddrRange {
            start: addr,
            end: addr,
        }
    }

    pub(crate) fn from_net(net: IpNet) -> Self {
        AddrRange {
            start: net.network(),
            end: net.broadcast(),
        }
    }

    /// Parses `ADDR`, `ADDR/LEN`, `ADDR/MASK` (iptables accepts dotted masks) or `A-B`.
    pub fn parse(text: &str) -> Option<Self> {
        if let Some((a, b)) = text.split_once('-') {
            let (a, b): (IpAddr, IpAddr) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            return (IpVersion::of(&a) == IpVersion::of(&b) && addr_key(&a) <= addr_key(&b))
                .then_some(AddrRange { start: a, end: b });
        }
        if let Some((addr, len)) = text.split_once('/') {
            let addr: IpAddr = addr.parse().ok()?;
            let len: u8 = match len.parse::<u8>() {
                Ok(n) => n,
                Err(_) => mask_len(&len.parse().ok()?)?,
            };
            return IpNet::new(addr, len)
                .ok()
                .map(|n| Self::from_net(n.trunc()));
        }
        text.parse().ok().map(Self::single)
    }

    pub fn version(&self) -> IpVersion {
        IpVersion::of(&self.start)
    }

    pub fn contains(&self, addr: &IpAddr) -> bool {
        IpVersion::of(addr) == self.version()
            && (addr_key(&self.start)..=addr_key(&self.end)).contains(&addr_key(addr))
    }

    /// The CIDR this range is exactly, if it is one.
    pub(crate) fn as_net(&self) -> Option<IpNet> {
        let (s, e) = (addr_key(&self.start), addr_key(&self.end));
        let bits = match self.version() {
            IpVersion::V4 => 32,
            IpVersion::V6 => 128,
        };
        let size = e.checked_sub(s)?.checked_add(1);
        let host_bits = match size {
            None => 128, // the whole IPv6 space
            Some(n) if n.is_power_of_two() && s % n == 0 => n.trailing_zeros(),
            Some(_) => return None,
        };
        IpNet::new(self.start, (bits - host_bits) as u8).ok()
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_net() {
            Some(net) => write!(f, "{}/{}", ip_text(&net.addr()), net.prefix_len()),
            None => write!(f, "{}-{}", ip_text(&self.start), ip_text(&self.end)),
        }
    }
}

/// An address as the netfilter tools print it (glibc's `inet_ntop`): like Rust's form,
/// except that an IPv4-compatible IPv6 address (the first 96 bits zero, the next 16 not)
/// ends in dotted decimal, `::127.0.0.53` where Rust writes `::7f00:35`.
pub(crate) fn ip_text(addr: &IpAddr) -> String {
    match addr {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if s[..6].iter().all(|w| *w == 0) && s[6] != 0 {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                format!("::{a}.{b}.{c}.{d}")
            } else {
                v6.to_string()
            }
        }
        IpAddr::V4(v4) => v4.to_string(),
    }
}

fn mask_len(mask: &IpAddr) -> Option<u8> {
    let key = addr_key(mask);
    let bits = match mask {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    let ones = key.leading_zeros() - (128 - bits);
    let len = (key << (128 - bits)).leading_ones();
    (ones == 0 || len > 0).then_some(len as u8).filter(|&l| {
        let expect = if l == 0 {
            0
        } else {
            (u128::MAX << (128 - l)) >> (128 - bits)
        };
        expect == key
    })
}

/// An address as an ordered number: IPv4 in the low 32 bits.
pub fn addr_key(addr: &IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u32::from(*a) as u128,
        IpAddr::V6(a) => u128::from(*a),
    }
}

pub(crate) fn addr_from_key(version: IpVersion, key: u128) -> IpAddr {
    match version {
        IpVersion::V4 => IpAddr::V4(Ipv4Addr::from(key as u32)),
        IpVersion::V6 => IpAddr::V6(Ipv6Addr::from(key)),
    }
}

pub(crate) fn addr_max(version: IpVersion) -> u128 {
    match version {
        IpVersion::V4 => u32::MAX as u128,
        IpVersion::V6 => u128::MAX,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn single(port: u16) -> Self {
        PortRange {
            start: port,
            end: port,
        }
    }

    /// Parses `N`, `A:B` (iptables) or `A-B` (nft, TPROXY/REDIRECT targets).
    pub fn parse(text: &str) -> Option<Self> {
        let (a, b) = match text.split_once([':', '-']) {
            Some((a, b)) => (a, b),
            None => (text, text),
        };
        let start = if a.is_empty() { 0 } else { a.parse().ok()? };
        let end = if b.is_empty() {
            u16::MAX
        } else {
            b.parse().ok()?
        };
        (start <= end).then_some(PortRange { start, end })
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }
}

/// `N` or `A-B`, as nft prints ranges of ports and ids.
fn fmt_span<T: fmt::Display + PartialEq>(
    f: &mut fmt::Formatter<'_>,
    start: T,
    end: T,
) -> fmt::Result {
    if start == end {
        write!(f, "{start}")
    } else {
        write!(f, "{start}-{end}")
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_span(f, self.start, self.end)
    }
}

/// A uid or gid range (`--uid-owner 106-108`, `meta skuid 100-200`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdRange {
    pub start: u32,
    pub end: u32,
}

impl IdRange {
    pub fn single(id: u32) -> Self {
        IdRange { start: id, end: id }
    }

    pub fn parse(text: &str) -> Option<Self> {
        let (a, b) = text.split_once('-').unwrap_or((text, text));
        let (start, end) = (a.parse().ok()?, b.parse().ok()?);
        (start <= end).then_some(IdRange { start, end })
    }

    pub fn contains(&self, id: u32) -> bool {
        (self.start..=self.end).contains(&id)
    }
}

impl fmt::Display for IdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_span(f, self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_compatible_addresses_print_as_inet_ntop_prints_them() {
        let text = |a: &str| ip_text(&a.parse().unwrap());
        assert_eq!(text("::7f00:35"), "::127.0.0.53");
        assert_eq!(text("::1"), "::1");
        assert_eq!(text("::2"), "::2");
        assert_eq!(text("::ffff:10.0.0.1"), "::ffff:10.0.0.1");
        assert_eq!(text("fd00::1"), "fd00::1");
        assert_eq!(
            AddrRange::parse("::127.0.0.53/128").unwrap().to_string(),
            "::127.0.0.53/128"
        );
    }

    #[test]
    fn parses_cidr_mask_and_ranges() {
        let r = AddrRange::parse("10.1.2.3/8").unwrap();
        assert_eq!(r.to_string(), "10.0.0.0/8");
        assert_eq!(
            AddrRange::parse("10.0.0.0/255.255.0.0")
                .unwrap()
                .to_string(),
            "10.0.0.0/16"
        );
        assert_eq!(
            AddrRange::parse("10.0.0.5-10.0.0.9").unwrap().to_string(),
            "10.0.0.5-10.0.0.9"
        );
        assert_eq!(AddrRange::parse("::/0").unwrap().to_string(), "::/0");
        assert!(AddrRange::parse("10.0.0.9-10.0.0.5").is_none());
        assert!(AddrRange::parse("1.2.3.4/255.0.255.0").is_none());
        assert_eq!(PortRange::parse("1000:").unwrap().end, 65535);
        assert_eq!(
            IdRange::parse("106-108").unwrap(),
            IdRange {
                start: 106,
                end: 108
            }
        );
    }
}
