//! The facts a scan gathers, and nothing else: serializable, so a node's state can be saved
//! (`meshleak collect`) and judged elsewhere (`meshleak analyze --snapshot`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::model::Ruleset;

/// Bump when a field changes meaning or is removed.
pub const SNAPSHOT_VERSION: u32 = 1;

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
    pub sockets: Vec<SocketFacts>,
    /// TCP and UDP connection-tracking entries; `None` when not read (no conntrack in the
    /// kernel, the dump refused, or a snapshot from before they were collected).
    #[serde(default)]
    pub conntrack: Option<Vec<Tracked>>,
    pub processes: Vec<ProcessFacts>,
    /// The inode of its `/proc/net/dev`: ties processes whose namespace link is closed to
    /// this namespace.
    #[serde(default)]
    pub net_dev: Option<u64>,
    /// What could not be read in it (sockets, routes, interfaces), with why: a table not
    /// read is not an empty one.
    #[serde(default)]
    pub gaps: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    pub addrs: Vec<IpAddr>,
}

/// A route of the main table: destination network, output interface, preferred source.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    pub prefix: u8,
    pub oif: String,
    pub gateway: Option<IpAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SocketProto {
    Tcp,
    Udp,
    Raw,
}

impl SocketProto {
    /// The name as ss and the reports print it.
    pub fn name(self) -> &'static str {
        match self {
            SocketProto::Tcp => "tcp",
            SocketProto::Udp => "udp",
            SocketProto::Raw => "raw",
        }
    }
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
    pub comm: String,
    pub exe: Option<String>,
    /// Credentials as the kernel applies them to new sockets.
    pub fsuid: u32,
    pub fsgid: u32,
    pub groups: Vec<u32>,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    /// `/proc/PID/uid_map` lines (inside, outside, count): ids as the namespace's owner sees them.
    pub uid_map: Vec<(u32, u32, u32)>,
    pub gid_map: Vec<(u32, u32, u32)>,
    pub cgroup: String,
    /// Only with `--include-cmdline`: command lines hold secrets.
    pub cmdline: Option<Vec<String>>,
    /// Inodes of the sockets this process holds open.
    pub socket_inodes: Vec<u64>,
    /// The inode of its pid namespace: processes sharing one can signal each other.
    pub pidns: u64,
}

impl ProcessFacts {
    /// A capability bit (`CAP_NET_ADMIN` is 12) in the effective set.
    pub fn has_cap(&self, bit: u32) -> bool {
        self.cap_eff & (1u64 << bit) != 0
    }
}
