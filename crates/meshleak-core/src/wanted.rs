//! `meshleak pod --pod NS/NAME` and `--container ID`: which network namespaces of a
//! snapshot hold the pod asked for, found through the container runtime's metadata.
//! Pure: it narrows a snapshot, live or saved.

use std::collections::BTreeSet;

use crate::attribution::{ContainerRef, PodFacts, container_of};
use crate::snapshot::Snapshot;

/// One pod, asked for by its name or by one of its containers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wanted {
    Pod {
        namespace: String,
        name: String,
    },
    /// A container id or its prefix, without the runtime's `containerd://` scheme.
    Container(String),
}

impl Wanted {
    /// `NAMESPACE/NAME`.
    pub fn pod(text: &str) -> Result<Wanted, String> {
        match text.split_once('/') {
            Some((namespace, name)) => Ok(Wanted::Pod {
                namespace: namespace.into(),
                name: name.into(),
            }),
            None => Err(format!(
                "--pod takes NAMESPACE/NAME (e.g. shop/web-0), not `{text}`"
            )),
        }
    }

    /// A container id as `kubectl get pod -o yaml` shows it (`containerd://3f2a...`) or as
    /// the runtime does; at least 4 characters of it, so a prefix names one container.
    pub fn container(text: &str) -> Result<Wanted, String> {
        let id = text
            .trim_start_matches("containerd://")
            .trim_start_matches("cri-o://")
            .trim_start_matches("docker://");
        if id.len() < 4 {
            return Err(format!(
                "--container needs at least 4 characters of the id, got `{id}`"
            ));
        }
        Ok(Wanted::Container(id.into()))
    }

    /// How it is named in messages: `pod shop/web-0`, `container 3f2a`.
    pub fn describe(&self) -> String {
        match self {
            Wanted::Pod { namespace, name } => format!("pod {namespace}/{name}"),
            Wanted::Container(id) => format!("container {id}"),
        }
    }

    fn matches(&self, c: &ContainerRef, pod: Option<&PodFacts>) -> bool {
        match self {
            Wanted::Pod { namespace, name } => {
                pod.is_some_and(|p| &p.namespace == namespace && &p.name == name)
            }
            Wanted::Container(id) => c.id.starts_with(id.as_str()),
        }
    }

    /// Keeps the snapshot's namespaces where some process's container (and its pod)
    /// matches. When none does, the pods seen (`namespace/name`, sorted) are the error, so
    /// a typo is told apart from an empty node.
    pub fn keep(&self, snapshot: &mut Snapshot) -> Result<(), Vec<String>> {
        let containers = std::mem::take(&mut snapshot.containers);
        let mut seen = BTreeSet::new();
        snapshot.netns.retain(|ns| {
            ns.processes.iter().any(|p| {
                let Some((c, pod)) = container_of(&p.cgroup, &containers) else {
                    return false;
                };
                if let Some(pod) = &pod {
                    seen.insert(format!("{}/{}", pod.namespace, pod.name));
                }
                self.matches(&c, pod.as_ref())
            })
        });
        snapshot.containers = containers;
        if snapshot.netns.is_empty() {
            return Err(seen.into_iter().collect());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids() {
        assert_eq!(
            Wanted::pod("shop/web-0"),
            Ok(Wanted::Pod {
                namespace: "shop".into(),
                name: "web-0".into()
            })
        );
        assert!(Wanted::pod("web-0").unwrap_err().contains("NAMESPACE/NAME"));
        assert_eq!(
            Wanted::container("containerd://3f2a9c"),
            Ok(Wanted::Container("3f2a9c".into()))
        );
        assert!(Wanted::container("cri-o://3f2").is_err());
        assert_eq!(
            Wanted::container("docker://abcd").unwrap().describe(),
            "container abcd"
        );
    }
}
