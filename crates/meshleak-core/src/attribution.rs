//! Which pod and container a process belongs to, without the API server: container ids and
//! pod uids from cgroup paths, names and configured users from the runtimes' own files
//! (containerd's and CRI-O's OCI `config.json`, docker's `config.v2.json`) or, failing
//! those, kubelet's log symlinks. Pure: the collector reads the files, this decodes them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One container as its runtime describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerFacts {
    /// The full id (64 hex digits).
    pub id: String,
    /// `containerd`, `cri-o` (also podman, which keeps CRI-O's layout), `docker`, or `logs`
    /// (names from kubelet's log symlinks only).
    pub runtime: String,
    pub pod: Option<PodFacts>,
    /// The container's name in the pod spec (`istio-proxy`).
    pub name: Option<String>,
    /// The pod's sandbox (pause) container rather than one of the spec's.
    pub sandbox: bool,
    /// The user the spec configured (`runAsUser`, `runAsGroup`, supplemental groups).
    pub user: Option<ConfiguredUser>,
    /// The file it was read from.
    pub source: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodFacts {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfiguredUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// What a cgroup path says: the pod's uid (kubelet's `pod<uid>` component) and the
/// container id (`cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope`,
/// `libpod-<id>`, or a bare id under the pod's directory).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupIds {
    pub pod_uid: Option<String>,
    pub container_id: Option<String>,
}

/// Reads `/proc/PID/cgroup` text (v1: one line per hierarchy; v2: `0::/path`).
pub fn from_cgroup(text: &str) -> CgroupIds {
    let mut out = CgroupIds::default();
    for line in text.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        for part in path.split('/').rev() {
            if out.container_id.is_none() {
                out.container_id = container_id(part);
            }
            if out.pod_uid.is_none() {
                out.pod_uid = pod_uid(part);
            }
        }
        if out.container_id.is_some() {
            break;
        }
    }
    out
}

fn container_id(part: &str) -> Option<String> {
    let part = part.strip_suffix(".scope").unwrap_or(part);
    // conmon's own cgroups (`crio-conmon-<id>`, `libpod-conmon-<id>`) are not the container.
    if part.contains("conmon") {
        return None;
    }
    let id = ["cri-containerd-", "crio-", "docker-", "libpod-"]
        .iter()
        .find_map(|p| part.strip_prefix(p))
        .unwrap_or(part);
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

/// `pod1234abcd-...` (cgroupfs) or `kubepods-burstable-pod1234abcd_....slice` (systemd).
fn pod_uid(part: &str) -> Option<String> {
    let part = part.strip_suffix(".slice").unwrap_or(part);
    let at = part.rfind("pod")?;
    let uid = part[at + 3..].replace('_', "-");
    let shape = uid.len() == 36
        && uid.bytes().enumerate().all(|(i, b)| {
            if [8, 13, 18, 23].contains(&i) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        });
    shape.then_some(uid)
}

/// An OCI runtime spec (`config.json`) with containerd's (`io.kubernetes.cri.*`) or CRI-O's
/// (`io.kubernetes.pod.*`, `io.kubernetes.container.name`) annotations.
pub fn from_oci_config(
    id: &str,
    runtime: &str,
    source: &str,
    text: &str,
) -> Result<ContainerFacts, String> {
    let spec: Value =
        serde_json::from_str(text).map_err(|e| format!("{source} is not valid JSON: {e}"))?;
    let ann = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| spec["annotations"][*k].as_str())
            .map(str::to_string)
    };
    let pod = match (
        ann(&[
            "io.kubernetes.cri.sandbox-namespace",
            "io.kubernetes.pod.namespace",
        ]),
        ann(&["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"]),
    ) {
        (Some(namespace), Some(name)) => Some(PodFacts {
            namespace,
            name,
            uid: ann(&["io.kubernetes.cri.sandbox-uid", "io.kubernetes.pod.uid"])
                .unwrap_or_default(),
        }),
        _ => None,
    };
    let kind = ann(&[
        "io.kubernetes.cri.container-type",
        "io.kubernetes.cri-o.ContainerType",
    ]);
    let user = &spec["process"]["user"];
    let num = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    let user = match (num(&user["uid"]), num(&user["gid"])) {
        (Some(uid), Some(gid)) => Some(ConfiguredUser {
            uid,
            gid,
            additional_gids: user["additionalGids"]
                .as_array()
                .map(|a| a.iter().filter_map(num).collect())
                .unwrap_or_default(),
        }),
        _ => None,
    };
    Ok(ContainerFacts {
        id: id.to_string(),
        runtime: runtime.to_string(),
        pod,
        name: ann(&[
            "io.kubernetes.cri.container-name",
            "io.kubernetes.container.name",
        ]),
        sandbox: kind.as_deref() == Some("sandbox"),
        user,
        source: source.to_string(),
    })
}

/// Docker's `config.v2.json` (cri-dockerd): kubelet's labels, and `Config.User` when it
/// is numeric (`1337` or `1337:1337`; names are resolved only inside the image).
pub fn from_docker_config(id: &str, source: &str, text: &str) -> Result<ContainerFacts, String> {
    let cfg: Value =
        serde_json::from_str(text).map_err(|e| format!("{source} is not valid JSON: {e}"))?;
    let label = |k: &str| cfg["Config"]["Labels"][k].as_str().map(str::to_string);
    let pod = match (
        label("io.kubernetes.pod.namespace"),
        label("io.kubernetes.pod.name"),
    ) {
        (Some(namespace), Some(name)) => Some(PodFacts {
            namespace,
            name,
            uid: label("io.kubernetes.pod.uid").unwrap_or_default(),
        }),
        _ => None,
    };
    let user = cfg["Config"]["User"].as_str().and_then(|u| {
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        Some(ConfiguredUser {
            uid: uid.parse().ok()?,
            gid: gid.parse().ok()?,
            additional_gids: Vec::new(),
        })
    });
    Ok(ContainerFacts {
        id: id.to_string(),
        runtime: "docker".into(),
        pod,
        name: label("io.kubernetes.container.name"),
        sandbox: label("io.kubernetes.docker.type").as_deref() == Some("podsandbox"),
        user,
        source: source.to_string(),
    })
}

/// kubelet's `/var/log/containers/<pod>_<namespace>_<container>-<id>.log` symlink name: the
/// names when no runtime file is readable. Pod and namespace names cannot hold `_`.
pub fn from_log_name(file: &str, pod_uid: Option<&str>) -> Option<ContainerFacts> {
    let stem = file.strip_suffix(".log")?;
    let (rest, id) = stem.rsplit_once('-')?;
    container_id(id)?;
    let mut parts = rest.splitn(3, '_');
    let (name, namespace, container) = (parts.next()?, parts.next()?, parts.next()?);
    Some(ContainerFacts {
        id: id.to_string(),
        runtime: "logs".into(),
        pod: Some(PodFacts {
            namespace: namespace.into(),
            name: name.into(),
            uid: pod_uid.unwrap_or_default().into(),
        }),
        name: Some(container.into()),
        sandbox: false,
        user: None,
        source: format!("/var/log/containers/{file}"),
    })
}

/// A process's container as reports show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContainerRef {
    pub id: String,
    pub name: Option<String>,
    /// Where the names came from: a runtime (`containerd`, `cri-o`, `docker`), kubelet's
    /// `logs`, or `cgroup` (the id only).
    pub runtime: String,
    /// The user the spec configured; a live identity that differs was changed at run time.
    pub configured_user: Option<ConfiguredUser>,
    pub proxy_name: bool,
}

/// The container a cgroup names, described by its runtime when known.
pub(crate) fn container_of(
    cgroup: &str,
    containers: &[ContainerFacts],
) -> Option<(ContainerRef, Option<PodFacts>)> {
    let ids = from_cgroup(cgroup);
    let id = ids.container_id?;
    let facts = containers.iter().find(|c| c.id == id);
    let name = facts.and_then(|c| c.name.clone());
    Some((
        ContainerRef {
            proxy_name: name
                .as_deref()
                .is_some_and(crate::meshes::is_proxy_container),
            name,
            runtime: facts.map_or("cgroup", |c| c.runtime.as_str()).to_string(),
            configured_user: facts.and_then(|c| c.user.clone()),
            id,
        },
        facts.and_then(|c| c.pod.clone()),
    ))
}

/// `/var/log/pods/<namespace>_<name>_<uid>` directory name: the pod's names from its uid.
pub fn from_pod_log_dir(dir: &str) -> Option<PodFacts> {
    let mut parts = dir.splitn(3, '_');
    let (namespace, name, uid) = (parts.next()?, parts.next()?, parts.next()?);
    pod_uid(&format!("pod{uid}"))?;
    Some(PodFacts {
        namespace: namespace.into(),
        name: name.into(),
        uid: uid.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "5f13a72eb08c97030fc5a1f86f1284a834e7d7fc3a817bd5e32a860a3fe06a3d";
    const UID: &str = "0e2a4c3b-1d5f-4a6b-9c7d-8e9f0a1b2c3d";

    #[test]
    fn cgroup_paths_of_every_driver_and_runtime() {
        let cases = [
            format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
                UID.replace('-', "_")
            ),
            format!(
                "12:memory:/kubepods/besteffort/pod{UID}/{ID}\n11:cpu:/kubepods/besteffort/pod{UID}/{ID}"
            ),
            format!(
                "0::/kubepods.slice/kubepods-pod{}.slice/crio-{ID}.scope",
                UID.replace('-', "_")
            ),
            format!("0::/kubepods/pod{UID}/docker-{ID}.scope"),
        ];
        for text in &cases {
            assert_eq!(
                from_cgroup(text),
                CgroupIds {
                    pod_uid: Some(UID.into()),
                    container_id: Some(ID.into())
                },
                "{text}"
            );
        }
        let podman = format!(
            "9:name=systemd:/libpod_parent/92f3ba/libpod-{ID}\n8:pids:/libpod_parent/92f3ba/libpod-{ID}"
        );
        assert_eq!(from_cgroup(&podman).container_id.as_deref(), Some(ID));
        assert_eq!(
            from_cgroup(&format!("0::/system.slice/crio-conmon-{ID}.scope")),
            CgroupIds::default()
        );
        assert_eq!(
            from_cgroup("0::/user.slice/session-3.scope"),
            CgroupIds::default()
        );
        assert_eq!(from_cgroup(""), CgroupIds::default());
    }

    #[test]
    fn runtime_files_and_log_names() {
        let containerd = r#"{"process":{"user":{"uid":10001,"gid":1337,"additionalGids":[1337,5]}},
            "annotations":{"io.kubernetes.cri.container-type":"container","io.kubernetes.cri.container-name":"app",
            "io.kubernetes.cri.sandbox-name":"web-0","io.kubernetes.cri.sandbox-namespace":"shop","io.kubernetes.cri.sandbox-uid":"u1"}}"#;
        let c = from_oci_config(ID, "containerd", "f", containerd).unwrap();
        assert_eq!(c.name.as_deref(), Some("app"));
        assert_eq!(
            c.pod,
            Some(PodFacts {
                namespace: "shop".into(),
                name: "web-0".into(),
                uid: "u1".into()
            })
        );
        assert_eq!(
            c.user,
            Some(ConfiguredUser {
                uid: 10001,
                gid: 1337,
                additional_gids: vec![1337, 5]
            })
        );
        assert!(!c.sandbox);
        let sandbox = r#"{"annotations":{"io.kubernetes.cri-o.ContainerType":"sandbox","io.kubernetes.pod.name":"web-0","io.kubernetes.pod.namespace":"shop"}}"#;
        assert!(from_oci_config(ID, "cri-o", "f", sandbox).unwrap().sandbox);
        let err = from_oci_config(ID, "cri-o", "/run/x/config.json", "{").unwrap_err();
        assert!(
            err.contains("/run/x/config.json is not valid JSON"),
            "{err}"
        );

        let docker = r#"{"Config":{"User":"1337:1337","Labels":{"io.kubernetes.container.name":"istio-proxy",
            "io.kubernetes.pod.name":"web-0","io.kubernetes.pod.namespace":"shop","io.kubernetes.pod.uid":"u1","io.kubernetes.docker.type":"container"}}}"#;
        let d = from_docker_config(ID, "f", docker).unwrap();
        assert_eq!(
            (d.name.as_deref(), d.user.as_ref().map(|u| (u.uid, u.gid))),
            (Some("istio-proxy"), Some((1337, 1337)))
        );
        let named = r#"{"Config":{"User":"nginx","Labels":{}}}"#;
        assert_eq!(from_docker_config(ID, "f", named).unwrap().user, None);

        let l = from_log_name(&format!("web-0_shop_istio-proxy-{ID}.log"), Some("u1")).unwrap();
        assert_eq!(
            (l.pod.unwrap().name, l.name.unwrap()),
            ("web-0".to_string(), "istio-proxy".to_string())
        );
        assert!(from_log_name("random.log", None).is_none());
    }
}
