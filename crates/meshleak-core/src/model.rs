//! The rule model shared by every source (iptables-save dumps, restore input, `nft -j` JSON,
//! and later the native kernel readers).
//!
//! It keeps only what decides a locally generated packet's fate, in typed form, and next to
//! it the text of every rule exactly as its tool prints it, so every verdict can cite it.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

use crate::range::{AddrRange, IdRange, PortRange, addr_from_key, addr_key};

/// Which kernel mechanism holds a table. Legacy and nft tables of the same family both run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    IptablesLegacy,
    IptablesNft,
    Nftables,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::IptablesLegacy => "iptables-legacy",
            Backend::IptablesNft => "iptables-nft",
            Backend::Nftables => "nftables",
        }
    }
}

/// A table's family. `Inet` (nftables only) sees IPv4 and IPv6 packets alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
    Inet,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
            Family::Inet => "inet",
        }
    }

    /// The IP version of an ip/ip6 table (`inet` tables have none).
    pub fn version(self) -> Option<IpVersion> {
        match self {
            Family::Ipv4 => Some(IpVersion::V4),
            Family::Ipv6 => Some(IpVersion::V6),
            Family::Inet => None,
        }
    }

    /// Whether a table of this family sees packets of `version`.
    pub fn sees(self, version: IpVersion) -> bool {
        matches!(
            (self, version),
            (Family::Inet, _) | (Family::Ipv4, IpVersion::V4) | (Family::Ipv6, IpVersion::V6)
        )
    }
}

/// Whether `a` is a link-local IPv6 address (fe80::/10, on every interface with IPv6 on).
pub(crate) fn is_link_local(a: &IpAddr) -> bool {
    matches!(a, IpAddr::V6(v) if (v.segments()[0] & 0xffc0) == 0xfe80)
}

/// The IP version of a packet (a packet is never `inet`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IpVersion {
    #[serde(rename = "ipv4")]
    V4,
    #[serde(rename = "ipv6")]
    V6,
}

impl IpVersion {
    pub fn of(addr: &IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => IpVersion::V4,
            IpAddr::V6(_) => IpVersion::V6,
        }
    }

    pub fn family(self) -> Family {
        match self {
            IpVersion::V4 => Family::Ipv4,
            IpVersion::V6 => Family::Ipv6,
        }
    }

    /// `0.0.0.0` or `::`.
    pub(crate) fn unspecified(self) -> IpAddr {
        match self {
            IpVersion::V4 => IpAddr::from([0u8; 4]),
            IpVersion::V6 => IpAddr::from([0u16; 8]),
        }
    }

    /// An address outside every pod and node (TEST-NET-1, the IPv6 documentation prefix):
    /// what a probe traces to, never sends to.
    pub fn outside(self) -> IpAddr {
        match self {
            IpVersion::V4 => IpAddr::from([192, 0, 2, 1]),
            IpVersion::V6 => IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]),
        }
    }

    /// The loopback address a REDIRECT in OUTPUT rewrites the destination to.
    pub fn loopback(self) -> IpAddr {
        match self {
            IpVersion::V4 => IpAddr::from([127, 0, 0, 1]),
            IpVersion::V6 => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "prerouting" => Hook::Prerouting,
            "input" => Hook::Input,
            "forward" => Hook::Forward,
            "output" => Hook::Output,
            "postrouting" => Hook::Postrouting,
            _ => return None,
        })
    }
}

/// nftables chain type; xtables tables map onto it (`nat` is `Nat`, `mangle` OUTPUT is `Route`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainType {
    Filter,
    Nat,
    Route,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Accept,
    Drop,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaseChain {
    pub hook: Hook,
    pub priority: i32,
    pub chain_type: ChainType,
    pub policy: Policy,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ruleset {
    pub tables: Vec<Table>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub backend: Backend,
    pub family: Family,
    pub name: String,
    pub chains: Vec<Chain>,
    /// Where the table came from (a file name), for messages.
    pub origin: String,
    pub format: DumpFormat,
}

/// How a table was read. `nft -j` output loses the values of iptables-nft's xt matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DumpFormat {
    IptablesSave,
    NftJson,
}

impl Table {
    /// Whether iptables-nft made this nf_tables table: an xtables table name in the ip/ip6
    /// family whose base chains carry the built-in names (`OUTPUT`).
    pub(crate) fn looks_like_iptables_nft(&self) -> bool {
        self.family != Family::Inet
            && ["raw", "mangle", "nat", "filter", "security"].contains(&self.name.as_str())
            && self.chains.iter().all(|c| {
                c.base.is_none()
                    || (Hook::from_name(&c.name).is_some()
                        && c.name.chars().all(|ch| ch.is_ascii_uppercase()))
            })
    }

    /// Whether the table redirects anything to a local socket: its RETURNs are then what
    /// lets traffic escape. Without the namespace's addresses, only a DNAT to loopback is
    /// known to stay local.
    pub fn captures(&self) -> bool {
        self.chains
            .iter()
            .flat_map(|c| c.rules.iter())
            .any(|r| r.actions.iter().any(|a| a.nat_captures(&[])))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chain {
    pub name: String,
    pub base: Option<BaseChain>,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// 1-based position in its chain, as `iptables -L --line-numbers` counts.
    pub position: usize,
    /// The rule as `iptables-save` or `nft -s list ruleset` prints it.
    pub text: String,
    pub matches: Vec<Match>,
    /// Statements in order; at most the last one ends evaluation of the chain.
    pub actions: Vec<Action>,
    /// Its comment (`-m comment --comment`, nft's `comment`), as the tool that wrote it
    /// left it: meshes mark the rules they write into hook chains with one. Boxed: held
    /// for every rule of a scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<Box<str>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Match {
    pub negated: bool,
    pub test: Test,
    /// The fragment of the rule text this match came from.
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    Src,
    Dst,
}

/// An interface name as iptables and nft match it: exact, or a prefix when it ends in `+`/`*`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IfacePattern {
    pub name: String,
    pub wildcard: bool,
}

impl IfacePattern {
    pub fn parse(text: &str) -> Self {
        match text.strip_suffix('+').or_else(|| text.strip_suffix('*')) {
            Some(prefix) => IfacePattern {
                name: prefix.to_string(),
                wildcard: true,
            },
            None => IfacePattern {
                name: text.to_string(),
                wildcard: false,
            },
        }
    }

    pub fn matches(&self, iface: &str) -> bool {
        if self.wildcard {
            iface.starts_with(&self.name)
        } else {
            iface == self.name
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CtState {
    New,
    Established,
    Related,
    Invalid,
    Untracked,
    Snat,
    Dnat,
}

impl CtState {
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "new" => CtState::New,
            "established" => CtState::Established,
            "related" => CtState::Related,
            "invalid" => CtState::Invalid,
            "untracked" => CtState::Untracked,
            "snat" => CtState::Snat,
            "dnat" => CtState::Dnat,
            _ => return None,
        })
    }
}

/// Route types as `-m addrtype` and `fib ... type` name them, and as routes carry them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AddrType {
    Unspec,
    #[default]
    Unicast,
    Local,
    Broadcast,
    Anycast,
    Multicast,
    Blackhole,
    Unreachable,
    Prohibit,
    Throw,
    Nat,
    Xresolve,
}

impl AddrType {
    /// The RTN_* number, as `fib ... type` compares it and a route's `rtm_type` carries it.
    pub(crate) fn from_rtn(n: u32) -> Option<Self> {
        Some(match n {
            0 => AddrType::Unspec,
            1 => AddrType::Unicast,
            2 => AddrType::Local,
            3 => AddrType::Broadcast,
            4 => AddrType::Anycast,
            5 => AddrType::Multicast,
            6 => AddrType::Blackhole,
            7 => AddrType::Unreachable,
            8 => AddrType::Prohibit,
            9 => AddrType::Throw,
            10 => AddrType::Nat,
            11 => AddrType::Xresolve,
            _ => return None,
        })
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "UNSPEC" => AddrType::Unspec,
            "UNICAST" => AddrType::Unicast,
            "LOCAL" => AddrType::Local,
            "BROADCAST" => AddrType::Broadcast,
            "ANYCAST" => AddrType::Anycast,
            "MULTICAST" => AddrType::Multicast,
            "BLACKHOLE" => AddrType::Blackhole,
            "UNREACHABLE" => AddrType::Unreachable,
            "PROHIBIT" => AddrType::Prohibit,
            "THROW" => AddrType::Throw,
            "NAT" => AddrType::Nat,
            "XRESOLVE" => AddrType::Xresolve,
            _ => return None,
        })
    }
}

/// A packet-mark register: the packet's `mark` or its connection's `ctmark`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MarkReg {
    Mark,
    CtMark,
}

/// What one match tests. A test that needs a protocol or family the packet lacks is false
/// whether or not it is negated (`tcp dport != 80` does not match UDP).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Test {
    /// Layer-4 protocol numbers (`-p`, `meta l4proto`, `ip protocol`).
    Protocol {
        protos: Vec<u8>,
    },
    /// Packet family inside an `inet` table (`meta nfproto`).
    NfProto {
        version: IpVersion,
    },
    /// Source or destination address; implies the address's IP version.
    Addr {
        dir: Dir,
        version: IpVersion,
        ranges: Vec<AddrRange>,
    },
    Iface {
        dir: Dir,
        patterns: Vec<IfacePattern>,
    },
    /// Transport ports; `protos` empty means any protocol with ports (`th dport`).
    Port {
        dir: Dir,
        protos: Vec<u8>,
        ranges: Vec<PortRange>,
    },
    /// Socket file fsuid (`--uid-owner`, `meta skuid`).
    Uid {
        ranges: Vec<IdRange>,
    },
    /// Socket file fsgid, and with `suppl_groups` the supplementary groups too.
    Gid {
        ranges: Vec<IdRange>,
        suppl_groups: bool,
    },
    /// `--socket-exists`: locally generated packets always have one.
    SocketExists,
    /// TCP flags: `(flags & mask) == cmp` (`--tcp-flags`, `--syn`, nft `tcp flags`). A
    /// connection's first packet is a SYN, with ECE and CWR too when it asks for ECN.
    TcpFlags {
        mask: u8,
        cmp: u8,
    },
    /// `(reg & mask)` is in one of `values`.
    Mark {
        reg: MarkReg,
        mask: u32,
        values: Vec<(u32, u32)>,
    },
    CtState {
        states: Vec<CtState>,
    },
    /// `-m addrtype` / `fib daddr type`.
    AddrType {
        dir: Dir,
        types: Vec<AddrType>,
        limit_iface_out: bool,
    },
    /// Always true for a first packet (comments, counters, ...).
    Always,
    /// Anything meshleak does not model; evaluation forks on it and may end "unknown".
    Unknown {
        name: String,
    },
}

/// What a source NAT makes the source address. Only rules that run after it (later
/// POSTROUTING chains, and PREROUTING and INPUT of a packet looped back to this host) see
/// it: capture is decided before, so it matters only to them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NatSource {
    /// `--to-source :PORT`: the address stays.
    Kept,
    /// One address.
    To(IpAddr),
    /// One address of a range, picked by a hash of the connection: not known here.
    Range(IpAddr, IpAddr),
    /// What the rule does not say (an address looked up in a map, a field of the packet).
    #[default]
    Unknown,
}

impl NatSource {
    /// From the first and last address of a mapping (`None`: it maps none).
    pub fn of(first: Option<IpAddr>, last: Option<IpAddr>) -> NatSource {
        match (first, last) {
            (None, _) => NatSource::Kept,
            (Some(a), Some(b)) if a != b => NatSource::Range(a, b),
            (Some(a), _) => NatSource::To(a),
        }
    }
}

/// The source ports a source NAT gives, as the rule states them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatPorts {
    /// `:P-Q`: the port stays where it is in the range (and unique), else one of it.
    pub range: Option<PortRange>,
    /// NF_NAT_RANGE_PROTO_RANDOM: a random port, never the original kept.
    #[serde(default)]
    pub random: bool,
    /// NF_NAT_RANGE_PROTO_RANDOM_FULLY.
    #[serde(default)]
    pub random_fully: bool,
    /// NF_NAT_RANGE_PERSISTENT: the same address for a client every time.
    #[serde(default)]
    pub persistent: bool,
    /// The ports are what the rule does not say (a map lookup).
    #[serde(default)]
    pub unknown: bool,
}

impl NatPorts {
    /// From NF_NAT_RANGE_* flag bits and the range given.
    pub fn of(range: Option<PortRange>, flags: u32) -> NatPorts {
        NatPorts {
            range,
            random: flags & NF_NAT_RANGE_PROTO_RANDOM != 0,
            random_fully: flags & NF_NAT_RANGE_PROTO_RANDOM_FULLY != 0,
            persistent: flags & NF_NAT_RANGE_PERSISTENT != 0,
            unknown: false,
        }
    }

    /// Its NF_NAT_RANGE_* flag bits.
    pub fn flags(&self) -> u32 {
        [
            (self.random, NF_NAT_RANGE_PROTO_RANDOM),
            (self.random_fully, NF_NAT_RANGE_PROTO_RANDOM_FULLY),
            (self.persistent, NF_NAT_RANGE_PERSISTENT),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .fold(0, |flags, (_, bit)| flags | bit)
    }

    /// Whether the kernel picks a new port whatever the original (`random`,
    /// `fully-random`).
    pub fn randomized(&self) -> bool {
        self.random || self.random_fully
    }

    /// The flags as nft writes them (`random`, `fully-random`, `persistent`).
    pub fn flag_names(&self) -> impl Iterator<Item = &'static str> {
        let flags = self.flags();
        NAT_FLAGS
            .into_iter()
            .filter(move |(bit, _, _)| flags & bit != 0)
            .map(|(_, nft, _)| nft)
    }
}

/// NF_NAT_RANGE_* flags of `linux/netfilter/nf_nat.h`.
pub const NF_NAT_RANGE_PROTO_RANDOM: u32 = 4;
pub const NF_NAT_RANGE_PERSISTENT: u32 = 8;
pub const NF_NAT_RANGE_PROTO_RANDOM_FULLY: u32 = 16;
pub const NF_NAT_RANGE_NETMAP: u32 = 64;

/// The NAT flags meshleak reads, in the order both tools print them: (bit, as nft writes
/// it, as iptables writes it).
pub const NAT_FLAGS: [(u32, &str, &str); 3] = [
    (NF_NAT_RANGE_PROTO_RANDOM, "random", "--random"),
    (
        NF_NAT_RANGE_PROTO_RANDOM_FULLY,
        "fully-random",
        "--random-fully",
    ),
    (NF_NAT_RANGE_PERSISTENT, "persistent", "--persistent"),
];

/// `reg = ((reg & keep) | or) ^ xor ^ (copy_from & copy_mask)`: covers `MARK --set-xmark`,
/// `CONNMARK --save-mark/--restore-mark` and nft `meta mark set ...` / `ct mark set ...`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MarkSet {
    pub reg: MarkReg,
    pub keep: u32,
    pub or: u32,
    pub xor: u32,
    pub copy: Option<(MarkReg, u32)>,
}

impl MarkSet {
    pub fn apply(&self, reg_value: u32, mark: u32, ctmark: u32) -> u32 {
        let copied = match self.copy {
            Some((MarkReg::Mark, mask)) => mark & mask,
            Some((MarkReg::CtMark, mask)) => ctmark & mask,
            None => 0,
        };
        ((reg_value & self.keep) | self.or) ^ self.xor ^ copied
    }
}

/// A rule statement. Verdicts end the chain; the others change the packet and go on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    Accept,
    Drop,
    Reject,
    Return,
    Jump {
        chain: String,
    },
    Goto {
        chain: String,
    },
    /// Destination becomes the loopback address and (if given) the port.
    Redirect {
        ports: Option<PortRange>,
    },
    Dnat {
        addr: Option<IpAddr>,
        ports: Option<PortRange>,
    },
    /// Source NAT (POSTROUTING): the source becomes `addr`, its port as `ports` say.
    Snat {
        #[serde(default)]
        addr: NatSource,
        #[serde(default)]
        ports: NatPorts,
    },
    /// Source NAT to the address routing picks on the way out (not known here), its port
    /// as `ports` say.
    Masquerade {
        #[serde(default)]
        ports: NatPorts,
    },
    /// `NETMAP --to NET/MASK` (nft: `snat`/`dnat ... prefix to`): the destination (nat
    /// OUTPUT) or the source (POSTROUTING) keeps its bits outside `mask` and takes `to`'s
    /// inside it; ports stay.
    Netmap {
        to: IpAddr,
        mask: IpAddr,
    },
    /// Only valid in PREROUTING; kept so inbound capture can be shown.
    Tproxy {
        port: Option<u16>,
    },
    SetMark(MarkSet),
    /// `CT --notrack`, `NOTRACK`, nft `notrack`: the connection skips NAT.
    Notrack,
    /// Statements with no effect on the verdict (LOG, counters, CHECKSUM, ...).
    Continue {
        name: String,
    },
    /// A target meshleak does not model: the outcome after it is unknown.
    Unknown {
        name: String,
    },
}

impl Action {
    /// Whether this destination NAT hands the connection to a socket of this host, as a
    /// capture does: REDIRECT always, DNAT only to a loopback address or one of `local`
    /// (the namespace's own). A DNAT elsewhere sends the connection on, uncaptured.
    pub(crate) fn nat_captures(&self, local: &[IpAddr]) -> bool {
        match self {
            Action::Redirect { .. } => true,
            Action::Dnat { addr, .. } => addr.is_none_or(|a| {
                let a = a.to_canonical();
                a.is_loopback() || local.contains(&a)
            }),
            _ => false,
        }
    }

    /// The local port a capture delivers to, when its rule names one: a REDIRECT's or
    /// local DNAT's port, a TPROXY's.
    pub(crate) fn capture_port(&self, local: &[IpAddr]) -> Option<u16> {
        match self {
            Action::Tproxy { port } => *port,
            Action::Redirect { ports } | Action::Dnat { ports, .. } if self.nat_captures(local) => {
                ports.map(|p| p.start)
            }
            _ => None,
        }
    }
}

/// Whether a protocol's header starts with ports (TCP, UDP, DCCP, SCTP, UDP-Lite): where
/// `th sport/dport` apply and transport bytes 0-3 are ports (`ah reserved`, `icmp
/// checksum` sit there in others).
pub(crate) fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 33 | 132 | 136)
}

/// Well-known protocol numbers and their names as iptables and nft print them.
/// IANA protocol keywords as netbase's /etc/protocols has them (number, name, alias),
/// which iptables reads with getprotobyname/getprotobynumber: `-p ipcomp` parses, and
/// `iptables-save` prints `-p ipcomp` for 108. Embedded: an offline dump is read on
/// machines whose /etc/protocols may differ.
const PROTOCOLS: &[(u8, &str, &str)] = &[
    (1, "icmp", "icmp"),
    (2, "igmp", "igmp"),
    (3, "ggp", "ggp"),
    (4, "ipencap", "ip-encap"),
    (5, "st", "st"),
    (6, "tcp", "tcp"),
    (8, "egp", "egp"),
    (9, "igp", "igp"),
    (12, "pup", "pup"),
    (17, "udp", "udp"),
    (20, "hmp", "hmp"),
    (22, "xns-idp", "xns-idp"),
    (27, "rdp", "rdp"),
    (29, "iso-tp4", "iso-tp4"),
    (33, "dccp", "dccp"),
    (36, "xtp", "xtp"),
    (37, "ddp", "ddp"),
    (38, "idpr-cmtp", "idpr-cmtp"),
    (41, "ipv6", "ipv6"),
    (43, "ipv6-route", "ipv6-route"),
    (44, "ipv6-frag", "ipv6-frag"),
    (45, "idrp", "idrp"),
    (46, "rsvp", "rsvp"),
    (47, "gre", "gre"),
    (50, "esp", "ipsec-esp"),
    (51, "ah", "ipsec-ah"),
    (57, "skip", "skip"),
    (58, "ipv6-icmp", "ipv6-icmp"),
    (59, "ipv6-nonxt", "ipv6-nonxt"),
    (60, "ipv6-opts", "ipv6-opts"),
    (73, "rspf", "rspf"),
    (81, "vmtp", "vmtp"),
    (88, "eigrp", "eigrp"),
    (89, "ospf", "ospfigp"),
    (93, "ax.25", "ax.25"),
    (94, "ipip", "ipip"),
    (97, "etherip", "etherip"),
    (98, "encap", "encap"),
    (103, "pim", "pim"),
    (108, "ipcomp", "ipcomp"),
    (112, "vrrp", "vrrp"),
    (115, "l2tp", "l2tp"),
    (124, "isis", "isis"),
    (132, "sctp", "sctp"),
    (133, "fc", "fc"),
    (135, "mobility-header", "mobility-header"),
    (136, "udplite", "udplite"),
    (137, "mpls-in-ip", "mpls-in-ip"),
    (138, "manet", "manet"),
    (139, "hip", "hip"),
    (140, "shim6", "shim6"),
    (141, "wesp", "wesp"),
    (142, "rohc", "rohc"),
    (143, "ethernet", "ethernet"),
];

pub fn proto_number(name: &str) -> Option<u8> {
    let lower = name.to_ascii_lowercase();
    Some(match lower.as_str() {
        "icmpv6" | "icmp6" => 58,
        "mh" | "ipv6-mh" => 135,
        other => match PROTOCOLS
            .iter()
            .find(|(_, n, a)| *n == other || *a == other)
        {
            Some((number, ..)) => *number,
            None => return other.parse().ok(),
        },
    })
}

pub fn proto_name(number: u8) -> String {
    match number {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        33 => "dccp".into(),
        n => PROTOCOLS
            .iter()
            .find(|(number, ..)| *number == n)
            .map_or_else(|| n.to_string(), |(_, name, _)| name.to_string()),
    }
}

/// NETMAP's mask from its range's first and last address, as the kernel takes it:
/// `~(min ^ max)` (`None` across families).
pub fn netmap_mask(min: IpAddr, max: IpAddr) -> Option<IpAddr> {
    let v = IpVersion::of(&min);
    (v == IpVersion::of(&max)).then(|| addr_from_key(v, !(addr_key(&min) ^ addr_key(&max))))
}

/// What NETMAP makes of `addr`: its bits outside `mask`, `to`'s inside (`None` across
/// families, which a loaded rule never mixes).
pub fn netmap(addr: IpAddr, to: IpAddr, mask: IpAddr) -> Option<IpAddr> {
    let v = IpVersion::of(&addr);
    if IpVersion::of(&to) != v || IpVersion::of(&mask) != v {
        return None;
    }
    let (a, t, m) = (addr_key(&addr), addr_key(&to), addr_key(&mask));
    Some(addr_from_key(v, (a & !m) | (t & m)))
}
