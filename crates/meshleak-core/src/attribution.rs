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
    /// The id of the pod's sandbox container (containerd's `sandbox-id`, CRI-O's
    /// `SandboxID`): where a container's bundle lacks the pod's names, its sandbox's may
    /// hold them, and the sandbox's user is the pod-level securityContext's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_id: Option<String>,
    /// The user the spec configured (`runAsUser`, `runAsGroup`, supplemental groups).
    pub user: Option<ConfiguredUser>,
    /// The file it was read from.
    pub source: String,
}

impl ContainerFacts {
    /// A container known by its id only, for other sources to describe.
    pub fn unnamed(id: &str, runtime: &str, source: &str) -> ContainerFacts {
        ContainerFacts {
            id: id.to_string(),
            runtime: runtime.to_string(),
            pod: None,
            name: None,
            sandbox: false,
            sandbox_id: None,
            user: None,
            source: source.to_string(),
        }
    }
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
    // containerd before 1.6.11 writes no sandbox uid, before 1.5 no sandbox names: the
    // sandbox's log directory (kubelet's `<namespace>_<name>_<uid>`) has them all.
    let logs = ann(&[
        "io.kubernetes.cri.sandbox-log-directory",
        "io.kubernetes.cri-o.LogPath",
    ])
    .and_then(|d| {
        d.trim_end_matches('/')
            .split('/')
            .rev()
            .find_map(from_pod_log_dir)
    });
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
                .or_else(|| logs.as_ref().map(|p| p.uid.clone()))
                .unwrap_or_default(),
        }),
        _ => logs,
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
        sandbox_id: ann(&[
            "io.kubernetes.cri.sandbox-id",
            "io.kubernetes.cri-o.SandboxID",
        ]),
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
        sandbox_id: cfg["Config"]["Labels"]["io.kubernetes.sandbox.id"]
            .as_str()
            .map(str::to_string),
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
        sandbox_id: None,
        user: None,
        source: format!("/var/log/containers/{file}"),
    })
}

/// Fills, field by field, what each container's own runtime file lacks, from the other
/// sources a node has: its sandbox's file (containerd before 1.5 names the pod only
/// there), the pod uid of its cgroup path (`cgroup_uids`, by container id), kubelet's pod
/// log directories (`pod_dirs`: `<namespace>_<name>_<uid>`) and container log symlinks
/// (`logs`: `<pod>_<namespace>_<container>-<id>.log`). A source that answers some fields
/// never stops the search for the others. Containers no runtime file described and no
/// log names (`logs`) are dropped.
pub fn complete(
    facts: &mut Vec<ContainerFacts>,
    cgroup_uids: &std::collections::BTreeMap<String, Option<String>>,
    logs: &[String],
    pod_dirs: &[String],
) {
    let sandboxes: Vec<(String, PodFacts)> = facts
        .iter()
        .filter(|c| c.sandbox)
        .filter_map(|c| Some((c.id.clone(), c.pod.clone()?)))
        .collect();
    for c in facts.iter_mut() {
        let mut pod = c.pod.take();
        let cgroup_uid = cgroup_uids.get(&c.id).cloned().flatten();
        // The kernel's cgroup path outranks a file: a sandbox of another pod is not used.
        let agrees =
            |p: &PodFacts| p.uid.is_empty() || cgroup_uid.as_ref().is_none_or(|u| *u == p.uid);
        if let Some(from_sandbox) = c
            .sandbox_id
            .as_ref()
            .and_then(|s| sandboxes.iter().find(|(id, _)| id == s))
            .map(|(_, p)| p)
            .filter(|p| agrees(p))
        {
            fill(&mut pod, from_sandbox);
        }
        if let (Some(p), Some(uid)) = (&mut pod, &cgroup_uid)
            && p.uid.is_empty()
        {
            p.uid = uid.clone();
        }
        let uid = pod
            .as_ref()
            .map(|p| p.uid.clone())
            .filter(|u| !u.is_empty())
            .or(cgroup_uid);
        let dir = pod_dirs
            .iter()
            .filter_map(|d| from_pod_log_dir(d))
            .find(|d| {
                uid.as_ref().map_or_else(
                    || {
                        pod.as_ref()
                            .is_some_and(|p| p.namespace == d.namespace && p.name == d.name)
                    },
                    |u| *u == d.uid,
                )
            });
        if let Some(d) = &dir {
            fill(&mut pod, d);
        }
        let suffix = format!("-{}.log", c.id);
        if let Some(l) = logs
            .iter()
            .find(|l| l.ends_with(&suffix))
            .and_then(|l| from_log_name(l, uid.as_deref()))
        {
            if let Some(p) = &l.pod {
                fill(&mut pod, p);
            }
            if c.name.is_none() && !c.sandbox {
                c.name = l.name;
            }
        }
        c.pod = pod;
    }
    facts.retain(|c| c.runtime != "logs" || c.pod.is_some() || c.name.is_some());
}

/// Takes what `pod` lacks from `other`, the same pod as another source names it.
fn fill(pod: &mut Option<PodFacts>, other: &PodFacts) {
    match pod {
        None => *pod = Some(other.clone()),
        Some(p) => {
            if p.uid.is_empty() {
                p.uid = other.uid.clone();
            }
        }
    }
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
    /// The pod's sandbox (pause): infrastructure the runtime makes, in no container spec.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sandbox: bool,
    /// The uid and gid the pod-level securityContext (`spec.securityContext.runAsUser`,
    /// `runAsGroup`) sets, which containers that set none inherit: the user the runtime
    /// gave the pod's sandbox. `None` where the sandbox runs as its image's own user
    /// (Kubernetes' pause image: 65535:65535; old ones: root), or is not known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_user: Option<PodUser>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PodUser {
    pub uid: u32,
    pub gid: u32,
}

/// The pod-level user of a container's pod, from its sandbox's file (see
/// [`ContainerRef::pod_user`]).
fn pod_user(c: &ContainerFacts, containers: &[ContainerFacts]) -> Option<PodUser> {
    let sandbox = if c.sandbox {
        c
    } else {
        let id = c.sandbox_id.as_ref()?;
        let s = containers.iter().find(|s| &s.id == id && s.sandbox)?;
        // Another pod's sandbox (a file that names the wrong one) says nothing of this pod.
        let uid = |f: &ContainerFacts| f.pod.as_ref().map(|p| p.uid.clone());
        if uid(s) != uid(c) {
            return None;
        }
        s
    };
    let user = sandbox.user.as_ref()?;
    let image_default = matches!((user.uid, user.gid), (65535, 65535) | (0, 0));
    (!image_default).then_some(PodUser {
        uid: user.uid,
        gid: user.gid,
    })
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
            sandbox: facts.is_some_and(|c| c.sandbox),
            pod_user: facts.and_then(|c| pod_user(c, containers)),
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

    /// Bundles as containerd 1.4 (names only in the sandbox's log directory) and 1.6.0 to
    /// 1.6.10 (no sandbox uid) write them: each field found where the node keeps it.
    #[test]
    fn fields_completed_from_sandbox_cgroup_and_logs() {
        let sandbox_id = "a".repeat(64);
        let app_id = "b".repeat(64);
        let bare_id = "c".repeat(64);
        let v14_sandbox = format!(
            r#"{{"process":{{"user":{{"uid":10002,"gid":1337}}}},"annotations":{{"io.kubernetes.cri.container-type":"sandbox","io.kubernetes.cri.sandbox-id":"{sandbox_id}","io.kubernetes.cri.sandbox-log-directory":"/var/log/pods/shop_batch-0_{UID}"}}}}"#
        );
        let v14_app = format!(
            r#"{{"process":{{"user":{{"uid":10002,"gid":1337}}}},"annotations":{{"io.kubernetes.cri.container-type":"container","io.kubernetes.cri.container-name":"worker","io.kubernetes.cri.sandbox-id":"{sandbox_id}"}}}}"#
        );
        let v16_app = r#"{"annotations":{"io.kubernetes.cri.container-type":"container","io.kubernetes.cri.sandbox-name":"web-0","io.kubernetes.cri.sandbox-namespace":"shop"}}"#;
        let mut facts = vec![
            from_oci_config(&sandbox_id, "containerd", "s", &v14_sandbox).unwrap(),
            from_oci_config(&app_id, "containerd", "a", &v14_app).unwrap(),
            from_oci_config(ID, "containerd", "b", v16_app).unwrap(),
            ContainerFacts::unnamed(&bare_id, "logs", ""),
        ];
        let web_uid = "1e2a4c3b-1d5f-4a6b-9c7d-8e9f0a1b2c3d";
        let cgroup_uids = [
            (ID.to_string(), Some(web_uid.to_string())),
            (bare_id.clone(), None),
        ]
        .into_iter()
        .collect();
        let logs = vec![format!("web-0_shop_sidecar-{bare_id}.log")];
        complete(&mut facts, &cgroup_uids, &logs, &[]);
        let pods: Vec<(Option<String>, String, String)> = facts
            .iter()
            .map(|c| {
                let p = c.pod.clone().unwrap();
                (c.name.clone(), p.name, p.uid)
            })
            .collect();
        let s = |x: &str| x.to_string();
        assert_eq!(
            pods,
            vec![
                (None, s("batch-0"), s(UID)),
                (Some(s("worker")), s("batch-0"), s(UID)),
                (None, s("web-0"), s(web_uid)),
                (Some(s("sidecar")), s("web-0"), String::new()),
            ]
        );
        assert!(facts[0].sandbox);

        // A bundle naming another pod's sandbox: the cgroup's pod uid outranks it, and
        // the pod's log directory names the pod.
        let other_uid = "2e2a4c3b-1d5f-4a6b-9c7d-8e9f0a1b2c3d";
        let mut facts = vec![
            from_oci_config(&sandbox_id, "containerd", "s", &v14_sandbox).unwrap(),
            from_oci_config(&app_id, "containerd", "a", &v14_app).unwrap(),
        ];
        let cgroup_uids = [(app_id.clone(), Some(other_uid.to_string()))]
            .into_iter()
            .collect();
        let dirs = vec![format!("shop_other-0_{other_uid}")];
        complete(&mut facts, &cgroup_uids, &[], &dirs);
        let pod = facts[1].pod.clone().unwrap();
        assert_eq!(
            (pod.name.as_str(), pod.uid.as_str()),
            ("other-0", other_uid)
        );
        // Nor is the other pod's user this pod's.
        assert_eq!(pod_user(&facts[1], &facts), None);
        assert_eq!(
            pod_user(&facts[0], &facts),
            Some(PodUser {
                uid: 10002,
                gid: 1337
            })
        );
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
