//! Between scans (root): the agent runs as shipped (`--interval 60s`, exactly the
//! DaemonSet's four capabilities) and each change is made for real after its first scan:
//! a new pod, a rule inserted and removed by nft, iptables-nft and iptables-legacy, a root
//! process that drops to the proxy's gid, an exec of a setgid binary, a short-lived pod's
//! one connection. Each must be reported within 2 s (legacy: within its polling bound),
//! naming the process that did it; none would be before the next scan, 54-66 s later.

mod common;

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::http::{free_port, json_lines, request};
use common::pod::{Pod, settle};
use common::{EXEMPT_10001, is_root, run};

const ISTIO: &str = include_str!("../testdata/istio-sidecar.rules");
const ISTIO_NFT: &str = include_str!("../testdata/meshes/istio-sidecar-nft.nft");
/// What "at once" means here: the bound.
const WITHIN: Duration = Duration::from_secs(2);

/// One agent at a time: each judges every namespace of the machine, and the bounds are
/// about the agent's latency, not about sharing two cores with other agents.
static ONE: Mutex<()> = Mutex::new(());

/// An agent as the DaemonSet runs it, its JSON log lines on a channel.
struct Agent {
    child: std::process::Child,
    lines: mpsc::Receiver<serde_json::Value>,
    /// Every line received so far: a line waited for may have come before another.
    seen: std::cell::RefCell<Vec<serde_json::Value>>,
    metrics: u16,
    reports: u16,
    _one: MutexGuard<'static, ()>,
}

impl Agent {
    fn start() -> Agent {
        Agent::start_as(&[])
    }

    /// `wrap`: a command the agent runs under (`unshare --pid --fork`), before setpriv.
    fn start_as(wrap: &[&str]) -> Agent {
        let one = ONE.lock().unwrap_or_else(|e| e.into_inner());
        let (metrics, reports) = (free_port(), free_port());
        let mut cmd = Command::new(wrap.first().copied().unwrap_or("setpriv"));
        if !wrap.is_empty() {
            cmd.args(&wrap[1..]).arg("setpriv");
        }
        let mut child = cmd
            .args([
                "--inh-caps=-all",
                "--bounding-set=-all,+sys_admin,+net_admin,+sys_ptrace,+dac_read_search",
                env!("CARGO_BIN_EXE_meshleak"),
                "agent",
                "--interval",
                "60s",
                "--log-format",
                "json",
            ])
            .args(["--listen", &format!("127.0.0.1:{metrics}")])
            .args(["--report-listen", &format!("127.0.0.1:{reports}")])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = json_lines(child.stderr.take().unwrap(), false);
        let agent = Agent {
            child,
            lines,
            seen: Default::default(),
            metrics,
            reports,
            _one: one,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", metrics)).is_err()
            || request(metrics, "GET", "/readyz").0 != 200
        {
            assert!(Instant::now() < deadline, "never ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Past the first scan and the re-reads of the namespaces it began to follow.
        std::thread::sleep(Duration::from_millis(500));
        while agent.lines.try_recv().is_ok() {}
        agent
    }

    /// The first log line since the agent was ready that satisfies `want`, waiting for
    /// it until `deadline`.
    fn wait(
        &self,
        what: &str,
        deadline: Instant,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        if let Some(l) = self.seen.borrow().iter().find(|l| want(l)) {
            return l.clone();
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.borrow_mut().push(l.clone());
                    if want(&l) {
                        return l;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "not reported in time: {what}; the lines were:\n{}",
            self.seen
                .borrow()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    fn report(&self) -> serde_json::Value {
        let (status, body) = request(self.reports, "GET", "/report");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command in the pod's network namespace, as a process there with NET_ADMIN would.
fn in_pod(pod: &Pod, cmd: &[&str]) {
    run(&[&["ip", "netns", "exec", &pod.ns][..], cmd].concat(), None);
}

fn inode(pod: &Pod) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(pod.path()).unwrap().ino()
}

fn exempt_new(l: &serde_json::Value, pid: u32) -> bool {
    l["msg"] == "finding new" && l["kind"] == "identity-exempt" && l["pid"] == pid
}

/// A process in the pod that waits for `trigger` to exist, then runs `then` (Python).
fn on_trigger(trigger: &std::path::Path, then: &str) -> String {
    format!(
        "import os, socket, time\nwhile not os.path.exists({:?}): time.sleep(0.02)\n{then}\n",
        trigger.display().to_string()
    )
}

fn trigger_file(name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("ml-ev-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

#[test]
fn a_new_pod_whose_app_has_the_proxys_gid_is_reported_at_once() {
    if !is_root() {
        return;
    }
    let agent = Agent::start();
    let at = Instant::now();
    let mut pod = Pod::new();
    pod.add_rules(ISTIO);
    let app = pod.spawn(10001, 1337, &["sleep", "60"]);
    let l = agent.wait("the new pod's gid-1337 app", at + WITHIN, |l| {
        exempt_new(l, app)
    });
    assert_eq!(l["pod"], pod.path().as_str(), "{l}");
    let r = agent.report();
    let events = r["agent"]["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "bypass-seen" && e["pid"] == app && e["netns"] == inode(&pod)),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "namespace-new" && e["netns"] == inode(&pod)),
        "{events:?}"
    );
}

/// A rule inserted into the mesh's own chain by `insert`, and removed 2 s later by
/// `remove`: each commit is reported with the committing process and what it changed.
fn rule_in_and_out(
    agent: &Agent,
    pod: &Pod,
    app: u32,
    insert: &[&str],
    remove: &[&str],
    comm: &str,
) {
    let ns = inode(pod);
    let at = Instant::now();
    let committer = Command::new("ip")
        .args(["netns", "exec", &pod.ns])
        .args(insert)
        .status()
        .unwrap();
    assert!(committer.success());
    let l = agent.wait("the inserted rule", at + WITHIN, |l| {
        l["msg"] == "rules changed" && l["netns"] == ns && l["comm"] == comm
    });
    let changed = l["verdicts_changed"].to_string();
    assert!(
        changed.contains(&format!("pid {app} sleep: captured -> bypass")),
        "{l}"
    );
    assert!(l["pid"].as_u64().is_some_and(|p| p > 0), "{l}");
    agent.wait("the app bypasses", at + WITHIN, |l| exempt_new(l, app));
    agent.wait("the foreign rule", at + WITHIN, |l| {
        l["msg"] == "finding new" && l["kind"] == "foreign-rule" && l["pod"] == pod.path().as_str()
    });
    std::thread::sleep(Duration::from_secs(2));
    let at = Instant::now();
    run(
        &[&["ip", "netns", "exec", &pod.ns][..], remove].concat(),
        None,
    );
    // The nft reload commits twice (delete, then add): the last one restores capture.
    agent.wait("the removed rule", at + WITHIN, |l| {
        l["msg"] == "rules changed"
            && l["netns"] == ns
            && l["verdicts_changed"]
                .to_string()
                .contains(&format!("pid {app} sleep: bypass -> captured"))
    });
    let r = agent.report();
    let changes = r["agent"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "rules-changed" && e["netns"] == ns)
        .count();
    assert!(changes >= 2, "{r}");
    let (_, metrics) = request(agent.metrics, "GET", "/metrics");
    assert!(
        metrics.contains("meshleak_rule_changes_total{namespace=\"(none)\"}"),
        "{metrics}"
    );
}

#[test]
fn a_rule_inserted_and_removed_by_iptables_nft_is_reported_with_its_committer() {
    if !is_root() {
        return;
    }
    let mut pod = Pod::istio_with_proxy();
    let app = pod.spawn(10001, 10001, &["sleep", "60"]);
    settle();
    let agent = Agent::start();
    let insert = [&["iptables-nft", "-t", "nat"][..], &EXEMPT_10001].concat();
    // `-D` with the rule's spec: `-I ISTIO_OUTPUT 1 ...` without its position.
    let spec = [&EXEMPT_10001[1..2], &EXEMPT_10001[3..]].concat();
    let remove = [&["iptables-nft", "-t", "nat", "-D"][..], &spec].concat();
    rule_in_and_out(&agent, &pod, app, &insert, &remove, "iptables-nft");
}

#[test]
fn a_rule_inserted_and_removed_by_nft_is_reported_with_its_committer() {
    if !is_root() {
        return;
    }
    let mut pod = Pod::new();
    run(
        &["ip", "netns", "exec", &pod.ns, "nft", "-f", "-"],
        Some(ISTIO_NFT),
    );
    pod.proxy();
    let app = pod.spawn(10001, 10001, &["sleep", "60"]);
    settle();
    let agent = Agent::start();
    let insert = [
        "nft",
        "insert",
        "rule",
        "inet",
        "istio-proxy-nat",
        "istio-output",
        "meta",
        "skuid",
        "10001",
        "return",
    ];
    // Deleting needs the rule's handle: flush and reload the mesh's own table at once.
    let reload =
        format!("flush table inet istio-proxy-nat\ndelete table inet istio-proxy-nat\n{ISTIO_NFT}");
    let file = std::env::temp_dir().join(format!("ml-ev-nft-{}", std::process::id()));
    std::fs::write(&file, reload).unwrap();
    let path = file.display().to_string();
    rule_in_and_out(&agent, &pod, app, &insert, &["nft", "-f", &path], "nft");
    let _ = std::fs::remove_file(file);
}

#[test]
fn a_legacy_rule_change_is_seen_within_its_polling_bound() {
    if !is_root() {
        return;
    }
    let mut pod = Pod::new();
    run(
        &["ip", "netns", "exec", &pod.ns, "iptables-legacy-restore"],
        Some(ISTIO),
    );
    pod.proxy();
    let app = pod.spawn(10001, 10001, &["sleep", "60"]);
    settle();
    let agent = Agent::start();
    let ns = inode(&pod);
    let at = Instant::now();
    in_pod(
        &pod,
        &[&["iptables-legacy", "-t", "nat"][..], &EXEMPT_10001].concat(),
    );
    // docs/agent.md: polled every 2 s, then read again: within 3 s.
    let l = agent.wait("the legacy rule", at + Duration::from_secs(3), |l| {
        l["msg"] == "rules changed" && l["netns"] == ns
    });
    assert_eq!(l["how"], "iptables-legacy tables changed", "{l}");
    assert!(
        l["verdicts_changed"]
            .to_string()
            .contains(&format!("pid {app} sleep: captured -> bypass")),
        "{l}"
    );
}

#[test]
fn a_root_process_that_drops_to_the_proxys_gid_is_reported_at_once() {
    if !is_root() {
        return;
    }
    let mut pod = Pod::istio_with_proxy();
    let trigger = trigger_file("drop");
    let program = on_trigger(
        &trigger,
        "os.setgroups([]); os.setgid(1337); os.setuid(10001)\ntime.sleep(60)",
    );
    let app = pod.spawn(0, 0, &["/usr/bin/python3", "-c", &program]);
    settle();
    let agent = Agent::start();
    let at = Instant::now();
    std::fs::write(&trigger, "").unwrap();
    let l = agent.wait("the drop to 10001:1337", at + WITHIN, |l| {
        exempt_new(l, app)
    });
    assert!(l["message"].to_string().contains("gid 1337"), "{l}");
    let r = agent.report();
    assert!(
        r["agent"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "identity-changed" && e["pid"] == app),
        "{r}"
    );
    let _ = std::fs::remove_file(trigger);
}

#[test]
fn an_exec_of_a_setgid_binary_in_a_running_pod_is_reported_at_once() {
    if !is_root() {
        return;
    }
    // A copy of sleep, setgid 1337, as an image could ship one.
    let bin = std::env::temp_dir().join(format!("ml-ev-sleep-setgid-{}", std::process::id()));
    std::fs::copy("/bin/sleep", &bin).unwrap();
    run(&["chown", "0:1337", &bin.display().to_string()], None);
    run(&["chmod", "2755", &bin.display().to_string()], None);
    let mut pod = Pod::istio_with_proxy();
    let trigger = trigger_file("sgid");
    let program = on_trigger(
        &trigger,
        &format!("os.execv({:?}, ['sleep', '60'])", bin.display().to_string()),
    );
    let app = pod.spawn(10001, 10001, &["/usr/bin/python3", "-c", &program]);
    settle();
    let agent = Agent::start();
    let at = Instant::now();
    std::fs::write(&trigger, "").unwrap();
    let l = agent.wait("the setgid exec", at + WITHIN, |l| exempt_new(l, app));
    assert!(l["message"].to_string().contains("gid 1337"), "{l}");
    let _ = std::fs::remove_file(trigger);
    let _ = std::fs::remove_file(bin);
}

#[test]
fn a_connection_is_named_by_the_process_that_holds_its_socket() {
    if !is_root() {
        return;
    }
    let mut pod = Pod::istio_with_proxy();
    pod.with_peer(&[&[
        "socat",
        "TCP-LISTEN:80,reuseaddr,fork",
        "SYSTEM:echo B; sleep 5",
    ]]);
    pod.add_rules("*nat\n-I ISTIO_OUTPUT 1 -m owner --uid-owner 10001 -j RETURN\nCOMMIT\n");
    // The only uid-10001 process the first scan sees; the connection comes from another.
    let bystander = pod.spawn(10001, 10001, &["sleep", "60"]);
    settle();
    let agent = Agent::start();
    let at = Instant::now();
    let program =
        "import socket, time\ns = socket.create_connection(('169.254.78.2', 80))\ntime.sleep(3)\n";
    let app = pod.spawn(10001, 10001, &["/usr/bin/python3", "-c", program]);
    let ns = inode(&pod);
    let l = agent.wait("the observed bypass", at + WITHIN, |l| {
        l["msg"] == "observed bypass" && l["netns"] == ns
    });
    assert_ne!(
        l["pid"], bystander,
        "named a process that only shares the uid: {l}"
    );
    assert_eq!(l["pid"], app, "{l}");
    assert_eq!(l["comm"], "python3", "{l}");
}

#[test]
fn a_pod_that_lives_6s_and_connects_once_stays_seen() {
    if !is_root() {
        return;
    }
    let agent = Agent::start();
    let started = Instant::now();
    let mut pod = Pod::istio_with_proxy();
    pod.with_peer(&[&["socat", "TCP-LISTEN:80,reuseaddr,fork", "SYSTEM:echo B"]]);
    let ns = inode(&pod);
    std::thread::sleep(Duration::from_secs(1));
    // Once the peer answers (its listener may start late on a busy machine): the one
    // connection that reaches it is the one timed.
    let mut at = Instant::now();
    for _ in 0..20 {
        at = Instant::now();
        if pod.answer(10001, 1337, "169.254.78.2:80") == "B" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let l = agent.wait("the one connection", at + WITHIN, |l| {
        l["msg"] == "observed bypass" && l["netns"] == ns
    });
    assert_eq!(l["dst"], "169.254.78.2:80", "{l}");
    std::thread::sleep(Duration::from_secs(6).saturating_sub(started.elapsed()));
    drop(pod);
    let deadline = Instant::now() + WITHIN;
    while agent.report()["netns"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["inode"] == ns)
    {
        assert!(Instant::now() < deadline, "the gone pod is still reported");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Gone from the node, still in the report's recent events and in the counters.
    let r = agent.report();
    let events = r["agent"]["events"].as_array().unwrap();
    for kind in ["observed-bypass", "namespace-gone"] {
        assert!(
            events.iter().any(|e| e["kind"] == kind && e["netns"] == ns),
            "{kind}: {events:?}"
        );
    }
    let (_, metrics) = request(agent.metrics, "GET", "/metrics");
    assert!(
        metrics.lines().any(|l| l
            .starts_with("meshleak_observed_bypass_connections_total{namespace=\"(none)\"}")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
}

#[test]
fn without_process_events_the_agent_says_so_and_polls() {
    if !is_root() {
        return;
    }
    // In a PID namespace of its own the kernel refuses the proc connector's subscription,
    // as it does in a pod without hostPID.
    let agent = Agent::start_as(&["unshare", "--pid", "--fork", "--kill-child"]);
    let (status, body) = request(agent.metrics, "GET", "/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("degraded: processes (polling)"), "{body}");
    let r = agent.report();
    let sources = r["agent"]["sources"].as_array().unwrap();
    assert!(
        sources
            .iter()
            .any(|s| s["name"] == "processes" && s["mode"] == "polling"),
        "{sources:?}"
    );
    let (_, metrics) = request(agent.metrics, "GET", "/metrics");
    assert!(
        metrics.contains("meshleak_event_source{source=\"processes\",mode=\"polling\"} 1"),
        "{metrics}"
    );
    // A new process is still found within the poll and a re-read.
    let mut pod = Pod::istio_with_proxy();
    settle();
    let at = Instant::now();
    let app = pod.spawn(10001, 1337, &["sleep", "60"]);
    agent.wait("a new process, polled", at + WITHIN, |l| exempt_new(l, app));
}

#[test]
fn flushing_the_capture_while_the_pod_runs_is_reported() {
    if !is_root() {
        return;
    }
    let mut pod = Pod::istio_with_proxy();
    let app = pod.spawn(10001, 10001, &["sleep", "60"]);
    settle();
    let agent = Agent::start();
    let ns = inode(&pod);
    let at = Instant::now();
    in_pod(&pod, &["iptables-nft", "-t", "nat", "-F"]);
    let l = agent.wait("the flush", at + WITHIN, |l| {
        l["msg"] == "rules changed" && l["netns"] == ns
    });
    assert!(
        l["verdicts_changed"]
            .to_string()
            .contains(&format!("pid {app} sleep: captured -> unmeshed")),
        "{l}"
    );
    let r = agent.report();
    assert!(
        r["agent"]["events"].as_array().unwrap().iter().any(|e| {
            e["kind"] == "bypass-seen"
                && e["pid"] == app
                && e["message"]
                    .as_str()
                    .unwrap()
                    .contains("capture rules are gone")
        }),
        "{r}"
    );
}
