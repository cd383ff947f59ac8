//! A namespace's interfaces, routes and sockets, read by a thread inside it (netlink sockets
//! are bound to the thread's namespace): interfaces, addresses, routes and routing rules
//! over rtnetlink, TCP and UDP sockets over sock_diag, raw, ping and packet sockets from
//! `/proc/thread-self/net` (never `/proc/self/net`, which shows the process's namespace).

use std::io;
use std::path::Path;

use netlink_sys::protocols::{NETLINK_ROUTE, NETLINK_SOCK_DIAG};

use super::netlink::Netlink;
use super::netns::thread_net_file;
use meshleak_core::procnet::{packet_line, socket_line};
use meshleak_core::range::PortRange;
use meshleak_core::rtnl;
use meshleak_core::snapshot::{
    Interface, PacketSocket, Route, RoutingRule, SocketFacts, SocketProto,
};
use meshleak_core::sockdiag;

/// The namespace's interfaces with their addresses, every route of both families and all
/// tables, and the policy-routing rules that choose among the tables, in four dumps over
/// one rtnetlink socket. What could not be read goes to `gaps` (rules then `None`: only the
/// main table is assumed).
pub fn rtnetlink(gaps: &mut Vec<String>) -> (Vec<Interface>, Vec<Route>, Option<Vec<RoutingRule>>) {
    let mut rtnl = match Netlink::open(NETLINK_ROUTE) {
        Ok(r) => r,
        Err(e) => {
            gaps.push(format!(
                "interfaces, addresses, routes and routing rules (rtnetlink: {e})"
            ));
            return (Vec::new(), Vec::new(), None);
        }
    };
    let bad = |e: rtnl::RtnlError| io::Error::new(io::ErrorKind::InvalidData, e);
    let mut links: Vec<(u32, String)> = Vec::new();
    let interfaces = (|| -> io::Result<Vec<Interface>> {
        for m in rtnl.dump(&rtnl::link_request())? {
            links.push(rtnl::decode_link(&m).map_err(bad)?);
        }
        let mut out: Vec<Interface> = links
            .iter()
            .map(|(_, name)| Interface {
                name: name.clone(),
                addrs: Vec::new(),
            })
            .collect();
        for m in rtnl.dump(&rtnl::addr_request())? {
            let Some((index, ip)) = rtnl::decode_addr(&m).map_err(bad)? else {
                continue;
            };
            if let Some(i) = links.iter().position(|(x, _)| *x == index)
                && !out[i].addrs.contains(&ip)
            {
                out[i].addrs.push(ip);
            }
        }
        Ok(out)
    })()
    .unwrap_or_else(|e| {
        gaps.push(format!("interfaces and addresses (rtnetlink dump: {e})"));
        Vec::new()
    });
    let mut name = |index: u32| {
        links
            .iter()
            .find(|(i, _)| *i == index)
            .map_or_else(|| format!("if{index}"), |(_, n)| n.clone())
    };
    let routing = (|| -> io::Result<(Vec<Route>, Vec<RoutingRule>)> {
        let mut routes = Vec::new();
        for m in rtnl.dump(&rtnl::route_request())? {
            routes.extend(rtnl::decode_route(&m, &mut name).map_err(bad)?);
        }
        let mut rules = Vec::new();
        for m in rtnl.dump(&rtnl::rule_request())? {
            rules.extend(rtnl::decode_rule(&m).map_err(bad)?);
        }
        Ok((routes, rules))
    })();
    match routing {
        Ok((routes, rules)) => (interfaces, routes, Some(rules)),
        Err(e) => {
            gaps.push(format!("routes and routing rules (rtnetlink dump: {e})"));
            (interfaces, Vec::new(), None)
        }
    }
}

/// The namespace's sockets of both families: TCP and UDP from sock_diag (see
/// [`meshleak_core::sockdiag`] for why), or from /proc/net where the kernel has no inet_diag; raw
/// and ping sockets from /proc/net (their hashes are small; raw_diag is an optional
/// module), packet sockets from /proc/net/packet. What could not be read goes to `gaps` (a
/// socket table not read is not an empty one).
///
/// `held`: the socket inodes the namespace's processes hold. Unless `every_tcp`, only TCP
/// listeners and UDP are always read; the other tables are read in turn only while some
/// held socket is in none read so far (unix, then raw, ping and packet, then netlink, then
/// TCP in other states: those live in the kernel's global established hash, which a dump
/// walks whole for every namespace, most of a scan's time). What they would add beyond
/// that is what no process of the namespace holds (closing, or held from elsewhere): a
/// pod's report reads them all, to find those.
///
/// Also returns the held sockets found in none of the namespace's tables, sorted: not yet
/// bound or connected (the kernel hashes neither), or of another namespace.
pub fn sockets(
    held: &[u64],
    every_tcp: bool,
    gaps: &mut Vec<String>,
) -> (Vec<SocketFacts>, Vec<PacketSocket>, Vec<u64>) {
    let mut out = Vec::new();
    let tcp_first = if every_tcp {
        sockdiag::ALL_STATES
    } else {
        sockdiag::LISTEN
    };
    read_sockets(SocketProto::Tcp, tcp_first, &mut out, gaps);
    read_sockets(SocketProto::Udp, sockdiag::ALL_STATES, &mut out, gaps);
    let mut unaccounted: Vec<u64> = held.to_vec();
    unaccounted.sort_unstable();
    account(&mut unaccounted, out.iter().map(|s| s.inode).collect());
    // The other tables are read only while some held socket is in none read so far (all
    // of them with `every_tcp`): unix first, the usual case (socketpairs); raw, ping and
    // packet sockets, then /proc/net/netlink, which walks every namespace's netlink
    // sockets. A file not read leaves its sockets unaccounted: the next one is read.
    let mut packet = Vec::new();
    if every_tcp || !unaccounted.is_empty() {
        account(&mut unaccounted, socket_inodes("unix", Some(6)));
    }
    if every_tcp || !unaccounted.is_empty() {
        let before = out.len();
        // Ping sockets have no sock_diag; the files are per namespace and short.
        for (file, proto) in [
            ("raw", SocketProto::Raw),
            ("raw6", SocketProto::Raw),
            ("icmp", SocketProto::Ping),
            ("icmp6", SocketProto::Ping),
        ] {
            match proc_sockets(file, proto) {
                Ok(found) => out.extend(found),
                Err(e) => gaps.push(format!(
                    "{} sockets (/proc/thread-self/net/{file}: {e})",
                    proto.name()
                )),
            }
        }
        // Packet sockets from /proc/net/packet, the namespace's own list: packet_diag is
        // an optional module (CONFIG_PACKET_DIAG) and says nothing more that matters here.
        match super::procfile::read_string(&thread_net_file("packet")) {
            Ok(text) => packet = text.lines().skip(1).filter_map(packet_line).collect(),
            Err(e) => gaps.push(format!(
                "packet sockets (/proc/thread-self/net/packet: {e})"
            )),
        }
        let found = out[before..]
            .iter()
            .map(|s| s.inode)
            .chain(packet.iter().map(|p: &PacketSocket| p.inode))
            .collect();
        account(&mut unaccounted, found);
    }
    if !unaccounted.is_empty() {
        account(&mut unaccounted, socket_inodes("netlink", None));
    }
    if tcp_first == sockdiag::LISTEN && !unaccounted.is_empty() {
        let mut rest = Vec::new();
        read_sockets(SocketProto::Tcp, sockdiag::NOT_LISTEN, &mut rest, gaps);
        account(&mut unaccounted, rest.iter().map(|s| s.inode).collect());
        out.extend(rest);
    }
    (out, packet, unaccounted)
}

/// Removes from `unaccounted` (sorted) the sockets a table just read lists.
fn account(unaccounted: &mut Vec<u64>, mut found: Vec<u64>) {
    found.sort_unstable();
    unaccounted.retain(|i| found.binary_search(i).is_err());
}

/// Inodes of the namespace's unix or netlink sockets (`/proc/net/unix`, `netlink`; the
/// inode is the 7th column of unix's and the last of netlink's): sockets a process holds
/// that are no TCP. Sorted.
fn socket_inodes(file: &str, column: Option<usize>) -> Vec<u64> {
    let text = super::procfile::read_string(&thread_net_file(file)).unwrap_or_default();
    let mut out: Vec<u64> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            match column {
                Some(c) => fields.nth(c),
                None => fields.last(),
            }
            .and_then(|f| f.parse::<u64>().ok())
        })
        .collect();
    out.sort_unstable();
    out
}

/// TCP or UDP sockets in `states` over sock_diag, or from /proc when sock_diag is refused
/// (the files list every state: with a LISTEN-only request, the rest is dropped).
fn read_sockets(
    proto: SocketProto,
    states: u32,
    out: &mut Vec<SocketFacts>,
    gaps: &mut Vec<String>,
) {
    let files = match proto {
        SocketProto::Tcp => ["tcp", "tcp6"],
        _ => ["udp", "udp6"],
    };
    match diag_sockets(proto, states) {
        Ok(found) => out.extend(found),
        Err(diag) => {
            for file in files {
                match proc_sockets(file, proto) {
                    Ok(found) => out.extend(
                        found
                            .into_iter()
                            .filter(|s| proto != SocketProto::Tcp || in_states(&s.state, states)),
                    ),
                    Err(e) => gaps.push(format!(
                        "{} sockets (sock_diag: {diag}; /proc/thread-self/net/{file}: {e})",
                        proto.name()
                    )),
                }
            }
        }
    }
}

/// Whether a TCP socket's state is in a `TCPF_*` mask (as far as LISTEN goes).
fn in_states(state: &str, states: u32) -> bool {
    let listen = state == "listen";
    (listen && states & sockdiag::LISTEN != 0) || (!listen && states & sockdiag::NOT_LISTEN != 0)
}

fn proc_sockets(file: &str, proto: SocketProto) -> io::Result<Vec<SocketFacts>> {
    let text = super::procfile::read_string(&thread_net_file(file))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|l| socket_line(l, proto))
        .collect())
}

/// The port sysctls of the calling thread's namespace (per namespace; a net sysctl file
/// shows the namespace of the thread that opens it).
pub(crate) struct PortSysctls {
    /// `net.ipv4.ip_unprivileged_port_start`: the lowest port a process may bind without
    /// CAP_NET_BIND_SERVICE. Some runtimes set it to 0.
    pub unprivileged_start: Option<u16>,
    /// `net.ipv4.ip_local_port_range`: where connect() picks a source port.
    pub ephemeral: Option<PortRange>,
}

pub(crate) fn port_sysctls() -> PortSysctls {
    let read =
        |name: &str| super::procfile::read_string(&Path::new("/proc/sys/net/ipv4").join(name)).ok();
    PortSysctls {
        unprivileged_start: read("ip_unprivileged_port_start").and_then(|t| t.trim().parse().ok()),
        ephemeral: read("ip_local_port_range").and_then(|t| {
            let mut ports = t.split_whitespace().map(str::parse::<u16>);
            match (ports.next(), ports.next()) {
                (Some(Ok(start)), Some(Ok(end))) if start <= end => Some(PortRange { start, end }),
                _ => None,
            }
        }),
    }
}

/// The inode of the calling thread's namespace's `/proc/net/dev` entry: one per network
/// namespace, and readable for any process (`/proc/PID/net/dev`) even where its namespace
/// link is closed, so it tells which namespace an unreadable process is in.
pub(crate) fn net_dev_inode() -> Option<u64> {
    super::procs::netns_inode(&thread_net_file("dev")).ok()
}

/// The calling thread's namespace's TCP or UDP sockets over sock_diag: TCP of both families
/// in one dump where the kernel takes the old request form, otherwise one dump per family.
pub fn diag_sockets(proto: SocketProto, states: u32) -> io::Result<Vec<SocketFacts>> {
    with_diag(|diag| dump_sockets(diag, proto, states))
}

thread_local! {
    /// The sock_diag socket of this thread's namespace: a namespace's reader thread makes
    /// several dumps (TCP listeners, UDP, then maybe connected TCP), all over one socket.
    static DIAG: std::cell::RefCell<Option<Netlink>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with the thread's sock_diag socket, opened on first use. A dump that failed may
/// have left replies unread, so the socket is dropped after an error.
fn with_diag<T>(f: impl FnOnce(&mut Netlink) -> io::Result<T>) -> io::Result<T> {
    DIAG.with(|cell| {
        let mut slot = cell.borrow_mut();
        let diag = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(Netlink::open(NETLINK_SOCK_DIAG)?),
        };
        let result = f(diag);
        if result.is_err() {
            *slot = None;
        }
        result
    })
}

fn dump_sockets(
    diag: &mut Netlink,
    proto: SocketProto,
    states: u32,
) -> io::Result<Vec<SocketFacts>> {
    let both = match proto {
        SocketProto::Tcp => diag.dump(&sockdiag::tcp_request_both(states)).ok(),
        _ => None,
    };
    let replies = match both {
        Some(replies) => replies,
        None => {
            let mut replies = diag.dump(&sockdiag::request(libc::AF_INET, proto, states))?;
            replies.extend(diag.dump(&sockdiag::request(libc::AF_INET6, proto, states))?);
            replies
        }
    };
    replies
        .iter()
        .map(|m| {
            sockdiag::decode(m, proto).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        })
        .collect()
}
