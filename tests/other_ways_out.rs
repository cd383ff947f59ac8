//! Every other way out (root): escapes that are not an owner exemption, each built for real
//! in throwaway namespaces and proved with a real connection or packet to a peer namespace;
//! meshleak's report must say what happened.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};

use common::is_root;
use common::pod::{Pod, finding, settle, sysctl, verdict};

/// An Istio pod with its proxy and a peer answering `B` on `port`, for as long as the
/// connection is kept open.
fn pod_with_peer_on(port: u16) -> Pod {
    let mut pod = Pod::istio_with_proxy();
    pod.with_peer(&[&[
        "socat",
        &format!("TCP-LISTEN:{port},reuseaddr,fork"),
        "SYSTEM:echo B; sleep 60",
    ]]);
    settle();
    pod
}

/// uid:gid 10001, no supplementary groups: an ordinary app.
const APP: &[&str] = &[
    "setpriv",
    "--reuid=10001",
    "--regid=10001",
    "--clear-groups",
];

/// What `cmd`, run in the pod as the ordinary app with `x` on its stdin, prints.
fn as_app(pod: &Pod, cmd: &[&str]) -> String {
    common::run(
        &[&["ip", "netns", "exec", &pod.ns], APP, cmd].concat(),
        Some("x\n"),
    )
}

/// What the far end first answers to the ordinary app (the proxy echoes our `x`, the
/// peer says `B`).
fn answer(pod: &Pod, dst: &str) -> String {
    pod.answer(10001, 10001, dst)
}

fn findings<'a>(r: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    r["netns"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == kind)
        .collect()
}

/// A Python program run in a namespace behind `wrap` (`setpriv ...`) that prints a line
/// starting `ready` once in place, then answers lines on stdin; killed on drop.
struct Script {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Script {
    /// `program`: `["-c", CODE, args...]` or `[PATH, args...]`.
    fn start(ns: &str, wrap: &[&str], program: &[&str]) -> Script {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(wrap)
            .arg("/usr/bin/python3")
            .args(program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3");
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut s = Script { child, out };
        let ready = s.next_line();
        assert!(ready.starts_with("ready"), "{ready}");
        s
    }

    /// Its pid (`ip netns exec` and `setpriv` exec, so it is python's).
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn next_line(&mut self) -> String {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line.trim().to_string()
    }

    /// Sends a line, returns the answer.
    fn say(&mut self, line: &str) -> String {
        writeln!(self.child.stdin.as_mut().unwrap(), "{line}").unwrap();
        self.next_line()
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_dnat_to_a_remote_address_is_an_exclusion_not_a_proxy() {
    if !is_root() {
        return;
    }
    // Before Istio's jump: connections to port 5432 go to the peer's 6432 instead.
    let mut pod = pod_with_peer_on(6432);
    pod.add_rules(
        "*nat\n-I OUTPUT 1 -p tcp --dport 5432 -j DNAT --to-destination 169.254.78.2:6432\nCOMMIT\n",
    );
    assert_eq!(
        answer(&pod, "169.254.78.2:5432"),
        "B",
        "the DNAT sent it past the proxy"
    );
    assert_eq!(answer(&pod, "169.254.78.2:80"), "x", "the rest is captured");
    let app = pod.spawn(10001, 10001, &["socat", "-u", "TCP:169.254.78.2:5432", "-"]);
    settle();
    let r = pod.report();
    let ns = &r["netns"][0];
    assert_eq!(
        ns["mesh"]["proxy_ports"],
        serde_json::json!([15001, 15006]),
        "{ns}"
    );
    assert!(
        findings(&r, "proxy-absent").is_empty(),
        "6432 is no proxy port: {ns}"
    );
    let excluded = findings(&r, "port-excluded");
    assert!(
        excluded.iter().any(|f| f["rules"][0]["rule"]
            .as_str()
            .is_some_and(|t| t.contains("DNAT --to-destination 169.254.78.2:6432"))
            && f["message"]
                .as_str()
                .unwrap()
                .contains("169.254.78.2 port 6432")),
        "{excluded:?}"
    );
    assert!(
        findings(&r, "foreign-rule").iter().any(|f| f["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["rule"].as_str().unwrap().contains("DNAT"))),
        "not Istio's: {ns}"
    );
    let seen = finding(&r, "observed-bypass", app).unwrap_or_else(|| panic!("{ns}"));
    assert!(
        seen["rules"][0]["rule"].as_str().unwrap().contains("DNAT"),
        "decided by the DNAT: {seen}"
    );
    let p = ns["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == app)
        .unwrap();
    assert_eq!(p["verdict"], "bypass", "{p}");
}

#[test]
fn a_source_port_exemption_is_one_any_app_can_take() {
    if !is_root() {
        return;
    }
    let pod = pod_with_peer_on(80);
    pod.add_rules("*nat\n-I ISTIO_OUTPUT 1 -p tcp --sport 15000:15100 -j RETURN\nCOMMIT\n");
    let r = pod.report();
    let f = findings(&r, "source-port-exempt");
    assert_eq!(f.len(), 1, "{r}");
    assert_eq!(f[0]["severity"], "medium");
    assert!(
        f[0]["message"].as_str().unwrap().contains("15000-15100")
            && f[0]["rules"][0]["rule"]
                .as_str()
                .unwrap()
                .contains("--sport 15000:15100"),
        "{}",
        f[0]
    );
    // An unprivileged app binds a port in the range, and its connection leaves.
    assert_eq!(answer(&pod, "169.254.78.2:80,sourceport=15050"), "B");
    assert_eq!(
        answer(&pod, "169.254.78.2:80"),
        "x",
        "an ephemeral port is captured"
    );
}

#[test]
fn a_low_source_port_exemption_is_anyones_where_unprivileged_ports_start_at_0() {
    if !is_root() {
        return;
    }
    let pod = pod_with_peer_on(80);
    pod.add_rules("*nat\n-I ISTIO_OUTPUT 1 -p tcp --sport 500:600 -j RETURN\nCOMMIT\n");
    let evidence =
        |r: &serde_json::Value| findings(r, "source-port-exempt")[0]["evidence"].to_string();
    let r = pod.report();
    assert!(
        evidence(&r).contains("ports below 1024: binding them needs CAP_NET_BIND_SERVICE")
            && evidence(&r).contains("ip_unprivileged_port_start is 1024"),
        "{r}"
    );
    let refused = Command::new("ip")
        .args(["netns", "exec", &pod.ns])
        .args(APP)
        .args(["socat", "-T2", "-", "TCP:169.254.78.2:80,sourceport=550"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(
        !refused.success(),
        "port 550 needs a privilege the app lacks"
    );
    sysctl(&pod.ns, "net.ipv4.ip_unprivileged_port_start=0");
    let r = pod.report();
    assert!(
        evidence(&r).contains(
            "ports from 0 up: any process may bind them (ip_unprivileged_port_start is 0"
        ),
        "{r}"
    );
    assert_eq!(answer(&pod, "169.254.78.2:80,sourceport=550"), "B");
}

/// A scratch directory owned by uid:gid 10001 on a filesystem that honours setgid bits
/// (the build's, else /var/tmp: /tmp is often mounted nosuid), removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let suid = |d: &str| {
            nix::sys::statvfs::statvfs(d)
                .is_ok_and(|v| !v.flags().contains(nix::sys::statvfs::FsFlags::ST_NOSUID))
        };
        let base = [env!("CARGO_TARGET_TMPDIR"), "/var/tmp"]
            .into_iter()
            .find(|d| suid(d))
            .expect("a filesystem mounted without nosuid");
        let dir = std::path::Path::new(base).join(format!("ml-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(10001), Some(10001)).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn an_exempt_supplementary_group_is_an_exemption_a_setgid_copy_takes() {
    if !is_root() {
        return;
    }
    // uid:gid 10001 with supplementary group 1337: its own sockets get gid 10001
    // (captured), but it may make a setgid-1337 copy of any binary and exec it.
    let mut pod = pod_with_peer_on(80);
    let opts = |extra: &[&str]| {
        let mut o: Vec<String> = ["--reuid=10001", "--regid=10001", "--groups=1337"]
            .map(String::from)
            .to_vec();
        o.extend(extra.iter().map(|s| s.to_string()));
        o
    };
    let may = pod.spawn_setpriv(&opts(&[]), &["sleep", "60"]);
    let may_not = pod.spawn_setpriv(&opts(&["--no-new-privs"]), &["sleep", "60"]);
    settle();
    let r = pod.report();
    assert_eq!(verdict(&r["netns"][0], may), "captured", "{r}");
    let f = finding(&r, "can-become-exempt", may).unwrap_or_else(|| panic!("{r}"));
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("supplementary group 1337"),
        "{f}"
    );
    assert!(
        finding(&r, "can-become-exempt", may_not).is_none(),
        "NoNewPrivs closes the way: {r}"
    );

    // The way, taken for real with no capability.
    let dir = Scratch::new("setgid");
    let copy = dir.0.join("socat");
    let copy = copy.to_str().unwrap();
    let as_app = |extra: &[&str], cmd: &[&str]| {
        let mut args: Vec<String> = ["ip", "netns", "exec", &pod.ns, "setpriv"]
            .map(String::from)
            .to_vec();
        args.extend(opts(extra));
        args.push("--inh-caps=-all".into());
        args.extend(cmd.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::run(&args, Some("x\n"))
    };
    as_app(
        &[],
        &[
            "sh",
            "-c",
            &format!("cp /usr/bin/socat {copy} && chgrp 1337 {copy} && chmod g+s {copy}"),
        ],
    );
    let to_peer = [copy, "-T2", "-", "TCP:169.254.78.2:80"];
    assert_eq!(as_app(&[], &to_peer).trim(), "B", "egid 1337 leaves");
    assert_eq!(
        as_app(&["--no-new-privs"], &to_peer).trim(),
        "x",
        "with NoNewPrivs the setgid bit is ignored: captured"
    );
}

/// The pod's veth toward the peer (`mv...a`) and the peer's link-local address, once
/// duplicate address detection let the kernel assign both ends' (the pod's own is the
/// connection's source: while tentative, connect() fails with EADDRNOTAVAIL).
fn link_local_of_peer(pod: &Pod) -> (String, String) {
    let dev = format!("{}a", pod.ns.replace("mlscan", "mv"));
    let peer_ns = format!("{}p", pod.ns);
    for _ in 0..50 {
        if let (Some(peer), Some(_)) = (
            usable_link_local(&peer_ns, None),
            usable_link_local(&pod.ns, Some(&dev)),
        ) {
            return (dev, peer);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the pod and its peer got no usable link-local IPv6 addresses");
}

/// A namespace's link-local IPv6 address (on `dev`, if given) once it is not tentative.
fn usable_link_local(ns: &str, dev: Option<&str>) -> Option<String> {
    let mut args = vec!["ip", "-n", ns, "-6", "-o", "addr", "show"];
    if let Some(dev) = dev {
        args.extend(["dev", dev]);
    }
    args.extend(["scope", "link"]);
    let out = common::run(&args, None);
    out.split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .filter(|_| !out.contains("tentative"))
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
}

#[test]
fn link_local_ipv6_is_a_way_out_when_only_ipv4_is_captured() {
    if !is_root() {
        return;
    }
    // Istio's IPv4 rules only, no global IPv6 anywhere: fe80:: still reaches the peer.
    let mut pod = Pod::istio_with_proxy();
    pod.with_peer_ipv6(&[&[
        "socat",
        "TCP6-LISTEN:80,reuseaddr,fork",
        "SYSTEM:echo B; sleep 60",
    ]]);
    let (dev, peer) = link_local_of_peer(&pod);
    settle();
    let dst = format!("[{peer}%{dev}]:80");
    assert_eq!(answer(&pod, &dst), "B", "link-local IPv6 left uncaptured");
    let r = pod.report();
    let f = findings(&r, "ipv6-uncaptured");
    assert_eq!(f.len(), 1, "{r}");
    assert!(
        f[0]["message"].as_str().unwrap().contains("link-local")
            && f[0]["evidence"][0].as_str().unwrap().contains("fe80:"),
        "{}",
        f[0]
    );
}

#[test]
fn an_unconnected_udp_socket_under_dns_capture_is_reported_before_it_sends() {
    if !is_root() {
        return;
    }
    // Istio's DNS capture: UDP to port 53 goes to the proxy's 15053, the rest leaves.
    let mut pod = Pod::istio_with_proxy();
    pod.with_peer(&[&["socat", "UDP-RECVFROM:9999,reuseaddr,fork", "SYSTEM:echo B"]]);
    pod.add_rules(
        "*nat\n-I OUTPUT 1 -p udp --dport 53 -m owner ! --uid-owner 1337 -j REDIRECT --to-ports 15053\nCOMMIT\n",
    );
    let app = pod.spawn(10001, 10001, &["socat", "-u", "UDP-RECV:5353", "/dev/null"]);
    settle();
    let r = pod.report();
    let f = finding(&r, "protocol-uncaptured", app).unwrap_or_else(|| panic!("{r}"));
    assert!(
        f["evidence"][0].as_str().unwrap().contains("unconnected"),
        "{f}"
    );
    assert!(
        finding(&r, "observed-bypass", app).is_none(),
        "nothing sent yet: {r}"
    );
    // What such a socket sends elsewhere really leaves. A first datagram can arrive before
    // the peer's receiver is up (UDP has no retry of its own): sent again, up to 3 times.
    let sent = (0..3)
        .map(|_| {
            as_app(
                &pod,
                &["socat", "-T2", "-", "UDP-DATAGRAM:169.254.78.2:9999"],
            )
        })
        .find(|s| s.trim() == "B");
    assert_eq!(
        sent.as_deref().map(str::trim),
        Some("B"),
        "the datagram reached the peer"
    );
}

const PACKET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/helpers/packet.py");

/// The MAC address of a namespace's interface.
fn mac(ns: &str, dev: &str) -> String {
    let out = common::run(&["ip", "-n", ns, "-o", "link", "show", dev], None);
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("an ethernet address")
        .to_string()
}

#[test]
fn a_packet_socket_sends_below_netfilter_and_cap_net_raw_can_open_one() {
    if !is_root() {
        return;
    }
    let mut pod = Pod::istio_with_proxy();
    let peer = pod.with_peer(&[]);
    let short = pod.ns.replace("mlscan", "mv");
    let (dev, peer_dev) = (format!("{short}a"), format!("{short}b"));
    let mut sniffer = Script::start(&peer, &[], &[PACKET, "sniff", &peer_dev, "80"]);
    // uid 10001 with CAP_NET_RAW, as containers get it by default.
    let app_as = [APP, &["--inh-caps=+net_raw", "--ambient-caps=+net_raw"]].concat();
    let peer_mac = mac(&peer, &peer_dev);
    let mut sender = Script::start(
        &pod.ns,
        &app_as,
        &[
            PACKET,
            "send",
            &dev,
            &peer_mac,
            "169.254.78.1",
            "169.254.78.2",
            "80",
        ],
    );
    let idle = pod.spawn_with_caps(10001, 10001, "+net_raw", &["sleep", "60"]);
    settle();
    let r = pod.report();
    let f = finding(&r, "packet-socket", sender.pid()).unwrap_or_else(|| panic!("{r}"));
    assert_eq!(f["severity"], "high");
    assert!(
        f["evidence"][0]
            .as_str()
            .unwrap()
            .contains("ethertype 0x0800"),
        "{f}"
    );
    assert!(
        finding(&r, "can-send-below-mesh", idle).is_some(),
        "CAP_NET_RAW alone: {r}"
    );
    // Sending on it needs no privilege: its holder bypasses now, and the verdict, the exit
    // status and the metrics say so, not only a finding beside `captured`.
    let p = r["netns"][0]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == sender.pid())
        .unwrap();
    assert_eq!(p["verdict"], "bypass", "{p}");
    assert_eq!(p["decided_by"]["kind"], "packet-socket", "{p}");
    let (code, _, _) = common::meshleak(&["pod", "--netns", &pod.path(), "-o", "json"]);
    assert_eq!(code, 1);
    // The hand-made SYN to port 80, which Istio's rules would redirect, reaches the peer.
    assert_eq!(sender.say("go"), "sent");
    assert_eq!(
        sniffer.next_line(),
        "B",
        "the SYN arrived at the peer untouched"
    );
}

/// Holds an unprivileged ICMP echo socket; on a line on stdin sends one echo request to
/// argv[1] and prints `B` when the reply comes (`nothing` after 3 s).
const PING: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
s.settimeout(3)
print("ready", flush=True)
sys.stdin.readline()
s.sendto(struct.pack("!BBHHH", 8, 0, 0, 0, 1) + b"meshleak", (sys.argv[1], 0))
try:
    s.recv(64)
    print("B", flush=True)
except socket.timeout:
    print("nothing", flush=True)
sys.stdin.read()
"#;

#[test]
fn an_unprivileged_ping_socket_is_listed_and_judged() {
    if !is_root() {
        return;
    }
    let pod = pod_with_peer_on(80);
    // What a pod gets where the runtime opens ping to every group (containerd, CRI-O).
    sysctl(&pod.ns, "net.ipv4.ping_group_range=0 2147483647");
    let mut c = Script::start(&pod.ns, APP, &["-c", PING, "169.254.78.2"]);
    let r = pod.report();
    let f = finding(&r, "protocol-uncaptured", c.pid()).unwrap_or_else(|| panic!("{r}"));
    assert!(
        f["evidence"][0].as_str().unwrap().starts_with("ping "),
        "{f}"
    );
    assert_eq!(c.say(""), "B", "the echo reached the peer and came back");
    // Bound by its send, it is in the namespace's ping table (/proc/net/icmp) now.
    let r = pod.report();
    let f = finding(&r, "protocol-uncaptured", c.pid()).unwrap_or_else(|| panic!("{r}"));
    assert!(
        f["evidence"][0]
            .as_str()
            .unwrap()
            .starts_with("ping 0.0.0.0:"),
        "{f}"
    );
}

/// A UDP-Lite socket bound in the pod; on a line on stdin it sends one datagram to
/// argv[1]:9999 and prints `B` when the peer's answer comes (`nothing` after 3 s).
const UDPLITE: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 136)
s.bind(("0.0.0.0", 0))
s.settimeout(3)
print("ready", flush=True)
sys.stdin.readline()
s.sendto(b"x", (sys.argv[1], 9999))
try:
    s.recv(16)
    print("B", flush=True)
except socket.timeout:
    print("nothing", flush=True)
sys.stdin.read()
"#;

/// The peer's side: answers one UDP-Lite datagram on port 9999.
const UDPLITE_PEER: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 136)
s.bind(("0.0.0.0", 9999))
data, addr = s.recvfrom(16)
s.sendto(b"B", addr)
"#;

#[test]
fn a_udp_lite_socket_is_judged_by_what_it_is() {
    if !is_root() {
        return;
    }
    let mut pod = Pod::istio_with_proxy();
    pod.with_peer(&[&["/usr/bin/python3", "-c", UDPLITE_PEER]]);
    settle();
    let mut c = Script::start(&pod.ns, APP, &["-c", UDPLITE, "169.254.78.2"]);
    let r = pod.report();
    let f = finding(&r, "protocol-uncaptured", c.pid()).unwrap_or_else(|| panic!("{r}"));
    assert!(
        f["evidence"][0]
            .as_str()
            .unwrap()
            .starts_with("udplite socket:["),
        "{f}"
    );
    assert_eq!(c.say(""), "B", "the datagram reached the peer");
}

#[test]
fn a_policy_routing_rule_sends_one_uid_past_the_capture() {
    if !is_root() {
        return;
    }
    let pod = pod_with_peer_on(80);
    // A second link to the peer, which the capture exempts (Istio's excludeInterfaces),
    // and an `ip rule` that routes uid 2000 over it.
    let (vc, _) = pod.link(('c', 'd'), ("169.254.79.1/24", "169.254.79.2/24"), false);
    pod.add_rules(&format!(
        "*nat\n-I ISTIO_OUTPUT 1 -o {vc} -j RETURN\nCOMMIT\n"
    ));
    let ip = |args: &[&str]| common::run(&[&["ip", "-n", &pod.ns][..], args].concat(), None);
    ip(&["rule", "add", "uidrange", "2000-2000", "lookup", "100"]);
    ip(&[
        "route",
        "add",
        "169.254.78.0/24",
        "dev",
        &vc,
        "table",
        "100",
    ]);
    assert_eq!(
        pod.answer(2000, 2000, "169.254.78.2:80"),
        "B",
        "uid 2000 is routed past the proxy"
    );
    assert_eq!(
        pod.answer(2001, 2001, "169.254.78.2:80"),
        "x",
        "uid 2001 is captured"
    );
    let mut pod = pod;
    let routed = pod.spawn(2000, 2000, &["sleep", "60"]);
    let other = pod.spawn(2001, 2001, &["sleep", "60"]);
    let open = pod.spawn(2000, 2000, &["socat", "-u", "TCP:169.254.78.2:80", "-"]);
    settle();
    let r = pod.report();
    let ns = &r["netns"][0];
    let f = finding(&r, "policy-routed", routed).unwrap_or_else(|| panic!("{ns}"));
    assert_eq!(f["severity"], "high");
    let text = f.to_string();
    assert!(
        text.contains("uidrange 2000-2000 lookup 100")
            && text.contains(&format!("-o {vc} -j RETURN"))
            && text.contains("uid 2000 to 169.254.78.2:"),
        "{f}"
    );
    assert!(finding(&r, "policy-routed", other).is_none(), "{ns}");
    assert_eq!(verdict(ns, routed), "partial");
    assert_eq!(verdict(ns, other), "captured");
    // The live connection is judged by the route it took.
    let seen = finding(&r, "observed-bypass", open).unwrap_or_else(|| panic!("{ns}"));
    assert!(
        seen["rules"][0]["rule"]
            .as_str()
            .unwrap()
            .contains(&format!("-o {vc}")),
        "{seen}"
    );
    // trace --pid follows the same route.
    let (_, out, err) = common::meshleak(&[
        "trace",
        "--pid",
        &routed.to_string(),
        "--dst",
        "169.254.78.2:80",
        "-o",
        "json",
    ]);
    let t = common::pod::json(&out);
    assert_eq!(t["verdict"], "bypass", "{out}{err}");
    assert_eq!(t["oif"], vc.as_str());
    assert_eq!(t["route"]["table"], 100);
    let (_, out, _) = common::meshleak(&[
        "trace",
        "--pid",
        &other.to_string(),
        "--dst",
        "169.254.78.2:80",
        "-o",
        "json",
    ]);
    assert_eq!(common::pod::json(&out)["verdict"], "captured", "{out}");
}

/// Connects, on a line on stdin, to argv[1]:80, says `x` and prints the first line the far
/// end answers (the proxy echoes `x`, the peer says `B`).
const CONNECT: &str = r#"
import socket, sys
print("ready", flush=True)
sys.stdin.readline()
s = socket.create_connection((sys.argv[1], 80), timeout=2)
s.sendall(b"x\n")
print(s.recv(16).decode().strip() or "empty", flush=True)
sys.stdin.read()
"#;

/// The cgroup2 hierarchy's root as mounted here (root `/` in mountinfo).
fn cgroup2_root() -> String {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            (right.starts_with("cgroup2 ") && f[3] == "/").then(|| f[4].to_string())
        })
        .expect("a cgroup2 mount")
}

/// A cgroup with a connect4 program attached (tests/helpers/connect4.bpf.c, built here
/// with clang, loaded and attached with bpftool); detached and removed on drop.
struct Rewriter {
    cgroup: String,
    pin: String,
}

impl Rewriter {
    fn new(name: &str) -> Rewriter {
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/helpers/connect4.bpf.c");
        let obj = format!("{}/connect4.bpf.o", env!("CARGO_TARGET_TMPDIR"));
        common::run(
            &[
                "clang",
                "-O2",
                "-target",
                "bpf",
                "-I/usr/include/x86_64-linux-gnu",
                "-c",
                src,
                "-o",
                &obj,
            ],
            None,
        );
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        if !mounts.contains(" /sys/fs/bpf bpf ") {
            common::run(&["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], None);
        }
        let r = Rewriter {
            cgroup: format!("{}/{name}", cgroup2_root()),
            pin: format!("/sys/fs/bpf/{name}"),
        };
        std::fs::create_dir(&r.cgroup).unwrap();
        common::run(
            &[
                "bpftool",
                "prog",
                "load",
                &obj,
                &r.pin,
                "type",
                "cgroup/connect4",
            ],
            None,
        );
        common::run(
            &[
                "bpftool", "cgroup", "attach", &r.cgroup, "connect4", "pinned", &r.pin,
            ],
            None,
        );
        r
    }

    fn enter(&self, pid: u32) {
        std::fs::write(format!("{}/cgroup.procs", self.cgroup), pid.to_string()).unwrap();
    }
}

impl Drop for Rewriter {
    fn drop(&mut self) {
        let _ = common::try_run(
            &[
                "bpftool",
                "cgroup",
                "detach",
                &self.cgroup,
                "connect4",
                "pinned",
                &self.pin,
            ],
            None,
        );
        let _ = std::fs::remove_file(&self.pin);
        // Its processes are killed by then (the Script's drop); a removal racing their exit
        // is retried.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.cgroup).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

#[test]
fn a_cgroup_program_that_rewrites_connect_makes_the_verdict_unknown_and_is_named() {
    if !is_root() {
        return;
    }
    let pod = pod_with_peer_on(80);
    // The peer is excluded from capture, as an excludeOutboundIPRanges would.
    pod.add_rules("*nat\n-I ISTIO_OUTPUT 1 -d 169.254.78.2/32 -j RETURN\nCOMMIT\n");
    assert_eq!(
        answer(&pod, "169.254.78.99:80"),
        "x",
        "captured without the program"
    );
    let rewriter = Rewriter::new(&format!("ml-{}", pod.ns));
    let mut app = Script::start(&pod.ns, APP, &["-c", CONNECT, "169.254.78.99"]);
    rewriter.enter(app.pid());
    let r = pod.report();
    let p = r["netns"][0]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == app.pid())
        .unwrap()
        .clone();
    // The kernel: the program sent it to the excluded peer, past the proxy.
    assert_eq!(app.say("go"), "B");
    drop(app);
    drop(rewriter);
    assert_eq!(p["verdict"], "unknown", "{p}");
    assert_eq!(p["decided_by"]["kind"], "cgroup-program", "{p}");
    assert_eq!(p["decided_by"]["attach"], "connect4", "{p}");
    assert_eq!(p["decided_by"]["name"], "ml_rewrite", "{p}");
    let f = findings(&r, "cgroup-program");
    assert_eq!(f.len(), 1, "{r}");
    assert_eq!(f[0]["severity"], "high");
}
