//! The shipped alerts with a real Prometheus (Debian's `prometheus`, with `promtool`):
//! `promtool check rules` and unit tests for every alert; then a server that scrapes a
//! running agent on loopback as the ServiceMonitor makes it (job `meshleak`, the agent pod's
//! own `namespace` as a target label, `honor_labels`), evaluates the alerts and fires
//! MeshBypass and MeshBypassSeen with the bypassing pod's namespace, not the agent's.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::http::{Agent, free_port, request};
use common::pod::json;
use common::podman::{PodmanPod, podman_ready};
use common::{Loader, run};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Prometheus is part of `make setup`; without it the test fails under `make test`.
fn promtool_ready() -> bool {
    let here = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    common::required(here, "prometheus (promtool)", "make setup")
}

fn rules(dir: &Path, no_for: bool) {
    let out = dir.join("rules.yaml");
    let mut args = vec![
        "python3".to_string(),
        format!("{ROOT}/scripts/prometheus-rules.py"),
        out.display().to_string(),
    ];
    if no_for {
        args.push("--no-for".into());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&refs, None);
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("meshleak-prom-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The names of the shipped alerts.
fn alert_names() -> Vec<String> {
    std::fs::read_to_string(format!("{ROOT}/daemonset/optional/prometheusrule.yaml"))
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: ").map(str::to_string))
        .collect()
}

#[test]
fn every_alert_passes_promtool_and_has_a_unit_test_and_a_runbook() {
    if !promtool_ready() {
        return;
    }
    let dir = tempdir("unit");
    rules(&dir, false);
    std::fs::copy(
        format!("{ROOT}/tests/prometheus/alerts.test.yaml"),
        dir.join("alerts.test.yaml"),
    )
    .unwrap();
    let dir_s = dir.display().to_string();
    run(
        &["promtool", "check", "rules", &format!("{dir_s}/rules.yaml")],
        None,
    );
    run(
        &[
            "sh",
            "-c",
            &format!("cd {dir_s} && promtool test rules alerts.test.yaml"),
        ],
        None,
    );
    let tests = std::fs::read_to_string(dir.join("alerts.test.yaml")).unwrap();
    let docs = std::fs::read_to_string(format!("{ROOT}/docs/agent.md")).unwrap();
    let names = alert_names();
    assert!(names.len() >= 5, "{names:?}");
    for name in names {
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "{name}: no promtool unit test"
        );
        assert!(
            docs.contains(&format!("\n#### {name}\n")),
            "{name}: no runbook section in docs/agent.md"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An instant query's `data.result`, which must succeed.
fn query(web: u16, expr: &str) -> serde_json::Value {
    let encoded: String = expr
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (status, body) = request(web, "GET", &format!("/api/v1/query?query={encoded}"));
    let answer = json(&body);
    assert!(
        status == 200 && answer["status"] == "success",
        "`{expr}`: {body}"
    );
    answer["data"]["result"].clone()
}

#[test]
fn a_real_prometheus_fires_mesh_bypass_with_the_bypassing_pods_namespace() {
    if !promtool_ready() || !podman_ready() {
        return;
    }
    let id = std::process::id();
    let namespace = format!("payments{id}");
    let pod = PodmanPod::in_namespace(&format!("mlprom{id}"), &namespace);
    pod.istio_proxy();
    pod.container("leaky", "10001:1337", &["sleep", "3600"]);
    pod.load_rules(
        Loader::IptablesNft,
        include_str!("../testdata/istio-sidecar.rules"),
    );

    let agent = Agent::start(&["--interval", "2s"]);
    let metrics = agent.metrics;
    // Begins to bypass once the agent runs, with an identity no bypassing process of the
    // pod had (a respawn of one that did is not news): MeshBypassSeen counts it.
    std::thread::sleep(Duration::from_secs(4));
    pod.container("late", "10002:1337", &["sleep", "3600"]);

    let dir = tempdir("live");
    rules(&dir, true);
    // What the ServiceMonitor's endpoint becomes: job = the Service's name, target labels
    // for the agent's own pod (namespace meshleak), and honor_labels.
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         rule_files: [{rules}]\n\
         scrape_configs:\n  \
           - job_name: meshleak\n    \
             honor_labels: true\n    \
             static_configs:\n      \
               - targets: ['127.0.0.1:{metrics}']\n        \
                 labels: {{namespace: meshleak, pod: meshleak-x7k2p, service: meshleak, endpoint: metrics}}\n",
        rules = dir.join("rules.yaml").display()
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let web = free_port();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );

    let deadline = Instant::now() + Duration::from_secs(90);
    let firing = loop {
        let alerts = std::net::TcpStream::connect(("127.0.0.1", web))
            .ok()
            .map(|_| request(web, "GET", "/api/v1/alerts").1);
        let found: Vec<serde_json::Value> = alerts
            .map(|a| {
                json(&a)["data"]["alerts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let firing = |name: &str| -> Vec<serde_json::Value> {
            found
                .iter()
                .filter(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
                .cloned()
                .collect()
        };
        let ours = |alerts: &[serde_json::Value]| {
            alerts
                .iter()
                .any(|a| a["labels"]["namespace"] == namespace.as_str())
        };
        let (bypass, seen) = (firing("MeshBypass"), firing("MeshBypassSeen"));
        if ours(&bypass) && ours(&seen) {
            break [bypass, seen].concat();
        }
        assert!(
            Instant::now() < deadline,
            "MeshBypass and MeshBypassSeen never both fired: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        firing
            .iter()
            .all(|a| a["labels"]["namespace"] != "meshleak"),
        "the agent's own namespace is never the bypassing one: {firing:?}"
    );
    // Every counter is there from the first scan, at 0 where nothing happened.
    let result = query(web, "meshleak_scan_errors_total{stage=\"scan\"}");
    assert_eq!(result[0]["value"][1], "0", "{result}");

    // Every query of the shipped dashboard runs against what the agent exports, and gives
    // an answer (the variable as its "All" value).
    let dashboard: serde_json::Value = json(
        &std::fs::read_to_string(format!(
            "{ROOT}/daemonset/optional/dashboards/meshleak.json"
        ))
        .unwrap(),
    );
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().replace("$namespace", ".*");
            // rate() and increase() answer once two scrapes are in their window.
            let until = Instant::now() + Duration::from_secs(15);
            while query(web, &expr).as_array().unwrap().is_empty() {
                assert!(
                    Instant::now() < until,
                    "{}: `{expr}` gives nothing",
                    panel["title"]
                );
                std::thread::sleep(Duration::from_millis(500));
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked} queries");
    let namespaces = query(web, "group by (namespace) (meshleak_bypassing_processes)");
    assert!(
        namespaces
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["metric"]["namespace"] == namespace.as_str()),
        "the namespace variable lists the pod's: {namespaces}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
