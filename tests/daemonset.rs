//! The DaemonSet as shipped (root, podman with runc): the image `make image` built, run by
//! `podman kube play` from the manifest's own pod template (scripts/daemonset-pod.py maps
//! only what needs a kubelet or an API server), with its securityContext, capabilities and
//! mounts, against real podman pods whose Istio rules are in iptables-nft, iptables-legacy
//! and native nftables. Its `/report`, `/metrics`, a `kubectl exec`-style run of the binary
//! inside its container and a `kubectl debug node`-style run of the image must give the host
//! binary's verdicts; its PolicyReports must be valid against the published CRD's schema.
//! A containerd pod (made through the CRI API) is read through the same /host mounts.

mod common;

use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cri::{ContainerSpec, CriPod, PodSpec, containerd_ready, judged};
use common::image;
use common::pod::json;
use common::podman::{PodmanPod, netns_of, podman_ready, processes};
use common::{EXEMPT_10001, Loader, http, meshleak, run};

const IMAGE: &str = concat!("localhost/meshleak:", env!("CARGO_PKG_VERSION"));
const NODE: &str = "node-under-test";

/// The agent's pod, removed on drop.
struct Agent {
    pod: String,
}

impl Agent {
    fn play(pod: &str) -> Agent {
        let manifest = run(
            &[
                "python3",
                concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/daemonset-pod.py"),
                IMAGE,
                NODE,
                pod,
            ],
            None,
        );
        run(
            &["podman", "kube", "play", "--network", "none", "-"],
            Some(&manifest),
        );
        Agent {
            pod: pod.to_string(),
        }
    }

    fn container(&self) -> String {
        format!("{}-meshleak", self.pod)
    }

    /// One request to a listener of the agent, made from inside the pod's network
    /// namespace (the pod has no network: nothing is published).
    fn get(&self, port: u16, path: &str) -> (u16, String) {
        let pid = run(
            &[
                "podman",
                "inspect",
                "--format",
                "{{.State.Pid}}",
                &self.container(),
            ],
            None,
        );
        let ns = std::fs::File::open(format!("/proc/{}/ns/net", pid.trim())).unwrap();
        let path = path.to_string();
        std::thread::spawn(move || {
            // SAFETY: setns on a valid namespace fd changes only this short-lived thread.
            assert_eq!(
                unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            http::request(port, "GET", &path)
        })
        .join()
        .unwrap()
    }

    /// `kubectl exec`: the binary run inside the agent's container.
    fn exec(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new("podman")
            .args(["exec", &self.container(), "/meshleak"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["pod", "rm", "-f", "-t", "0", &self.pod])
            .output();
    }
}

/// Whether the image is here; under `make test` it must be (`make image` builds it).
fn image_ready() -> bool {
    if !podman_ready() {
        return false;
    }
    let here = Command::new("podman")
        .args(["image", "exists", IMAGE])
        .status()
        .is_ok_and(|s| s.success());
    common::required(here, IMAGE, "make image")
}

/// Where the host is inside the agent's container and the debug pod.
const HOST: [&str; 3] = [
    "--proc-root=/host/proc",
    "--host-root=/host",
    "--netns-dir=/host/run/netns",
];

#[test]
fn the_shipped_pod_template_reads_every_backend_as_the_host_binary_does() {
    if !image_ready() {
        return;
    }
    let id = std::process::id();
    let namespace = format!("ds{id}");
    let backends = [
        (
            Loader::IptablesNft,
            include_str!("../testdata/istio-sidecar.rules"),
        ),
        (
            Loader::IptablesLegacy,
            include_str!("../testdata/istio-sidecar.rules"),
        ),
        (
            Loader::Nft,
            include_str!("../testdata/meshes/istio-sidecar-nft.nft"),
        ),
    ];
    let pods: Vec<PodmanPod> = backends
        .iter()
        .enumerate()
        .map(|(i, (loader, rules))| {
            let pod = PodmanPod::in_namespace(&format!("mlds{id}-{i}"), &namespace);
            pod.istio_proxy();
            pod.container("leaky", "10001:1337", &["sleep", "3600"]);
            pod.container("clean", "10001:10001", &["sleep", "3600"]);
            pod.load_rules(*loader, rules);
            pod
        })
        .collect();
    // containerd's pods, read from its bundles under the agent's /host/run: a pod-level
    // runAsGroup that is the proxy's, with its sandbox.
    let mut ctrd = containerd_ready().then(|| {
        let mut pod = CriPod::run(PodSpec {
            namespace: "shop",
            name: format!("mldsc{id}"),
            run_as_user: Some(10002),
            run_as_group: Some(1337),
            ..Default::default()
        });
        pod.container(
            &ContainerSpec::new("istio-proxy", Some(1337), Some(1337))
                .command("httpd -p 15006; exec httpd -f -p 15001"),
        );
        pod.container(&ContainerSpec::new("worker", None, None));
        pod
    });
    if let Some(pod) = &mut ctrd {
        pod.load_rules(
            Loader::IptablesNft,
            include_str!("../testdata/istio-sidecar.rules"),
        );
    }
    let agent = Agent::play(&format!("mlagent{id}"));

    // Ready once a scan has read everything its verdicts need.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = agent.get(9808, "/readyz");
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {status} {body}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let (status, report) = agent.get(9809, "/report?fresh=1");
    assert_eq!(status, 200, "{report}");
    let report = json(&report);
    let (code, exec) = agent.exec(&[&["scan"], &HOST[..], &["-o", "json"]].concat());
    assert_eq!(code, 1, "bypassing processes exist: {exec}");
    let exec = json(&exec);
    // `kubectl debug node/NAME -it --profile=sysadmin --image=IMAGE -- meshleak scan
    // --proc-root /host/proc --host-root /host`: a privileged container in the host's pid and
    // network namespaces with the host's root at /host. podman stands in for it.
    let debug = Command::new("podman")
        .args([
            "run",
            "--rm",
            "--privileged",
            "--pid=host",
            "--network=host",
            "--ipc=host",
            "-v",
            "/:/host:ro",
            IMAGE,
            "scan",
        ])
        .args(HOST)
        .args(["-o", "json"])
        .output()
        .unwrap();
    assert_eq!(debug.status.code(), Some(1), "{debug:?}");
    let debug = json(&String::from_utf8_lossy(&debug.stdout));
    let (code, host, err) = meshleak(&["scan", "-o", "json"]);
    assert_eq!(code, 1, "{err}");
    let host = json(&host);

    let s = |x: &str| x.to_string();
    let expected = vec![
        (s("clean"), 10001, 10001, s("captured")),
        (s("istio-proxy"), 1337, 1337, s("proxy")),
        (s("leaky"), 10001, 1337, s("bypass")),
    ];
    for ((loader, _), pod) in backends.iter().zip(&pods) {
        let on_host = netns_of(&host, &pod.name);
        assert_eq!(processes(on_host), expected, "{loader:?} on the host");
        for (what, r) in [
            ("/report", &report),
            ("exec", &exec),
            ("debug node", &debug),
        ] {
            let ns = netns_of(r, &pod.name);
            assert_eq!(processes(ns), expected, "{loader:?} by {what}: {ns}");
            assert_eq!(ns["mesh"], on_host["mesh"], "{loader:?} by {what}");
            assert_eq!(ns["pod"]["namespace"], namespace.as_str());
        }
    }
    if let Some(pod) = &ctrd {
        let on_host = judged(netns_of(&host, &pod.spec.name));
        assert_eq!(
            on_host,
            vec![
                (s("(sandbox)"), 10002, 1337, s("sandbox")),
                (s("istio-proxy"), 1337, 1337, s("proxy")),
                (s("worker"), 10002, 1337, s("bypass")),
            ],
            "{}",
            netns_of(&host, &pod.spec.name)
        );
        for (what, r) in [
            ("/report", &report),
            ("exec", &exec),
            ("debug node", &debug),
        ] {
            let ns = netns_of(r, &pod.spec.name);
            assert_eq!(judged(ns), on_host, "containerd by {what}: {ns}");
            assert_eq!(ns["pod"]["uid"], pod.uid.as_str(), "{what}");
            assert_eq!(ns["paths"].as_array().map(Vec::len), Some(1), "{what}");
        }
    }
    // `kubectl exec AGENT -- /meshleak pod --pod NS/NAME`, as docs/agent.md says.
    let one = format!("{namespace}/{}", pods[0].name);
    let (_, text) =
        agent.exec(&[&["pod", "--pod", one.as_str()], &HOST[..], &["-o", "json"]].concat());
    let by_pod = json(&text);
    assert_eq!(by_pod["netns"].as_array().map(Vec::len), Some(1), "{text}");
    assert_eq!(processes(netns_of(&by_pod, &pods[0].name)), expected);
    for r in [&report, &exec] {
        assert_eq!(
            r["node"], NODE,
            "the node's name, not the container's hostname"
        );
    }

    // Findings as PolicyReports, from the agent and from the binary, valid against the
    // published CRD's schema: one report for the pods' namespace, a fail per leaky app.
    let (status, policy) = agent.get(9809, "/report?format=policyreport");
    assert_eq!(status, 200, "{policy}");
    let (_, host_policy, _) = meshleak(&["scan", "--node-name", NODE, "-o", "policyreport"]);
    for text in [&policy, &host_policy] {
        run(
            &[
                "python3",
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/scripts/validate-policyreport.py"
                ),
            ],
            Some(text),
        );
        let list = json(text);
        let ours: Vec<&serde_json::Value> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["metadata"]["namespace"] == namespace.as_str())
            .collect();
        assert_eq!(ours.len(), 1, "one report per namespace: {list}");
        assert_eq!(ours[0]["metadata"]["name"], format!("meshleak-{NODE}"));
        let leaky = ours[0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["rule"] == "identity-exempt" && r["result"] == "fail")
            .count();
        assert_eq!(leaky, 3, "{}", ours[0]);
    }
    let (status, _) = agent.get(9809, "/report?format=yaml");
    assert_eq!(status, 400);

    let (status, metrics) = agent.get(9808, "/metrics");
    assert_eq!(status, 200);
    let line = format!("meshleak_bypassing_processes{{namespace=\"{namespace}\"}} 3");
    assert!(metrics.contains(&line), "{line} in {metrics}");
    assert!(
        metrics.contains(&format!("node=\"{NODE}\"")) && metrics.contains("meshleak_build_info"),
        "{metrics}"
    );

    // Between scans, as shipped: the sources the manifest's privileges allow, and a rule
    // inserted into a pod (iptables-nft) reported within 2 s, its committer named.
    let sources = report["agent"]["sources"].as_array().unwrap().clone();
    let mode = |name: &str| {
        sources
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["mode"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    for name in ["namespaces", "rules", "connections"] {
        assert_eq!(mode(name), "events", "{name}: {sources:?}");
    }
    // podman 4.3's kube play does not apply hostPID: process events degrade to polling,
    // and the agent says so.
    assert!(
        ["events", "polling"].contains(&mode("processes").as_str()),
        "{sources:?}"
    );
    let ns = netns_of(&report, &pods[0].name)["inode"].clone();
    let pid = pods[0].infra_pid();
    let at = Instant::now();
    run(
        &[
            &["nsenter", "-t", &pid, "-n", "iptables-nft", "-t", "nat"][..],
            &EXEMPT_10001,
        ]
        .concat(),
        None,
    );
    loop {
        let r = json(&agent.get(9809, "/report").1);
        let seen = r["agent"]["events"].as_array().unwrap().iter().any(|e| {
            e["kind"] == "rules-changed"
                && e["netns"] == ns
                && e["comm"] == "iptables-nft"
                && e["message"]
                    .as_str()
                    .unwrap()
                    .contains("captured -> bypass")
        });
        if seen {
            break;
        }
        assert!(
            at.elapsed() < Duration::from_secs(2),
            "the rule change was not reported within 2 s: {}",
            r["agent"]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The DaemonSet schedules only where its image runs: the os its nodeSelector requires and
/// the arches its nodeAffinity allows are the platforms of the multi-arch image `make image`
/// writes to be pushed (a node of another platform would crash-loop it with "exec format
/// error"); the image the tests here run (this amd64 machine's) is its linux/amd64.
#[test]
fn the_node_selector_is_the_images_platforms() {
    if !image_ready() || !image::layout_ready() {
        return;
    }
    let allowed = run(
        &[
            "python3",
            "-c",
            "import sys, yaml\n\
             spec = yaml.safe_load(open(sys.argv[1]))['spec']['template']['spec']\n\
             [term] = spec['affinity']['nodeAffinity']\
             ['requiredDuringSchedulingIgnoredDuringExecution']['nodeSelectorTerms']\n\
             [arch] = [e for e in term['matchExpressions'] if e['key'] == 'kubernetes.io/arch']\n\
             assert arch['operator'] == 'In', arch\n\
             for a in arch['values']: print(spec['nodeSelector']['kubernetes.io/os'] + '/' + a)",
            concat!(env!("CARGO_MANIFEST_DIR"), "/daemonset/daemonset.yaml"),
        ],
        None,
    );
    let mut allowed: Vec<&str> = allowed.lines().collect();
    allowed.sort_unstable();
    let platforms = image::platforms();
    let mut pushed: Vec<&str> = platforms.iter().map(|(p, _)| p.as_str()).collect();
    pushed.sort_unstable();
    assert_eq!(
        allowed, pushed,
        "the DaemonSet's nodeSelector and nodeAffinity do not allow the image's platforms"
    );
    let here = run(
        &[
            "podman",
            "image",
            "inspect",
            "--format",
            "{{.Os}}/{{.Architecture}}",
            IMAGE,
        ],
        None,
    );
    assert_eq!(here.trim(), "linux/amd64", "{IMAGE}");
}
