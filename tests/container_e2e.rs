//! End to end on a real container runtime (root, podman with runc): pods whose containers
//! carry CRI-O style Kubernetes annotations, sharing one network namespace like a pod; the
//! Istio rules applied into it from the host, as istio-cni does. The scan must name each
//! pod, container and the proxy, and give the verdicts the rules decide.

mod common;

use common::pod::json;
use common::podman::{PodmanPod, netns_of, podman_ready, processes};
use common::{Loader, meshleak, run};

const ISTIO: &str = include_str!("../testdata/istio-sidecar.rules");

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
    let proxy = pod.istio_proxy();
    let leaky = pod.container("leaky", "10001:1337", &["sleep", "3600"]);
    pod.container("clean", "10001:10001", &["sleep", "3600"]);
    pod.container("as-proxy-uid", "1337", &["sleep", "3600"]);
    pod.load_rules(Loader::IptablesNft, ISTIO);
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
    wrong.load_rules(Loader::IptablesNft, ISTIO);
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
