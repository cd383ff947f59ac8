//! The facts a scan gathers, and nothing else: serializable, so a node's state can be saved
//! (`meshleak collect`) and judged elsewhere (`meshleak analyze --snapshot`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::eval::SourcePort;
use crate::model::{AddrType, IpVersion, Ruleset};
use crate::range::PortRange;

/// Bump when a field changes meaning or is removed.
pub const SNAPSHOT_VERSION: u32 = 2;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub snapshot_version: u32,
    pub node: String,
    /// The kernel release (`uname -r`): some capabilities mean more on newer kernels.
    pub kernel: String,
    /// Seconds since the Unix epoch.
    pub scanned_at: u64,
    pub netns: Vec<NetnsFacts>,
    /// The containers the processes' cgroups name, as their runtimes describe them.
    #[serde(default)]
    pub containers: Vec<crate::attribution::ContainerFacts>,
    /// Namespaces that could not be read, with why.
    pub errors: Vec<String>,
    /// Processes and namespaces that vanished while being read (normal on a busy node).
    pub vanished_processes: usize,
    pub vanished_netns: usize,
    /// Network namespaces found but not read (their errors are in `errors`).
    #[serde(default)]
    pub unread_netns: usize,
    /// Processes that exist but could not be read: their verdicts are missing.
    #[serde(default)]
    pub unread_processes: Vec<UnreadProcess>,
    /// How held sockets' owners were read, node-wide.
    #[serde(default)]
    pub owners: OwnersRead,
    /// Why cgroup BPF programs could not be read (`None`: read, or not asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programs_unread: Option<String>,
}

/// How a scan read held sockets' owners: the kernel's `f_cred` through BPF, or, where BPF
/// could not load, the inodes' owners, with why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnersRead {
    pub source: OwnerSource,
    /// Why BPF was not used (`None` with `f-cred`, or in a snapshot that did not say).
    pub why: Option<String>,
}

impl Snapshot {
    /// Folds in `part`, a scan of only the namespaces in `scope` (the agent re-reads one
    /// namespace when something in it changed): their facts are replaced by the new ones,
    /// and those of `scope` that `part` no longer has are gone, unless `part` says it could
    /// not read them. What is known of the other
    /// namespaces is kept; containers no remaining process is in are dropped, so a pod that
    /// went away leaves nothing behind. Errors of both are kept (the next whole scan
    /// replaces them all): a namespace that failed to read stays said.
    pub fn merge(&mut self, part: Snapshot, scope: &[u64]) {
        let in_scope = |inode: Option<u64>| inode.is_some_and(|i| scope.contains(&i));
        // A namespace of the scope that could not be read this time (its reader missed its
        // deadline, or failed) is still there: what was known of it stays.
        let failed = |inode: u64| {
            let named = format!("network namespace {inode}:");
            part.errors.iter().any(|e| e.starts_with(&named))
        };
        self.netns.retain(|n| {
            !scope.contains(&n.inode)
                || (failed(n.inode) && !part.netns.iter().any(|p| p.inode == n.inode))
        });
        self.netns.extend(part.netns);
        self.netns.sort_by_key(|n| n.inode);
        for c in part.containers {
            match self.containers.iter_mut().find(|o| o.id == c.id) {
                Some(old) => *old = c,
                None => self.containers.push(c),
            }
        }
        let mut held: std::collections::HashSet<String> = self
            .netns
            .iter()
            .flat_map(|n| &n.processes)
            .filter_map(|p| crate::attribution::from_cgroup(&p.cgroup).container_id)
            .collect();
        // And their sandboxes: the pod's user is read from the sandbox's file.
        let sandboxes: Vec<String> = self
            .containers
            .iter()
            .filter(|c| held.contains(&c.id))
            .filter_map(|c| c.sandbox_id.clone())
            .collect();
        held.extend(sandboxes);
        self.containers.retain(|c| held.contains(&c.id));
        self.unread_processes.retain(|u| !in_scope(u.netns));
        for u in part.unread_processes {
            // Known to be elsewhere only in the partial scan's sense (not in its scope).
            let ours = in_scope(u.netns) || (u.netns.is_none() && !u.elsewhere);
            if ours && !self.unread_processes.iter().any(|o| o.pid == u.pid) {
                self.unread_processes.push(u);
            }
        }
        let mut new_errors = false;
        for e in part.errors {
            if !self.errors.contains(&e) {
                self.errors.push(e);
                new_errors = true;
            }
        }
        // A namespace that fails at every re-read is counted once.
        if new_errors {
            self.unread_netns += part.unread_netns;
        }
        self.vanished_processes += part.vanished_processes;
        self.vanished_netns += part.vanished_netns;
        self.scanned_at = part.scanned_at;
    }
}

/// A process meshleak could not read, and which namespace it is in as far as the scan
/// could tell (`/proc/PID/net/dev` stays readable where the namespace link is closed).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UnreadProcess {
    pub pid: u32,
    /// Empty when even its name could not be read.
    pub comm: String,
    pub cause: UnreadCause,
    /// The scanned namespace it is in; `None` when that is not known.
    pub netns: Option<u64>,
    /// Known to be in a namespace this scan does not report (the host's, or not the pod
    /// asked for): it cannot change any verdict reported.
    pub elsewhere: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnreadCause {
    /// Permission denied, and meshleak lacks CAP_SYS_PTRACE (or CAP_DAC_READ_SEARCH).
    MissingCapability,
    /// Permission denied although meshleak holds those capabilities: a security module,
    /// or the process's own protection (not dumpable, another user namespace), forbids it.
    Forbidden,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetnsFacts {
    pub inode: u64,
    /// Bind mounts naming it (`/run/netns/NAME`).
    pub paths: Vec<String>,
    /// Whether this is the host's (pid 1's) namespace.
    pub host: bool,
    pub rules: Ruleset,
    pub interfaces: Vec<Interface>,
    pub routes: Vec<Route>,
    /// Its policy-routing rules in the order the kernel tries them; `None`: not read (a
    /// snapshot from before they were collected): only the main table is known.
    #[serde(default)]
    pub routing_rules: Option<Vec<RoutingRule>>,
    pub sockets: Vec<SocketFacts>,
    /// Its packet sockets (`AF_PACKET`): what they send skips the IP stack, netfilter
    /// included, so no capture rule ever sees it.
    #[serde(default)]
    pub packet_sockets: Vec<PacketSocket>,
    /// TCP and UDP connection-tracking entries; `None` when not read (no conntrack in the
    /// kernel, the dump refused, or a snapshot from before they were collected).
    #[serde(default)]
    pub conntrack: Option<Vec<Tracked>>,
    pub processes: Vec<ProcessFacts>,
    /// The inode of its `/proc/net/dev`: ties processes whose namespace link is closed to
    /// this namespace.
    #[serde(default)]
    pub net_dev: Option<u64>,
    /// `net.ipv4.ip_unprivileged_port_start`: ports from it up need no privilege to bind
    /// (a source-port exemption there is anyone's). `None`: not read (1024 assumed).
    #[serde(default)]
    pub unprivileged_port_start: Option<u16>,
    /// `net.ipv4.ip_local_port_range`: where connect() picks a source port. `None`: not
    /// read (Linux's default, 32768-60999, assumed).
    #[serde(default)]
    pub ephemeral_ports: Option<PortRange>,
    /// The user namespace that owns it: owner matches interpret the ids in its rules there,
    /// and only capabilities held there (or in an ancestor) act on it. `None`: not read.
    #[serde(default)]
    pub owner: Option<NetnsOwner>,
    /// What could not be read in it (sockets, routes, interfaces), with why: a table not
    /// read is not an empty one.
    #[serde(default)]
    pub gaps: Vec<String>,
    /// Why its rules were not read whole (more than meshleak reads from one namespace): no
    /// verdict can be given for it, and `rules-too-large` says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_unread: Option<String>,
}

impl NetnsFacts {
    /// Its routes, routing rules and addresses, for route lookups.
    pub fn routing(&self) -> crate::route::Routing<'_> {
        crate::route::Routing {
            routes: &self.routes,
            rules: self.routing_rules.as_deref(),
            interfaces: &self.interfaces,
            ephemeral: self.ephemeral(),
        }
    }

    /// The source port connect() picks here: one of its `ip_local_port_range`.
    pub fn ephemeral(&self) -> SourcePort {
        self.ephemeral_ports
            .map_or(SourcePort::DEFAULT_EPHEMERAL, SourcePort::Ephemeral)
    }

    /// The namespace's own addresses (IPv4-mapped ones as the IPv4 they are): a packet to
    /// one of them, or to loopback, stays on this host.
    pub(crate) fn local_addrs(&self) -> Vec<IpAddr> {
        self.interfaces
            .iter()
            .flat_map(|i| i.addrs.iter().map(|a| a.to_canonical()))
            .collect()
    }
}

/// The user namespace owning a network namespace, as `ioctl(NS_GET_USERNS)` names it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetnsOwner {
    /// Inodes of the owning user namespace, then of its ancestors up to meshleak's own.
    pub userns: Vec<u64>,
    /// Its id maps (inside, outside as meshleak sees them, count), from a process that lives
    /// in it; `None` when no such process was read: ids cannot then be interpreted.
    pub uid_map: Option<Vec<(u32, u32, u32)>>,
    pub gid_map: Option<Vec<(u32, u32, u32)>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    pub addrs: Vec<IpAddr>,
}

/// The main routing table's id: where a snapshot from before tables were read has its routes.
pub(crate) const MAIN_TABLE: u32 = 254;

/// A route of any table: destination network, output interface, gateway.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    pub prefix: u8,
    /// Empty when the kernel names no interface (a blackhole, or a nexthop object).
    pub oif: String,
    pub gateway: Option<IpAddr>,
    #[serde(default = "main_table")]
    pub table: u32,
    /// Its type: unicast, local (delivered through lo), blackhole, unreachable, prohibit,
    /// throw (ends this table's lookup as if no route matched: the next rule is tried).
    #[serde(default)]
    pub kind: AddrType,
    /// Among routes of one prefix the lowest metric wins.
    #[serde(default)]
    pub metric: u32,
    /// The source address the route prefers (`src`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefsrc: Option<IpAddr>,
    /// IPv6 source-specific routing (`from NET`): only traffic from this network takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<(IpAddr, u8)>,
    /// A multipath route's other nexthops' interfaces: the kernel picks one per flow by hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_oifs: Vec<String>,
    /// Its nexthop is a nexthop object (`nhid`), whose interface meshleak does not read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nexthop_object: bool,
}

fn main_table() -> u32 {
    MAIN_TABLE
}

/// A policy-routing rule (`ip rule`): which table a flow's route is looked up in, chosen
/// by source, destination, mark, socket uid, protocol and ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingRule {
    pub family: IpVersion,
    pub priority: u32,
    /// `not`: the rule applies where its selectors do not match.
    pub invert: bool,
    pub src: Option<(IpAddr, u8)>,
    pub dst: Option<(IpAddr, u8)>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    /// It names an interface that does not exist: it matches nothing.
    pub detached: bool,
    /// Mark and mask: it matches where `(mark ^ fwmark) & mask == 0`.
    pub fwmark: Option<(u32, u32)>,
    /// The socket's uid range (`uidrange`), as the kernel dumps it: in the initial user
    /// namespace's ids.
    pub uids: Option<(u32, u32)>,
    pub ip_proto: Option<u8>,
    pub sport: Option<(u16, u16)>,
    pub dport: Option<(u16, u16)>,
    pub action: RuleAction,
    /// `suppress_prefixlength N`: a route this table gives with a prefix of N or less is
    /// refused, and the next rule is tried.
    pub suppress_prefixlen: Option<u32>,
    /// Selectors meshleak does not model (tos, tunnel id, l3mdev, interface-group
    /// suppression): a lookup this rule may decide is uncertain.
    pub unmodelled: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// `lookup TABLE`.
    Table(u32),
    /// `goto PRIORITY`: on to the rule of that priority.
    Goto(u32),
    Nop,
    Blackhole,
    Unreachable,
    Prohibit,
    Other(u8),
}

impl RuleAction {
    pub(crate) fn from_code(code: u8, table: u32) -> RuleAction {
        match code {
            1 => RuleAction::Table(table),
            2 => RuleAction::Goto(0),
            3 => RuleAction::Nop,
            6 => RuleAction::Blackhole,
            7 => RuleAction::Unreachable,
            8 => RuleAction::Prohibit,
            other => RuleAction::Other(other),
        }
    }
}

/// As `ip rule` prints it: `100:\tfrom all uidrange 2000-2001 lookup 100`.
impl std::fmt::Display for RoutingRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let net = |(a, len): (IpAddr, u8)| {
            let full = if a.is_ipv4() { 32 } else { 128 };
            if len == full {
                a.to_string()
            } else {
                format!("{a}/{len}")
            }
        };
        write!(f, "{}:\t", self.priority)?;
        if self.invert {
            write!(f, "not ")?;
        }
        match self.src {
            Some(s) if s.1 > 0 => write!(f, "from {}", net(s))?,
            _ => write!(f, "from all")?,
        }
        if let Some(d) = self.dst.filter(|d| d.1 > 0) {
            write!(f, " to {}", net(d))?;
        }
        for t in &self.unmodelled {
            write!(f, " {t}")?;
        }
        if let Some((mark, mask)) = self.fwmark {
            write!(f, " fwmark 0x{mark:x}")?;
            if mask != u32::MAX {
                write!(f, "/0x{mask:x}")?;
            }
        }
        if let Some(i) = &self.iif {
            write!(f, " iif {i}")?;
        }
        if let Some(o) = &self.oif {
            write!(f, " oif {o}")?;
        }
        if let Some((a, b)) = self.uids {
            write!(f, " uidrange {a}-{b}")?;
        }
        if let Some(p) = self.ip_proto {
            write!(f, " ipproto {}", crate::model::proto_name(p))?;
        }
        for (name, range) in [("sport", self.sport), ("dport", self.dport)] {
            match range {
                Some((a, b)) if a == b => write!(f, " {name} {a}")?,
                Some((a, b)) => write!(f, " {name} {a}-{b}")?,
                None => {}
            }
        }
        match self.action {
            RuleAction::Table(t) => match t {
                255 => write!(f, " lookup local")?,
                254 => write!(f, " lookup main")?,
                253 => write!(f, " lookup default")?,
                t => write!(f, " lookup {t}")?,
            },
            RuleAction::Goto(p) => write!(f, " goto {p}")?,
            RuleAction::Nop => write!(f, " nop")?,
            RuleAction::Blackhole => write!(f, " blackhole")?,
            RuleAction::Unreachable => write!(f, " unreachable")?,
            RuleAction::Prohibit => write!(f, " prohibit")?,
            RuleAction::Other(c) => write!(f, " action {c}")?,
        }
        if let Some(n) = self.suppress_prefixlen {
            write!(f, " suppress_prefixlength {n}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SocketProto {
    Tcp,
    Udp,
    Raw,
    /// An ICMP echo ("ping") socket (`SOCK_DGRAM`, `IPPROTO_ICMP`), which
    /// `net.ipv4.ping_group_range` lets unprivileged processes open.
    Ping,
}

impl SocketProto {
    /// The name as ss and the reports print it.
    pub fn name(self) -> &'static str {
        match self {
            SocketProto::Tcp => "tcp",
            SocketProto::Udp => "udp",
            SocketProto::Raw => "raw",
            SocketProto::Ping => "ping",
        }
    }
}

/// A packet socket, as `/proc/net/packet` lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PacketSocket {
    pub inode: u64,
    /// `raw` (whole frames) or `dgram` (the link header built by the kernel).
    pub kind: String,
    /// The ethertype it was opened or bound for (0x0800 IPv4, 0x0003 every protocol).
    pub ethertype: u16,
    /// The interface index it is bound to; 0: every interface.
    pub ifindex: u32,
    pub uid: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SocketFacts {
    pub proto: SocketProto,
    pub local: IpAddr,
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
    /// `listen`, `established`, ... (tcp); `unconnected` / `connected` (udp, raw).
    pub state: String,
    pub uid: u32,
    pub inode: u64,
    /// For an IPv6 socket: whether it is IPv6 only (`IPV6_V6ONLY`); a listener on `::`
    /// without it takes IPv4 connections too. `None`: not known (or IPv4).
    #[serde(default)]
    pub v6only: Option<bool>,
    /// Its SO_MARK, the initial mark of every packet it sends (mark-based meshes exempt
    /// the proxy by it). `None`: not known (sock_diag gives it only to CAP_NET_ADMIN).
    #[serde(default)]
    pub mark: Option<u32>,
}

/// A connection-tracking entry: the first packet's 5-tuple and where replies come from. A
/// reply source other than the original destination is destination NAT (a redirect).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracked {
    pub proto: SocketProto,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub reply_src: IpAddr,
    pub reply_sport: u16,
}

impl Tracked {
    /// Where the connection really goes, after destination NAT.
    pub fn translated_to(&self) -> Option<(IpAddr, u16)> {
        ((self.reply_src, self.reply_sport) != (self.dst, self.dport))
            .then_some((self.reply_src, self.reply_sport))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcessFacts {
    pub pid: u32,
    /// Its parent's pid: without container metadata the proxy's processes are its listener's
    /// descendants.
    #[serde(default)]
    pub ppid: u32,
    pub comm: String,
    /// The path of its executable; read only for snapshots (`collect`), `None` otherwise.
    pub exe: Option<String>,
    /// The thread group leader's credentials, as the kernel applies them to new sockets
    /// (as meshleak's user namespace sees them).
    pub fsuid: u32,
    pub fsgid: u32,
    pub groups: Vec<u32>,
    /// Its real, effective, saved and fs uids and gids (as meshleak's user namespace sees
    /// them): without any capability it may switch to each of them (`setresuid`,
    /// `setfsuid`), so an exempt one is an exemption it can take at will.
    #[serde(default)]
    pub all_uids: Vec<u32>,
    #[serde(default)]
    pub all_gids: Vec<u32>,
    pub cap_eff: u64,
    /// Its permitted capabilities (`CapPrm`, which holds the ambient ones too): `capset`
    /// raises any of them to effective at will, so they count as held.
    #[serde(default)]
    pub cap_prm: u64,
    pub cap_bnd: u64,
    /// `NoNewPrivs` of its status (Kubernetes' `allowPrivilegeEscalation: false` sets it):
    /// unset, an exec of a setgid file gains that file's group. `None`: not read.
    #[serde(default)]
    pub no_new_privs: Option<bool>,
    /// The inode of its user namespace: its capabilities act only there and below.
    #[serde(default)]
    pub userns: u64,
    /// `/proc/PID/uid_map` lines (inside, outside, count) of its own user namespace: the
    /// ids it may switch to with CAP_SETUID/CAP_SETGID there.
    pub uid_map: Vec<(u32, u32, u32)>,
    pub gid_map: Vec<(u32, u32, u32)>,
    pub cgroup: String,
    /// Only with `--include-cmdline`: command lines hold secrets.
    pub cmdline: Option<Vec<String>>,
    /// The sockets it holds open (its own fd table's, its threads' private ones and its
    /// io_uring rings' fixed files), sorted by inode.
    pub sockets: Vec<HeldSocket>,
    /// BPF programs effective on its cgroup that act on its sockets before netfilter
    /// (connect4/6, sendmsg4/6, bind4/6, sock_create). Read only with BPF.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroup_programs: Vec<CgroupProgram>,
    /// Its io_uring rings: each can make sockets with credentials other than its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rings: Vec<RingFacts>,
    /// Threads whose credentials differ from the leader's: credentials are per thread, and
    /// each thread's new sockets get its own.
    #[serde(default)]
    pub threads: Vec<ThreadFacts>,
    /// The inode of its pid namespace: processes sharing one can signal each other.
    pub pidns: u64,
    /// Its pid inside its own pid namespace (the last of status's `NSpid`): 1 for the
    /// namespace's init, such as a pod sandbox's pause. `None`: not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_pid: Option<u32>,
}

/// A socket a process holds, with the credentials the kernel judges it by.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldSocket {
    /// Its descriptor; for a socket in an io_uring ring's fixed-file table, the ring's.
    pub fd: u32,
    pub inode: u64,
    /// The fsuid and fsgid owner matches compare: the socket file's `f_cred`, its
    /// creator's at creation, whoever holds it now (`owner_source: f-cred`); where that
    /// could not be read, the inode's owner (`stat`), which `fchown` can change without
    /// changing what the kernel compares (`owner_source: inode`).
    pub uid: u32,
    pub gid: u32,
    #[serde(default)]
    pub owner_source: OwnerSource,
    /// The inode's owner where it differs from `f_cred` (the socket was `fchown`ed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inode_owner: Option<(u32, u32)>,
    /// An IP socket's local address and port, where it is bound (by `bind`, or by a
    /// `connect` that picked them): a source port the rules exempt is a way out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<(IpAddr, u16)>,
    /// Its mark (SO_MARK), the initial mark of what it sends: set while the process could
    /// (CAP_NET_ADMIN), kept after it can no longer. `None`: not read (no BPF).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<u32>,
    /// An IPv6 socket's `IPV6_V6ONLY`: without it, it can send IPv4 too. `None`: not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v6only: Option<bool>,
    /// In an io_uring ring's fixed-file table at this index (`fd` is the ring's), not in
    /// any fd table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_slot: Option<u32>,
    /// A unix socket connected to one of another network namespace (path sockets cross
    /// namespaces; a passed descriptor does too): that process can send for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix_peer: Option<UnixPeer>,
    /// The thread whose private fd table (`unshare(CLONE_FILES)`) holds it; `None`: the
    /// process's own table.
    #[serde(default)]
    pub tid: Option<u32>,
    /// What the socket itself said, for one in none of its holder's namespace's socket
    /// tables (not yet bound or connected, or of another namespace); `None` otherwise, or
    /// when it could not be asked.
    #[serde(default)]
    pub probed: Option<ProbedSocket>,
    /// In none of its holder's namespace's socket tables (TCP, UDP, raw, unix, netlink,
    /// packet).
    #[serde(default)]
    pub unlisted: bool,
}

/// The far end of a unix socket, held by processes of another network namespace than
/// its holder's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixPeer {
    pub inode: u64,
    /// The network namespace its holders live in.
    pub netns: u64,
    /// Whether that is the host's namespace.
    pub host: bool,
    /// The processes of that namespace holding the peer socket.
    pub holders: Vec<PeerHolder>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHolder {
    pub pid: u32,
    pub comm: String,
}

/// Where a held socket's owner was read from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OwnerSource {
    /// The file's `f_cred`, read by meshleak's BPF iterator: what owner matches compare.
    FCred,
    /// The inode's owner (`stat`): the same unless the socket was `fchown`ed.
    #[default]
    Inode,
}

impl OwnerSource {
    /// As reports and metrics name it.
    pub fn name(self) -> &'static str {
        match self {
            OwnerSource::FCred => "f-cred",
            OwnerSource::Inode => "inode",
        }
    }
}

/// An io_uring ring a process holds: requests on it may create sockets with a registered
/// personality's credentials or, with SQPOLL, its submission thread's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingFacts {
    /// Its descriptor; with `registered`, its index among the thread's registered rings.
    pub fd: u32,
    /// Registered with IORING_REGISTER_RING_FDS and in no fd table: requests reach it by
    /// index, its descriptor closed.
    #[serde(default)]
    pub registered: bool,
    /// The thread whose private fd table holds it.
    #[serde(default)]
    pub tid: Option<u32>,
    pub personalities: Vec<RingCred>,
    pub sqpoll: Option<RingCred>,
    /// What of it could not be read (`None`: all of it): without BPF, kernels from 6.16
    /// show none of its personalities; a ring with more than meshleak reads is cut.
    pub unread: Option<String>,
}

/// A cgroup BPF program, as the kernel names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupProgram {
    pub id: u32,
    /// The name it was loaded with (`cil_sock4_connect`), empty when it could not be read.
    pub name: String,
    /// `connect4`, `connect6`, `sendmsg4`, `sendmsg6`, `bind4`, `bind6`, `sock_create`.
    pub attach: String,
}

/// Credentials a ring can act with (global ids, as meshleak's user namespace sees them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingCred {
    /// The personality's id; 0 for SQPOLL credentials.
    pub id: u32,
    pub fsuid: u32,
    pub fsgid: u32,
    pub cap_eff: u64,
}

/// A socket inspected through a duplicate of its descriptor (`pidfd_getfd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbedSocket {
    /// `AF_INET` (2), `AF_INET6` (10), ...
    pub family: u16,
    /// `SOCK_STREAM` (1), `SOCK_DGRAM` (2), `SOCK_RAW` (3).
    pub sock_type: u16,
    pub protocol: u16,
    pub listening: bool,
    /// The network namespace it belongs to (`SIOCGSKNS`): where it was created.
    pub netns: u64,
}

impl ProbedSocket {
    /// An IPv4 or IPv6 socket that can send: traffic netfilter judges.
    pub(crate) fn sends_ip(&self) -> bool {
        matches!(self.family, 2 | 10) && !self.listening
    }
}

/// A thread whose credentials differ from its process's leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadFacts {
    pub tid: u32,
    pub fsuid: u32,
    pub fsgid: u32,
    pub groups: Vec<u32>,
    pub cap_eff: u64,
    #[serde(default)]
    pub cap_prm: u64,
}

impl ProcessFacts {
    /// A capability bit (`CAP_NET_ADMIN` is 12) that any of its threads holds.
    pub(crate) fn has_cap(&self, bit: u32) -> bool {
        self.caps() & (1u64 << bit) != 0
    }

    /// The capabilities of all its threads together: effective, or permitted (which
    /// `capset` makes effective without any privilege).
    pub fn caps(&self) -> u64 {
        self.threads
            .iter()
            .fold(self.cap_eff | self.cap_prm, |c, t| {
                c | t.cap_eff | t.cap_prm
            })
    }

    /// Whether it holds the socket with this inode.
    pub fn holds(&self, inode: u64) -> bool {
        self.sockets
            .binary_search_by_key(&inode, |s| s.inode)
            .is_ok()
    }
}
