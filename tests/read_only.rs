//! meshleak is strictly read-only (root): the complete rule state (legacy and nf_tables, both
//! families, counters aside), the legacy table lists and the set of network namespaces are
//! recorded before and after `scan`, `pod`, `rules`, `collect`, `trace` and a few agent scans,
//! and must be equal; a namespace without legacy tables must not get one.

mod common;

use std::time::{Duration, Instant};

use common::http::Agent;
use common::pod::{Pod, settle};
use common::{is_root, meshleak, run};

const ISTIO: &str = include_str!("../testdata/istio-sidecar.rules");
const V6: &str = include_str!("../testdata/native/legacy-v6.rules");
const NFT: &str = include_str!("../testdata/meshes/istio-sidecar-nft.nft");

/// Everything meshleak could change in one namespace, counters removed.
fn state(ns: &str) -> String {
    let exec = |args: &[&str]| {
        let mut all = vec!["ip", "netns", "exec", ns];
        all.extend_from_slice(args);
        common::try_run(&all, None).unwrap_or_else(|e| format!("(failed: {e})"))
    };
    let mut out = String::new();
    for names in ["ip_tables_names", "ip6_tables_names", "arp_tables_names"] {
        let path = format!("/proc/net/{names}");
        out += &format!("{names}: {}\n", exec(&["cat", &path]));
    }
    for save in [
        "iptables-legacy-save",
        "ip6tables-legacy-save",
        "iptables-nft-save",
        "ip6tables-nft-save",
    ] {
        out += &exec(&[save]);
    }
    out += &exec(&["nft", "list", "ruleset"]);
    out.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            // `:CHAIN POLICY [packets:bytes]` and nft `counter packets N bytes M`.
            let l = match (l.starts_with(':'), l.rfind(" [")) {
                (true, Some(i)) => &l[..i],
                _ => l,
            };
            match l.find("counter packets") {
                Some(i) => l[..i].to_string(),
                None => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every network namespace on the machine (inodes), and the named ones.
fn namespaces() -> String {
    run(&["lsns", "-t", "net", "-n", "-o", "NS", "--raw"], None)
        .lines()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join(" ")
        + "\n"
        + &run(&["ip", "netns", "list"], None)
}

#[test]
fn no_command_changes_rules_tables_or_namespaces() {
    if !is_root() {
        return;
    }
    // One pod with rules in every backend and family, one with none at all.
    let mut full = Pod::istio_with_proxy();
    run(
        &["ip", "netns", "exec", &full.ns, "iptables-legacy-restore"],
        Some(ISTIO),
    );
    for tool in ["ip6tables-nft-restore", "ip6tables-legacy-restore"] {
        run(&["ip", "netns", "exec", &full.ns, tool], Some(V6));
    }
    run(
        &["ip", "netns", "exec", &full.ns, "nft", "-f", "-"],
        Some(NFT),
    );
    let app = full.spawn(10001, 1337, &["sleep", "60"]);
    let empty = Pod::new();
    settle();
    let before = (state(&full.ns), state(&empty.ns), namespaces());
    assert!(
        state(&empty.ns).contains("ip_tables_names: \n")
            || state(&empty.ns).contains("ip_tables_names: (failed"),
        "the empty pod starts without legacy tables"
    );

    let snapshot = std::env::temp_dir().join(format!("meshleak-ro-{}.json", std::process::id()));
    let snapshot = snapshot.to_str().unwrap().to_string();
    for args in [
        vec!["scan", "-o", "json"],
        vec!["scan", "--include-host"],
        vec!["pod", "--netns", &full.path()],
        vec!["pod", "--netns", &empty.path()],
        vec!["rules", "--netns", &full.path()],
        vec!["rules", "--netns", &empty.path(), "--format", "json"],
        vec!["collect", "-o", &snapshot],
    ] {
        let (code, _, err) = meshleak(&args);
        assert!(code == 0 || code == 1, "{args:?}: {err}");
    }
    let app_pid = app.to_string();
    let (code, _, err) = meshleak(&["trace", "--pid", &app_pid, "--dst", "169.254.0.9:80"]);
    assert!(code == 0 || code == 1, "trace: {err}");
    let _ = std::fs::remove_file(&snapshot);

    let agent = Agent::start(&["--interval", "1s"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !agent.listening() || agent.get("/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "agent never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Wait for a second scan (however long the first took on a loaded machine).
    let scanned_twice = |m: &str| {
        m.lines()
            .any(|l| l.starts_with("meshleak_scans_total ") && !l.ends_with(" 1"))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut scans = agent.get("/metrics").1;
    while !scanned_twice(&scans) {
        assert!(
            Instant::now() < deadline,
            "the agent scanned more than once: {scans}"
        );
        std::thread::sleep(Duration::from_millis(200));
        scans = agent.get("/metrics").1;
    }
    drop(agent);

    let after = (state(&full.ns), state(&empty.ns), namespaces());
    assert_eq!(before.0, after.0, "rules of the full pod changed");
    assert_eq!(
        before.1, after.1,
        "the empty pod changed (a legacy table instantiated?)"
    );
    assert_eq!(before.2, after.2, "the set of namespaces changed");
    assert!(
        before.0.contains("ISTIO_OUTPUT") && before.0.contains("table inet"),
        "{}",
        before.0
    );
}
