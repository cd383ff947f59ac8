//! Records of meshleak's BPF `task_file` iterator (`meshleak-collect/bpf/held.bpf.c`):
//! every task's sockets with the credentials owner matches really compare (the file's
//! `f_cred`, which /proc cannot show), and its io_uring rings with what they can create
//! sockets as. Decoded here from bytes, so the layout is tested without a kernel.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Every record's size; the C side asserts the same.
pub const RECORD_SIZE: usize = 144;

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// What a record describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A socket in the task's fd table.
    Socket,
    /// A socket in a ring's fixed-file table (`slot` is its index): in no fd table.
    Fixed,
    /// A personality registered on a ring (`slot` is its id): credentials any request may
    /// name, whatever its holder runs as now.
    Personality,
    /// The credentials of a ring's SQPOLL thread, which submits for it.
    Sqpoll,
    /// The ring itself, with what could not be read ([`Record::flags`]).
    Ring,
    /// A process (its leader thread), with its cgroup ([`Record::cgroup`]).
    Task,
}

/// [`Kind::Ring`] flags: more personalities than one xarray node holds (ids above 63).
pub const RING_PERSONALITIES_CUT: u32 = 1;
/// [`Kind::Ring`] flags: more fixed files than one pass reads.
pub const RING_FIXED_CUT: u32 = 2;
/// [`Kind::Ring`] flags: a ring registered with IORING_REGISTER_RING_FDS (`fd` is its
/// index there), maybe in no fd table; its contents are not read.
pub const RING_REGISTERED: u32 = 4;

/// Credentials as the kernel keeps them (global ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cred {
    pub fsuid: u32,
    pub fsgid: u32,
    pub cap_eff: u64,
}

/// What a socket record says of the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sock {
    pub ino: u64,
    /// The inode's owner (`stat`): the creator's, unless `fchown` changed it.
    pub inode_uid: u32,
    pub inode_gid: u32,
    pub family: u16,
    pub sock_type: u16,
    pub protocol: u16,
    /// The kernel's state (TCP: 1 established ... 10 listen).
    pub state: u16,
    /// The network namespace it was made in (its inode).
    pub netns: u32,
    /// IP sockets: the local address and port (port 0: not bound).
    pub local: Option<(IpAddr, u16)>,
    pub remote: Option<(IpAddr, u16)>,
    /// Unix sockets: the peer's inode (its listener's, when not accepted yet) and namespace.
    pub peer: Option<(u64, u32)>,
    /// SO_MARK.
    pub mark: u32,
    /// An IPv6 socket's IPV6_V6ONLY.
    pub v6only: bool,
}

impl Sock {
    /// A TCP listener (state 10), which sends nothing first.
    pub fn listening(&self) -> bool {
        self.sock_type == 1 && self.state == 10
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    /// Process and thread, as the reader's pid namespace numbers them.
    pub tgid: u32,
    pub tid: u32,
    /// The network namespace the task lives in (0: exiting, no namespaces left).
    pub task_netns: u32,
    /// The descriptor (of the ring, for a ring's records).
    pub fd: u32,
    pub slot: u32,
    pub flags: u32,
    /// The file's inode: a socket's, or a ring's (each ring has its own from Linux 6.7).
    pub ino: u64,
    /// [`Kind::Task`]: its cgroup v2's id (the kernfs node id, a file handle's content).
    pub cgroup: u64,
    /// The file's `f_cred` for a socket; the registered or SQPOLL credentials otherwise.
    pub cred: Cred,
    /// For [`Kind::Socket`] and [`Kind::Fixed`].
    pub sock: Option<Sock>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("the iterator's output is {0} bytes, not a whole number of {RECORD_SIZE}-byte records")]
    Cut(usize),
    #[error("record {index} has kind {kind}, which this meshleak does not know")]
    Kind { index: usize, kind: u32 },
}

pub fn decode(bytes: &[u8]) -> Result<Vec<Record>, DecodeError> {
    if !bytes.len().is_multiple_of(RECORD_SIZE) {
        return Err(DecodeError::Cut(bytes.len()));
    }
    bytes
        .chunks_exact(RECORD_SIZE)
        .enumerate()
        .map(|(index, r)| record(index, r))
        .collect()
}

fn record(index: usize, r: &[u8]) -> Result<Record, DecodeError> {
    let u16_at = |o: usize| u16::from_ne_bytes([r[o], r[o + 1]]);
    let u32_at = |o: usize| u32::from_ne_bytes([r[o], r[o + 1], r[o + 2], r[o + 3]]);
    let u64_at = |o: usize| u64::from(u32_at(o)) | (u64::from(u32_at(o + 4)) << 32);
    let kind = match u32_at(0) {
        1 => Kind::Socket,
        2 => Kind::Fixed,
        3 => Kind::Personality,
        4 => Kind::Sqpoll,
        5 => Kind::Ring,
        6 => Kind::Task,
        kind => return Err(DecodeError::Kind { index, kind }),
    };
    let family = u16_at(64);
    let addr = |o: usize| -> IpAddr {
        let mut b = [0u8; 16];
        b.copy_from_slice(&r[o..o + 16]);
        if family == AF_INET {
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(b))
        }
    };
    let ip = matches!(family, AF_INET | AF_INET6);
    let peer_ino = u64_at(112);
    let sock = matches!(kind, Kind::Socket | Kind::Fixed).then(|| Sock {
        ino: u64_at(40),
        inode_uid: u32_at(32),
        inode_gid: u32_at(36),
        family,
        sock_type: u16_at(66),
        protocol: u16_at(68),
        state: u16_at(70),
        netns: u32_at(56),
        local: ip.then(|| (addr(76), u16_at(72))),
        remote: ip.then(|| (addr(92), u16_at(74))),
        peer: (family == AF_UNIX && peer_ino != 0).then(|| (peer_ino, u32_at(120))),
        mark: u32_at(128),
        v6only: family == AF_INET6 && u32_at(132) & 1 != 0,
    });
    Ok(Record {
        kind,
        tgid: u32_at(4),
        tid: u32_at(8),
        task_netns: u32_at(124),
        fd: u32_at(12),
        slot: u32_at(16),
        flags: u32_at(20),
        ino: u64_at(40),
        cgroup: u64_at(136),
        cred: Cred {
            fsuid: u32_at(24),
            fsgid: u32_at(28),
            cap_eff: u64_at(48),
        },
        sock,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record laid out as the C struct is.
    fn raw(kind: u32, family: u16, f: impl Fn(&mut [u8; RECORD_SIZE])) -> [u8; RECORD_SIZE] {
        let mut r = [0u8; RECORD_SIZE];
        r[0..4].copy_from_slice(&kind.to_ne_bytes());
        r[4..8].copy_from_slice(&42u32.to_ne_bytes());
        r[8..12].copy_from_slice(&43u32.to_ne_bytes());
        r[12..16].copy_from_slice(&7u32.to_ne_bytes());
        r[24..28].copy_from_slice(&0u32.to_ne_bytes());
        r[28..32].copy_from_slice(&1337u32.to_ne_bytes());
        r[32..36].copy_from_slice(&10001u32.to_ne_bytes());
        r[36..40].copy_from_slice(&10001u32.to_ne_bytes());
        r[40..48].copy_from_slice(&0x1_0000_0005u64.to_ne_bytes());
        r[56..60].copy_from_slice(&4026532000u32.to_ne_bytes());
        r[64..66].copy_from_slice(&family.to_ne_bytes());
        f(&mut r);
        r
    }

    #[test]
    fn an_ip_socket_gives_its_f_cred_inode_owner_and_bound_address() {
        let r = raw(1, AF_INET, |r| {
            r[66..68].copy_from_slice(&1u16.to_ne_bytes());
            r[68..70].copy_from_slice(&6u16.to_ne_bytes());
            r[70..72].copy_from_slice(&7u16.to_ne_bytes());
            r[72..74].copy_from_slice(&15001u16.to_ne_bytes());
            r[76..80].copy_from_slice(&[169, 254, 0, 1]);
        });
        let got = decode(&r).unwrap();
        assert_eq!(got.len(), 1);
        let rec = got[0];
        assert_eq!(
            (rec.kind, rec.tgid, rec.tid, rec.fd),
            (Kind::Socket, 42, 43, 7)
        );
        assert_eq!((rec.cred.fsuid, rec.cred.fsgid), (0, 1337));
        let s = rec.sock.unwrap();
        assert_eq!(
            (s.inode_uid, s.inode_gid, s.ino),
            (10001, 10001, 0x1_0000_0005)
        );
        assert_eq!(s.local, Some(("169.254.0.1".parse().unwrap(), 15001)));
        assert_eq!(s.netns, 4026532000);
        assert!(s.peer.is_none() && !s.listening());
    }

    #[test]
    fn a_unix_socket_names_its_peer_and_an_ipv6_one_its_address() {
        let unix = raw(1, AF_UNIX, |r| {
            r[112..120].copy_from_slice(&99u64.to_ne_bytes());
            r[120..124].copy_from_slice(&4026531840u32.to_ne_bytes());
            r[124..128].copy_from_slice(&4026532001u32.to_ne_bytes());
        });
        let v6 = raw(2, AF_INET6, |r| {
            r[76..92].copy_from_slice(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
            r[128..132].copy_from_slice(&0x539u32.to_ne_bytes());
            r[132..136].copy_from_slice(&1u32.to_ne_bytes());
        });
        let got = decode(&[unix, v6].concat()).unwrap();
        assert_eq!(got[0].sock.unwrap().peer, Some((99, 4026531840)));
        assert_eq!(got[0].task_netns, 4026532001);
        assert_eq!(got[0].sock.unwrap().local, None);
        assert_eq!(got[1].kind, Kind::Fixed);
        assert_eq!(
            (got[1].sock.unwrap().mark, got[1].sock.unwrap().v6only),
            (0x539, true)
        );
        assert_eq!(
            got[1].sock.unwrap().local,
            Some(("fd00::1".parse().unwrap(), 0))
        );
    }

    #[test]
    fn credentials_records_have_no_socket_and_bad_output_is_refused() {
        let p = raw(3, 0, |_| {});
        assert_eq!(decode(&p).unwrap()[0].sock, None);
        assert_eq!(decode(&p[..100]), Err(DecodeError::Cut(100)));
        let bad = raw(9, 0, |_| {});
        assert_eq!(
            decode(&[p, bad].concat()),
            Err(DecodeError::Kind { index: 1, kind: 9 })
        );
    }
}
