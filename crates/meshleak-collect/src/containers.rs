//! Container runtime metadata from the host's files, for the containers whose ids the
//! processes' cgroups name: containerd's task bundles, CRI-O's (and podman's) container
//! storage, docker's container configs (and k3s's and RKE2's containerd under /run/k3s),
//! completed field by field from sandboxes' files, cgroup paths and kubelet's log names.
//! All paths are under `host_root` (`/host` when meshleak runs in a pod).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use meshleak_core::attribution::{self, ContainerFacts};

/// Runtime files larger than this are not metadata: refuse rather than read them whole.
const MAX_FILE: u64 = 4 << 20;

/// Where each runtime keeps a container's description, and how to decode it.
enum Layout {
    Oci(&'static str),
    Docker,
}

const PLACES: &[(&str, Layout)] = &[
    (
        "run/containerd/io.containerd.runtime.v2.task/k8s.io/{id}/config.json",
        Layout::Oci("containerd"),
    ),
    // k3s and RKE2 run their own containerd with its state under /run/k3s.
    (
        "run/k3s/containerd/io.containerd.runtime.v2.task/k8s.io/{id}/config.json",
        Layout::Oci("containerd"),
    ),
    (
        "run/containers/storage/overlay-containers/{id}/userdata/config.json",
        Layout::Oci("cri-o"),
    ),
    (
        "var/lib/containers/storage/overlay-containers/{id}/userdata/config.json",
        Layout::Oci("cri-o"),
    ),
    (
        "var/lib/docker/containers/{id}/config.v2.json",
        Layout::Docker,
    ),
];

/// Describes each container id (with the pod uid its cgroup gave, if any), and the
/// sandboxes their files name. Unreadable or malformed files are reported in the second
/// list, naming the file; the container then falls back to the next place. What a file
/// lacks is completed field by field from the sandbox's file, the cgroup's pod uid and
/// kubelet's log names ([`attribution::complete`]).
pub fn read(
    host_root: &Path,
    ids: &BTreeMap<String, Option<String>>,
) -> (Vec<ContainerFacts>, Vec<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for id in ids.keys() {
        out.push(describe(host_root, id, &mut errors));
    }
    // Sandboxes no process of the scan runs in (their pause exited, or another pid
    // namespace), for the pod's names and user their files hold.
    let named: Vec<String> = out
        .iter()
        .filter_map(|c| c.sandbox_id.clone())
        .filter(|s| !ids.contains_key(s))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for id in named {
        let c = describe(host_root, &id, &mut errors);
        if c.runtime != "logs" {
            out.push(c);
        }
    }
    attribution::complete(
        &mut out,
        ids,
        &names_in(&host_root.join("var/log/containers")),
        &names_in(&host_root.join("var/log/pods")),
    );
    (out, errors)
}

/// The container as the first runtime file that parses describes it, or a blank one
/// (`logs`) for kubelet's log names to describe.
fn describe(host_root: &Path, id: &str, errors: &mut Vec<String>) -> ContainerFacts {
    for (pattern, layout) in PLACES {
        let path = host_root.join(pattern.replace("{id}", id));
        let text = match read_small(&path) {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let source = path.display().to_string();
        let parsed = match layout {
            Layout::Oci(runtime) => attribution::from_oci_config(id, runtime, &source, &text),
            Layout::Docker => attribution::from_docker_config(id, &source, &text),
        };
        match parsed {
            Ok(c) => return c,
            Err(e) => errors.push(format!("container {id}: {e}")),
        }
    }
    ContainerFacts::unnamed(id, "logs", &host_root.join("var/log").display().to_string())
}

/// `Ok(None)` when the file does not exist (this runtime does not know the container).
fn read_small(path: &PathBuf) -> Result<Option<String>, String> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut text = String::new();
    file.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_FILE {
        return Err(format!(
            "{} is larger than {MAX_FILE} bytes: not a runtime config",
            path.display()
        ));
    }
    Ok(Some(text))
}

/// The entries of kubelet's `/var/log/containers` (symlinks named after pod, namespace,
/// container and id) or `/var/log/pods` (directories named after namespace, pod and uid).
fn names_in(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host root laid out as containerd, docker and kubelet's logs lay it out.
    #[test]
    fn reads_containerd_docker_and_log_layouts() {
        let root = std::env::temp_dir().join(format!("meshleak-hostroot-{}", std::process::id()));
        let id = |c: char| c.to_string().repeat(64);
        let uid = "0e2a4c3b-1d5f-4a6b-9c7d-8e9f0a1b2c3d";
        let write = |rel: &str, text: &str| {
            let p = root.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        };
        write(
            &format!(
                "run/containerd/io.containerd.runtime.v2.task/k8s.io/{}/config.json",
                id('a')
            ),
            r#"{"process":{"user":{"uid":1337,"gid":1337}},"annotations":{"io.kubernetes.cri.container-name":"istio-proxy","io.kubernetes.cri.sandbox-name":"web-0","io.kubernetes.cri.sandbox-namespace":"shop","io.kubernetes.cri.sandbox-uid":"u1"}}"#,
        );
        write(
            &format!("var/lib/docker/containers/{}/config.v2.json", id('b')),
            r#"{"Config":{"User":"10001:1337","Labels":{"io.kubernetes.container.name":"app","io.kubernetes.pod.name":"web-1","io.kubernetes.pod.namespace":"shop"}}}"#,
        );
        // A broken CRI-O file: reported, then kubelet's log name is used.
        write(
            &format!(
                "run/containers/storage/overlay-containers/{}/userdata/config.json",
                id('c')
            ),
            "{not json",
        );
        write(
            &format!("var/log/containers/web-2_shop_app-{}.log", id('c')),
            "",
        );
        write(&format!("var/log/pods/shop_web-3_{uid}/app/0.log"), "");
        let ids: BTreeMap<String, Option<String>> = [
            (id('a'), None),
            (id('b'), None),
            (id('c'), None),
            (id('d'), Some(uid.to_string())),
            (id('e'), None),
        ]
        .into_iter()
        .collect();
        let (found, errors) = read(&root, &ids);
        let _ = fs::remove_dir_all(&root);
        let summary: Vec<(String, Option<String>, Option<String>)> = found
            .iter()
            .map(|c| {
                (
                    c.runtime.clone(),
                    c.pod.as_ref().map(|p| p.name.clone()),
                    c.name.clone(),
                )
            })
            .collect();
        let s = |x: &str| Some(x.to_string());
        assert_eq!(
            summary,
            vec![
                ("containerd".into(), s("web-0"), s("istio-proxy")),
                ("docker".into(), s("web-1"), s("app")),
                ("logs".into(), s("web-2"), s("app")),
                ("logs".into(), s("web-3"), None),
            ]
        );
        assert_eq!(
            found[1].user.as_ref().map(|u| (u.uid, u.gid)),
            Some((10001, 1337))
        );
        assert_eq!(found[3].pod.as_ref().unwrap().uid, uid);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("userdata/config.json is not valid JSON"),
            "{errors:?}"
        );
    }
}
