//! The live scan (root): throwaway pods with real processes of chosen identities; the
//! report must say which bypass, with the deciding rule; `trace --pid` must say what the
//! kernel does with that process's connections; scanning a churning node must not fail.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::pod::{Pod, finding, json, settle, verdict};
use common::{Kernel, Lab, Loader, is_root, meshleak, probe, run};
use meshleak_core::snapshot::SocketProto;

const ISTIO: &str = include_str!("../testdata/istio-sidecar.rules");

fn process(report: &serde_json::Value, pid: u32) -> &serde_json::Value {
    report["netns"][0]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == pid)
        .unwrap_or_else(|| panic!("pid {pid} not in {report}"))
}

#[test]
fn pod_report_names_the_bypassing_process_and_its_rule() {
    if !is_root() {
        return;
    }
    let mut pod = Pod::new();
    run(
        &["ip", "netns", "exec", &pod.ns, "iptables-nft-restore"],
        Some(ISTIO),
    );
    let proxy = pod.spawn(
        1337,
        1337,
        &["socat", "TCP-LISTEN:15001,reuseaddr,fork", "EXEC:/bin/cat"],
    );
    let leaky = pod.spawn(10001, 1337, &["sleep", "60"]);
    let fine = pod.spawn(10001, 10001, &["sleep", "60"]);
    let impostor = pod.spawn(1337, 10001, &["sleep", "60"]);
    settle();
    let (code, out, err) = meshleak(&["pod", "--netns", &pod.path(), "-o", "json"]);
    assert_eq!(code, 1, "something bypasses: {err}");
    let r = json(&out);
    assert_eq!(r["schema_version"], 1);
    let ns = &r["netns"][0];
    assert_eq!(ns["mesh"]["kind"], "istio-sidecar");
    assert!(
        ns["mesh"]["proxy_ports"]
            .as_array()
            .unwrap()
            .contains(&15001.into())
    );
    assert_eq!(process(&r, proxy)["verdict"], "proxy");
    assert_eq!(process(&r, fine)["verdict"], "captured");
    let p = process(&r, leaky);
    assert_eq!(
        (p["verdict"].as_str(), p["uid"].as_u64(), p["gid"].as_u64()),
        (Some("bypass"), Some(10001), Some(1337))
    );
    assert_eq!(
        p["reasons"][0]["rule"],
        "-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN"
    );
    // Same uid as the proxy, but not its container's listener: not the proxy.
    assert_eq!(process(&r, impostor)["verdict"], "bypass");
    let findings = ns["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f["kind"] == "identity-exempt" && f["pid"] == leaky)
    );
    assert_eq!(
        ns["processes"][0]["verdict"], "bypass",
        "bypassing processes come first"
    );

    // The table for people marks it and shows the rule in full.
    let (_, table, _) = meshleak(&["pod", "--netns", &pod.path()]);
    let line = table
        .lines()
        .find(|l| l.contains(&format!(" {leaky} ")))
        .unwrap();
    assert!(line.trim_start().starts_with('!'), "{table}");
    assert!(table.contains("-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN"));
    // Wrapped at word boundaries to COLUMNS where no terminal says its width.
    let narrow = std::process::Command::new(env!("CARGO_BIN_EXE_meshleak"))
        .args(["pod", "--netns", &pod.path()])
        .env("COLUMNS", "80")
        .output()
        .unwrap();
    let narrow = String::from_utf8(narrow.stdout).unwrap();
    assert!(
        narrow.lines().all(|l| l.chars().count() <= 80),
        "fits 80 columns:\n{narrow}"
    );
    assert!(narrow.lines().count() > table.lines().count());

    // Saved and judged elsewhere: the same verdicts.
    let file = std::env::temp_dir().join(format!("{}.json", pod.ns));
    let (code, _, err) = meshleak(&[
        "collect",
        "-f",
        file.to_str().unwrap(),
        "--netns-dir",
        "/run/netns",
    ]);
    assert_eq!(code, 0, "{err}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600,
        "a snapshot names every process: its owner's only"
    );
    let (code, out, err) = meshleak(&["collect", "-f", "-", "--netns-dir", "/run/netns"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["snapshot_version"], 2, "the snapshot on stdout");
    assert!(err.contains("to standard output"), "{err}");
    let (code, out, _) = meshleak(&[
        "analyze",
        "--snapshot",
        file.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(code, 1);
    let offline = json(&out);
    let ours = offline["netns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["paths"][0] == pod.path())
        .expect("pod in snapshot");
    assert_eq!(
        (
            verdict(ours, proxy),
            verdict(ours, leaky),
            verdict(ours, fine)
        ),
        ("proxy".into(), "bypass".into(), "captured".into())
    );
    std::fs::remove_file(file).ok();
}

#[test]
fn a_pod_without_capture_is_unmeshed_and_exclusions_are_listed() {
    if !is_root() {
        return;
    }
    let mut pod = Pod::new();
    let app = pod.spawn(10001, 10001, &["sleep", "60"]);
    settle();
    let (code, out, _) = meshleak(&["pod", "--netns", &pod.path(), "-o", "json"]);
    assert_eq!(code, 0);
    let r = json(&out);
    assert!(r["netns"][0]["mesh"].is_null());
    assert_eq!(process(&r, app)["verdict"], "unmeshed");

    let mut excl = Pod::new();
    let rules = ISTIO.replace("-A ISTIO_OUTPUT -j ISTIO_REDIRECT", "-A ISTIO_OUTPUT -p tcp -m tcp --dport 3306 -j RETURN\n-A ISTIO_OUTPUT -d 10.96.0.0/12 -j RETURN\n-A ISTIO_OUTPUT -j ISTIO_REDIRECT");
    run(
        &["ip", "netns", "exec", &excl.ns, "iptables-legacy-restore"],
        Some(&rules),
    );
    excl.spawn(10001, 10001, &["sleep", "60"]);
    settle();
    let (_, out, _) = meshleak(&["pod", "--netns", &excl.path(), "-o", "json"]);
    let r = json(&out);
    let ex = r["netns"][0]["capture"]["exemptions"].as_array().unwrap();
    assert!(ex.iter().any(|e| e["kind"] == "port"
        && e["rule"]["rule"] == "-A ISTIO_OUTPUT -p tcp -m tcp --dport 3306 -j RETURN"));
    assert!(
        ex.iter()
            .any(|e| e["kind"] == "cidr" && e["rule"]["backend"] == "iptables-legacy")
    );
    assert!(
        ex.iter()
            .any(|e| e["kind"] == "family" && e["family"] == "ipv6")
    );
}

/// `trace --pid` against what the kernel does with that identity's real connections.
#[test]
fn trace_pid_matches_real_connections() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    lab.load(Loader::IptablesNft, ISTIO);
    lab.load(Loader::Nft, "table inet extra {\n chain out {\n  type nat hook output priority -150;\n  meta skuid 4242 udp dport 53 redirect to :15006\n }\n}\n");
    let mut procs: Vec<Child> = Vec::new();
    let mut spawn = |uid: u32, gid: u32| {
        let c = Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.pod,
                "setpriv",
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--clear-groups",
                "sleep",
                "60",
            ])
            .spawn()
            .unwrap();
        let pid = c.id();
        procs.push(c);
        pid
    };
    let ids = [(10001, 10001), (10001, 1337), (1337, 1337), (4242, 4242)];
    let pids: Vec<u32> = ids.iter().map(|(u, g)| spawn(*u, *g)).collect();
    settle();
    let mut checked = 0;
    for (&(uid, gid), pid) in ids.iter().zip(&pids) {
        for (dst, udp) in [
            ("169.254.77.2:80", false),
            ("169.254.77.2:15008", false),
            ("127.0.0.1:8080", false),
            ("[fd77::2]:80", false),
            ("169.254.77.2:53", true),
        ] {
            let proto = if udp { "udp" } else { "tcp" };
            let (code, out, err) = meshleak(&[
                "trace",
                "--pid",
                &pid.to_string(),
                "--dst",
                dst,
                "--proto",
                proto,
                "-o",
                "json",
            ]);
            assert!(code == 0 || code == 1, "{err}");
            let t = json(&out);
            let ours = match t["verdict"].as_str().unwrap() {
                "captured" => Kernel::Captured(t["redirect_port"].as_u64().unwrap() as u16),
                "bypass" => Kernel::Bypass,
                "dropped" => Kernel::Dropped,
                other => panic!("verdict {other} for uid {uid} to {dst}"),
            };
            let p = probe(uid, gid, &[], udp, dst);
            let kernel = lab.connect(p.uid, p.gid, &p.groups, p.udp, p.dst);
            assert_eq!(
                ours, kernel,
                "uid {uid} gid {gid} {proto} {dst}: meshleak {ours:?}, kernel {kernel:?}\n{out}"
            );
            checked += 1;
        }
    }
    // A local route delivers to this host too: the looped-back packet meets INPUT.
    common::run(
        &[
            "ip",
            "-n",
            &lab.pod,
            "route",
            "add",
            "local",
            "10.77.0.0/16",
            "dev",
            "lo",
        ],
        None,
    );
    lab.load(
        Loader::IptablesNft,
        "*filter\n-A INPUT -d 10.77.0.0/16 -p tcp --dport 8080 -j DROP\nCOMMIT\n",
    );
    for (&(uid, gid), pid) in ids.iter().zip(&pids) {
        let dst = "10.77.0.5:8080";
        let (code, out, err) = meshleak(&["trace", "--pid", &pid.to_string(), "--dst", dst]);
        assert!(code == 0 || code == 1, "{err}");
        let p = probe(uid, gid, &[], false, dst);
        let kernel = lab.connect(p.uid, p.gid, &p.groups, p.udp, p.dst);
        let verdict = out.lines().next().unwrap_or_default();
        let ours = match kernel {
            Kernel::Dropped => verdict.contains("dropped"),
            Kernel::Captured(port) => verdict.contains(&format!("captured to local port {port}")),
            Kernel::Bypass => verdict.contains("bypass"),
        };
        assert!(
            ours,
            "uid {uid} to {dst} through a local route: kernel {kernel:?}\n{out}"
        );
        checked += 1;
    }
    // The namespace's own ephemeral range decides a rule on the source port of an app that
    // binds none.
    common::run(
        &[
            "ip",
            "netns",
            "exec",
            &lab.pod,
            "sysctl",
            "-qw",
            "net.ipv4.ip_local_port_range=1024 2000",
        ],
        None,
    );
    lab.load(
        Loader::IptablesNft,
        "*filter\n-A INPUT -p tcp --sport 32768:60999 --dport 8080 -j DROP\nCOMMIT\n",
    );
    let (uid, gid) = ids[0];
    let (_, out, _) = meshleak(&[
        "trace",
        "--pid",
        &pids[0].to_string(),
        "--dst",
        "127.0.0.1:8080",
    ]);
    let kernel = lab.connect(uid, gid, &[], false, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(
        kernel,
        Kernel::Bypass,
        "the kernel picks a port of 1024-2000"
    );
    assert!(out.starts_with("verdict   bypass"), "{out}");
    for mut c in procs {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert_eq!(checked, 24);
}

/// A minute of scans while short-lived processes come and go in a pod and namespaces (with
/// a process each) are created and deleted: no panic, no failure, vanished objects counted.
#[test]
fn scanning_a_churning_node_never_fails() {
    if !is_root() {
        return;
    }
    let mut pod = Pod::new();
    run(
        &["ip", "netns", "exec", &pod.ns, "iptables-nft-restore"],
        Some(ISTIO),
    );
    pod.spawn(10001, 1337, &["sleep", "60"]);
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (stop, ns) = (stop.clone(), pod.ns.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                // Short-lived processes in the pod (pids get reused), and namespaces that
                // appear and disappear.
                let _ = Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &ns,
                        "sh",
                        "-c",
                        "sleep 0.0$((RANDOM % 5)); true",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn();
                let extra = format!("{ns}c{}", n % 3);
                let _ = Command::new("ip")
                    .args(["netns", "add", &extra])
                    .stderr(Stdio::null())
                    .status();
                // A namespace whose only process exits while a scan may be reading it.
                let _ = Command::new("ip")
                    .args(["netns", "exec", &extra, "sleep", "0.03"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn();
                let _ = Command::new("ip")
                    .args(["netns", "del", &extra])
                    .stderr(Stdio::null())
                    .status();
                n += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            for i in 0..3 {
                let _ = Command::new("ip")
                    .args(["netns", "del", &format!("{ns}c{i}")])
                    .stderr(Stdio::null())
                    .status();
            }
        })
    };
    let started = Instant::now();
    let (mut scans, mut vanished) = (0, 0);
    while started.elapsed() < Duration::from_secs(60) {
        let (code, out, err) = meshleak(&["scan", "-o", "json", "--netns-dir", "/run/netns"]);
        assert!(
            code == 0 || code == 1,
            "scan failed while the node churned: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        let r = json(&out);
        assert!(
            r["netns"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["paths"][0] == pod.path())
        );
        vanished +=
            r["vanished_processes"].as_u64().unwrap() + r["vanished_netns"].as_u64().unwrap();
        scans += 1;
    }
    stop.store(true, Ordering::SeqCst);
    churn.join().unwrap();
    assert!(scans >= 30, "only {scans} scans in 60 s");
    // Processes and namespaces went away mid-scan, and were counted, not errors.
    assert!(vanished > 0, "nothing vanished in {scans} scans");
}

#[test]
fn without_privileges_the_scan_fails_naming_the_capability() {
    if !is_root() {
        return;
    }
    let mut pod = Pod::new();
    pod.spawn(10001, 10001, &["sleep", "60"]);
    settle();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_meshleak"))
        .args(["pod", "--netns", &pod.path()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CAP_SYS_ADMIN"), "{err}");
    let (code, _, err) = meshleak(&["scan", "--proc-root", "/nonexistent-proc"]);
    assert_eq!(code, 2);
    assert_eq!(
        err.matches("No such file").count(),
        1,
        "the cause once: {err}"
    );
}

fn findings(pod: &Pod) -> Vec<(String, Option<u64>)> {
    pod.report()["netns"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["kind"].as_str().unwrap().to_string(), f["pid"].as_u64()))
        .collect()
}

#[test]
fn findings_appear_where_their_situation_is_real() {
    if !is_root() {
        return;
    }
    // Clean: the proxy listens on both capture ports, the app is captured, no IPv6.
    let mut clean = Pod::istio_with_proxy();
    clean.spawn(10001, 10001, &["sleep", "60"]);
    settle();
    assert_eq!(findings(&clean), vec![], "a clean pod has no findings");

    let mut pod = Pod::new();
    // Exclusions (port, network, interface) and a rule someone put ahead of the mesh's jump.
    let rules = ISTIO
        .replace(
            "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
            "-A ISTIO_OUTPUT -p tcp -m tcp --dport 3306 -j RETURN\n-A ISTIO_OUTPUT -d 10.96.0.0/12 -j RETURN\n-A ISTIO_OUTPUT -o v6a -j RETURN\n-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
        )
        .replace(
            "-A OUTPUT -j ISTIO_OUTPUT",
            "-A OUTPUT -m owner --uid-owner 4242 -j RETURN\n-A OUTPUT -j ISTIO_OUTPUT",
        );
    run(
        &["ip", "netns", "exec", &pod.ns, "iptables-nft-restore"],
        Some(&rules),
    );
    // A global IPv6 address on a veth inside the pod; no ip6tables rules.
    run(
        &[
            "ip", "-n", &pod.ns, "link", "add", "v6a", "type", "veth", "peer", "name", "v6b",
        ],
        None,
    );
    run(
        &[
            "ip",
            "-n",
            &pod.ns,
            "addr",
            "add",
            "fd00:77::5/64",
            "dev",
            "v6a",
            "nodad",
        ],
        None,
    );
    run(&["ip", "-n", &pod.ns, "link", "set", "v6a", "up"], None);
    pod.spawn(
        1337,
        1337,
        &["socat", "TCP-LISTEN:15001,reuseaddr,fork", "EXEC:/bin/cat"],
    );
    // Envoy's admin port on loopback.
    pod.spawn(
        1337,
        1337,
        &[
            "socat",
            "TCP-LISTEN:15000,bind=127.0.0.1,reuseaddr,fork",
            "EXEC:/bin/cat",
        ],
    );
    let leaky = pod.spawn(10001, 1337, &["sleep", "60"]);
    let foreign = pod.spawn(4242, 4242, &["sleep", "60"]);
    let setuid = pod.spawn_with_caps(10001, 10001, "+setuid,+setgid", &["sleep", "60"]);
    let killer = pod.spawn_with_caps(10001, 10001, "+kill", &["sleep", "60"]);
    let admin = pod.spawn_with_caps(
        10001,
        10001,
        "+net_admin",
        &["socat", "-u", "UDP-RECV:5353", "/dev/null"],
    );
    let impostor = pod.spawn(
        10001,
        10002,
        &["socat", "TCP-LISTEN:15006,reuseaddr,fork", "EXEC:/bin/cat"],
    );
    settle();
    let found = findings(&pod);
    let has =
        |kind: &str, pid: Option<u32>| found.contains(&(kind.to_string(), pid.map(u64::from)));
    assert!(has("identity-exempt", Some(leaky)), "{found:?}");
    assert!(has("protocol-uncaptured", Some(admin)), "{found:?}");
    assert!(has("can-modify-rules", Some(admin)), "{found:?}");
    assert!(has("proxy-impostor", Some(impostor)), "{found:?}");
    assert!(has("ipv6-uncaptured", None), "{found:?}");
    assert!(has("port-excluded", None), "{found:?}");
    assert!(has("cidr-excluded", None), "{found:?}");
    assert!(has("interface-excluded", None), "{found:?}");
    assert!(has("foreign-rule", None), "{found:?}");
    assert!(has("identity-exempt", Some(foreign)), "{found:?}");
    assert!(has("can-become-exempt", Some(setuid)), "{found:?}");
    assert!(has("shared-pid-namespace", Some(killer)), "{found:?}");
    assert!(has("proxy-admin-reachable", None), "{found:?}");
    assert!(
        !has("shared-pid-namespace", Some(setuid)),
        "other uid, no CAP_KILL: {found:?}"
    );
    assert!(
        !has("can-become-exempt", Some(admin)),
        "no SETUID, no finding: {found:?}"
    );
    assert!(
        !found.iter().any(|(k, _)| k == "proxy-absent"),
        "15006 has a listener (the impostor): {found:?}"
    );

    // The mesh's chains are there, but OUTPUT never jumps into them.
    let mut unhooked = Pod::new();
    run(
        &["ip", "netns", "exec", &unhooked.ns, "iptables-nft-restore"],
        Some(&ISTIO.replace("-A OUTPUT -j ISTIO_OUTPUT\n", "")),
    );
    unhooked.spawn(10001, 10001, &["sleep", "60"]);
    settle();
    let found = findings(&unhooked);
    assert!(
        found.contains(&("capture-missing".to_string(), None)),
        "{found:?}"
    );
}

#[test]
fn observed_bypass_names_live_connections_that_skipped_the_proxy() {
    if !is_root() {
        return;
    }
    let mut pod = Pod::new();
    pod.with_peer(&[
        &["socat", "TCP-LISTEN:80,reuseaddr,fork", "EXEC:sleep 60"],
        &["socat", "-u", "UDP-RECV:5353", "/dev/null"],
    ]);
    settle();
    let connect = ["socat", "-u", "TCP:169.254.78.2:80", "/dev/null"];
    // Opened before any capture rule exists: it went straight out and stays so.
    let early = pod.spawn(10001, 10001, &connect);
    settle();
    let dns = "-A ISTIO_OUTPUT -p udp -m udp --dport 53 -j REDIRECT --to-ports 15053\n-A ISTIO_OUTPUT -j ISTIO_REDIRECT";
    run(
        &["ip", "netns", "exec", &pod.ns, "iptables-nft-restore"],
        Some(&ISTIO.replace("-A ISTIO_OUTPUT -j ISTIO_REDIRECT", dns)),
    );
    pod.spawn(
        1337,
        1337,
        &["socat", "TCP-LISTEN:15001,reuseaddr,fork", "EXEC:sleep 60"],
    );
    pod.spawn(1337, 1337, &["socat", "-u", "UDP-RECV:15053", "/dev/null"]);
    settle();
    let captured = pod.spawn(10001, 10001, &connect);
    let exempt = pod.spawn(10001, 1337, &connect);
    let udp = pod.spawn(
        10001,
        10001,
        &[
            "socat",
            "-u",
            "SYSTEM:while echo x; do sleep 0.2; done",
            "UDP:169.254.78.2:5353",
        ],
    );
    let dns = pod.spawn(
        10001,
        10001,
        &[
            "socat",
            "-u",
            "SYSTEM:while echo x; do sleep 0.2; done",
            "UDP:169.254.78.2:53",
        ],
    );
    settle();
    let r = pod.report();
    let out = r.to_string();
    let ex = finding(&r, "observed-bypass", exempt).unwrap_or_else(|| panic!("{out}"));
    let evidence = ex["evidence"][0].as_str().unwrap();
    assert!(
        evidence.starts_with("tcp 169.254.78.1:")
            && evidence.ends_with(
                "-> 169.254.78.2:80 (conntrack: destination not translated to a local proxy)"
            ),
        "{evidence}"
    );
    assert!(
        ex["rules"][0]["rule"]
            .as_str()
            .unwrap()
            .contains("--gid-owner 1337"),
        "{ex}"
    );
    let early = finding(&r, "observed-bypass", early).unwrap_or_else(|| panic!("{out}"));
    assert!(
        early["message"]
            .as_str()
            .unwrap()
            .contains("the rules capture it now"),
        "{early}"
    );
    let udp = finding(&r, "observed-bypass", udp).unwrap_or_else(|| panic!("{out}"));
    assert!(
        udp["evidence"][0]
            .as_str()
            .unwrap()
            .contains("-> 169.254.78.2:5353"),
        "{udp}"
    );
    assert!(
        finding(&r, "observed-bypass", captured).is_none(),
        "redirected to the proxy: {out}"
    );
    assert!(
        finding(&r, "observed-bypass", dns).is_none(),
        "DNS went to the proxy: {out}"
    );
}

/// sock_diag must list exactly the TCP and UDP sockets /proc/net/{tcp,udp}{,6} list:
/// listeners of both families, an established connection from each end, bound and
/// connected UDP sockets, with their uids and inodes.
#[test]
fn sock_diag_lists_what_proc_net_tcp_lists() {
    if !is_root() {
        return;
    }
    let mut pod = Pod::new();
    pod.with_peer(&[&["socat", "TCP-LISTEN:8080,reuseaddr,fork", "EXEC:/bin/cat"]]);
    pod.spawn(
        1337,
        1337,
        &["socat", "TCP6-LISTEN:15006,ipv6only=1", "EXEC:/bin/cat"],
    );
    pod.spawn(10001, 1337, &["socat", "TCP-LISTEN:15001", "EXEC:/bin/cat"]);
    pod.spawn(
        10003,
        10003,
        &["socat", "-u", "UDP6-RECV:5353", "SYSTEM:sleep 1000"],
    );
    pod.spawn(
        10004,
        10004,
        &["socat", "-u", "SYSTEM:sleep 1000", "UDP:169.254.78.2:53"],
    );
    settle();
    pod.spawn(
        10001,
        10001,
        &["socat", "SYSTEM:sleep 1000", "TCP:169.254.78.2:8080"],
    );
    pod.spawn(
        10002,
        10002,
        &["socat", "SYSTEM:sleep 1000", "TCP:127.0.0.1:15001"],
    );
    settle();
    let key = |s: &meshleak_core::snapshot::SocketFacts| {
        format!(
            "{} {}:{} {}:{} {} {} {}",
            s.proto.name(),
            s.local,
            s.local_port,
            s.remote,
            s.remote_port,
            s.state,
            s.uid,
            s.inode
        )
    };
    let ns = meshleak_collect::netns::Netns::Path(pod.path().into());
    for (proto, files) in [
        (SocketProto::Tcp, ["tcp", "tcp6"]),
        (SocketProto::Udp, ["udp", "udp6"]),
    ] {
        let mut diag: Vec<String> = meshleak_collect::netns::in_netns(&ns, move || {
            meshleak_collect::netinfo::diag_sockets(proto, meshleak_core::sockdiag::ALL_STATES)
        })
        .expect("enter the pod")
        .expect("sock_diag")
        .iter()
        .map(key)
        .collect();
        let mut proc: Vec<String> = files
            .iter()
            .flat_map(|f| {
                let path = format!("/proc/net/{f}");
                let text = run(&["ip", "netns", "exec", &pod.ns, "cat", &path], None);
                text.lines()
                    .skip(1)
                    .filter_map(|l| meshleak_core::procnet::socket_line(l, proto))
                    .map(|s| key(&s))
                    .collect::<Vec<_>>()
            })
            .collect();
        diag.sort();
        proc.sort();
        assert_eq!(diag, proc);
        match proto {
            SocketProto::Tcp => {
                assert!(diag.iter().any(|k| k.contains(":::15006 ")), "{diag:?}");
                let established = diag.iter().filter(|k| k.contains(" established "));
                assert_eq!(established.count(), 3, "{diag:?}");
            }
            _ => {
                assert!(diag.iter().any(|k| k.contains(":::5353 ")), "{diag:?}");
                let connected = diag.iter().filter(|k| k.contains(" connected "));
                assert_eq!(connected.count(), 1, "{diag:?}");
            }
        }
    }
}
