//! Podman pods for end-to-end tests (root, podman with runc): containers annotated as
//! kubelet does through CRI-O, sharing one network namespace like a pod, removed (with
//! their containers) on drop, also when a test fails.

use std::process::Command;

use super::{Loader, run};

/// The busybox image `make setup` builds (scripts/podman-setup.sh).
pub const IMAGE: &str = "localhost/meshleak-busybox:e2e";

/// A podman pod, removed (with its containers) on drop, also when a test fails.
pub struct PodmanPod {
    pub name: String,
    pub uid: String,
    /// The Kubernetes namespace its containers are annotated with.
    pub namespace: String,
}

impl PodmanPod {
    pub fn new(name: &str) -> PodmanPod {
        PodmanPod::in_namespace(name, "shop")
    }

    /// A pod of Kubernetes namespace `namespace`.
    pub fn in_namespace(name: &str, namespace: &str) -> PodmanPod {
        let pod = PodmanPod {
            namespace: namespace.to_string(),
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
    pub fn container(&self, container: &str, user: &str, cmd: &[&str]) -> String {
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
            ann("pod.namespace", &self.namespace),
            ann("pod.uid", &self.uid),
            ann("container.name", container),
            IMAGE.into(),
        ];
        args.extend(cmd.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&refs, None).trim().to_string()
    }

    /// The Istio sidecar's stand-in: container `istio-proxy` as uid/gid 1337, listening
    /// on the proxy's ports 15001 and 15006.
    pub fn istio_proxy(&self) -> String {
        self.container(
            "istio-proxy",
            "1337:1337",
            &["sh", "-c", "httpd -p 15006; exec httpd -f -p 15001"],
        )
    }

    /// The pid of the pod's infra container: its network namespace is the pod's.
    pub fn infra_pid(&self) -> String {
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
        pid.trim().to_string()
    }

    /// Loads rules into the pod's network namespace from the host, as istio-cni does.
    pub fn load_rules(&self, loader: Loader, rules: &str) {
        let pid = self.infra_pid();
        let mut cmd = vec!["nsenter", "-t", &pid, "-n"];
        cmd.extend(loader.args());
        run(&cmd, Some(rules));
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
pub fn podman_ready() -> bool {
    super::tool_ready(
        "podman",
        concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/podman-setup.sh"),
    )
}

pub fn netns_of<'a>(report: &'a serde_json::Value, pod: &str) -> &'a serde_json::Value {
    report["netns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["pod"]["name"] == pod)
        .unwrap_or_else(|| panic!("pod {pod} not in {report}"))
}

/// (container name, uid, gid, verdict) of every process of a named container, sorted.
pub fn processes(ns: &serde_json::Value) -> Vec<(String, u64, u64, String)> {
    rows(ns, |p| p["container"]["name"].as_str().map(str::to_string))
}

/// (name, uid, gid, verdict) of every process `name` names (`None`: left out), sorted.
pub fn rows(
    ns: &serde_json::Value,
    name: impl Fn(&serde_json::Value) -> Option<String>,
) -> Vec<(String, u64, u64, String)> {
    let mut out: Vec<(String, u64, u64, String)> = ns["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| {
            Some((
                name(p)?,
                p["uid"].as_u64().unwrap(),
                p["gid"].as_u64().unwrap(),
                p["verdict"].as_str().unwrap().to_string(),
            ))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}
