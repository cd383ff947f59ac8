//! Lines of the kernel's `/proc/net` socket tables (`tcp`, `udp`, `raw`, `icmp` and their
//! IPv6 twins, and `packet`) as socket facts. Pure: the files were read elsewhere, from the
//! namespace's own thread (`/proc/thread-self/net`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::snapshot::{PacketSocket, SocketFacts, SocketProto};
use crate::sockdiag;

/// One line of /proc/net/packet: sk RefCnt Type Proto Iface R Rmem User Inode (Proto in
/// hex, host order).
pub fn packet_line(line: &str) -> Option<PacketSocket> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 9 {
        return None;
    }
    Some(PacketSocket {
        kind: match f[2] {
            "2" => "dgram",
            "3" => "raw",
            _ => "other",
        }
        .to_string(),
        ethertype: u16::from_str_radix(f[3], 16).ok()?,
        ifindex: f[4].parse().ok()?,
        uid: f[7].parse().ok()?,
        inode: f[8].parse().ok()?,
    })
}

/// One line of /proc/net/{tcp,udp,raw}{,6}: sl local rem st tx:rx tr:when retrnsmt uid timeout inode.
pub fn socket_line(line: &str, proto: SocketProto) -> Option<SocketFacts> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 10 {
        return None;
    }
    let (local, local_port) = endpoint(f[1])?;
    let (remote, remote_port) = endpoint(f[2])?;
    let st = u8::from_str_radix(f[3], 16).ok()?;
    let state = sockdiag::state_name(proto, st);
    Some(SocketFacts {
        proto,
        local,
        local_port,
        remote,
        remote_port,
        state: state.to_string(),
        uid: f[7].parse().ok()?,
        inode: f[9].parse().ok()?,
        v6only: None,
        mark: None,
    })
}

/// `0100007F:3A99` (IPv4, host-order words) or 32 hex digits (IPv6, four host-order words).
fn endpoint(text: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(addr, 16).ok()?.swap_bytes(),
        )),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                let w = u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).ok()?;
                bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some((ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_lines() {
        let s = socket_line("   0: 0100007F:3A99 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1337        0 48862 1 0000000000000000 100 0 0 10 0", SocketProto::Tcp).unwrap();
        assert_eq!(
            (s.local, s.local_port, s.state.as_str(), s.uid, s.inode),
            ("127.0.0.1".parse().unwrap(), 15001, "listen", 1337, 48862)
        );
        let s = socket_line("  1: 0000000000000000FFFF00000100007F:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 123 2 0000000000000000 0", SocketProto::Udp).unwrap();
        assert_eq!(s.local, "::ffff:127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(s.state, "unconnected");
        assert!(socket_line("garbage", SocketProto::Raw).is_none());
    }

    #[test]
    fn parses_proc_net_packet_lines() {
        let p =
            packet_line("ffff8a0c0c5e3000 3      3    0800   7     1 0      10001  91234").unwrap();
        assert_eq!(
            (p.kind.as_str(), p.ethertype, p.ifindex, p.uid, p.inode),
            ("raw", 0x0800, 7, 10001, 91234)
        );
        assert!(packet_line("sk RefCnt Type Proto Iface R Rmem User Inode").is_none());
    }
}
