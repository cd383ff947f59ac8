//! Each container's identity as the kubelet and the runtime will give it: the container's
//! securityContext over the pod's (runAsUser, runAsGroup), the pod's supplementalGroups
//! and fsGroup as supplementary groups, the image's USER where neither sets a uid (known
//! only when given: `--image-user`), and its capabilities: the runtime's default set,
//! minus what it drops, plus what it adds; all of them when privileged. Each value keeps
//! the field (and line) that set it.

use super::doc::Node;
use super::workload::Workload;

/// A value and the field that set it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set<T> {
    pub value: T,
    /// The field's path in the object (`spec.template.spec.containers[1].securityContext.runAsGroup`),
    /// or `the image's USER`.
    pub field: String,
    /// Its line; 0 for a value from outside the manifest (`--image-user`).
    pub line: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Init,
    App,
    Ephemeral,
}

#[derive(Clone, Debug)]
pub struct Container {
    pub name: String,
    pub role: Role,
    pub image: Option<String>,
    pub line: usize,
    /// `None`: set by nothing the manifest or `--image-user` says (the image's USER).
    pub uid: Option<Set<u32>>,
    /// `None`: the gid of the uid in the image's /etc/passwd (or 0), not known here.
    pub gid: Option<Set<u32>>,
    pub groups: Vec<Set<u32>>,
    /// `runAsNonRoot: true` (the container's or the pod's): the kubelet refuses to start it
    /// as uid 0, so an image's USER that is not set here is not root either.
    pub non_root: bool,
    pub privileged: Option<Set<bool>>,
    pub allow_privilege_escalation: Option<Set<bool>>,
    /// Capabilities it holds in its bounding set, each with what granted it (a field, or
    /// `the runtime's default set`).
    pub capabilities: Vec<Set<String>>,
}

/// The capabilities containerd (and docker) give every container; CRI-O since 1.18 gives
/// fewer (no NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP). The larger set is assumed:
/// a capability it holds is a way out to report, one it may lack is not.
pub const RUNTIME_DEFAULT: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// A user an image runs as (`--image-user IMAGE=UID[:GID]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageUser {
    pub image: String,
    pub uid: u32,
    pub gid: Option<u32>,
}

/// Every container of a workload (init containers first, then the app's, then ephemeral
/// ones), with its effective identity.
pub fn containers(w: &Workload, images: &[ImageUser]) -> Vec<Container> {
    let pod_sc = w.spec.get("securityContext");
    let pod_field = |key: &str| format!("{}.securityContext.{key}", w.spec_path);
    let pod_id = |key: &str| setting(pod_sc, key, pod_field(key));
    let mut groups: Vec<Set<u32>> = Vec::new();
    if let Some(list) = pod_sc.and_then(|s| s.get("supplementalGroups")) {
        for (i, g) in list.seq().iter().enumerate() {
            if let Some(v) = id(g) {
                groups.push(Set {
                    value: v,
                    field: format!("{}[{i}]", pod_field("supplementalGroups")),
                    line: g.line,
                });
            }
        }
    }
    groups.extend(pod_id("fsGroup").flatten());
    let mut out = Vec::new();
    for (key, role) in [
        ("initContainers", Role::Init),
        ("containers", Role::App),
        ("ephemeralContainers", Role::Ephemeral),
    ] {
        let Some(list) = w.spec.get(key) else {
            continue;
        };
        for (i, c) in list.seq().iter().enumerate() {
            let at = format!("{}.{key}[{i}]", w.spec_path);
            let sc = c.get("securityContext");
            let own = |k: &str| setting(sc, k, format!("{at}.securityContext.{k}"));
            let flag = |k: &str| {
                sc.and_then(|s| s.get(k)).and_then(|n| {
                    Some(Set {
                        value: n.bool()?,
                        field: format!("{at}.securityContext.{k}"),
                        line: n.line,
                    })
                })
            };
            let image = c.get("image").and_then(Node::text);
            let from_image = image
                .as_ref()
                .and_then(|i| images.iter().find(|u| &u.image == i));
            let image_set = |value: u32| Set {
                value,
                field: "the image's USER (--image-user)".into(),
                line: 0,
            };
            // The container's field over the pod's; one that is there but no id makes the
            // id unknown, never the next source's.
            let uid = own("runAsUser")
                .or_else(|| pod_id("runAsUser"))
                .unwrap_or_else(|| from_image.map(|u| image_set(u.uid)));
            // Without runAsGroup the runtime takes the uid's group from the image's
            // /etc/passwd; the image's USER gives it only when that uid is the image's.
            let gid = own("runAsGroup")
                .or_else(|| pod_id("runAsGroup"))
                .unwrap_or_else(|| {
                    let u = from_image?;
                    (uid.as_ref()?.value == u.uid)
                        .then_some(u.gid)
                        .flatten()
                        .map(image_set)
                });
            let privileged = flag("privileged");
            let non_root = flag("runAsNonRoot")
                .map(|s| s.value)
                .or_else(|| {
                    pod_sc
                        .and_then(|s| s.get("runAsNonRoot"))
                        .and_then(Node::bool)
                })
                .unwrap_or(false);
            let capabilities = capabilities(
                sc.and_then(|s| s.get("capabilities")),
                &format!("{at}.securityContext.capabilities"),
                privileged.as_ref().filter(|p| p.value),
            );
            out.push(Container {
                name: c
                    .get("name")
                    .and_then(Node::text)
                    .unwrap_or_else(|| format!("{key}[{i}]")),
                role,
                image,
                line: c.line,
                uid,
                gid,
                groups: groups.clone(),
                non_root,
                privileged,
                allow_privilege_escalation: flag("allowPrivilegeEscalation"),
                capabilities,
            });
        }
    }
    out
}

/// A uid or gid field: a non-negative integer that fits.
fn id(n: &Node) -> Option<u32> {
    n.int().and_then(|v| u32::try_from(v).ok())
}

/// A uid or gid field of a securityContext: `None` where it is not set (absent or null),
/// `Some(None)` where it is set to something that is no id (its id is then unknown).
fn setting(sc: Option<&Node>, key: &str, field: String) -> Option<Option<Set<u32>>> {
    let n = sc?.get(key)?;
    if n.value == super::doc::Value::Null {
        return None;
    }
    Some(id(n).map(|value| Set {
        value,
        field,
        line: n.line,
    }))
}

/// The runtime's default set, minus `drop`, plus `add`; every capability when privileged.
/// Names are taken as containerd takes them: it puts `CAP_` before each, so `CAP_SETUID`
/// becomes `CAP_CAP_SETUID`, which drops nothing (and an add of it fails the container).
fn capabilities(caps: Option<&Node>, at: &str, privileged: Option<&Set<bool>>) -> Vec<Set<String>> {
    let name = |n: &Node| n.text().map(|t| t.to_ascii_uppercase());
    let list = |k: &str| -> Vec<(String, usize, usize)> {
        caps.and_then(|c| c.get(k))
            .map(|l| {
                l.seq()
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| Some((name(n)?, n.line, i)))
                    .collect()
            })
            .unwrap_or_default()
    };
    if let Some(p) = privileged {
        return vec![Set {
            value: "ALL".into(),
            field: p.field.clone(),
            line: p.line,
        }];
    }
    let dropped = list("drop");
    let drops = |c: &str| dropped.iter().any(|(d, _, _)| d == c || d == "ALL");
    let mut out: Vec<Set<String>> = RUNTIME_DEFAULT
        .iter()
        .filter(|c| !drops(c))
        .map(|c| Set {
            value: c.to_string(),
            field: "the runtime's default set".into(),
            line: 0,
        })
        .collect();
    for (c, line, i) in list("add") {
        out.retain(|s| s.value != c);
        out.push(Set {
            value: c,
            field: format!("{at}.add[{i}]"),
            line,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::doc::documents;
    use crate::manifest::workload::workloads;

    #[test]
    fn identities_merge_pod_and_container_and_keep_their_fields() {
        let text = "\
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      securityContext:
        runAsUser: 10001
        runAsGroup: 1337
        supplementalGroups: [3000]
        fsGroup: 2000
      initContainers:
        - name: init
          image: init:1
          securityContext:
            runAsUser: 0
            capabilities: {add: [NET_ADMIN, NET_RAW], drop: [ALL]}
      containers:
        - name: app
          image: app:1
          securityContext:
            runAsGroup: 10001
        - name: tool
          image: tool:1
          securityContext:
            privileged: true
";
        let (docs, _) = documents(text);
        let (w, _) = workloads(&docs[0]);
        let c = containers(&w[0], &[]);
        let names: Vec<(&str, Role)> = c.iter().map(|c| (c.name.as_str(), c.role)).collect();
        assert_eq!(
            names,
            vec![
                ("init", Role::Init),
                ("app", Role::App),
                ("tool", Role::App)
            ]
        );
        let app = &c[1];
        assert_eq!(app.uid.as_ref().unwrap().value, 10001);
        assert_eq!(
            app.uid.as_ref().unwrap().field,
            "spec.template.spec.securityContext.runAsUser"
        );
        let gid = app.gid.as_ref().unwrap();
        assert_eq!(
            (gid.value, gid.field.as_str(), gid.line),
            (
                10001,
                "spec.template.spec.containers[0].securityContext.runAsGroup",
                21
            )
        );
        let groups: Vec<u32> = app.groups.iter().map(|g| g.value).collect();
        assert_eq!(groups, vec![3000, 2000]);
        assert_eq!(
            app.groups[1].field,
            "spec.template.spec.securityContext.fsGroup"
        );
        let init_caps: Vec<&str> = c[0].capabilities.iter().map(|s| s.value.as_str()).collect();
        assert_eq!(init_caps, vec!["NET_ADMIN", "NET_RAW"]);
        assert!(app.capabilities.iter().any(|s| s.value == "SETUID"));
        assert_eq!(c[2].capabilities[0].value, "ALL");
        // The image's USER only where nothing sets a uid.
        let images = [ImageUser {
            image: "init:1".into(),
            uid: 1337,
            gid: Some(1337),
        }];
        let c = containers(&w[0], &images);
        assert_eq!(c[0].uid.as_ref().unwrap().value, 0);
    }
}
