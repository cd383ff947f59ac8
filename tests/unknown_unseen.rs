//! Unknown stays unknown, unseen is not clean (root). Built for real: rules meshleak does not
//! model loaded with the real tools ahead of Istio's, real connections that show what the
//! kernel does with them, real processes read with and without the capabilities reading
//! needs. meshleak's answer must be the kernel's, or `unknown` with the kernel's outcome
//! among the possible ones; never a confident wrong answer, never "nothing bypasses" from
//! a scan that could not see.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::pod::{Pod, json, settle, verdict};
use common::{Kernel, Lab, Loader, flow_of, is_root, meshleak, probe, run};
use meshleak_collect::netns::Netns;
use meshleak_core::eval::{Verdict, trace};
use meshleak_core::model::Ruleset;

const ISTIO: &str = include_str!("../testdata/istio-sidecar.rules");
const PROXY: (u32, u32) = (1337, 1337);
const APP: (u32, u32) = (10001, 10001);
const LEAKY: (u32, u32) = (10001, 1337);

/// A process's verdict in a namespace's report (empty when it is not listed).
/// Inserts `-m MATCH... -j RETURN` at the top of ISTIO_OUTPUT (iptables-nft) in `ns`.
fn return_first(ns: &str, matches: &str) {
    let mut args = vec![
        "ip",
        "netns",
        "exec",
        ns,
        "iptables-nft",
        "-t",
        "nat",
        "-I",
        "ISTIO_OUTPUT",
        "1",
    ];
    args.extend(matches.split(' '));
    args.extend(["-j", "RETURN"]);
    run(&args, None);
}

/// The pod's rules as `meshleak scan` reads them: natively, from the kernel.
fn native(lab: &Lab) -> Ruleset {
    meshleak_collect::ruleset(&Netns::Path(format!("/run/netns/{}", lab.pod).into()))
        .expect("reads the pod's rules")
}

/// What meshleak says of one connection: `Some(kernel outcome)` when decided, `None` when
/// unknown, with the outcomes it leaves possible (`None`: anything, as after a target it
/// does not model).
fn predicted(
    rules: &Ruleset,
    (uid, gid): (u32, u32),
    dst: &str,
) -> (Option<Kernel>, Option<Vec<Kernel>>) {
    let t = trace(rules, &flow_of(&probe(uid, gid, &[], false, dst)));
    let of = |o: &meshleak_core::eval::Outcome| match o.verdict {
        Verdict::Captured => Some(Kernel::Captured(o.redirect_port.expect("a port"))),
        Verdict::Bypass => Some(Kernel::Bypass),
        Verdict::Dropped => Some(Kernel::Dropped),
        Verdict::Unknown => None,
    };
    let possible: Option<Vec<Kernel>> = t.possible.iter().map(of).collect();
    (of(&t.outcome), possible.filter(|p| !p.is_empty()))
}

/// The kernel's outcome for a connection, and meshleak's: equal when meshleak decides,
/// among the possible ones when it says unknown. Returns whether meshleak decided.
fn agrees(lab: &Lab, rules: &Ruleset, who: (u32, u32), dst: &str, what: &str) -> bool {
    let addr: SocketAddr = dst.parse().unwrap();
    let kernel = lab.connect(who.0, who.1, &[], false, addr);
    match predicted(rules, who, dst) {
        (Some(ours), _) => {
            assert_eq!(ours, kernel, "{what}: {who:?} to {dst}");
            true
        }
        (None, possible) => {
            assert!(
                possible.as_ref().is_none_or(|p| p.contains(&kernel)),
                "{what}: {who:?} to {dst}: kernel {kernel:?}, meshleak unknown with {possible:?}"
            );
            false
        }
    }
}

/// Targets that always continue, each ahead of Istio's capture (mangle runs before nat on
/// OUTPUT; raw before both): the capture must stand, decided, as the kernel shows.
#[test]
fn targets_that_always_continue_do_not_decide() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    let xt: &[(&str, &str)] = &[
        (
            "mangle",
            "-A OUTPUT -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu",
        ),
        ("mangle", "-A OUTPUT -p tcp --syn -j TCPMSS --set-mss 1200"),
        ("mangle", "-A OUTPUT -j DSCP --set-dscp 0x0a"),
        ("mangle", "-A OUTPUT -j TOS --set-tos 0x10/0x3f"),
        ("mangle", "-A OUTPUT -p udp -j CHECKSUM --checksum-fill"),
        ("mangle", "-A OUTPUT -j LOG --log-prefix meshleak-test"),
        ("mangle", "-A OUTPUT -j NFLOG --nflog-group 7"),
        ("mangle", "-A OUTPUT -j CLASSIFY --set-class 1:10"),
        ("mangle", "-A OUTPUT -j AUDIT --type accept"),
        ("mangle", "-A OUTPUT -j CONNSECMARK --save"),
        (
            "mangle",
            "-A OUTPUT -j IDLETIMER --timeout 60 --label mltest",
        ),
        ("mangle", "-A OUTPUT -j TTL --ttl-set 63"),
        (
            "mangle",
            "-A OUTPUT -p tcp -j TCPOPTSTRIP --strip-options timestamp",
        ),
        (
            "mangle",
            "-A OUTPUT -j RATEEST --rateest-name mlr --rateest-interval 1s --rateest-ewmalog 2s",
        ),
        ("raw", "-A OUTPUT -j TRACE"),
        // In the capture chain itself, ahead of the exemptions.
        ("nat", "-I ISTIO_OUTPUT 1 -j LOG --log-prefix meshleak-nat"),
    ];
    let mut checked = 0;
    for (loader, nft) in [
        (Loader::IptablesNft, false),
        (Loader::IptablesLegacy, false),
    ]
    .into_iter()
    .chain([(Loader::Nft, true)])
    {
        let cases: Vec<(String, String)> = if nft {
            // Native nftables statements that do not decide, in a chain of its own that
            // runs before the nat chain.
            ["counter", "log prefix \"ml \"", "counter log"]
                .iter()
                .map(|s| {
                    (
                        "nft".to_string(),
                        format!(
                            "table inet mltest {{\n chain out {{\n  type filter hook output priority -300; policy accept;\n  {s}\n }}\n}}\n"
                        ),
                    )
                })
                .collect()
        } else {
            xt.iter()
                .map(|(t, r)| (t.to_string(), r.to_string()))
                .collect()
        };
        for (table, rule) in cases {
            lab.reset();
            let base = if loader == Loader::IptablesLegacy {
                Loader::IptablesLegacy
            } else {
                Loader::IptablesNft
            };
            lab.load(base, ISTIO);
            if nft {
                lab.load(Loader::Nft, &rule);
            } else if table == "nat" {
                let mut args = vec!["ip", "netns", "exec", &lab.pod];
                let tool = if loader == Loader::IptablesLegacy {
                    "iptables-legacy"
                } else {
                    "iptables-nft"
                };
                args.extend([tool, "-t", "nat"]);
                args.extend(rule.split(' '));
                run(&args, None);
            } else {
                lab.load(loader, &format!("*{table}\n{rule}\nCOMMIT\n"));
            }
            let rules = native(&lab);
            let what = format!("{loader:?} {table}: {rule}");
            for (who, dst) in [
                (APP, "169.254.77.2:80"),
                (LEAKY, "169.254.77.2:80"),
                (PROXY, "169.254.77.2:80"),
            ] {
                assert!(
                    agrees(&lab, &rules, who, dst, &what),
                    "{what}: meshleak says unknown for {who:?}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, xt.len() * 2 + 3);
    // IPv6: a hop-limit rewrite ahead of nothing that captures IPv6 leaves it uncaptured,
    // decided (TCP only: neighbour discovery refuses packets whose hop limit is not 255).
    lab.reset();
    lab.load(Loader::IptablesNft, ISTIO);
    lab.load(
        Loader::Ip6tablesLegacy,
        "*mangle\n-A OUTPUT -p tcp -j HL --hl-set 63\nCOMMIT\n",
    );
    let rules = native(&lab);
    for who in [APP, LEAKY] {
        assert!(agrees(&lab, &rules, who, "[fd77::2]:80", "HL"));
    }
}

/// A pod whose mangle OUTPUT clamps the MSS, as many CNIs do: the report is Istio's as if
/// the rule were not there (the seed's gid-1337 app bypasses, the proxy is the proxy).
#[test]
fn a_tcpmss_rule_leaves_the_report_as_the_mesh_makes_it() {
    if !is_root() {
        return;
    }
    let mut pod = Pod::istio_with_proxy();
    pod.add_rules(
        "*mangle\n-A OUTPUT -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu\nCOMMIT\n",
    );
    let leaky = pod.spawn(LEAKY.0, LEAKY.1, &["sleep", "60"]);
    let app = pod.spawn(APP.0, APP.1, &["sleep", "60"]);
    settle();
    let (code, out, err) = meshleak(&["pod", "--netns", &pod.path(), "-o", "json"]);
    let r = json(&out);
    assert_eq!(code, 1, "{err}");
    let ns = &r["netns"][0];
    assert_eq!(verdict(ns, leaky), "bypass", "{ns}");
    assert_eq!(verdict(ns, app), "captured", "{ns}");
    let kinds: Vec<&str> = ns["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    for wrong in [
        "capture-missing",
        "proxy-impostor",
        "proxy-absent",
        "unknown",
        "foreign-rule",
    ] {
        assert!(!kinds.contains(&wrong), "{wrong} in {kinds:?}");
    }
    assert_eq!(ns["capture"]["families"], serde_json::json!(["ipv4"]));
}

/// Matches meshleak does not model, at the top of ISTIO_OUTPUT: traces say unknown with
/// the kernel's outcome among the possible ones; the report keeps the proxy, calls the
/// ordinary app unknown (never unmeshed or captured), raises no finding from the unknown
/// and names the rule in an `unknown` finding. The gid-1337 app leaves whatever the rule
/// does, and stays `bypass`.
#[test]
fn unmodelled_matches_make_verdicts_unknown() {
    if !is_root() {
        return;
    }
    let xt = [
        "-m statistic --mode random --probability 0.5",
        "-m limit --limit 1/hour --limit-burst 1",
        "-m quota --quota 1000",
        "-m dscp --dscp 0x10",
        "-m tos --tos 0x10",
        "-m ttl --ttl-eq 64",
        "-m cpu --cpu 0",
        "-m u32 --u32 0>>22&0x3C@4>>16=0x50",
        "-m length --length 0:100",
        "-m cgroup --path /",
    ];
    let nft = ["numgen random mod 2 0", "ip dscp 0x04", "meta cpu 0"];
    let cases = xt
        .iter()
        .map(|m| (false, m.to_string()))
        .chain(nft.iter().map(|m| (true, m.to_string())));
    for (native_nft, m) in cases {
        let mut pod = Pod::istio_with_proxy();
        if native_nft {
            // Native nftables: a chain that runs before iptables-nft's nat OUTPUT and
            // returns early (uncaptured? no: an accept in one chain does not stop another
            // nat chain's redirect) or jumps into Istio's capture for matching packets.
            run(
                &["ip", "netns", "exec", &pod.ns, "nft", "-f", "-"],
                Some(&format!(
                    "table ip mlunk {{\n chain out {{\n  type nat hook output priority -101; policy accept;\n  {m} meta l4proto tcp redirect to :15006\n }}\n}}\n"
                )),
            );
        } else {
            return_first(&pod.ns, &m);
        }
        let leaky = pod.spawn(LEAKY.0, LEAKY.1, &["sleep", "60"]);
        let app = pod.spawn(APP.0, APP.1, &["sleep", "60"]);
        settle();
        let (code, out, err) = meshleak(&["pod", "--netns", &pod.path(), "-o", "json"]);
        let r = json(&out);
        let ns = &r["netns"][0];
        let verdict = |pid: u32| verdict(ns, pid);
        assert_eq!(verdict(app), "unknown", "{m}: {ns}");
        let findings = ns["findings"].as_array().unwrap();
        let kinds: Vec<&str> = findings
            .iter()
            .map(|f| f["kind"].as_str().unwrap())
            .collect();
        for wrong in ["capture-missing", "proxy-impostor", "proxy-absent"] {
            assert!(!kinds.contains(&wrong), "{m}: {wrong} in {kinds:?}");
        }
        let unknown = findings
            .iter()
            .find(|f| f["kind"] == "unknown")
            .unwrap_or_else(|| panic!("{m}: no unknown finding in {kinds:?}"));
        assert!(
            unknown["rules"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["position"] == 1),
            "{m}: {unknown}"
        );
        let proxies = ns["processes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["verdict"] == "proxy")
            .count();
        assert_eq!(proxies, 2, "{m}: {ns}");
        if native_nft {
            // The redirect can catch the proxy's own traffic too: nothing is definite for
            // the gid-1337 app, and nothing bypasses for sure.
            assert!(
                ["unknown", "bypass", "partial"].contains(&verdict(leaky).as_str()),
                "{m}: {ns}"
            );
            assert_eq!(code, 3, "{m}: exit status for unknown\n{err}");
        } else {
            assert_eq!(verdict(leaky), "bypass", "{m}: {ns}");
            assert_eq!(code, 1, "{m}: {err}");
        }
        // `trace` of the ordinary app says unknown, with exit status 3.
        let pid = app.to_string();
        let (code, out, _) = meshleak(&[
            "trace",
            "--pid",
            &pid,
            "--dst",
            "169.254.78.2:80",
            "-o",
            "json",
        ]);
        assert_eq!(json(&out)["verdict"], "unknown", "{m}: {out}");
        assert_eq!(code, 3, "{m}");
    }
}

/// The same rules in a lab with a peer: whatever the kernel does with each connection is
/// what meshleak says or among what it leaves possible.
#[test]
fn unknown_verdicts_leave_the_kernels_outcome_possible() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    for m in [
        "-m statistic --mode random --probability 0.5",
        "-m dscp --dscp 0x00",
        "-m ttl --ttl-eq 64",
        "-m u32 --u32 0>>22&0x3C@4>>16=0x50",
    ] {
        lab.reset();
        lab.load(Loader::IptablesNft, ISTIO);
        return_first(&lab.pod, m);
        let rules = native(&lab);
        assert!(!agrees(&lab, &rules, APP, "169.254.77.2:80", m), "{m}");
        assert!(agrees(&lab, &rules, LEAKY, "169.254.77.2:80", m), "{m}");
        assert!(agrees(&lab, &rules, PROXY, "169.254.77.2:80", m), "{m}");
    }
}

/// nftables verdict maps and concatenated set keys: never a wider or narrower match than
/// the kernel's (a concatenation: unknown, with the kernel's outcome possible; a verdict
/// map: followed), never dropped.
#[test]
fn verdict_maps_and_concatenations_are_not_misread() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    let text = "table inet mlmaps {
  set pairs { type gid . inet_service; elements = { 2004 . 8080 } }
  chain out {
    type nat hook output priority -100; policy accept;
    meta skgid . tcp dport @pairs return
    meta l4proto tcp redirect to :15001
  }
}
";
    lab.load(Loader::Nft, text);
    let rules = native(&lab);
    for (who, dst) in [
        ((1, 2004), "169.254.77.2:8080"),
        ((1, 2004), "169.254.77.2:80"),
        ((1, 2005), "169.254.77.2:8080"),
        ((1, 9999), "169.254.77.2:80"),
    ] {
        agrees(&lab, &rules, who, dst, "concatenation");
        // The old reading took the key for an open gid range from 2004: gid 2005 and
        // 9999 bypassing everywhere. Whatever is said, it is not that.
        if who.1 != 2004 {
            assert_ne!(predicted(&rules, who, dst).0, Some(Kernel::Bypass));
        }
    }
    lab.reset();
    lab.load(
        Loader::Nft,
        "table inet mlmaps {
  chain out {
    type nat hook output priority -100; policy accept;
    meta skuid vmap { 2002 : return }
    meta l4proto tcp redirect to :15001
  }
}
",
    );
    let rules = native(&lab);
    assert_eq!(
        lab.connect(2002, 1, &[], false, "169.254.77.2:80".parse().unwrap()),
        Kernel::Bypass
    );
    // The map is followed (not dropped, not unknown): uid 2002 leaves as it really does.
    assert_eq!(
        predicted(&rules, (2002, 1), "169.254.77.2:80").0,
        Some(Kernel::Bypass)
    );
    agrees(&lab, &rules, (2002, 1), "169.254.77.2:80", "vmap");
    agrees(&lab, &rules, (1, 1), "169.254.77.2:80", "vmap");
    // Offline, from `nft -j`, the same: bypass, exit status 1, the map's rule cited.
    let dump = run(
        &[
            "ip", "netns", "exec", &lab.pod, "nft", "-j", "list", "ruleset",
        ],
        None,
    );
    let file = std::env::temp_dir().join(format!("meshleak-vmap-{}.json", std::process::id()));
    std::fs::write(&file, dump).unwrap();
    let (code, out, _) = meshleak(&[
        "analyze",
        "--rules",
        file.to_str().unwrap(),
        "--identity",
        "2002:1",
        "-o",
        "json",
    ]);
    let _ = std::fs::remove_file(&file);
    let a = json(&out);
    assert_eq!(a["identities"][0]["verdict"], "bypass", "{out}");
    assert_eq!(
        a["identities"][0]["rules"][0]["rule"], "meta skuid vmap { 2002 : return }",
        "{out}"
    );
    assert_eq!(code, 1);
}

/// `setpriv` arguments that take away what reading other users' processes needs.
const NO_PTRACE: [&str; 2] = [
    "--inh-caps=-all",
    "--bounding-set=-sys_ptrace,-dac_read_search,-dac_override",
];

/// Without CAP_SYS_PTRACE the pod's processes cannot be read: `pod` and `scan` say so in
/// their first line and exit 4, never "0 bypassing" with exit 0; with it, the same pod is
/// complete and its gid-1337 app bypasses.
#[test]
fn a_scan_that_cannot_read_processes_is_incomplete() {
    if !is_root() {
        return;
    }
    let mut pod = Pod::istio_with_proxy();
    let leaky = pod.spawn(LEAKY.0, LEAKY.1, &["sleep", "60"]);
    settle();
    let path = pod.path();
    let without = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args(NO_PTRACE)
            .arg(env!("CARGO_BIN_EXE_meshleak"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for args in [
        vec!["pod", "--netns", &path],
        vec!["scan", "--netns-dir", "/run/netns"],
    ] {
        let (code, out, err) = without(&args);
        assert_eq!(code, 4, "{args:?}: {out}{err}");
        let first = out.lines().next().unwrap_or_default();
        assert!(first.starts_with("INCOMPLETE"), "{args:?}: {out}");
        assert!(out.contains("CAP_SYS_PTRACE"), "{out}");
        assert!(err.contains(&format!("pid {leaky} (sleep)")), "{err}");
        assert!(err.contains("incomplete"), "{err}");
    }
    let (code, out, _) = without(&["pod", "--netns", &path, "-o", "json"]);
    assert_eq!(code, 4);
    let r = json(&out);
    assert!(r["incomplete"].as_array().is_some_and(|a| !a.is_empty()));
    assert!(r["unread_processes"].as_u64().unwrap() >= 3, "{out}");
    // `collect` saves what it read and says it is incomplete.
    let file = std::env::temp_dir().join(format!("meshleak-unseen-{}.json", std::process::id()));
    let (code, _, err) = without(&["collect", "-o", file.to_str().unwrap()]);
    assert_eq!(code, 4, "{err}");
    // Offline, the snapshot is as incomplete as the scan was.
    let (code, out, _) = meshleak(&["analyze", "--snapshot", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, 4, "{out}");
    // With the capabilities: complete, and the bypass is seen.
    let (code, out, err) = meshleak(&["pod", "--netns", &path]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(!out.starts_with("INCOMPLETE"), "{out}");
    assert!(!err.contains("needs CAP_SYS_PTRACE"), "{err}");
}

/// A proc root that is no proc file system is refused, naming it.
#[test]
fn proc_root_must_be_a_proc_file_system() {
    let empty = std::env::temp_dir().join(format!("meshleak-noproc-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    for root in ["/sys", empty.to_str().unwrap(), "/nonexistent-proc"] {
        let (code, out, err) = meshleak(&["scan", "--proc-root", root]);
        assert_eq!(code, 2, "{root}: {out}");
        assert!(err.contains(&format!("--proc-root {root}")), "{err}");
        assert!(err.contains("/proc"), "{err}");
    }
    let _ = std::fs::remove_dir(&empty);
}

/// The agent run as nobody reads nothing: not ready (503, saying what), the unreadable
/// processes counted, the error counters exported at 0 from the first scan.
#[test]
fn an_agent_that_cannot_read_is_not_ready() {
    if !is_root() {
        return;
    }
    let pod = Pod::istio_with_proxy();
    settle();
    let metrics = common::http::free_port();
    let mut agent = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            env!("CARGO_BIN_EXE_meshleak"),
            "agent",
            "--interval",
            "60s",
        ])
        .args(["--listen", &format!("127.0.0.1:{metrics}")])
        .args([
            "--report-listen",
            &format!("127.0.0.1:{}", common::http::free_port()),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _guard = common::http::scopeguard(agent.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let body = loop {
        assert!(std::time::Instant::now() < deadline, "no scan finished");
        if std::net::TcpStream::connect(("127.0.0.1", metrics)).is_ok() {
            let (status, body) = common::http::request(metrics, "GET", "/metrics");
            if status == 200 && body.contains("meshleak_scans_total 1") {
                break body;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let (status, ready) = common::http::request(metrics, "GET", "/readyz");
    assert_eq!(status, 503, "{ready}");
    assert!(ready.contains("CAP_SYS_PTRACE"), "{ready}");
    let value = |series: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{body}"))
    };
    assert!(
        value("meshleak_unreadable{kind=\"process\"}") >= 2.0,
        "{body}"
    );
    assert_eq!(value("meshleak_scan_errors_total{stage=\"scan\"}"), 0.0);
    let _ = value("meshleak_unreadable{kind=\"netns\"}");
    let _ = value("meshleak_unreadable{kind=\"gap\"}");
    let _ = agent.kill();
    let _ = agent.wait();
    drop(pod);
}

/// Where pid 1 is closed even to root (a VM's init under a security module), it is named
/// once with that cause, not as a missing capability, and a pod scan is complete: pid 1 is
/// in the host's namespace, which its /proc/1/net/dev shows.
#[test]
fn a_forbidden_init_is_named_with_its_real_cause() {
    if !is_root() {
        return;
    }
    if std::fs::read_link("/proc/1/ns/net").is_ok() {
        eprintln!("skipped: pid 1 is readable on this machine");
        return;
    }
    let mut pod = Pod::istio_with_proxy();
    pod.spawn(APP.0, APP.1, &["sleep", "60"]);
    settle();
    let (code, out, err) = meshleak(&["pod", "--netns", &pod.path()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.starts_with("INCOMPLETE"), "{out}");
    assert!(!err.contains("needs CAP_SYS_PTRACE"), "{err}");
    assert_eq!(err.matches("pid 1 ").count(), 1, "{err}");
    assert!(
        err.contains("although meshleak holds CAP_SYS_PTRACE"),
        "{err}"
    );
}
