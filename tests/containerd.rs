//! End to end on containerd (root; Debian's containerd 1.6 with runc, the cgroupfs driver
//! and the CNI bridge plugin, started by `make setup`): pods made through the CRI API as
//! the kubelet makes them (tests/common/cri.rs), Istio's rules loaded into each sandbox's
//! namespace with iptables-nft, iptables-legacy or native nftables, as istio-init and
//! istio-cni load them. meshleak must name every pod, container and the sandbox, judge
//! each process as the rules decide, and say which spec field set an escaping identity;
//! also from bundles as older containerd versions and k3s write them.

mod common;

use std::path::Path;

use common::cri::{ContainerSpec, CriPod, PodSpec, containerd_ready, judged};
use common::pod::json;
use common::podman::netns_of;
use common::{Loader, meshleak};
use serde_json::Value;

const ISTIO: &str = include_str!("../testdata/istio-sidecar.rules");
const ISTIO_NFT: &str = include_str!("../testdata/meshes/istio-sidecar-nft.nft");
const PROXY_CMD: &str = "httpd -p 15006; exec httpd -f -p 15001";

/// The pods of this test: a 3-container Istio pod with pod-level fsGroup and
/// supplementalGroups (iptables-nft), a pod whose pod-level runAsGroup is the proxy's
/// (iptables-legacy), a pod with the proxy's gid as a supplementary group only (native
/// nftables), and a pod without a mesh.
struct Pods {
    web: CriPod,
    batch: CriPod,
    edge: CriPod,
    plain: CriPod,
}

fn pods(tag: &str) -> Pods {
    let spec = |name: &str| PodSpec {
        namespace: "shop",
        name: format!("{name}-{tag}"),
        ..Default::default()
    };
    let mut web = CriPod::run(PodSpec {
        fs_group: Some(2000),
        supplemental_groups: vec![3000],
        annotations: vec![("sidecar.istio.io/status", "{}")],
        ..spec("web")
    });
    web.container(&ContainerSpec::new("istio-proxy", Some(1337), Some(1337)).command(PROXY_CMD));
    web.container(&ContainerSpec::new("app", Some(10001), Some(10001)));
    web.container(&ContainerSpec::new("leaky", Some(10001), Some(1337)));
    web.load_rules(Loader::IptablesNft, ISTIO);
    // Processes started later as other identities, as `kubectl exec` (or `ctr task exec`)
    // starts them: one in the app container as the proxy's gid, one hiding in the sandbox
    // as the proxy's uid and gid, where only the pause should run.
    let app = web.containers[1].1.clone();
    web.exec(&app, "10001:1337", &["sleep", "3600"]);
    let sandbox = web.sandbox_id.clone();
    let rootfs = CriPod::bundle(&sandbox).with_file_name("rootfs/busybox");
    std::fs::copy("/bin/busybox", rootfs).unwrap();
    web.exec(&sandbox, "1337:1337", &["/busybox", "sleep", "3600"]);

    let mut batch = CriPod::run(PodSpec {
        run_as_user: Some(10002),
        run_as_group: Some(1337),
        ..spec("batch")
    });
    batch.container(&ContainerSpec::new("istio-proxy", Some(1337), Some(1337)).command(PROXY_CMD));
    batch.container(&ContainerSpec::new("worker", None, None));
    batch.container(&ContainerSpec::new("reporter", None, None));
    batch.load_rules(Loader::IptablesLegacy, ISTIO);

    let mut edge = CriPod::run(PodSpec {
        supplemental_groups: vec![1337],
        ..spec("edge")
    });
    edge.container(&ContainerSpec::new("istio-proxy", Some(1337), Some(1337)).command(PROXY_CMD));
    edge.container(&ContainerSpec::new("app", Some(10001), Some(10001)));
    edge.load_rules(Loader::Nft, ISTIO_NFT);

    let mut plain = CriPod::run(spec("plain"));
    plain.container(&ContainerSpec::new("tool", Some(10001), Some(1337)));
    // httpd forks into the background before the proxy's listener is there.
    std::thread::sleep(std::time::Duration::from_millis(500));
    Pods {
        web,
        batch,
        edge,
        plain,
    }
}

fn findings<'a>(ns: &'a Value, kind: &str) -> Vec<&'a Value> {
    ns["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == kind)
        .collect()
}

fn s(x: &str) -> String {
    x.to_string()
}

/// Every pod's names, uid, containers and verdicts, process by process, from the report.
fn assert_pods(r: &Value, p: &Pods, how: &str) {
    for pod in [&p.web, &p.batch, &p.edge, &p.plain] {
        let ns = netns_of(r, &pod.spec.name);
        assert_eq!(ns["pod"]["namespace"], "shop", "{how}: {ns}");
        assert_eq!(ns["pod"]["uid"], pod.uid.as_str(), "{how}: {ns}");
    }
    let web = netns_of(r, &p.web.spec.name);
    assert_eq!(
        judged(web),
        vec![
            (s("(sandbox)"), 1337, 1337, s("bypass")),
            (s("(sandbox)"), 65535, 65535, s("sandbox")),
            (s("app"), 10001, 1337, s("bypass")),
            (s("app"), 10001, 10001, s("captured")),
            (s("istio-proxy"), 1337, 1337, s("proxy")),
            (s("leaky"), 10001, 1337, s("bypass")),
        ],
        "{how}: {web}"
    );
    let batch = netns_of(r, &p.batch.spec.name);
    assert_eq!(
        judged(batch),
        vec![
            (s("(sandbox)"), 10002, 1337, s("sandbox")),
            (s("istio-proxy"), 1337, 1337, s("proxy")),
            (s("reporter"), 10002, 1337, s("bypass")),
            (s("worker"), 10002, 1337, s("bypass")),
        ],
        "{how}: {batch}"
    );
    let edge = netns_of(r, &p.edge.spec.name);
    assert_eq!(
        judged(edge),
        vec![
            (s("(sandbox)"), 65535, 65535, s("sandbox")),
            (s("app"), 10001, 10001, s("captured")),
            (s("istio-proxy"), 1337, 1337, s("proxy")),
        ],
        "{how}: {edge}"
    );
    let plain = netns_of(r, &p.plain.spec.name);
    assert_eq!(
        judged(plain),
        vec![
            (s("(sandbox)"), 65535, 65535, s("sandbox")),
            (s("tool"), 10001, 1337, s("unmeshed")),
        ],
        "{how}: {plain}"
    );
}

#[test]
fn containerd_pods_made_as_the_kubelet_makes_them() {
    if !containerd_ready() {
        return;
    }
    let tag = std::process::id().to_string();
    let p = pods(&tag);

    let (code, out, err) = meshleak(&["scan", "-o", "json"]);
    assert_eq!(code, 1, "bypassing processes exist: {err}");
    let r = json(&out);
    assert_pods(&r, &p, "scan");

    // The CNI plugin mounts each pod's namespace under /var/run/netns, a symlink to /run:
    // one path, not one per spelling.
    let web = netns_of(&r, &p.web.spec.name);
    assert_eq!(
        web["paths"].as_array().unwrap().len(),
        1,
        "{}",
        web["paths"]
    );

    // The container-level runAsGroup escapes, said in its own terms; the pod's
    // supplementalGroups and fsGroup are not blamed for the gid the runtime adds.
    let remedy_of = |comm_container: &str, uid: u64, gid: u64| {
        let pid = web["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| {
                p["uid"] == uid
                    && p["gid"] == gid
                    && (p["container"]["name"] == comm_container
                        || (comm_container == "(sandbox)" && p["container"]["sandbox"] == true))
            })
            .unwrap_or_else(|| panic!("{comm_container} {uid}:{gid} in {web}"))["pid"]
            .clone();
        findings(web, "identity-exempt")
            .into_iter()
            .find(|f| f["pid"] == pid)
            .unwrap_or_else(|| panic!("no identity-exempt for {comm_container}: {web}"))["remedy"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(findings(web, "identity-exempt").len(), 3, "{web}");
    let remedy = remedy_of("leaky", 10001, 1337);
    assert!(
        remedy.contains("container leaky's securityContext.runAsGroup"),
        "{remedy}"
    );
    assert!(!remedy.contains("supplementalGroups"), "{remedy}");
    // The switched process: its spec sets another gid, so no field of the spec is blamed.
    let remedy = remedy_of("app", 10001, 1337);
    assert!(remedy.contains("switched to it at run time"), "{remedy}");
    assert!(!remedy.contains("securityContext.runAsGroup"), "{remedy}");
    // Only the pause is the sandbox: what else runs there is judged as any process.
    let remedy = remedy_of("(sandbox)", 1337, 1337);
    assert!(remedy.contains("switched to it at run time"), "{remedy}");

    // The pod-level runAsGroup: one finding about the pod, naming each container it
    // reaches, with the pod-level remedy; the sandbox is no app.
    let batch = netns_of(&r, &p.batch.spec.name);
    let pod_level = findings(batch, "identity-exempt");
    assert_eq!(pod_level.len(), 1, "{batch}");
    let f = pod_level[0];
    let message = f["message"].as_str().unwrap();
    assert!(
        message.contains("reporter") && message.contains("worker") && !message.contains("pause"),
        "{f}"
    );
    let remedy = f["remedy"].as_str().unwrap();
    assert!(
        remedy.contains("the pod's spec.securityContext.runAsGroup"),
        "{remedy}"
    );
    assert!(!remedy.contains("container's"), "{remedy}");

    // A supplementary group the rules do not match (no --suppl-groups) changes nothing.
    let edge = netns_of(&r, &p.edge.spec.name);
    assert!(findings(edge, "identity-exempt").is_empty(), "{edge}");

    // The table: the sandbox marked, the headline counting apps only.
    let (_, table, _) = meshleak(&["scan", "--color", "never"]);
    let headline = table.lines().next().unwrap();
    let section = table
        .split("\n\n")
        .find(|b| b.starts_with(&format!("pod shop/{}", p.batch.spec.name)))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(section.contains("(sandbox)"), "{section}");
    assert!(
        section.contains("reporter") && section.contains("worker"),
        "{section}"
    );
    assert!(!headline.contains("no process bypasses"), "{headline}");

    // One pod, by name and by container id.
    let by_name = format!("shop/{}", p.batch.spec.name);
    let (code, out, err) = meshleak(&["pod", "--pod", &by_name, "-o", "json"]);
    assert_eq!(code, 1, "{err}");
    let one = json(&out);
    assert_eq!(judged(netns_of(&one, &p.batch.spec.name)), judged(batch));
    let (worker_id, _) = (&p.batch.containers[1].1, ());
    let (code, out, err) = meshleak(&["pod", "--container", worker_id, "-o", "json"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        judged(netns_of(&json(&out), &p.batch.spec.name)),
        judged(batch)
    );
    let (code, out, _) = meshleak(&[
        "pod",
        "--pod",
        &format!("shop/{}", p.edge.spec.name),
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{out}");

    // Before deploy: a manifest judged against the rules of a live pod of the same mesh
    // (its iptables-legacy rules, from a snapshot), as `meshleak check` does in CI.
    let snap = std::env::temp_dir().join(format!("meshleak-ctrd-snap-{tag}.json"));
    let manifest = snap.with_extension("yaml");
    let (code, _, err) = meshleak(&["collect", "-f", snap.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(
        &manifest,
        "kind: Deployment\nmetadata: {name: next}\nspec:\n  template:\n    spec:\n      securityContext: {runAsUser: 10002, runAsGroup: 1337}\n      containers: [{name: worker, image: w:2}]\n",
    )
    .unwrap();
    let like = format!("shop/{}", p.batch.spec.name);
    let (code, out, err) = meshleak(&[
        "check",
        "--snapshot",
        snap.to_str().unwrap(),
        "--like",
        &like,
        manifest.to_str().unwrap(),
        "-o",
        "json",
    ]);
    let _ = std::fs::remove_file(&snap);
    let _ = std::fs::remove_file(&manifest);
    assert_eq!(code, 1, "{err}");
    let checked = json(&out);
    assert_eq!(checked["containers"][0]["verdict"], "bypass", "{out}");
    assert_eq!(
        checked["containers"][0]["rules"][0]["backend"], "iptables-legacy",
        "{out}"
    );

    // The same pods from bundles as containerd 1.6.0-1.6.10 (no sandbox uid) and 1.4 (no
    // sandbox names either) write them, and where k3s and RKE2 keep them.
    let root = HostRoot::new(&tag);
    for (version, strip, state) in [
        (
            "1.6.0-1.6.10",
            &["io.kubernetes.cri.sandbox-uid"][..],
            "run/containerd",
        ),
        (
            "1.4",
            &[
                "io.kubernetes.cri.sandbox-uid",
                "io.kubernetes.cri.sandbox-name",
                "io.kubernetes.cri.sandbox-namespace",
                "io.kubernetes.cri.image-name",
            ][..],
            "run/containerd",
        ),
        ("k3s", &[][..], "run/k3s/containerd"),
    ] {
        root.write(&p, strip, state);
        let (_, out, err) = meshleak(&[
            "scan",
            "-o",
            "json",
            "--host-root",
            root.0.to_str().unwrap(),
        ]);
        assert_pods(&json(&out), &p, &format!("{version}: {err}"));
    }
}

/// A copy of the host's runtime state and kubelet logs for the test's pods, with the
/// bundles edited as another containerd version writes them.
struct HostRoot(std::path::PathBuf);

impl HostRoot {
    fn new(tag: &str) -> HostRoot {
        HostRoot(std::env::temp_dir().join(format!("meshleak-ctrd-root-{tag}")))
    }

    fn write(&self, p: &Pods, strip: &[&str], state: &str) {
        let _ = std::fs::remove_dir_all(&self.0);
        for pod in [&p.web, &p.batch, &p.edge, &p.plain] {
            let ids = std::iter::once(&pod.sandbox_id).chain(pod.containers.iter().map(|c| &c.1));
            for id in ids {
                let text = std::fs::read_to_string(CriPod::bundle(id)).unwrap();
                let mut spec: Value = serde_json::from_str(&text).unwrap();
                let ann = spec["annotations"].as_object_mut().unwrap();
                for k in strip {
                    ann.remove(*k);
                }
                let to = self.0.join(format!(
                    "{state}/io.containerd.runtime.v2.task/k8s.io/{id}/config.json"
                ));
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::write(to, spec.to_string()).unwrap();
            }
            for dir in ["var/log/pods", "var/log/containers"] {
                copy_names(&Path::new("/").join(dir), &self.0.join(dir));
            }
        }
    }
}

impl Drop for HostRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The entries of a kubelet log directory, as empty directories and files.
fn copy_names(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let name = e.file_name();
        if e.path().is_dir() {
            std::fs::create_dir_all(to.join(&name)).unwrap();
        } else {
            std::fs::write(to.join(&name), "").unwrap();
        }
    }
}
