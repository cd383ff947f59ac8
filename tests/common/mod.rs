//! A throwaway lab for asking the kernel: a "pod" network namespace and a "peer" namespace
//! joined by veth (link-local IPv4, ULA IPv6), listeners that say who answered, rules loaded
//! with the real tools, and connections made with chosen credentials through `setpriv`.
//!
//! Everything is removed when the lab is dropped, also when a test fails.

// Each test binary uses a different part of these helpers, and `pub` is how its modules
// share them (they are no crate's API).
#![allow(dead_code, unreachable_pub)]

pub mod cri;
pub mod helper;
pub mod http;
pub mod image;
pub mod pod;
pub mod podman;
pub mod rulegen;

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use meshleak_core::model::Ruleset;
use meshleak_core::parse::{self, Hints};

pub const POD4: &str = "169.254.77.1";
pub const PEER4: &str = "169.254.77.2";
pub const POD6: &str = "fd77::1";
pub const PEER6: &str = "fd77::2";
/// Ports the pod listens on: proxy ports rules may redirect to, and an app port.
pub const POD_PORTS: &[u16] = &[15001, 15002, 15006, 8080];

/// The rule a process with NET_ADMIN inserts into Istio's chain (iptables arguments, after
/// `-t nat`): uid 10001, which no proxy runs as, leaves the mesh.
pub const EXEMPT_10001: [&str; 9] = [
    "-I",
    "ISTIO_OUTPUT",
    "1",
    "-m",
    "owner",
    "--uid-owner",
    "10001",
    "-j",
    "RETURN",
];

/// Whether a tool `make setup` or `make image` provides is here (`present`). Under `make
/// test` (MESHLEAK_REQUIRE_PODMAN=1) its absence fails the test, naming `fix`; elsewhere the
/// test is skipped, loudly.
pub fn required(present: bool, what: &str, fix: &str) -> bool {
    if !present {
        assert!(
            std::env::var_os("MESHLEAK_REQUIRE_PODMAN").is_none(),
            "{what} is not here: run `{fix}`"
        );
        eprintln!("skipped: {what} is not here ({fix} provides it)");
    }
    present
}

/// Whether `tool` (a container runtime) is here, as root, and its setup script (which is
/// idempotent) has made it ready; see [`required`].
pub fn tool_ready(tool: &str, setup: &str) -> bool {
    if !is_root() {
        return false;
    }
    let here = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !required(here, tool, "make setup") {
        return false;
    }
    run(&["sh", setup], None);
    true
}

/// Whether this process can build namespaces; kernel tests skip (loudly) otherwise.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: kernel tests need root (CI runs them as root)");
    }
    root
}

/// What the kernel did with one connection attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Captured(u16),
    Bypass,
    /// Refused locally (EPERM from a filter DROP, REJECT), or silently discarded: a DROP
    /// in a nat chain gives connect() no error, the SYN just never leaves.
    Dropped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loader {
    IptablesNft,
    IptablesLegacy,
    Ip6tablesNft,
    Ip6tablesLegacy,
    Nft,
}

impl Loader {
    /// The command that loads a rule set from stdin.
    pub fn args(self) -> &'static [&'static str] {
        match self {
            Loader::Nft => &["nft", "-f", "-"],
            Loader::IptablesNft => &["iptables-nft-restore"],
            Loader::IptablesLegacy => &["iptables-legacy-restore"],
            Loader::Ip6tablesNft => &["ip6tables-nft-restore"],
            Loader::Ip6tablesLegacy => &["ip6tables-legacy-restore"],
        }
    }

    fn command(self) -> &'static str {
        self.args()[0]
    }
}

pub struct Lab {
    pub pod: String,
    pub peer: String,
    /// Datagrams received: (payload, who answered: `A<port>` or `B`).
    received: Arc<Mutex<Vec<(String, String)>>>,
    stop: Arc<AtomicBool>,
    server: Option<JoinHandle<()>>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn run(args: &[&str], stdin: Option<&str>) -> String {
    try_run(args, stdin).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a command with optional input; Err holds its stderr and the input.
pub fn try_run(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", args[0]))?;
    let mut input = child.stdin.take().expect("piped");
    if let Some(text) = stdin {
        input
            .write_all(text.as_bytes())
            .map_err(|e| format!("write stdin: {e}"))?;
    }
    drop(input);
    let out = child.wait_with_output().map_err(|e| format!("wait: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}\n--- input ---\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            stdin.unwrap_or("")
        ));
    }
    String::from_utf8(out.stdout).map_err(|_| "output is not UTF-8".to_string())
}

impl Lab {
    pub fn new() -> Lab {
        Lab::with_ports(POD_PORTS)
    }

    /// A lab whose pod listens on `ports` (every port rules may redirect to must answer).
    pub fn with_ports(ports: &[u16]) -> Lab {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}{}", std::process::id(), n);
        let (pod, peer) = (format!("mlpod{id}"), format!("mlpeer{id}"));
        let mut lab = Lab {
            pod: pod.clone(),
            peer: peer.clone(),
            received: Arc::default(),
            stop: Arc::new(AtomicBool::new(false)),
            server: None,
        };
        let (va, vb) = (format!("mla{id}"), format!("mlb{id}"));
        for cmd in [
            format!("ip netns add {pod}"),
            format!("ip netns add {peer}"),
            format!("ip link add {va} type veth peer name {vb}"),
            format!("ip link set {va} netns {pod}"),
            format!("ip link set {vb} netns {peer}"),
            format!("ip -n {pod} link set {va} name eth0"),
            format!("ip -n {peer} link set {vb} name eth0"),
            format!("ip -n {pod} addr add {POD4}/24 dev eth0"),
            format!("ip -n {peer} addr add {PEER4}/24 dev eth0"),
            format!("ip -n {pod} addr add {POD6}/64 dev eth0 nodad"),
            format!("ip -n {peer} addr add {PEER6}/64 dev eth0 nodad"),
            format!("ip -n {pod} link set lo up"),
            format!("ip -n {peer} link set lo up"),
            format!("ip -n {pod} link set eth0 up"),
            format!("ip -n {peer} link set eth0 up"),
        ] {
            run(&cmd.split(' ').collect::<Vec<_>>(), None);
        }
        // The peer answers on every port: its own nat sends everything to one listener.
        let peer_rules = "*nat\n-A PREROUTING -p tcp -j REDIRECT --to-ports 7777\n-A PREROUTING -p udp -j REDIRECT --to-ports 7777\nCOMMIT\n";
        run(
            &["ip", "netns", "exec", &peer, "iptables-nft-restore"],
            Some(peer_rules),
        );
        run(
            &["ip", "netns", "exec", &peer, "ip6tables-nft-restore"],
            Some(peer_rules),
        );
        lab.server = Some(serve(
            &pod,
            &peer,
            ports,
            lab.stop.clone(),
            lab.received.clone(),
        ));
        lab
    }

    /// Loads rules into the pod namespace with a real tool.
    pub fn load(&self, loader: Loader, text: &str) {
        self.try_load(loader, text)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn try_load(&self, loader: Loader, text: &str) -> Result<(), String> {
        let args: &[&str] = match loader {
            Loader::Nft => &["nft", "-f", "-"],
            other => &[other.command()],
        };
        let mut all = vec!["ip", "netns", "exec", &self.pod];
        all.extend(args);
        try_run(&all, Some(text)).map(|_| ())
    }

    /// Removes every rule and table of every backend from the pod namespace, and its
    /// tracked connections: a UDP entry of an earlier case would otherwise keep its NAT
    /// mapping for a later probe that reuses the source port.
    pub fn reset(&self) {
        run(
            &["ip", "netns", "exec", &self.pod, "nft", "flush", "ruleset"],
            None,
        );
        run(&["ip", "netns", "exec", &self.pod, "conntrack", "-F"], None);
        for (names, restore) in [
            ("ip_tables_names", "iptables-legacy-restore"),
            ("ip6_tables_names", "ip6tables-legacy-restore"),
        ] {
            let tables = self.proc_net(names);
            if !tables.trim().is_empty() {
                let empty: String = tables.lines().map(|t| format!("*{t}\nCOMMIT\n")).collect();
                run(&["ip", "netns", "exec", &self.pod, restore], Some(&empty));
            }
        }
    }

    fn proc_net(&self, file: &str) -> String {
        run(
            &[
                "ip",
                "netns",
                "exec",
                &self.pod,
                "cat",
                &format!("/proc/net/{file}"),
            ],
            None,
        )
    }

    /// Every rule of the pod namespace as the real tools print them: xtables dumps of both
    /// backends and families (legacy only where tables exist, as reading would create them)
    /// and `nft -j list ruleset`. Returns (tool, text) pairs.
    pub fn dumps(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let exec = |tool: &str| run(&["ip", "netns", "exec", &self.pod, tool], None);
        for tool in ["iptables-nft-save", "ip6tables-nft-save"] {
            out.push((tool.to_string(), exec(tool)));
        }
        if !self.proc_net("ip_tables_names").trim().is_empty() {
            out.push(("iptables-legacy-save".into(), exec("iptables-legacy-save")));
        }
        if !self.proc_net("ip6_tables_names").trim().is_empty() {
            out.push((
                "ip6tables-legacy-save".into(),
                exec("ip6tables-legacy-save"),
            ));
        }
        let json = run(
            &[
                "ip", "netns", "exec", &self.pod, "nft", "-j", "list", "ruleset",
            ],
            None,
        );
        out.push(("nft -j list ruleset".into(), json));
        out
    }

    /// The pod's rules, read back from the kernel and parsed by meshleak.
    pub fn ruleset(&self) -> Ruleset {
        let dumps = self
            .dumps()
            .into_iter()
            .map(|(tool, text)| {
                parse::parse_dump(&tool, &text, Hints::default())
                    .unwrap_or_else(|e| panic!("meshleak cannot parse {tool} output: {e}\n{text}"))
            })
            .collect();
        parse::combine(dumps).expect("dumps combine")
    }

    /// Connects from the pod as uid/gid/groups and reports what the kernel did.
    pub fn connect(
        &self,
        uid: u32,
        gid: u32,
        groups: &[u32],
        udp: bool,
        dst: SocketAddr,
    ) -> Kernel {
        let groups_arg = if groups.is_empty() {
            "--clear-groups".to_string()
        } else {
            format!(
                "--groups={}",
                groups
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        let host = dst.ip().to_string();
        // UDP: a redirected datagram's reply would not pass reverse NAT from a wildcard
        // socket, so listeners log what they receive and the client only sends a token.
        let token = format!(
            "t{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let script = if udp {
            format!(
                "exec 3<>/dev/udp/{host}/{} || exit 9; echo {token} >&3 || exit 9",
                dst.port()
            )
        } else {
            format!(
                "exec 3<>/dev/tcp/{host}/{} || exit 9; dd bs=64 count=1 status=none <&3 || exit 8",
                dst.port()
            )
        };
        let out = Command::new("ip")
            .args(["netns", "exec", &self.pod, "timeout", "1", "setpriv"])
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg(&groups_arg)
            .args(["bash", "-c", &script])
            .stderr(Stdio::null())
            .output()
            .expect("run setpriv");
        let mut reply = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if udp && out.status.code() == Some(0) {
            reply = self.wait_for(&token).unwrap_or_default();
        }
        match (out.status.code(), reply.as_str()) {
            (Some(0), "B") => Kernel::Bypass,
            (Some(0), r) if r.starts_with('A') => {
                let port: u16 = r[1..].parse().expect("listener port");
                let local = dst.ip().is_loopback() || dst.ip() == POD4.parse::<IpAddr>().unwrap();
                if local && port == dst.port() {
                    Kernel::Bypass
                } else {
                    Kernel::Captured(port)
                }
            }
            // Listeners answer within microseconds; a second of silence is a drop.
            (Some(9), _) | (Some(124), _) => Kernel::Dropped,
            (Some(0), "") if udp => Kernel::Dropped,
            other => panic!("unexpected connection result {other:?} to {dst} (udp {udp})"),
        }
    }
}

impl Lab {
    fn wait_for(&self, token: &str) -> Option<String> {
        for _ in 0..200 {
            let seen = self
                .received
                .lock()
                .unwrap()
                .iter()
                .find(|(t, _)| t == token)
                .map(|(_, who)| who.clone());
            if seen.is_some() {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.server.take() {
            let _ = h.join();
        }
        for ns in [&self.pod, &self.peer] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("namespace exists");
    // SAFETY: setns on a valid namespace fd affects only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// One thread binds the listeners inside both namespaces (sockets stay in the namespace
/// they were made in) and answers until the lab is dropped. The pod's listeners reply
/// `A<port>`, the peer's `B`.
fn serve(
    pod: &str,
    peer: &str,
    ports: &[u16],
    stop: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<(String, String)>>>,
) -> JoinHandle<()> {
    let (pod, peer, ports) = (pod.to_string(), peer.to_string(), ports.to_vec());
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let mut tcp: Vec<(TcpListener, String)> = Vec::new();
        let mut udp: Vec<(UdpSocket, String)> = Vec::new();
        enter(&pod);
        for &port in &ports {
            for addr in ["0.0.0.0", "::"] {
                let sa = SocketAddr::new(addr.parse().unwrap(), port);
                tcp.push((bind_tcp(sa, true), format!("A{port}\n")));
                udp.push((bind_udp(sa, true), format!("A{port}\n")));
            }
        }
        enter(&peer);
        for addr in ["0.0.0.0", "::"] {
            let sa = SocketAddr::new(addr.parse().unwrap(), 7777);
            tcp.push((bind_tcp(sa, false), "B\n".into()));
            udp.push((bind_udp(sa, false), "B\n".into()));
        }
        tx.send(()).expect("ready");
        let mut buf = [0u8; 64];
        while !stop.load(Ordering::SeqCst) {
            let mut idle = true;
            for (l, reply) in &tcp {
                if let Ok((mut s, _)) = l.accept() {
                    idle = false;
                    let _ = s.write_all(reply.as_bytes());
                }
            }
            for (s, who) in &udp {
                if let Ok((n, _)) = s.recv_from(&mut buf) {
                    idle = false;
                    let token = String::from_utf8_lossy(&buf[..n]).trim().to_string();
                    received
                        .lock()
                        .unwrap()
                        .push((token, who.trim().to_string()));
                }
            }
            if idle {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("listeners ready");
    handle
}

fn bind_tcp(sa: SocketAddr, transparent: bool) -> TcpListener {
    let l = socket_v6only(sa, libc::SOCK_STREAM, transparent);
    let l = TcpListener::from(l);
    l.set_nonblocking(true).unwrap();
    l
}

fn bind_udp(sa: SocketAddr, transparent: bool) -> UdpSocket {
    let s = UdpSocket::from(socket_v6only(sa, libc::SOCK_DGRAM, transparent));
    s.set_nonblocking(true).unwrap();
    s
}

/// A bound socket; IPv6 ones are v6-only so IPv4 and IPv6 listeners can share a port.
/// `transparent`: IP_TRANSPARENT, as a mesh proxy sets it, so TPROXY can hand it packets.
fn socket_v6only(sa: SocketAddr, kind: i32, transparent: bool) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let domain = if sa.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    // SAFETY: plain socket syscalls on a fresh fd we own; addresses are valid for their sizes.
    unsafe {
        // Close-on-exec: other tests spawn processes meanwhile, which must not inherit them.
        let fd = libc::socket(domain, kind | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let one: libc::c_int = 1;
        let size = std::mem::size_of::<libc::c_int>() as u32;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const _ as *const _,
            size,
        );
        if transparent {
            let (level, opt) = if sa.is_ipv6() {
                (libc::SOL_IPV6, libc::IPV6_TRANSPARENT)
            } else {
                (libc::SOL_IP, libc::IP_TRANSPARENT)
            };
            libc::setsockopt(fd, level, opt, &one as *const _ as *const _, size);
        }
        if sa.is_ipv6() {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                &one as *const _ as *const _,
                size,
            );
        }
        let rc = match sa {
            SocketAddr::V4(a) => {
                let mut s: libc::sockaddr_in = std::mem::zeroed();
                s.sin_family = libc::AF_INET as u16;
                s.sin_port = a.port().to_be();
                s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
                libc::bind(
                    fd,
                    &s as *const _ as *const _,
                    std::mem::size_of_val(&s) as u32,
                )
            }
            SocketAddr::V6(a) => {
                let mut s: libc::sockaddr_in6 = std::mem::zeroed();
                s.sin6_family = libc::AF_INET6 as u16;
                s.sin6_port = a.port().to_be();
                s.sin6_addr.s6_addr = a.ip().octets();
                libc::bind(
                    fd,
                    &s as *const _ as *const _,
                    std::mem::size_of_val(&s) as u32,
                )
            }
        };
        assert_eq!(rc, 0, "bind {sa}: {}", std::io::Error::last_os_error());
        if kind == libc::SOCK_STREAM {
            assert_eq!(libc::listen(fd, 64), 0);
        }
        std::os::fd::OwnedFd::from_raw_fd(fd)
    }
}

/// One connection to try: identity, protocol and destination.
#[derive(Clone, Debug)]
pub struct Probe {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub udp: bool,
    pub dst: SocketAddr,
}

/// meshleak's verdict for a probe, on rules read back from the lab's kernel, with the
/// source address and output interface the kernel would pick.
pub fn predict(rules: &Ruleset, p: &Probe) -> Kernel {
    use meshleak_core::eval::{Verdict, trace};
    let t = trace(rules, &flow_of(p));
    match t.outcome.verdict {
        Verdict::Captured => {
            Kernel::Captured(t.outcome.redirect_port.expect("captured has a port"))
        }
        Verdict::Bypass => Kernel::Bypass,
        Verdict::Dropped => Kernel::Dropped,
        Verdict::Unknown => panic!("meshleak says unknown for {p:?}: {:?}", t.unknowns),
    }
}

/// The flow the kernel sees for a probe: source address and output interface as routing
/// in the lab picks them.
pub fn flow_of(p: &Probe) -> meshleak_core::eval::Flow {
    use meshleak_core::eval::{Flow, Identity};
    use meshleak_core::model::IpVersion;
    let version = IpVersion::of(&p.dst.ip());
    let loopback = p.dst.ip().is_loopback();
    let pod: IpAddr = match version {
        IpVersion::V4 => POD4.parse().unwrap(),
        IpVersion::V6 => POD6.parse().unwrap(),
    };
    let local = p.dst.ip() == pod;
    Flow {
        version,
        proto: if p.udp { 17 } else { 6 },
        src: Some(if loopback { version.loopback() } else { pod }),
        dst: p.dst.ip(),
        sport: meshleak_core::eval::SourcePort::DEFAULT_EPHEMERAL,
        dport: p.dst.port(),
        oif: if loopback || local { "lo" } else { "eth0" }.into(),
        identity: Identity {
            uid: p.uid,
            gid: p.gid,
            groups: p.groups.clone(),
        },
        mark: 0,
        local: vec![pod],
    }
}

/// Runs every probe against the kernel and meshleak; returns a description of each
/// disagreement (empty when meshleak is right every time).
pub fn disagreements(lab: &Lab, probes: &[Probe]) -> Vec<String> {
    let rules = lab.ruleset();
    let mut out = Vec::new();
    for p in probes {
        let kernel = lab.connect(p.uid, p.gid, &p.groups, p.udp, p.dst);
        let ours = predict(&rules, p);
        if kernel != ours {
            out.push(format!("{p:?}: kernel {kernel:?}, meshleak {ours:?}"));
        }
    }
    out
}

pub fn probe(uid: u32, gid: u32, groups: &[u32], udp: bool, dst: &str) -> Probe {
    Probe {
        uid,
        gid,
        groups: groups.to_vec(),
        udp,
        dst: dst.parse().expect("socket address"),
    }
}

/// Runs the meshleak binary: (exit code, stdout, stderr).
pub fn meshleak(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshleak"))
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("utf-8"),
        String::from_utf8(out.stderr).expect("utf-8"),
    )
}
