//! Pods made through containerd's CRI API (runtime.v1) as the kubelet makes them: the
//! sandbox with the pod's metadata, labels, annotations, log directory, cgroup parent
//! (cgroupfs driver) and pod-level securityContext; each container with the effective
//! securityContext the kubelet computes (the container's fields over the pod's, the pod's
//! supplementalGroups and fsGroup as supplementary groups), its log path and the
//! `/var/log/containers` symlink. containerd is started by `make setup`
//! (scripts/containerd-setup.sh). Pods are removed on drop, also when a test fails.

use std::collections::HashMap;
use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::{Channel, Endpoint, Uri};

use super::{Loader, run};

pub const SOCKET: &str = "/run/containerd/containerd.sock";
pub const IMAGE: &str = "localhost/meshleak-busybox:e2e";

/// A pod's spec, as far as identity goes (`spec.securityContext`).
#[derive(Clone, Default)]
pub struct PodSpec {
    pub namespace: &'static str,
    pub name: String,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
    pub fs_group: Option<i64>,
    pub annotations: Vec<(&'static str, &'static str)>,
}

/// One container of the spec (`containers[].securityContext`).
#[derive(Clone, Default)]
pub struct ContainerSpec {
    pub name: &'static str,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub command: Vec<String>,
}

impl ContainerSpec {
    pub fn new(name: &'static str, user: Option<i64>, group: Option<i64>) -> ContainerSpec {
        ContainerSpec {
            name,
            run_as_user: user,
            run_as_group: group,
            command: vec!["sleep".into(), "3600".into()],
        }
    }

    pub fn command(mut self, sh: &str) -> ContainerSpec {
        self.command = vec!["sh".into(), "-c".into(), sh.into()];
        self
    }
}

pub struct CriPod {
    pub spec: PodSpec,
    pub uid: String,
    pub sandbox_id: String,
    /// (name, id) of each container started.
    pub containers: Vec<(String, String)>,
    config: PodSandboxConfig,
    client: Cri,
}

struct Cri {
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
}

impl Cri {
    fn connect() -> Cri {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let channel = rt
            .block_on(
                Endpoint::try_from("http://[::]:0")
                    .unwrap()
                    .connect_with_connector(tower::service_fn(|_: Uri| async {
                        let s = tokio::net::UnixStream::connect(SOCKET).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(s))
                    })),
            )
            .unwrap_or_else(|e| panic!("cannot reach containerd at {SOCKET}: {e}"));
        Cri {
            rt,
            client: RuntimeServiceClient::new(channel),
        }
    }
}

fn int(v: Option<i64>) -> Option<Int64Value> {
    v.map(|value| Int64Value { value })
}

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The kubelet's defaults: the pod's network and IPC namespaces, a pid namespace per
/// container.
fn namespaces() -> Option<NamespaceOption> {
    Some(NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    })
}

impl CriPod {
    /// Runs the pod's sandbox (RunPodSandbox), as the kubelet does before any container.
    pub fn run(spec: PodSpec) -> CriPod {
        let uid = format!(
            "{:08x}-{:04x}-4a6b-9c7d-8e9f0a1b2c3d",
            std::process::id(),
            spec.name.len() as u32 * 131 + spec.name.as_bytes()[0] as u32
        );
        let log_dir = format!("/var/log/pods/{}_{}_{uid}", spec.namespace, spec.name);
        std::fs::create_dir_all(&log_dir).unwrap();
        let mut annotations = map(&[
            ("kubernetes.io/config.source", "api"),
            ("kubernetes.io/config.seen", "2026-12-07T09:00:00Z"),
        ]);
        annotations.extend(map(&spec.annotations));
        let mut groups = spec.supplemental_groups.clone();
        groups.extend(spec.fs_group);
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: spec.name.clone(),
                uid: uid.clone(),
                namespace: spec.namespace.into(),
                attempt: 0,
            }),
            hostname: spec.name.clone(),
            log_directory: log_dir,
            labels: map(&[
                ("io.kubernetes.pod.name", &spec.name),
                ("io.kubernetes.pod.namespace", spec.namespace),
                ("io.kubernetes.pod.uid", &uid),
                ("app", &spec.name),
            ]),
            annotations,
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("/kubepods/besteffort/pod{uid}"),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: namespaces(),
                    run_as_user: int(spec.run_as_user),
                    run_as_group: int(spec.run_as_group),
                    supplemental_groups: groups,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut client = Cri::connect();
        let sandbox_id = client
            .rt
            .block_on(client.client.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            }))
            .unwrap_or_else(|e| panic!("RunPodSandbox {}: {e}", spec.name))
            .into_inner()
            .pod_sandbox_id;
        CriPod {
            spec,
            uid,
            sandbox_id,
            containers: Vec::new(),
            config,
            client,
        }
    }

    /// Creates and starts a container with the security context the kubelet computes from
    /// the container's and the pod's; returns its id.
    pub fn container(&mut self, c: &ContainerSpec) -> String {
        let log_path = format!("{}/0.log", c.name);
        std::fs::create_dir_all(format!("{}/{}", self.config.log_directory, c.name)).unwrap();
        let mut groups = self.spec.supplemental_groups.clone();
        groups.extend(self.spec.fs_group);
        let labels = map(&[
            ("io.kubernetes.container.name", c.name),
            ("io.kubernetes.pod.name", &self.spec.name),
            ("io.kubernetes.pod.namespace", self.spec.namespace),
            ("io.kubernetes.pod.uid", &self.uid),
        ]);
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: c.name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            command: c.command.clone(),
            labels,
            annotations: map(&[
                ("io.kubernetes.container.hash", "5d1f2a3b"),
                ("io.kubernetes.container.restartCount", "0"),
                (
                    "io.kubernetes.container.terminationMessagePath",
                    "/dev/termination-log",
                ),
                ("io.kubernetes.container.terminationMessagePolicy", "File"),
                ("io.kubernetes.pod.terminationGracePeriod", "30"),
            ]),
            log_path: log_path.clone(),
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: namespaces(),
                    run_as_user: int(c.run_as_user.or(self.spec.run_as_user)),
                    run_as_group: int(c.run_as_group.or(self.spec.run_as_group)),
                    supplemental_groups: groups,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let cli = &mut self.client;
        let id = cli
            .rt
            .block_on(cli.client.create_container(CreateContainerRequest {
                pod_sandbox_id: self.sandbox_id.clone(),
                config: Some(config),
                sandbox_config: Some(self.config.clone()),
            }))
            .unwrap_or_else(|e| panic!("CreateContainer {}: {e}", c.name))
            .into_inner()
            .container_id;
        cli.rt
            .block_on(cli.client.start_container(StartContainerRequest {
                container_id: id.clone(),
            }))
            .unwrap_or_else(|e| panic!("StartContainer {}: {e}", c.name));
        // The kubelet's legacy symlink, named after pod, namespace, container and id.
        std::fs::create_dir_all("/var/log/containers").unwrap();
        let _ = std::os::unix::fs::symlink(
            format!("{}/{log_path}", self.config.log_directory),
            self.log_link(c.name, &id),
        );
        self.containers.push((c.name.to_string(), id.clone()));
        id
    }

    fn log_link(&self, container: &str, id: &str) -> PathBuf {
        PathBuf::from(format!(
            "/var/log/containers/{}_{}_{container}-{id}.log",
            self.spec.name, self.spec.namespace
        ))
    }

    /// Starts `cmd` in a running container (or the sandbox) as `user`, as `kubectl exec`
    /// does through the runtime (here with containerd's own client).
    pub fn exec(&self, container: &str, user: &str, cmd: &[&str]) {
        static EXECS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = EXECS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("mlexec{}-{n}", std::process::id());
        let mut args = vec![
            "ctr",
            "-n",
            "k8s.io",
            "task",
            "exec",
            "-d",
            "--exec-id",
            &id,
            "--user",
            user,
            container,
        ];
        args.extend(cmd);
        run(&args, None);
    }

    /// The sandbox's (pause) pid, from the runtime's verbose status.
    pub fn sandbox_pid(&mut self) -> u32 {
        let cli = &mut self.client;
        let status = cli
            .rt
            .block_on(cli.client.pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: self.sandbox_id.clone(),
                verbose: true,
            }))
            .unwrap()
            .into_inner();
        let info: serde_json::Value = serde_json::from_str(&status.info["info"]).unwrap();
        info["pid"].as_u64().unwrap() as u32
    }

    /// Loads rules into the pod's network namespace from the host, as istio-cni does (or
    /// as istio-init does from inside: the namespace is the same).
    pub fn load_rules(&mut self, loader: Loader, rules: &str) {
        let pid = self.sandbox_pid().to_string();
        let mut cmd = vec!["nsenter", "-t", &pid, "-n"];
        cmd.extend(loader.args());
        run(&cmd, Some(rules));
    }

    /// The bundle containerd wrote for a container or the sandbox (its `config.json`).
    pub fn bundle(id: &str) -> PathBuf {
        PathBuf::from(format!(
            "/run/containerd/io.containerd.runtime.v2.task/k8s.io/{id}/config.json"
        ))
    }
}

impl Drop for CriPod {
    fn drop(&mut self) {
        let cli = &mut self.client;
        let id = self.sandbox_id.clone();
        let _ = cli
            .rt
            .block_on(cli.client.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            }));
        let _ = cli.rt.block_on(
            cli.client
                .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id }),
        );
        for (name, id) in self.containers.clone() {
            let _ = std::fs::remove_file(self.log_link(&name, &id));
        }
        let _ = std::fs::remove_dir_all(&self.config.log_directory);
    }
}

/// Whether containerd answers; under `make test` (MESHLEAK_REQUIRE_PODMAN=1) it must.
pub fn containerd_ready() -> bool {
    super::tool_ready(
        "containerd",
        concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/containerd-setup.sh"),
    )
}

/// (container name or `(sandbox)`, uid, gid, verdict) of every process living in the
/// namespace, sorted. Visitors (`lives_in`: processes of other namespaces holding sockets
/// made in this one, such as a running agent's sockets for polling legacy tables) are not
/// the pod's.
pub fn judged(ns: &serde_json::Value) -> Vec<(String, u64, u64, String)> {
    super::podman::rows(ns, |p| {
        let c = &p["container"];
        p["lives_in"].is_null().then(|| {
            if c["sandbox"] == true {
                "(sandbox)".to_string()
            } else {
                c["name"].as_str().unwrap_or("?").to_string()
            }
        })
    })
}
