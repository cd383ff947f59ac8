//! The agent against a throwaway pod (root): health, readiness, metrics, the report, one
//! log line when a bypassing process appears and one when it exits, rate-limited fresh
//! scans, GET only, and a clean exit on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::http::{Agent, free_port, json_lines, request, scopeguard};
use common::pod::{Pod, netns_of, settle};
use common::{is_root, run};

const ISTIO: &str = include_str!("../testdata/istio-sidecar.rules");

/// Waits for a log line (JSON) that satisfies `want`.
fn wait_log(
    lines: &mpsc::Receiver<serde_json::Value>,
    what: &str,
    want: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(l) if want(&l) => return l,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no log line: {what}");
}

#[test]
fn agent_serves_metrics_and_report_and_logs_changes() {
    if !is_root() {
        return;
    }
    let mut pod = Pod::istio_with_proxy();
    settle();
    let (metrics, reports) = (free_port(), free_port());
    let mut agent = Command::new(env!("CARGO_BIN_EXE_meshleak"))
        .args([
            "agent",
            "--interval",
            "1s",
            "--log-format",
            "json",
            "--fresh-interval",
            "30s",
        ])
        .args(["--listen", &format!("127.0.0.1:{metrics}")])
        .args(["--report-listen", &format!("127.0.0.1:{reports}")])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = json_lines(agent.stderr.take().unwrap(), true);
    let guard = scopeguard(agent.id());
    wait_log(&lines, "started", |l| l["msg"] == "started");
    let deadline = Instant::now() + Duration::from_secs(20);
    while request(metrics, "GET", "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(request(metrics, "GET", "/healthz"), (200, "ok\n".into()));

    let leaky = pod.spawn(10001, 1337, &["sleep", "60"]);
    let is_leaky = |l: &serde_json::Value, event: &str| {
        l["msg"] == format!("finding {event}")
            && l["kind"] == "identity-exempt"
            && l["pid"] == leaky
    };
    let new = wait_log(&lines, "identity-exempt appears", |l| is_leaky(l, "new"));
    assert_eq!(new["level"], "warn");
    assert_eq!(new["pod"], pod.path().as_str());

    let (status, text) = request(metrics, "GET", "/metrics");
    assert_eq!(status, 200);
    for series in [
        "meshleak_scans_total ",
        "meshleak_scan_duration_seconds_count ",
        "meshleak_namespaces ",
        "meshleak_processes ",
        "meshleak_findings{kind=\"identity-exempt\",severity=\"high\"} ",
        "meshleak_bypassing_processes{namespace=\"(none)\"} ",
        "meshleak_build_info{version=\"",
        "meshleak_scan_errors_total{stage=\"netns\"} ",
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }
    assert!(
        !text.contains("pod=\""),
        "no per-pod labels unless asked:\n{text}"
    );
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );

    let (status, body) = request(reports, "GET", "/report");
    assert_eq!(status, 200);
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ours = netns_of(&r, &pod);
    assert!(
        ours["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pid"] == leaky && p["verdict"] == "bypass")
    );
    assert_eq!(
        request(metrics, "GET", "/report").0,
        404,
        "the report is not on the metrics listener"
    );
    assert_eq!(request(metrics, "POST", "/metrics").0, 405);
    assert_eq!(request(reports, "GET", "/report?fresh=1").0, 200);
    assert_eq!(
        request(reports, "GET", "/report?fresh=1").0,
        429,
        "rate-limited"
    );

    pod.stop(leaky);
    wait_log(&lines, "identity-exempt resolved", |l| {
        is_leaky(l, "resolved")
    });

    let started = Instant::now();
    run(&["kill", "-TERM", &agent.id().to_string()], None);
    let status = agent.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    wait_log(&lines, "stopping", |l| l["msg"] == "stopping");
    // Exited: its pid may be reused, so it must not be killed later.
    std::mem::forget(guard);
}

const CAPS: [&str; 4] = ["sys_admin", "net_admin", "sys_ptrace", "dac_read_search"];

/// `setpriv` arguments that leave root with exactly `caps` (bounding set and all).
fn only_caps(caps: &[&str]) -> String {
    let list: Vec<String> = caps.iter().map(|c| format!("+{c}")).collect();
    format!("--bounding-set=-all,{}", list.join(","))
}

/// The DaemonSet's capabilities suffice for the agent; without each of the first three the
/// scan fails or warns naming it.
#[test]
fn agent_runs_with_exactly_the_manifest_capabilities() {
    if !is_root() {
        return;
    }
    let mut pod = Pod::new();
    run(
        &["ip", "netns", "exec", &pod.ns, "iptables-nft-restore"],
        Some(ISTIO),
    );
    let leaky = pod.spawn(10001, 1337, &["sleep", "60"]);
    settle();
    let (metrics, reports) = (free_port(), free_port());
    let mut agent = Command::new("setpriv")
        .args([
            "--inh-caps=-all",
            &only_caps(&CAPS),
            env!("CARGO_BIN_EXE_meshleak"),
        ])
        .args(["agent", "--interval", "60s"])
        .args(["--listen", &format!("127.0.0.1:{metrics}")])
        .args(["--report-listen", &format!("127.0.0.1:{reports}")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = scopeguard(agent.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", metrics)).is_err()
        || request(metrics, "GET", "/readyz").0 != 200
    {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, body) = request(reports, "GET", "/report");
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    // Namespaces read (this VM's pid 1 is unreadable even for full root: not asserted).
    let errors = r["errors"].to_string();
    assert!(
        !errors.contains("CAP_SYS_ADMIN") && !errors.contains("CAP_NET_ADMIN"),
        "{errors}"
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.id())).unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim()
        .to_string();
    // SYS_ADMIN 21, NET_ADMIN 12, SYS_PTRACE 19, DAC_READ_SEARCH 2.
    assert_eq!(
        u64::from_str_radix(&eff, 16).unwrap(),
        (1 << 21) | (1 << 12) | (1 << 19) | (1 << 2)
    );
    let ours = netns_of(&r, &pod);
    assert!(
        ours["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pid"] == leaky && p["verdict"] == "bypass"),
        "{ours}"
    );
    run(&["kill", "-TERM", &agent.id().to_string()], None);
    assert_eq!(agent.wait().unwrap().code(), Some(0));
    std::mem::forget(guard);

    for (missing, named) in [
        ("sys_admin", "CAP_SYS_ADMIN"),
        ("net_admin", "CAP_NET_ADMIN"),
        ("sys_ptrace", "CAP_SYS_PTRACE"),
    ] {
        let caps: Vec<&str> = CAPS.iter().copied().filter(|c| *c != missing).collect();
        let out = Command::new("setpriv")
            .args([
                "--inh-caps=-all",
                &only_caps(&caps),
                env!("CARGO_BIN_EXE_meshleak"),
            ])
            .args(["pod", "--netns", &pod.path(), "-o", "json"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "without {missing}: {err}");
    }
}

/// The value of the first series in `text` that starts with `series`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn agent_sees_bypassing_connections_that_open_and_close_between_scans() {
    if !is_root() {
        return;
    }
    let mut pod = Pod::istio_with_proxy();
    let peer = pod.with_peer(&[&[
        "socat",
        "TCP-LISTEN:80,reuseaddr,fork",
        "SYSTEM:echo B; sleep 30",
    ]]);
    // An app with the proxy's own uid, which connects once told to: whose its socket is,
    // only its descriptors tell.
    let trigger = std::env::temp_dir().join(format!("ml-follow-{}", std::process::id()));
    let _ = std::fs::remove_file(&trigger);
    let program = format!(
        "import os, socket, time\nwhile not os.path.exists({:?}): time.sleep(0.05)\ns = socket.create_connection(('169.254.78.2', 80))\ntime.sleep(30)\n",
        trigger.display().to_string()
    );
    let twin = pod.spawn(1337, 1337, &["/usr/bin/python3", "-c", &program]);
    settle();
    let inode = std::fs::metadata(pod.path()).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.ino()
    });
    let inode = inode.unwrap();
    let (metrics, reports) = (free_port(), free_port());
    // Scans far apart: the connections below open and close between two of them.
    let mut agent = Command::new(env!("CARGO_BIN_EXE_meshleak"))
        .args(["agent", "--interval", "10m", "--log-format", "json"])
        .args(["--fresh-interval", "1s"])
        .args(["--listen", &format!("127.0.0.1:{metrics}")])
        .args(["--report-listen", &format!("127.0.0.1:{reports}")])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guard = scopeguard(agent.id());
    let lines = json_lines(agent.stderr.take().unwrap(), false);
    wait_log(&lines, "started", |l| l["msg"] == "started");
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(
        &request(metrics, "GET", "/metrics").1,
        "meshleak_followed_namespaces ",
    )
    .is_none_or(|n| n < 1.0)
    {
        assert!(Instant::now() < deadline, "never followed a namespace");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    // gid 1337 is exempt: straight to the peer, three times; the ordinary app is
    // captured (the proxy echoes), and the proxy's own connection leaves by design.
    for _ in 0..3 {
        assert_eq!(pod.answer(10001, 1337, "169.254.78.2:80"), "B");
    }
    assert_eq!(pod.answer(10001, 10001, "169.254.78.2:80"), "x");
    assert_eq!(pod.answer(1337, 1337, "169.254.78.2:80"), "B");
    let ours = |l: &serde_json::Value| l["msg"] == "observed bypass" && l["netns"] == inode;
    let mut seen = Vec::new();
    let until = Instant::now() + Duration::from_secs(3);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(l) if ours(&l) => seen.push(l),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    std::fs::write(&trigger, "").unwrap();
    let shared = wait_log(&lines, "the app sharing the proxy's uid", |l| {
        ours(l) && l["uid"] == 1337
    });
    assert_eq!(shared["pid"], twin, "{shared}");
    std::fs::remove_file(&trigger).ok();
    for l in &seen {
        assert_eq!(l["uid"], 10001, "{l}");
        assert_eq!(l["dst"], "169.254.78.2:80", "{l}");
        assert_eq!(l["proto"], "tcp", "{l}");
    }
    let text = request(metrics, "GET", "/metrics").1;
    let count = metric(
        &text,
        "meshleak_observed_bypass_connections_total{namespace=\"(none)\"} ",
    );
    assert!(count.is_some_and(|n| n >= 3.0), "{text}");

    // The pod goes away: once a scan no longer finds it, its sockets are closed and the
    // kernel frees the namespace (its veth end in the peer goes with it).
    let short = pod.ns.replace("mlscan", "mv");
    for pid in run(&["ip", "netns", "pids", &pod.ns], None).split_whitespace() {
        let _ = Command::new("kill").args(["-9", pid]).status();
    }
    run(&["ip", "netns", "del", &pod.ns], None);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let _ = request(reports, "GET", "/report?fresh=1");
        let up = Command::new("ip")
            .args(["-n", &peer, "link", "show", &format!("{short}b")])
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the namespace is still alive: its sockets were kept"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    run(&["kill", "-TERM", &agent.id().to_string()], None);
    assert_eq!(agent.wait().unwrap().code(), Some(0));
    std::mem::forget(guard);
}

/// `--listen :PORT`, as Prometheus exporters take it: every IPv4 address.
#[test]
fn agent_listens_on_every_address_given_only_a_port() {
    if !is_root() {
        return;
    }
    let agent = Agent::start_with(&["--interval", "1h"], |port| format!(":{port}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !agent.listening() {
        assert!(Instant::now() < deadline, "never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(agent.get("/healthz"), (200, "ok\n".into()));
}

/// The default log lines are logfmt with a timestamp and the node's name: a pod's finding
/// appears as one greppable line, its values quoted where they hold spaces.
#[test]
fn default_log_lines_are_logfmt_with_time_and_node() {
    if !is_root() {
        return;
    }
    let mut pod = Pod::istio_with_proxy();
    pod.spawn(10001, 1337, &["sleep", "60"]);
    settle();
    let (metrics, reports) = (free_port(), free_port());
    let mut agent = Command::new(env!("CARGO_BIN_EXE_meshleak"))
        .args(["agent", "--interval", "10m"])
        .args(["--listen", &format!("127.0.0.1:{metrics}")])
        .args(["--report-listen", &format!("127.0.0.1:{reports}")])
        .env("NODE_NAME", "node a")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guard = scopeguard(agent.id());
    let stderr = agent.stderr.take().unwrap();
    let mut lines = Vec::new();
    for l in BufReader::new(stderr).lines().map_while(Result::ok) {
        let done = l.contains("msg=\"finding new\"") && l.contains(&pod.ns);
        lines.push(l);
        if done {
            break;
        }
    }
    run(&["kill", "-TERM", &agent.id().to_string()], None);
    agent.wait().unwrap();
    std::mem::forget(guard);
    for l in &lines {
        let (ts, rest) = l.split_once(' ').unwrap();
        let ts = ts.strip_prefix("ts=").unwrap_or_else(|| panic!("{l}"));
        assert!(
            ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "{l}"
        );
        assert!(rest.starts_with("level="), "{l}");
        assert!(rest.contains(" node=\"node a\" msg="), "{l}");
    }
    let finding = lines.last().unwrap();
    assert!(
        finding.contains("kind=identity-exempt") && finding.contains("message=\"sleep (uid 10001"),
        "{lines:#?}"
    );
}
