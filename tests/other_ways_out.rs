//! Every other way out (root): escapes that are not an owner exemption, each built for real
//! in throwaway namespaces and proved with a real connection or packet to a peer namespace;
//! meshleak's report must say what happened.

mod common;

use common::is_root;
use common::pod::{Pod, finding, settle};

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

/// What the far end first answers to `socat` run in the pod as uid:gid 10001 (the proxy
/// echoes our `x`, the peer says `B`).
fn answer(pod: &Pod, dst: &str) -> String {
    common::run(
        &[
            "ip",
            "netns",
            "exec",
            &pod.ns,
            "setpriv",
            "--reuid=10001",
            "--regid=10001",
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

fn findings<'a>(r: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    r["netns"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == kind)
        .collect()
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
