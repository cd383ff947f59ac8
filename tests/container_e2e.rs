//! End to end on a real container runtime (root, podman with runc): pods whose containers
//! carry CRI-O style Kubernetes annotations, sharing one network namespace like a pod; the
//! Istio rules applied into it from the host, as istio-cni does. The scan must name each
//! pod, container and the proxy, and give the verdicts the rules decide.

mod common;

use std::process::Command;

use common::pod::json;
use common::{is_root, meshleak, run};

const ISTIO: &str = include_str!("../testdata/istio-sidecar.rules");
const IMAGE: &str = "localhost/meshleak-busybox:e2e";

/// A podman pod, removed (with its containers) on drop, also when a test fails.
struct PodmanPod {
    name: String,
    uid: String,
}

impl PodmanPod {
    fn new(name: &str) -> PodmanPod {
        let pod = PodmanPod {
            name: name.to_string(),
            uid: format!(
                "{:08x}-1d5f-4a6b-9c7d-8e9f0a1b2c3d",
                std::process::id() ^ name.len() as u32
            ),
        };
        run(
            &[
                "podman",
                "pod",
                "create",
                "--name",
                name,
                "--network",
                "none",
            ],
            None,
        );
        pod
    }

    /// Starts a container of the pod as `user`, annotated as kubelet would via CRI-O.
    fn container(&self, container: &str, user: &str, cmd: &[&str]) -> String {
        let ann = |k: &str, v: &str| format!("--annotation=io.kubernetes.{k}={v}");
        let mut args = vec![
            "podman".to_string(),
            "run".into(),
            "-d".into(),
            "--pod".into(),
            self.name.clone(),
            "--name".into(),
            format!("{}-{container}", self.name),
            "--user".into(),
            user.into(),
            ann("pod.name", &self.name),
            ann("pod.namespace", "shop"),
            ann("pod.uid", &self.uid),
            ann("container.name", container),
            IMAGE.into(),
        ];
        args.extend(cmd.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&refs, None).trim().to_string()
    }

    /// Loads rules into the pod's network namespace from the host, through the infra
    /// container's pid.
    fn load_rules(&self, rules: &str) {
        let infra = run(
            &[
                "podman",
                "pod",
                "inspect",
                &self.name,
                "--format",
                "{{.InfraContainerID}}",
            ],
            None,
        );
        let pid = run(
            &[
                "podman",
                "inspect",
                "--format",
                "{{.State.Pid}}",
                infra.trim(),
            ],
            None,
        );
        run(
            &["nsenter", "-t", pid.trim(), "-n", "iptables-nft-restore"],
            Some(rules),
        );
    }
}

impl Drop for PodmanPod {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["pod", "rm", "-f", "-t", "0", &self.name])
            .output();
    }
}

/// Whether podman is here; under `make test` (MESHLEAK_REQUIRE_PODMAN=1) it must be.
fn podman_ready() -> bool {
    if !is_root() {
        return false;
    }
    let here = Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !here {
        assert!(
            std::env::var_os("MESHLEAK_REQUIRE_PODMAN").is_none(),
            "podman is not installed: run `make setup`"
        );
        eprintln!("skipped: podman is not installed (make setup installs it)");
        return false;
    }
    run(
        &[
            "sh",
            concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/podman-setup.sh"),
        ],
        None,
    );
    true
}

fn netns_of<'a>(report: &'a serde_json::Value, pod: &str) -> &'a serde_json::Value {
    report["netns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["pod"]["name"] == pod)
        .unwrap_or_else(|| panic!("pod {pod} not in {report}"))
}

/// (container name, uid, gid, verdict) of every process, sorted.
fn processes(ns: &serde_json::Value) -> Vec<(String, u64, u64, String)> {
    let mut out: Vec<(String, u64, u64, String)> = ns["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !p["container"]["name"].is_null())
        .map(|p| {
            (
                p["container"]["name"].as_str().unwrap().to_string(),
                p["uid"].as_u64().unwrap(),
                p["gid"].as_u64().unwrap(),
                p["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn has_finding(ns: &serde_json::Value, kind: &str, container: &str) -> bool {
    ns["findings"].as_array().unwrap().iter().any(|f| {
        f["kind"] == kind
            && ns["processes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["pid"] == f["pid"] && p["container"]["name"] == container)
    })
}

#[test]
fn podman_pods_are_named_with_their_containers_proxy_and_verdicts() {
    if !podman_ready() {
        return;
    }
    let name = format!("mle2e{}", std::process::id());
    let pod = PodmanPod::new(&name);
    let proxy = pod.container(
        "istio-proxy",
        "1337:1337",
        &["sh", "-c", "httpd -p 15006; exec httpd -f -p 15001"],
    );
    let leaky = pod.container("leaky", "10001:1337", &["sleep", "3600"]);
    pod.container("clean", "10001:10001", &["sleep", "3600"]);
    pod.container("as-proxy-uid", "1337", &["sleep", "3600"]);
    pod.load_rules(ISTIO);
    // Something inside a clean container switches to the proxy's identity at run time.
    run(
        &[
            "podman",
            "exec",
            "-d",
            "--user",
            "1337:1337",
            &format!("{name}-clean"),
            "sleep",
            "3600",
        ],
        None,
    );

    // A second pod whose proxy container runs as an identity the rules do not exempt.
    let wrong_name = format!("mle2ew{}", std::process::id());
    let wrong = PodmanPod::new(&wrong_name);
    wrong.container(
        "istio-proxy",
        "1000:1000",
        &["sh", "-c", "httpd -p 15006; exec httpd -f -p 15001"],
    );
    wrong.load_rules(ISTIO);
    std::thread::sleep(std::time::Duration::from_millis(500));

    let (code, out, err) = meshleak(&["scan", "-o", "json"]);
    assert_eq!(code, 1, "bypassing processes exist: {err}");
    let r = json(&out);
    let ns = netns_of(&r, &name);
    assert_eq!(ns["pod"]["namespace"], "shop");
    assert_eq!(ns["pod"]["uid"], pod.uid.as_str());
    assert_eq!(ns["mesh"]["kind"], "istio-sidecar");
    let s = |x: &str| x.to_string();
    assert_eq!(
        processes(ns),
        vec![
            (s("as-proxy-uid"), 1337, 0, s("bypass")),
            (s("clean"), 1337, 1337, s("bypass")),
            (s("clean"), 10001, 10001, s("captured")),
            (s("istio-proxy"), 1337, 1337, s("proxy")),
            (s("leaky"), 10001, 1337, s("bypass")),
        ],
        "{ns}"
    );
    let leaky_proc = ns["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["container"]["name"] == "leaky")
        .unwrap();
    assert_eq!(leaky_proc["container"]["id"], leaky.as_str());
    assert_eq!(leaky_proc["container"]["runtime"], "cri-o");
    assert_eq!(leaky_proc["container"]["configured_user"]["uid"], 10001);
    assert_eq!(leaky_proc["container"]["configured_user"]["gid"], 1337);
    assert!(has_finding(ns, "identity-exempt", "leaky"), "{ns}");
    assert!(has_finding(ns, "identity-exempt", "as-proxy-uid"), "{ns}");
    assert!(has_finding(ns, "identity-changed", "clean"), "{ns}");
    assert!(
        !has_finding(ns, "identity-changed", "leaky"),
        "configured so: {ns}"
    );
    assert!(
        !ns["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "proxy-not-exempt" || f["kind"] == "proxy-absent"),
        "{ns}"
    );

    let other = netns_of(&r, &wrong_name);
    assert!(
        has_finding(other, "proxy-not-exempt", "istio-proxy"),
        "{other}"
    );

    // One pod by name, and by (a prefix of) a container id.
    let by_name = format!("shop/{name}");
    for args in [["--pod", by_name.as_str()], ["--container", &proxy[..12]]] {
        let mut all = vec!["pod"];
        all.extend(args);
        all.extend(["-o", "json"]);
        let (_, out, err) = meshleak(&all);
        let r = json(&out);
        let names: Vec<&str> = r["netns"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n["pod"]["name"].as_str())
            .collect();
        assert_eq!(names, vec![name.as_str()], "{args:?}: {err}");
    }
    let (code, _, err) = meshleak(&["pod", "--pod", "shop/no-such-pod"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no pod shop/no-such-pod on this node") && err.contains(&name),
        "{err}"
    );
}
