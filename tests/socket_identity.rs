//! Every socket judged as the kernel judges it (root): processes built for real whose
//! sockets carry credentials other than their own (created before a drop, inherited across
//! fork, received over SCM_RIGHTS, made by one thread with a raw setresgid or in a private
//! fd table, made in another network namespace, under a user namespace), each socket
//! connected for real to a peer namespace through Istio's rules; meshleak's verdicts
//! (`pod`, `trace --pid`, `trace --pid --fd`) must equal what happened.

mod common;

use std::process::Command;

use common::helper::Helper;
use common::pod::{Pod, findings_of, json};
use common::{is_root, meshleak};

/// An Istio pod with its proxy (uid 1337 echoing on 15001/15006) and a peer answering `B`.
fn pod() -> Pod {
    let mut pod = Pod::istio_with_proxy();
    pod.with_peer(&[&[
        "socat",
        "TCP-LISTEN:80,reuseaddr,fork",
        "SYSTEM:read l; echo B",
    ]]);
    common::pod::settle();
    pod
}

fn process(report: &serde_json::Value, pid: u32) -> &serde_json::Value {
    report["netns"][0]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == pid)
        .unwrap_or_else(|| panic!("pid {pid} not in {report}"))
}

/// `trace --pid` (optionally `--fd`) to the peer: whether meshleak says bypass.
fn trace(pid: u32, fd: Option<u32>) -> (bool, serde_json::Value) {
    let pid = pid.to_string();
    let fd = fd.map(|f| f.to_string());
    let mut args = vec![
        "trace",
        "--pid",
        &pid,
        "--dst",
        "169.254.78.2:80",
        "-o",
        "json",
    ];
    if let Some(fd) = &fd {
        args.extend(["--fd", fd]);
    }
    let (code, out, err) = meshleak(&args);
    let t = json(&out);
    let bypass = match t["verdict"].as_str().unwrap() {
        "bypass" => true,
        "captured" => false,
        other => panic!("trace {args:?}: {other}: {err}"),
    };
    assert_eq!(code, if bypass { 1 } else { 0 }, "{err}");
    (bypass, t)
}

/// The pod report's verdict for the helper, which its sockets' or threads' credentials
/// must decide, and the traces of each socket, checked against the kernel.
fn check(pod: &Pod, h: &mut Helper, socket_labels: &[&str]) -> serde_json::Value {
    let r = pod.report();
    let p = process(&r, h.pid()).clone();
    let (traced_bypass, t) = trace(h.pid(), None);
    let per_fd: Vec<(String, bool)> = socket_labels
        .iter()
        .map(|l| (l.to_string(), trace(h.pid(), Some(h.fd(l))).0))
        .collect();
    let kernel = h.go();
    let any = kernel.values().any(|b| *b);
    assert_eq!(
        p["verdict"] == "bypass",
        any,
        "kernel {kernel:?}, meshleak {p}"
    );
    assert_eq!(traced_bypass, any, "kernel {kernel:?}, trace {t}");
    for (label, bypass) in per_fd {
        assert_eq!(bypass, kernel[&label], "{label}: kernel {kernel:?}");
    }
    assert!(
        !kernel["new-socket"],
        "the process's own new sockets are captured"
    );
    p
}

#[test]
fn sockets_created_before_dropping_to_an_ordinary_identity_keep_theirs() {
    if !is_root() {
        return;
    }
    let pod = pod();
    let mut h = Helper::start(&pod, &[], "drop", &[]);
    let p = check(&pod, &mut h, &["fsgid-1337", "fsuid-1337"]);
    assert_eq!(
        (p["uid"].as_u64(), p["gid"].as_u64()),
        (Some(10001), Some(10001))
    );
    let by = &p["decided_by"];
    assert_eq!(by["kind"], "socket", "{p}");
    let fd = by["fd"].as_u64().unwrap() as u32;
    assert!(fd == h.fd("fsgid-1337") || fd == h.fd("fsuid-1337"), "{p}");
    assert!(by["inode"].as_u64().is_some(), "{p}");
    let why = by["why"].as_str().unwrap();
    assert!(
        why.contains("1337") && why.contains("now 10001:10001"),
        "{why}"
    );
}

#[test]
fn a_socket_inherited_across_fork_keeps_its_creators_credentials() {
    if !is_root() {
        return;
    }
    let pod = pod();
    let mut h = Helper::start(&pod, &[], "fork", &[]);
    let p = check(&pod, &mut h, &["inherited-gid-1337"]);
    assert_eq!(p["decided_by"]["gid"], 1337, "{p}");
}

#[test]
fn a_socket_received_over_scm_rights_keeps_its_senders_credentials() {
    if !is_root() {
        return;
    }
    let pod = pod();
    let mut h = Helper::start(&pod, &[], "scm", &[]);
    let p = check(&pod, &mut h, &["received-from-uid-1337"]);
    assert_eq!(
        (&p["decided_by"]["uid"], &p["decided_by"]["gid"]),
        (&1337.into(), &1337.into()),
        "{p}"
    );
}

#[test]
fn threads_are_judged_by_their_own_credentials_and_fd_tables() {
    if !is_root() {
        return;
    }
    let pod = pod();
    let mut h = Helper::start(&pod, &[], "thread", &[]);
    let (switched, private) = (h.tid("thread-gid-1337"), h.tid("private-fd-table"));
    let r = pod.report();
    let p = process(&r, h.pid()).clone();
    let (_, t) = trace(h.pid(), None);
    let kernel = h.go();
    assert!(
        kernel["thread-gid-1337"] && kernel["private-fd-gid-1337"],
        "{kernel:?}"
    );
    assert!(!kernel["new-socket"], "{kernel:?}");
    assert_eq!(p["verdict"], "bypass", "{p}");
    assert_eq!(
        (p["uid"].as_u64(), p["gid"].as_u64()),
        (Some(10001), Some(10001))
    );
    // Both ways out are listed by the trace, each a bypass, each named.
    let ways = t["ways"].as_array().unwrap();
    let thread = ways
        .iter()
        .find(|w| w["kind"] == "thread")
        .expect("the thread");
    assert_eq!(
        (&thread["tid"], &thread["verdict"]),
        (&switched.into(), &"bypass".into())
    );
    let socket = ways
        .iter()
        .find(|w| w["kind"] == "socket" && w["tid"] == private)
        .unwrap_or_else(|| panic!("the private table's socket in {t}"));
    assert_eq!(socket["verdict"], "bypass");
    let own = ways.iter().find(|w| w["kind"] == "process").unwrap();
    assert_eq!(own["verdict"], "captured");
}

#[test]
fn a_socket_made_in_another_network_namespace_never_meets_the_pods_rules() {
    if !is_root() {
        return;
    }
    let pod = pod();
    let peer = format!("{}p", pod.ns);
    let mut h = Helper::start(&pod, &[], "netns", &[&peer]);
    let p = check(&pod, &mut h, &["made-in-peer-netns"]);
    let by = &p["decided_by"];
    assert_eq!(by["kind"], "foreign-socket", "{p}");
    let peer_inode = std::fs::metadata(format!("/run/netns/{peer}")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(by["netns"], peer_inode.ino(), "{p}");
    // The cause is named as such, not as an identity the rules exempt.
    let r = pod.report();
    assert_eq!(findings_of(&r, "foreign-socket", h.pid()).len(), 1, "{r}");
    assert!(
        findings_of(&r, "identity-exempt", h.pid()).is_empty(),
        "{r}"
    );
}

/// `unshare -r` as uid 10001 gid 1337: root inside its own user namespace, while the
/// pod's network namespace is owned by the initial one, where it is 10001:1337.
const USERNS: &[&str] = &[
    "setpriv",
    "--reuid=10001",
    "--regid=1337",
    "--clear-groups",
    "unshare",
    "-r",
];

#[test]
fn ids_are_those_of_the_user_namespace_owning_the_network_namespace() {
    if !is_root() {
        return;
    }
    let pod = pod();
    let mut h = Helper::start(&pod, USERNS, "plain", &[]);
    let r = pod.report();
    let p = process(&r, h.pid()).clone();
    let kernel = h.go();
    assert!(
        kernel["new-socket"],
        "gid 1337 in the owner's terms bypasses"
    );
    assert_eq!(p["verdict"], "bypass", "{p}");
    assert_eq!(
        (p["uid"].as_u64(), p["gid"].as_u64()),
        (Some(10001), Some(1337))
    );
    // Its capabilities are its own user namespace's: no rule can it change (iptables
    // there says EPERM), no exempt uid can it take (setuid(1337) is EINVAL there).
    let findings = r["netns"][0]["findings"].as_array().unwrap();
    for kind in ["can-modify-rules", "can-become-exempt"] {
        assert!(
            !findings
                .iter()
                .any(|f| f["kind"] == kind && f["pid"] == h.pid()),
            "{kind}: {findings:?}"
        );
    }
}

#[test]
fn a_uid_0_exemption_does_not_exempt_root_of_a_child_user_namespace() {
    if !is_root() {
        return;
    }
    let pod = pod();
    pod.add_rules("*nat\n-I ISTIO_OUTPUT 1 -m owner --uid-owner 0 -j RETURN\nCOMMIT\n");
    let wrap = [
        "setpriv",
        "--reuid=10001",
        "--regid=10001",
        "--clear-groups",
        "unshare",
        "-r",
    ];
    let mut h = Helper::start(&pod, &wrap, "plain", &[]);
    let r = pod.report();
    let p = process(&r, h.pid()).clone();
    let (traced, _) = trace(h.pid(), None);
    let kernel = h.go();
    assert!(!kernel["new-socket"], "the kernel captures it");
    assert_eq!(p["verdict"], "captured", "{p}");
    assert!(!traced);
}

#[test]
fn listening_where_no_capture_delivers_does_not_make_an_exempt_app_the_proxy() {
    if !is_root() {
        return;
    }
    let pod = pod();
    // gid 1337, also listening on [::]:15006 v6-only: Istio's IPv4 rules never deliver there.
    let wrap = ["setpriv", "--reuid=10001", "--regid=1337", "--clear-groups"];
    let mut h = Helper::start(&pod, &wrap, "listen6", &["15006"]);
    let (code, out, err) = meshleak(&["pod", "--netns", &pod.path(), "-o", "json"]);
    let r = json(&out);
    let p = process(&r, h.pid()).clone();
    let kernel = h.go();
    assert!(kernel["new-socket"], "the kernel lets it out");
    assert_eq!(p["verdict"], "bypass", "{p}");
    assert_eq!(code, 1, "{err}");
    assert!(
        common::pod::finding(&r, "identity-exempt", h.pid()).is_some(),
        "{r}"
    );
    assert!(
        common::pod::finding(&r, "proxy-impostor", h.pid()).is_none(),
        "{r}"
    );
}

#[test]
fn the_proxys_identity_outside_its_process_tree_is_no_proxy() {
    if !is_root() {
        return;
    }
    // Kuma: kuma-dp runs as uid 5678, which the rules exempt; an app run as 5678 that is
    // neither the listener nor its child leaves the mesh.
    let mut pod = Pod::new();
    common::run(
        &["ip", "netns", "exec", &pod.ns, "iptables-nft-restore"],
        Some(include_str!("../testdata/meshes/kuma.rules")),
    );
    let proxy = pod.spawn(
        5678,
        5678,
        &["socat", "TCP-LISTEN:15001,reuseaddr,fork", "EXEC:/bin/cat"],
    );
    pod.with_peer(&[&[
        "socat",
        "TCP-LISTEN:80,reuseaddr,fork",
        "SYSTEM:read l; echo B",
    ]]);
    common::pod::settle();
    let wrap = ["setpriv", "--reuid=5678", "--regid=5678", "--clear-groups"];
    let mut h = Helper::start(&pod, &wrap, "plain", &[]);
    let r = pod.report();
    let app = process(&r, h.pid()).clone();
    let kernel = h.go();
    assert!(kernel["new-socket"]);
    assert_eq!(process(&r, proxy)["verdict"], "proxy");
    assert_eq!(app["verdict"], "bypass", "{app}");
    assert!(
        common::pod::finding(&r, "identity-exempt", h.pid()).is_some(),
        "{r}"
    );
}

/// The pod's observed-bypass findings for a pid.
fn observed(r: &serde_json::Value, pid: u32) -> Option<&serde_json::Value> {
    common::pod::finding(r, "observed-bypass", pid)
}

#[test]
fn a_connection_through_a_socket_made_exempt_names_the_socket_as_the_cause() {
    if !is_root() {
        return;
    }
    for how in ["gid-1337-then-drop", "gid-1337-fchown"] {
        connection_through_exempt_socket(how);
    }
}

/// A connection through a socket made with fsgid 1337 (`how`: then dropped; then also
/// fchowned to 10001, so its inode says 10001:10001): the cause is the socket's own
/// credentials, never "the rules changed".
fn connection_through_exempt_socket(how: &str) {
    let pod = pod();
    let h = Helper::start(&pod, &[], "hold", &[how]);
    assert_eq!(h.ready["held"]["held"], "B", "the kernel let it out");
    let (code, out, err) = meshleak(&["pod", "--netns", &pod.path(), "-o", "json"]);
    let r = json(&out);
    assert_eq!(code, 1, "{err}");
    let f = observed(&r, h.pid()).unwrap_or_else(|| panic!("{r}"));
    let message = f["message"].as_str().unwrap();
    assert!(
        message.contains("created with uid 0 gid 1337") && !message.contains("changed since"),
        "{message}"
    );
    assert!(
        f["rules"][0]["rule"]
            .as_str()
            .unwrap()
            .contains("--gid-owner 1337"),
        "{f}"
    );
}

#[test]
fn a_socket_sharing_the_apps_address_and_port_explains_no_escape() {
    if !is_root() {
        return;
    }
    let mut pod = pod();
    pod.spawn(
        10001,
        10001,
        &["socat", "TCP-LISTEN:8080,reuseaddr,fork", "EXEC:/bin/cat"],
    );
    common::pod::settle();
    let wrap = ["setpriv", "--reuid=10001", "--regid=1337", "--clear-groups"];
    let h = Helper::start(&pod, &wrap, "reuse", &["40123"]);
    assert_eq!(
        (&h.ready["held"]["escaped"], &h.ready["held"]["local"]),
        (&"B".into(), &"x".into())
    );
    let r = pod.report();
    let f = observed(&r, h.pid()).unwrap_or_else(|| panic!("{r}"));
    let evidence = f["evidence"][0].as_str().unwrap();
    assert!(
        evidence.contains("169.254.78.1:40123 -> 169.254.78.2:80"),
        "{evidence}"
    );
}

#[test]
fn an_exemption_no_running_process_uses_is_reported_before_one_does() {
    if !is_root() {
        return;
    }
    // A uid 0 RETURN inserted ahead of Istio's jump, as a developer tool once did; no
    // process of the pod runs as root.
    let pod = pod();
    pod.add_rules("*nat\n-I OUTPUT 1 -m owner --uid-owner 0 -j RETURN\nCOMMIT\n");
    let wrap = [
        "setpriv",
        "--reuid=10001",
        "--regid=10001",
        "--clear-groups",
    ];
    let mut app = Helper::start(&pod, &wrap, "plain", &[]);
    let r = pod.report();
    let latent = r["netns"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "foreign-rule")
        .unwrap_or_else(|| panic!("no foreign-rule: {r}"));
    let message = latent["message"].as_str().unwrap();
    assert!(
        message.contains("uid 0, which no running process has now"),
        "{message}"
    );
    assert_eq!(latent["severity"], "medium");
    assert_eq!(
        latent["rules"][0]["rule"],
        "-A OUTPUT -m owner --uid-owner 0 -j RETURN"
    );
    assert_eq!(process(&r, app.pid())["verdict"], "captured");
    assert!(!app.go()["new-socket"], "the app is captured");
    // What the finding warns of: a process exec'd as root leaves the mesh.
    let mut root = Helper::start(&pod, &[], "plain", &[]);
    assert!(root.go()["new-socket"], "root's connection bypasses");
}

/// The report's entry for a namespace, by its inode.
fn netns_of<'a>(r: &'a serde_json::Value, pod: &Pod) -> &'a serde_json::Value {
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(pod.path()).unwrap().ino();
    r["netns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["inode"] == inode)
        .unwrap_or_else(|| panic!("namespace {inode} not in the report"))
}

#[test]
fn a_socket_made_in_the_pod_and_held_from_another_namespace_is_judged_in_the_pod() {
    if !is_root() {
        return;
    }
    let pod = pod();
    let elsewhere = format!("{}p", pod.ns);
    let mut h = Helper::start_in(&elsewhere, &[], "visit", &[&pod.ns]);
    let (_, out, err) = meshleak(&["scan", "-o", "json"]);
    let r = json(&out);
    let p = netns_of(&r, &pod)["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == h.pid())
        .unwrap_or_else(|| panic!("the holder is not judged in the pod: {err}"))
        .clone();
    let kernel = h.go();
    assert!(kernel["made-in-pod-gid-1337"], "the kernel lets it out");
    assert_eq!(p["verdict"], "bypass", "{p}");
    use std::os::unix::fs::MetadataExt;
    let home = std::fs::metadata(format!("/run/netns/{elsewhere}"))
        .unwrap()
        .ino();
    assert_eq!(p["lives_in"], home, "{p}");
    assert_eq!(p["decided_by"]["kind"], "socket", "{p}");
    assert_eq!(p["decided_by"]["gid"], 1337, "{p}");
}

#[test]
fn a_pods_connection_held_by_no_process_of_it_is_an_observed_bypass() {
    if !is_root() {
        return;
    }
    let pod = pod();
    let elsewhere = format!("{}p", pod.ns);
    let h = Helper::start_in(&elsewhere, &[], "visit", &[&pod.ns, "connect"]);
    assert_eq!(h.ready["held"]["held"], "B", "the kernel let it out");
    let (code, out, err) = meshleak(&["pod", "--netns", &pod.path(), "-o", "json"]);
    let r = json(&out);
    let seen = r["netns"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "observed-bypass" && f["pid"].is_null())
        .unwrap_or_else(|| panic!("no observed-bypass: {r}"))
        .clone();
    let evidence = seen["evidence"][0].as_str().unwrap();
    assert!(
        evidence.starts_with("tcp 169.254.78.1:") && evidence.contains("-> 169.254.78.2:80"),
        "{evidence}"
    );
    assert_eq!(code, 1, "a bypass: {err}");
}

/// Waits until the pod has a TCP connection in `state` (as `ss` names it), up to 3 s.
fn wait_for_state(pod: &Pod, state: &str) {
    for _ in 0..30 {
        let out = Command::new("ip")
            .args(["netns", "exec", &pod.ns, "ss", "-Htn", "state", state])
            .output()
            .expect("ss");
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("no connection in {state}");
}

#[test]
fn a_half_closed_connection_opened_before_the_rules_is_a_bypass_that_counts() {
    if !is_root() {
        return;
    }
    // The connection is made while a rule ahead of the mesh lets everything out, then that
    // rule goes: the rules now capture an ordinary app, its connection stays outside. The
    // peer answers and closes, so ours is CLOSE_WAIT (it may still send).
    let pod = pod();
    pod.add_rules("*nat\n-I OUTPUT 1 -p tcp -j RETURN\nCOMMIT\n");
    let wrap = [
        "setpriv",
        "--reuid=10001",
        "--regid=10001",
        "--clear-groups",
    ];
    let h = Helper::start(&pod, &wrap, "hold", &[]);
    assert_eq!(h.ready["held"]["held"], "B", "the kernel let it out");
    pod.add_rules("*nat\n-D OUTPUT 1\nCOMMIT\n");
    wait_for_state(&pod, "close-wait");
    let (code, out, err) = meshleak(&["pod", "--netns", &pod.path(), "-o", "json"]);
    let r = json(&out);
    let f = observed(&r, h.pid()).unwrap_or_else(|| panic!("{r}"));
    assert!(
        f["message"].as_str().unwrap().contains("changed since"),
        "{f}"
    );
    let p = process(&r, h.pid());
    assert_eq!(p["verdict"], "bypass", "{p}");
    assert_eq!(p["decided_by"]["kind"], "connection", "{p}");
    assert_eq!(code, 1, "an observed bypass fails the run: {err}");
    let (_, table, _) = meshleak(&["pod", "--netns", &pod.path()]);
    assert!(table.contains("1 process bypasses the mesh"), "{table}");
}

#[test]
fn an_exempt_real_gid_is_an_exemption_taken_without_capabilities() {
    if !is_root() {
        return;
    }
    // Real gid 1337, effective (and fs) gid 10001, no capability: captured now, and one
    // setresgid(1337, 1337, 1337) away from leaving the mesh, which needs no privilege.
    let pod = pod();
    let wrap = [
        "setpriv",
        "--reuid=10001",
        "--rgid=1337",
        "--egid=10001",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ];
    let mut h = Helper::start(&pod, &wrap, "become-gid-1337", &[]);
    let r = pod.report();
    let p = process(&r, h.pid()).clone();
    assert_eq!(p["verdict"], "captured", "{p}");
    let f = common::pod::finding(&r, "can-become-exempt", h.pid())
        .unwrap_or_else(|| panic!("no can-become-exempt: {r}"))
        .clone();
    assert!(f["message"].as_str().unwrap().contains("gid 1337"), "{f}");
    let kernel = h.go();
    assert!(
        kernel["new-socket"],
        "after setresgid it bypasses: {kernel:?}"
    );
}

#[test]
fn a_capability_kept_only_in_the_permitted_set_counts() {
    if !is_root() {
        return;
    }
    // CAP_NET_ADMIN permitted, not effective: capset makes it effective with no privilege,
    // so the process can rewrite the capture rules all the same.
    let pod = pod();
    let mut h = Helper::start(&pod, &[], "prm-net-admin", &[]);
    let r = pod.report();
    let p = process(&r, h.pid()).clone();
    assert_eq!(
        (p["uid"].as_u64(), p["verdict"].as_str()),
        (Some(10001), Some("captured"))
    );
    assert!(
        common::pod::finding(&r, "can-modify-rules", h.pid()).is_some(),
        "{r}"
    );
    let kernel = h.go();
    assert!(
        kernel["raised-net-admin"],
        "capset raised it and SO_MARK worked"
    );
}

#[test]
fn ipv6_only_capture_in_a_pod_that_speaks_ipv4_is_reported() {
    if !is_root() {
        return;
    }
    // Istio's rules loaded for IPv6 only; the pod talks IPv4 to its peer.
    let mut pod = Pod::new();
    pod.with_peer(&[&[
        "socat",
        "TCP-LISTEN:80,reuseaddr,fork",
        "SYSTEM:read l; echo B",
    ]]);
    let v6 = include_str!("../testdata/istio-sidecar.rules")
        .replace("127.0.0.6/32", "::6/128")
        .replace("127.0.0.1/32", "::1/128");
    common::run(
        &["ip", "netns", "exec", &pod.ns, "ip6tables-nft-restore"],
        Some(&v6),
    );
    let wrap = [
        "setpriv",
        "--reuid=10001",
        "--regid=10001",
        "--clear-groups",
    ];
    let h = Helper::start(&pod, &wrap, "hold", &[]);
    assert_eq!(h.ready["held"]["held"], "B", "IPv4 left uncaptured");
    let r = pod.report();
    let f = r["netns"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "ipv4-uncaptured")
        .unwrap_or_else(|| panic!("no ipv4-uncaptured: {r}"))
        .clone();
    assert_eq!(f["severity"], "high", "a live IPv4 connection: {f}");
}

#[test]
fn a_socket_whose_owner_was_changed_with_fchown_keeps_the_credentials_it_was_made_with() {
    if !is_root() {
        return;
    }
    let pod = pod();
    // Root makes each socket with fsgid 1337, fchowns it (to 0:0, to 10001:10001; a
    // setgid-1337 process likewise), drops every id and capability, and holds them.
    let mut h = Helper::start(&pod, &[], "fchown", &[]);
    let r = pod.report();
    let labels = ["fchown-0", "fchown-10001", "setgid-binary"];
    let p = check(&pod, &mut h, &labels);
    assert_eq!(p["verdict"], "bypass", "{p}");
    assert_eq!(p["decided_by"]["gid"], 1337, "{p}");
    let why = p["decided_by"]["why"].as_str().unwrap();
    assert!(why.contains("inode's owner was changed"), "{why}");
    // Each disguised socket is named, with both owners.
    let changed = findings_of(&r, "owner-changed", h.pid());
    assert_eq!(changed.len(), labels.len(), "{r}");
    assert!(
        changed.iter().any(|f| f["evidence"][0]
            .as_str()
            .unwrap()
            .contains("inode owner 0:0")),
        "{changed:?}"
    );
    assert_eq!(r["owners"]["source"], "f-cred", "{}", r["owners"]);
    // And the pod's scan says so in its exit status.
    let (code, _, err) = meshleak(&["pod", "--netns", &pod.path(), "-o", "json"]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn a_socket_bound_to_an_exempt_source_port_is_a_way_out_before_it_connects() {
    if !is_root() {
        return;
    }
    let pod = pod();
    pod.add_rules("*nat\n-I ISTIO_OUTPUT 1 -p tcp --sport 15000:15100 -j RETURN\nCOMMIT\n");
    // A listener sharing the port does not make the bound socket an accepted one.
    for extra in [&[][..], &["listener"][..]] {
        bound_exempt(&pod, extra);
    }
}

fn bound_exempt(pod: &Pod, extra: &[&str]) {
    let mut h = Helper::start(pod, &[], "bind", &[&["15050"], extra].concat());
    let r = pod.report();
    let p = process(&r, h.pid()).clone();
    let kernel = h.go();
    assert!(
        kernel["bound"],
        "the kernel lets the bound socket out: {kernel:?}"
    );
    assert!(!kernel["new-socket"], "{kernel:?}");
    assert_eq!(p["verdict"], "bypass", "{p}");
    assert_eq!(p["decided_by"]["fd"], h.fd("bound"), "{p}");
    assert!(
        p["reasons"][0]["rule"]
            .as_str()
            .unwrap()
            .contains("15000:15100"),
        "{p}"
    );
    let found = findings_of(&r, "held-socket-exempt", h.pid());
    assert_eq!(found.len(), 1, "{r}");
    assert!(
        findings_of(&r, "identity-exempt", h.pid()).is_empty(),
        "{r}"
    );
}

/// The pod report's verdict for an io_uring helper, checked against what its ring's socket
/// did on a real connection.
fn check_ring(pod: &Pod, h: &mut Helper) -> serde_json::Value {
    let r = pod.report();
    let p = process(&r, h.pid()).clone();
    let kernel = h.go();
    assert!(kernel["ring"], "the ring's socket escapes: {kernel:?}");
    assert!(!kernel["new-socket"], "{kernel:?}");
    assert_eq!(p["verdict"], "bypass", "{p}");
    assert_eq!(p["decided_by"]["fd"], h.fd("ring"), "{p}");
    assert_eq!(p["decided_by"]["gid"], 1337, "{p}");
    p
}

#[test]
fn an_io_uring_personality_registered_before_a_drop_is_a_way_out() {
    if !is_root() {
        return;
    }
    let pod = pod();
    let mut h = Helper::start_uring(&pod, "personality");
    let p = check_ring(&pod, &mut h);
    assert_eq!(p["decided_by"]["kind"], "ring-personality", "{p}");
}

#[test]
fn an_io_uring_sqpoll_thread_keeps_the_credentials_of_the_rings_setup() {
    if !is_root() {
        return;
    }
    let pod = pod();
    let mut h = Helper::start_uring(&pod, "sqpoll");
    let p = check_ring(&pod, &mut h);
    assert_eq!(p["decided_by"]["kind"], "ring-sqpoll", "{p}");
}

#[test]
fn a_socket_in_an_io_uring_fixed_file_slot_is_held_by_its_process() {
    if !is_root() {
        return;
    }
    let pod = pod();
    let mut h = Helper::start_uring(&pod, "fixed");
    let p = check_ring(&pod, &mut h);
    assert_eq!(p["decided_by"]["kind"], "socket", "{p}");
    assert_eq!(p["decided_by"]["slot"], 0, "{p}");
}

#[test]
fn a_connection_from_a_fixed_file_slot_names_its_process() {
    if !is_root() {
        return;
    }
    let pod = pod();
    let h = Helper::start_uring(&pod, "fixed-held");
    assert_eq!(h.ready["held"]["held"], "B", "{}", h.ready);
    let r = pod.report();
    let observed: Vec<&serde_json::Value> = r["netns"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "observed-bypass")
        .collect();
    assert_eq!(observed.len(), 1, "{r}");
    assert_eq!(observed[0]["pid"], h.pid(), "{r}");
    assert_eq!(process(&r, h.pid())["verdict"], "bypass", "{r}");
}

#[test]
fn without_bpf_a_ring_holder_is_unknown_and_the_report_says_why() {
    if !is_root() {
        return;
    }
    let pod = pod();
    let mut h = Helper::start_uring(&pod, "personality");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshleak"))
        .args(["pod", "--netns", &pod.path(), "-o", "json"])
        .env("MESHLEAK_BPF", "off")
        .output()
        .unwrap();
    let r = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(r["owners"]["source"], "inode", "{}", r["owners"]);
    assert!(
        r["owners"]["why"]
            .as_str()
            .unwrap()
            .contains("MESHLEAK_BPF"),
        "{}",
        r["owners"]
    );
    let p = process(&r, h.pid()).clone();
    assert_eq!(p["verdict"], "unknown", "{p}");
    assert_eq!(p["decided_by"]["kind"], "ring", "{p}");
    assert_eq!(out.status.code(), Some(3), "{}", r["incomplete"]);
    let kernel = h.go();
    assert!(kernel["ring"], "{kernel:?}");
}

#[test]
fn without_bpf_a_held_unconnected_socket_leaves_the_report_incomplete() {
    if !is_root() {
        return;
    }
    let pod = pod();
    // Its inodes say 0:0 and 10001:10001; only BPF could tell they were made with 1337.
    let _h = Helper::start(&pod, &[], "fchown", &[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshleak"))
        .args(["pod", "--netns", &pod.path(), "-o", "json"])
        .env("MESHLEAK_BPF", "off")
        .output()
        .unwrap();
    let r = json(&String::from_utf8_lossy(&out.stdout));
    let incomplete = r["incomplete"].to_string();
    assert!(
        incomplete.contains("3 held, unconnected sockets") && incomplete.contains("fchown"),
        "{incomplete}"
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "never an all-clear: {incomplete}"
    );
    let table = std::process::Command::new(env!("CARGO_BIN_EXE_meshleak"))
        .args(["pod", "--netns", &pod.path()])
        .env("MESHLEAK_BPF", "off")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("owners:") && text.contains("MESHLEAK_BPF=off"),
        "{text}"
    );
}

#[test]
fn a_unix_socket_to_a_relay_in_an_unmeshed_namespace_is_a_way_out() {
    if !is_root() {
        return;
    }
    let pod = pod();
    let peer = format!("{}p", pod.ns);
    // The relay lives in the peer's namespace, which has no capture, and forwards what
    // it is handed to the peer's server; its path socket is reachable from the pod.
    let path = format!("/tmp/meshleak-relay-{}.sock", pod.ns);
    let _ = std::fs::remove_file(&path);
    let mut relay = Command::new("ip")
        .args(["netns", "exec", &peer, "socat"])
        .arg(format!("UNIX-LISTEN:{path},fork,mode=777"))
        .arg("TCP:127.0.0.1:80")
        .spawn()
        .unwrap();
    for _ in 0..50 {
        if std::path::Path::new(&path).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut h = Helper::start(&pod, &[], "relay", &[&path]);
    common::pod::settle();
    // The whole node: the relay's namespace is read, and it is not meshed.
    let (code, out, err) = meshleak(&["scan", "-o", "json"]);
    let node = json(&out);
    let ns = common::pod::netns_of(&node, &pod);
    let p = ns["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == h.pid())
        .unwrap_or_else(|| panic!("{ns}"))
        .clone();
    let f: Vec<&serde_json::Value> = ns["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "unix-relay" && f["pid"] == h.pid())
        .collect();
    // One pod alone: the relay's namespace is not read, so the verdict is unknown.
    let alone = pod.report();
    let kernel = h.go();
    relay.kill().unwrap();
    relay.wait().unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        kernel["relay"],
        "the line reached the peer past the mesh: {kernel:?}"
    );
    assert_eq!(p["verdict"], "bypass", "{p}");
    assert_eq!(p["decided_by"]["kind"], "unix-relay", "{p}");
    assert_eq!(code, 1, "{err}");
    assert_eq!(f.len(), 1, "{ns}");
    assert_eq!(f[0]["severity"], "high", "{}", f[0]);
    let message = f[0]["message"].as_str().unwrap();
    assert!(
        message.contains("socat (pid") && message.contains("not meshed"),
        "{message}"
    );
    assert_eq!(process(&alone, h.pid())["verdict"], "unknown", "{alone}");
}

#[test]
fn a_socket_marked_before_dropping_net_admin_carries_the_exempt_mark() {
    if !is_root() {
        return;
    }
    let pod = pod();
    // The mark exemption some meshes use for their proxy.
    pod.add_rules("*nat\n-I ISTIO_OUTPUT 1 -m mark --mark 0x539/0xfff -j RETURN\nCOMMIT\n");
    let mut h = Helper::start(&pod, &[], "mark", &["0x539"]);
    let r = pod.report();
    let p = process(&r, h.pid()).clone();
    let kernel = h.go();
    assert!(
        kernel["marked"],
        "the kernel lets the marked socket out: {kernel:?}"
    );
    assert!(!kernel["new-socket"], "{kernel:?}");
    assert_eq!(p["verdict"], "bypass", "{p}");
    assert_eq!(p["decided_by"]["fd"], h.fd("marked"), "{p}");
    assert!(
        p["decided_by"]["why"]
            .as_str()
            .unwrap()
            .contains("mark 0x539"),
        "{p}"
    );
    assert!(
        p["reasons"][0]["rule"].as_str().unwrap().contains("0x539"),
        "{p}"
    );
    assert_eq!(
        findings_of(&r, "held-socket-exempt", h.pid()).len(),
        1,
        "{r}"
    );
}

/// A relay in the peer's (unmeshed) namespace that accepts only when told.
const LAZY_RELAY: &str = r#"
import os, socket, sys
l = socket.socket(socket.AF_UNIX)
l.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
l.listen()
print("ready", flush=True)
sys.stdin.readline()
c, _ = l.accept()
t = socket.create_connection(("127.0.0.1", 80))
t.sendall(c.recv(16))
c.sendall(t.recv(16))
print("relayed", flush=True)
sys.stdin.read()
"#;

#[test]
fn a_unix_connection_not_accepted_yet_names_the_relays_listener() {
    if !is_root() {
        return;
    }
    use std::io::{BufRead, BufReader, Write};
    let pod = pod();
    let peer = format!("{}p", pod.ns);
    let path = format!("/tmp/meshleak-lazy-{}.sock", pod.ns);
    let _ = std::fs::remove_file(&path);
    let mut relay = Command::new("ip")
        .args([
            "netns",
            "exec",
            &peer,
            "/usr/bin/python3",
            "-c",
            LAZY_RELAY,
            &path,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = BufReader::new(relay.stdout.take().unwrap());
    let mut line = String::new();
    said.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let mut h = Helper::start(&pod, &[], "relay", &[&path]);
    let (_, out, _) = meshleak(&["scan", "-o", "json"]);
    let node = json(&out);
    let ns = common::pod::netns_of(&node, &pod);
    let p = ns["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == h.pid())
        .unwrap_or_else(|| panic!("{ns}"))
        .clone();
    writeln!(relay.stdin.as_mut().unwrap()).unwrap();
    let kernel = h.go();
    relay.kill().unwrap();
    relay.wait().unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(kernel["relay"], "{kernel:?}");
    assert_eq!(p["verdict"], "bypass", "{p}");
    assert_eq!(p["decided_by"]["kind"], "unix-relay", "{p}");
}

#[test]
fn a_ring_registered_by_index_with_its_descriptor_closed_is_not_a_clean_answer() {
    if !is_root() {
        return;
    }
    let pod = pod();
    let mut h = Helper::start_uring(&pod, "registered");
    let r = pod.report();
    let p = process(&r, h.pid()).clone();
    let kernel = h.go();
    assert!(kernel["ring"], "the ring's socket escapes: {kernel:?}");
    // Its contents are not read: never `captured`.
    assert_eq!(p["verdict"], "unknown", "{p}");
    assert_eq!(p["decided_by"]["kind"], "ring", "{p}");
    assert_eq!(p["decided_by"]["registered"], true, "{p}");
}

#[test]
fn a_process_whose_leader_thread_exited_is_read_through_its_live_threads() {
    if !is_root() {
        return;
    }
    let pod = pod();
    let mut h = Helper::start_uring(&pod, "zombie");
    common::pod::settle();
    let r = pod.report();
    let p = process(&r, h.pid()).clone();
    let kernel = h.go();
    assert!(kernel["held"], "{kernel:?}");
    assert_eq!(p["verdict"], "bypass", "{p}");
    assert_eq!(p["decided_by"]["gid"], 1337, "{p}");
}
