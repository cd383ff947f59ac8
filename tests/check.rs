//! `meshleak check` against the kernel: manifests of every workload kind (pod- and
//! container-level ids, a helm-like multi-document stream, a CronJob, a List as
//! `kubectl get -o json` prints it), judged against Istio 1.28's default rules shipped
//! with meshleak; the same rules are loaded into a throwaway pod namespace, and each
//! container's verdict must equal what a process with that identity does on a real
//! connection. The SARIF output must validate against the published 2.1.0 schema.

mod common;

use std::net::SocketAddr;

use common::pod::json;
use common::{Kernel, Lab, Loader, PEER4, is_root, meshleak, run};
use serde_json::Value;

const ISTIO_DEFAULTS: &str = include_str!("../crates/meshleak-core/data/meshes/istio-1.28.rules");

const STREAM: &str = "\
# Source: web/templates/deployment.yaml
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  template:
    spec:
      securityContext:
        runAsUser: 10001
        runAsGroup: 1337
        fsGroup: 2000
      containers:
        - name: app
          image: app:1
        - name: istio-proxy
          image: docker.io/istio/proxyv2:1.28.0
          securityContext: {runAsUser: 1337, runAsGroup: 1337}
        - name: clean
          image: app:1
          securityContext:
            runAsGroup: 10001
            allowPrivilegeEscalation: false
            capabilities: {drop: [ALL]}
---
# Source: web/templates/db.yaml
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: shop}
spec:
  template:
    spec:
      containers:
        - name: db
          image: db:16
          securityContext: {runAsUser: 1337, runAsGroup: 999, allowPrivilegeEscalation: false}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: shop}
spec:
  template:
    spec:
      securityContext: {runAsUser: 10003, runAsGroup: 10003, supplementalGroups: [1337]}
      containers: [{name: agent, image: agent:1}]
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs, namespace: shop}
spec:
  template:
    spec:
      containers:
        - {name: rs, image: rs:1, securityContext: {runAsUser: 10004, runAsGroup: 10004}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: once, namespace: shop}
spec:
  template:
    spec:
      initContainers:
        - {name: setup, image: setup:1, securityContext: {runAsUser: 0, runAsGroup: 1337}}
      containers:
        - {name: once, image: once:1, securityContext: {runAsUser: 10005, runAsGroup: 10005}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: shop}
spec:
  schedule: '0 3 * * *'
  jobTemplate:
    spec:
      template:
        spec:
          containers:
            - {name: backup, image: backup:1, securityContext: {runAsUser: 0, runAsGroup: 0}}
---
apiVersion: v1
kind: Pod
metadata: {name: legacy, namespace: shop}
spec:
  containers:
    - {name: app, image: legacy:1, securityContext: {runAsUser: 1337, runAsGroup: 10007}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
";

const LIST: &str = r#"{
  "apiVersion": "v1",
  "kind": "List",
  "items": [
    {
      "apiVersion": "v1",
      "kind": "Pod",
      "metadata": {"name": "debug", "namespace": "shop"},
      "spec": {
        "containers": [
          {"name": "shell", "image": "busybox", "securityContext": {"runAsUser": 10006, "runAsGroup": 1337}}
        ]
      }
    }
  ]
}
"#;

/// (kind/workload, container, uid, gid, groups, verdict) of a check report.
type Row = (String, String, Option<u64>, Option<u64>, Vec<u64>, String);

fn containers(r: &Value) -> Vec<Row> {
    r["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                format!(
                    "{}/{}",
                    c["kind"].as_str().unwrap(),
                    c["workload"].as_str().unwrap()
                ),
                c["container"].as_str().unwrap().to_string(),
                c["uid"].as_u64(),
                c["gid"].as_u64(),
                c["groups"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|g| g.as_u64().unwrap())
                    .collect(),
                c["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn every_container_is_judged_as_the_kernel_treats_its_identity() {
    if !is_root() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("meshleak-check-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("list")).unwrap();
    std::fs::write(dir.join("stream.yaml"), STREAM).unwrap();
    std::fs::write(dir.join("list/debug.json"), LIST).unwrap();
    let d = dir.to_str().unwrap();
    let (code, out, err) = meshleak(&["check", "--mesh", "istio-1.28", d, "-o", "json"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 1, "containers bypass: {err}\n{out}");
    let r = json(&out);
    let s = |x: &str| x.to_string();
    let got = containers(&r);
    let verdicts: Vec<(String, String, String)> = got
        .iter()
        .map(|(w, c, _, _, _, v)| (w.clone(), c.clone(), v.clone()))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            (s("Pod/debug"), s("shell"), s("bypass")),
            (s("Deployment/web"), s("app"), s("bypass")),
            (s("Deployment/web"), s("istio-proxy"), s("proxy")),
            (s("Deployment/web"), s("clean"), s("captured")),
            (s("StatefulSet/db"), s("db"), s("bypass")),
            (s("DaemonSet/agent"), s("agent"), s("captured")),
            (s("ReplicaSet/rs"), s("rs"), s("captured")),
            (s("Job/once"), s("setup"), s("bypass")),
            (s("Job/once"), s("once"), s("captured")),
            (s("CronJob/nightly"), s("backup"), s("captured")),
            (s("Pod/legacy"), s("app"), s("bypass")),
        ],
        "{out}"
    );

    // The same rules in the kernel, and a real connection per identity.
    let lab = Lab::new();
    lab.load(Loader::IptablesNft, ISTIO_DEFAULTS);
    let peer: SocketAddr = format!("{PEER4}:80").parse().unwrap();
    for (workload, container, uid, gid, groups, verdict) in &got {
        let (Some(uid), Some(gid)) = (uid, gid) else {
            continue;
        };
        let mut all: Vec<u32> = groups.iter().map(|g| *g as u32).collect();
        all.push(*gid as u32);
        let kernel = lab.connect(*uid as u32, *gid as u32, &all, false, peer);
        let expected = match verdict.as_str() {
            "bypass" | "proxy" => Kernel::Bypass,
            "captured" => Kernel::Captured(15001),
            other => panic!("{workload} {container}: verdict {other}"),
        };
        assert_eq!(
            kernel, expected,
            "{workload} {container} ({uid}:{gid} +{groups:?}): meshleak says {verdict}"
        );
    }

    // Each escape cites the field that set it, with its line, and the rule.
    let app = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "identity-exempt" && f["container"] == "app")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(app["file"].as_str().unwrap().ends_with("stream.yaml"));
    assert_eq!(app["line"], 13, "the pod's runAsGroup: {app}");
    assert!(
        app["remedy"]
            .as_str()
            .unwrap()
            .contains("spec.template.spec.securityContext.runAsGroup"),
        "{app}"
    );
    assert_eq!(
        app["rules"][0]["rule"],
        "-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN"
    );
    // Root with the runtime's default capabilities can become the proxy; the container
    // that drops ALL cannot.
    let kinds = |container: &str| -> Vec<String> {
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["container"] == container)
            .map(|f| f["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(kinds("backup").contains(&s("can-become-exempt")), "{out}");
    assert!(kinds("clean").is_empty(), "{out}");
    assert!(
        r["skipped"][0]
            .as_str()
            .unwrap()
            .contains("Service web: not a workload kind"),
        "{out}"
    );
}

#[test]
fn sarif_validates_and_bad_documents_are_errors_naming_file_document_and_line() {
    let dir = std::env::temp_dir().join(format!("meshleak-check-sarif-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("stream.yaml");
    let bad = dir.join("bad.yaml");
    std::fs::write(&good, STREAM).unwrap();
    std::fs::write(
        &bad,
        "kind: Pod\nmetadata: {name: fine}\nspec: {containers: [{name: a, securityContext: {runAsUser: 1337}}]}\n---\nkind: Pod\nmetadata: {name: broken\n",
    )
    .unwrap();
    let (code, sarif, err) = meshleak(&[
        "check",
        "--mesh",
        "istio-1.28",
        good.to_str().unwrap(),
        "-o",
        "sarif",
    ]);
    assert_eq!(code, 1, "{err}");
    let validated = run(
        &[
            "python3",
            concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/validate-sarif.py"),
        ],
        Some(&sarif),
    );
    assert!(validated.contains("valid"), "{validated}");
    let log = json(&sarif);
    let results = log["runs"][0]["results"].as_array().unwrap();
    let exempt = results
        .iter()
        .find(|r| r["ruleId"] == "identity-exempt")
        .unwrap();
    assert_eq!(exempt["level"], "error");
    assert_eq!(
        exempt["locations"][0]["physicalLocation"]["region"]["startLine"],
        13
    );

    // A broken document: an error naming it (exit 2), the one before it still judged.
    let (code, out, err) = meshleak(&[
        "check",
        "--mesh",
        "istio-1.28",
        bad.to_str().unwrap(),
        "-o",
        "json",
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 2, "{out}");
    assert!(
        err.contains("bad.yaml: document 2, line ")
            && err.contains("documents before it were judged"),
        "{err}"
    );
    assert_eq!(json(&out)["containers"][0]["verdict"], "bypass", "{out}");

    // No rules: identities are not judged, and that is not an all-clear.
    let (code, out, _) = meshleak(&["check", "-"]);
    let _ = out;
    assert_eq!(code, 2, "no input on stdin is no manifest");
    let (code, out, _) = {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_meshleak"))
            .args(["check", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .as_ref()
            .unwrap()
            .write_all(STREAM.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        (
            o.status.code().unwrap(),
            String::from_utf8(o.stdout).unwrap(),
            String::from_utf8(o.stderr).unwrap(),
        )
    };
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("identities NOT judged"), "{out}");
}

/// The README's and `make demo`'s check: the example manifest's pod-level runAsGroup.
#[test]
fn the_documented_example_is_caught_with_its_field_and_fix() {
    let (code, out, err) = meshleak(&[
        "check",
        "--mesh",
        "istio-1.28",
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/check/web.yaml"),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        out.starts_with("check: 1 of 2 containers bypass the mesh; rules: --mesh istio-1.28"),
        "{out}"
    );
    assert!(
        out.contains("fix: set spec.template.spec.securityContext.runAsGroup (")
            && out.contains("web.yaml:19) to a gid other than 1337"),
        "{out}"
    );
}

/// What needs no identity: the pod on the node's network, a sidecar turned off, excluded
/// traffic; and an image's user given on the command line.
#[test]
fn opt_outs_host_network_and_image_users() {
    let dir = std::env::temp_dir().join(format!("meshleak-check-optout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("optout.yaml");
    std::fs::write(
        &file,
        "\
kind: Deployment
metadata: {name: node-agent}
spec:
  template:
    spec:
      hostNetwork: true
      containers: [{name: agent, image: agent:1, securityContext: {runAsUser: 10001, runAsGroup: 10001}}]
---
kind: Deployment
metadata: {name: legacy}
spec:
  template:
    metadata:
      labels: {sidecar.istio.io/inject: \"false\"}
    spec:
      containers: [{name: app, image: app:1, securityContext: {runAsUser: 10001, runAsGroup: 10001}}]
---
kind: Deployment
metadata: {name: db-client}
spec:
  template:
    metadata:
      annotations: {traffic.sidecar.istio.io/excludeOutboundIPRanges: 10.0.0.0/8}
    spec:
      containers: [{name: app, image: 'registry.example/app:2'}]
",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let (code, out, err) = meshleak(&["check", "--mesh", "istio-1.28", f, "-o", "json"]);
    assert_eq!(code, 1, "two pods are outside the mesh: {err}\n{out}");
    let r = json(&out);
    let kinds: Vec<&str> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    for k in [
        "host-network",
        "injection-disabled",
        "traffic-excluded",
        "identity-unknown",
    ] {
        assert!(kinds.contains(&k), "{k} in {out}");
    }
    let verdicts: Vec<&str> = r["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, vec!["unmeshed", "unmeshed", "unknown"], "{out}");
    // The image runs as the proxy's gid: a bypass; as another id: captured.
    let (code, out, _) = meshleak(&[
        "check",
        "--mesh",
        "istio-1.28",
        "--image-user",
        "registry.example/app:2=10001:1337",
        f,
        "-o",
        "json",
    ]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(json(&out)["containers"][2]["verdict"], "bypass");
    let (_, out, _) = meshleak(&[
        "check",
        "--mesh",
        "istio-1.28",
        "--image-user",
        "registry.example/app:2=10001:10001",
        f,
        "-o",
        "json",
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(json(&out)["containers"][2]["verdict"], "captured");
}

/// Manifests written to slip past a check, as a red-team pass wrote them: each must come
/// out as what the cluster would run.
#[test]
fn manifests_written_to_hide_are_read_as_the_cluster_reads_them() {
    let text = "\
kind: ConfigMap
metadata: {name: c}
---
\u{feff}kind: Pod
metadata: {name: bom}
spec: {containers: [{name: a, image: a:1, securityContext: {runAsUser: 1337, runAsGroup: 1337}}]}
---# a comment right after the separator
{\"kind\": \"Pod\", \"metadata\": {\"name\": \"json\"}, \"spec\": {\"containers\": [{\"name\": \"a\", \"image\": \"a:1\", \"securityContext\": {\"runAsUser\": 10001, \"runAsGroup\": 02471}}]}}
---
x: &exempt {runAsGroup: 1337}
kind: Pod
metadata: {name: merged}
spec:
  containers:
    - name: a
      image: a:1
      securityContext:
        runAsUser: 10001
        runAsGroup: 10001
        <<: *exempt
---
kind: Pod
metadata: {name: named-like-proxy}
spec: {containers: [{name: envoy, image: team/app:1, securityContext: {runAsUser: 1337, runAsGroup: 1337}}]}
---
kind: Pod
metadata: {name: tagged, annotations: {sidecar.istio.io/interceptionMode: NONE}}
spec:
  hostNetwork: !!bool \"true\"
  containers: [{name: a, image: a:1, securityContext: {runAsUser: 10001, runAsGroup: 10001}}]
---
kind: Pod
metadata: {name: cap-prefix}
spec: {containers: [{name: a, image: a:1, securityContext: {runAsUser: 0, runAsGroup: 0, allowPrivilegeEscalation: false, capabilities: {drop: [CAP_SETUID, CAP_SETGID, CAP_NET_RAW]}}}]}
";
    let dir = std::env::temp_dir().join(format!("meshleak-check-hide-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hide.yaml");
    std::fs::write(&file, text).unwrap();
    let (code, out, err) = meshleak(&[
        "check",
        "--mesh",
        "istio-1.28",
        file.to_str().unwrap(),
        "-o",
        "json",
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 1, "{err}\n{out}");
    let r = json(&out);
    let s = |x: &str| x.to_string();
    let verdicts: Vec<(String, String)> = r["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["workload"].as_str().unwrap().to_string(),
                c["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        vec![
            (s("bom"), s("bypass")),
            (s("json"), s("bypass")),
            (s("merged"), s("bypass")),
            (s("named-like-proxy"), s("bypass")),
            (s("tagged"), s("unmeshed")),
            (s("cap-prefix"), s("captured")),
        ],
        "{out}"
    );
    let kinds = |workload: &str| -> Vec<String> {
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["workload"] == format!("Pod/{workload}"))
            .map(|f| f["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(kinds("tagged").contains(&s("host-network")), "{out}");
    assert!(kinds("tagged").contains(&s("injection-disabled")), "{out}");
    // containerd makes CAP_CAP_SETUID of it: nothing is dropped.
    assert!(
        kinds("cap-prefix").contains(&s("can-become-exempt")),
        "{out}"
    );
    assert!(
        kinds("cap-prefix").contains(&s("can-send-below-mesh")),
        "{out}"
    );
}
