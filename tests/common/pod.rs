//! A scanned pod: a namespace with real processes of chosen identities (and optionally a
//! peer namespace over veth), all removed on drop, also when a test fails.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::run;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A pod: a namespace with processes; all removed on drop, also when a test fails.
pub struct Pod {
    pub ns: String,
    procs: Vec<Child>,
    /// Peer namespaces created for this pod.
    peers: Vec<String>,
}

impl Pod {
    /// A pod with the Istio sidecar rules (iptables-nft) and the proxy (uid 1337)
    /// listening on both capture ports: the clean starting point.
    pub fn istio_with_proxy() -> Pod {
        let mut pod = Pod::new();
        run(
            &["ip", "netns", "exec", &pod.ns, "iptables-nft-restore"],
            Some(include_str!("../../testdata/istio-sidecar.rules")),
        );
        pod.proxy();
        pod
    }

    /// The proxy (uid 1337) listening on both Istio capture ports, echoing.
    pub fn proxy(&mut self) {
        for port in [15001, 15006] {
            self.spawn(
                1337,
                1337,
                &[
                    "socat",
                    &format!("TCP-LISTEN:{port},reuseaddr,fork"),
                    "EXEC:/bin/cat",
                ],
            );
        }
    }

    pub fn new() -> Pod {
        let ns = format!(
            "mlscan{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        run(&["ip", "netns", "add", &ns], None);
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"], None);
        Pod {
            ns,
            procs: Vec::new(),
            peers: Vec::new(),
        }
    }

    /// Adds restore input to the pod's iptables-nft rules, keeping what is there.
    pub fn add_rules(&self, text: &str) {
        run(
            &[
                "ip",
                "netns",
                "exec",
                &self.ns,
                "iptables-nft-restore",
                "--noflush",
            ],
            Some(text),
        );
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.ns)
    }

    /// Starts `cmd` in the pod as uid:gid; returns its pid (`ip netns exec` and `setpriv`
    /// exec, so the pid stays the command's).
    pub fn spawn(&mut self, uid: u32, gid: u32, cmd: &[&str]) -> u32 {
        self.spawn_with_caps(uid, gid, "", cmd)
    }

    /// Like `spawn`, keeping capabilities (`+net_admin,+kill`) as ambient ones, which a
    /// non-root process needs to hold them.
    pub fn spawn_with_caps(&mut self, uid: u32, gid: u32, caps: &str, cmd: &[&str]) -> u32 {
        let mut opts = vec![
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".to_string(),
        ];
        if !caps.is_empty() {
            opts.push(format!("--inh-caps={caps}"));
            opts.push(format!("--ambient-caps={caps}"));
        }
        self.spawn_setpriv(&opts, cmd)
    }

    /// Starts `cmd` in the pod behind `setpriv` with these options; returns its pid.
    pub fn spawn_setpriv(&mut self, opts: &[String], cmd: &[&str]) -> u32 {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "setpriv"])
            .args(opts)
            .args(cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let pid = child.id();
        self.procs.push(child);
        pid
    }

    /// Connects the pod to a peer namespace over veth (pod 169.254.78.1, peer .2) where
    /// `servers` run, IPv4 only (IPv6 off on the veth, as in an IPv4-only cluster that
    /// disables it); the peer is removed with the pod.
    pub fn with_peer(&mut self, servers: &[&[&str]]) -> String {
        self.peer(servers, false)
    }

    /// Like `with_peer`, with IPv6 left on: both ends get their link-local addresses.
    pub fn with_peer_ipv6(&mut self, servers: &[&[&str]]) -> String {
        self.peer(servers, true)
    }

    fn peer(&mut self, servers: &[&[&str]], ipv6: bool) -> String {
        let peer = format!("{}p", self.ns);
        run(&["ip", "netns", "add", &peer], None);
        self.peers.push(peer.clone());
        run(&["ip", "-n", &peer, "link", "set", "lo", "up"], None);
        self.link(('a', 'b'), ("169.254.78.1/24", "169.254.78.2/24"), ipv6);
        for cmd in servers {
            let child = Command::new("ip")
                .args(["netns", "exec", &peer])
                .args(*cmd)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn");
            self.procs.push(child);
        }
        peer
    }

    /// What the far end first answers when a process of `uid:gid` (no supplementary
    /// groups) in the pod sends `x` to `dst` (socat's address, `IP:PORT[,options]`): the
    /// test proxies echo it, peers say their own word.
    pub fn answer(&self, uid: u32, gid: u32, dst: &str) -> String {
        run(
            &[
                "ip",
                "netns",
                "exec",
                &self.ns,
                "setpriv",
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--clear-groups",
                "socat",
                "-T2",
                "-",
                &format!("TCP:{dst}"),
            ],
            Some("x\n"),
        )
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
    }

    /// A veth pair to the peer (made by `with_peer`): its pod end and its peer end, named
    /// after the pod and `ends`, with these addresses, up; IPv6 off unless `ipv6`.
    pub fn link(&self, ends: (char, char), addrs: (&str, &str), ipv6: bool) -> (String, String) {
        let peer = format!("{}p", self.ns);
        // Interface names have at most 15 bytes.
        let short = self.ns.replace("mlscan", "mv");
        let (va, vb) = (format!("{short}{}", ends.0), format!("{short}{}", ends.1));
        run(
            &[
                "ip", "link", "add", &va, "netns", &self.ns, "type", "veth", "peer", "name", &vb,
                "netns", &peer,
            ],
            None,
        );
        for (ns, dev, addr) in [(&self.ns, &va, addrs.0), (&peer, &vb, addrs.1)] {
            if !ipv6 {
                sysctl(ns, &format!("net.ipv6.conf.{dev}.disable_ipv6=1"));
            }
            run(&["ip", "-n", ns, "addr", "add", addr, "dev", dev], None);
            run(&["ip", "-n", ns, "link", "set", dev, "up"], None);
        }
        (va, vb)
    }

    /// `meshleak pod -o json` of this pod, which must have read everything, without errors.
    pub fn report(&self) -> serde_json::Value {
        let (_, out, err) = super::meshleak(&["pod", "--netns", &self.path(), "-o", "json"]);
        let r = json(&out);
        assert_eq!(r["incomplete"], serde_json::json!([]), "{err}");
        // Some machines keep pid 1 unreadable even for root (a VM's init): named with that
        // cause, harmless (it is in the host's namespace).
        let errors = r["errors"].as_array().unwrap();
        assert!(
            errors.iter().all(|e| {
                let e = e.as_str().unwrap();
                e.contains("pid 1 ") && e.contains("although meshleak holds")
            }),
            "{err}"
        );
        r
    }

    /// Stops one of the pod's processes (e.g. the proxy) before the pod goes away.
    pub fn stop(&mut self, pid: u32) {
        if let Some(i) = self.procs.iter().position(|c| c.id() == pid) {
            let mut c = self.procs.remove(i);
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.peers.iter().chain([&self.ns]) {
            // Grandchildren (a socat's SYSTEM: command) are not in `procs`.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Sets one sysctl (`net.ipv4.ping_group_range=0 1`) in network namespace `ns`.
pub fn sysctl(ns: &str, setting: &str) {
    run(&["ip", "netns", "exec", ns, "sysctl", "-qw", setting], None);
}

/// Waits until `pid` is in the pod's namespace (after setns) and the listener is up.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(400));
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

pub fn finding<'a>(
    report: &'a serde_json::Value,
    kind: &str,
    pid: u32,
) -> Option<&'a serde_json::Value> {
    findings_of(report, kind, pid).into_iter().next()
}

/// Every finding of `kind` about `pid` in a one-pod report.
pub fn findings_of<'a>(
    report: &'a serde_json::Value,
    kind: &str,
    pid: u32,
) -> Vec<&'a serde_json::Value> {
    report["netns"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == kind && f["pid"] == pid)
        .collect()
}

/// This pod's namespace in a whole-node report (found by its bind mount).
pub fn netns_of<'a>(report: &'a serde_json::Value, pod: &Pod) -> &'a serde_json::Value {
    report["netns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| {
            n["paths"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == pod.path().as_str())
        })
        .unwrap_or_else(|| panic!("pod {} not in the report", pod.ns))
}

/// The verdict of process `pid` in a report's namespace `ns`; empty when it is not there.
pub fn verdict(ns: &serde_json::Value, pid: u32) -> String {
    ns["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == pid)
        .map(|p| p["verdict"].as_str().unwrap().to_string())
        .unwrap_or_default()
}
