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
    let verdict = |pid: u32| {
        r["netns"][0]["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pid"] == pid)
            .map(|p| p["verdict"].clone())
    };
    assert_eq!(verdict(may), Some("captured".into()), "{r}");
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
