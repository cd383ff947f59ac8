//! `identity-exempt`: processes whose own identity the rules exempt as the proxy's, with
//! the remedy in the terms of the spec field that set it. An identity the pod-level
//! securityContext sets (the one the runtime gave the pod's sandbox, inherited by each
//! container that sets none) is one finding about the pod, naming every container it
//! reaches; a container's own is a finding about its process.

use super::{Context, Judged, way_escape};
use crate::meshes::Mesh;
use crate::range::IdRange;
use crate::schema::{Finding, FindingKind, ProcessVerdict, Severity};

pub(super) fn identity_exempt(c: &Context, out: &mut Vec<Finding>) {
    let proxy_ids = c.proxy_ids();
    let mut from_pod: Vec<&Judged> = Vec::new();
    for p in c.processes.iter().filter(|p| p.verdict.bypasses()) {
        if p.by_way {
            way_escape(p, out);
            continue;
        }
        if set_by_pod(p, c.mesh) {
            from_pod.push(p);
            continue;
        }
        let all = p.verdict == ProcessVerdict::Bypass;
        out.push(Finding {
            kind: FindingKind::IdentityExempt,
            severity: severity(all),
            pid: Some(p.facts.pid),
            message: format!(
                "{} (uid {}, gid {}) is not the proxy, but its traffic {} the mesh",
                p.facts.comm,
                p.identity.uid,
                p.identity.gid,
                if all { "leaves" } else { "partly leaves" }
            ),
            rules: p.reasons.clone(),
            evidence: vec![ids(p)],
            socket: None,
            remedy: identity_remedy(p, c.mesh, proxy_ids.as_ref()),
        });
    }
    if let Some(first) = from_pod.first() {
        out.push(pod_finding(first, &from_pod, c.mesh, proxy_ids.as_ref()));
    }
}

fn severity(all: bool) -> Severity {
    if all {
        Severity::High
    } else {
        Severity::Medium
    }
}

/// `uid U gid G groups ...` of a process.
fn ids(p: &Judged) -> String {
    let groups: Vec<String> = p.identity.groups.iter().map(u32::to_string).collect();
    format!(
        "uid {} gid {} groups {}",
        p.identity.uid,
        p.identity.gid,
        if groups.is_empty() {
            "none".to_string()
        } else {
            groups.join(",")
        }
    )
}

/// The mesh's exempt uids and gids (none without a known mesh).
fn exempt_ids(mesh: Option<&Mesh>) -> (&[IdRange], &[IdRange]) {
    mesh.map_or((&[][..], &[][..]), |m| {
        (m.proxy_uids.as_slice(), m.proxy_gids.as_slice())
    })
}

fn exempt(list: &[IdRange], id: u32) -> bool {
    list.iter().any(|r| r.contains(id))
}

/// Which of a process's ids the pod level set: the runtime gave the pod's sandbox that
/// id, the container's spec (as the runtime wrote it) has the same, and the process still
/// runs with it (not switched at run time).
fn pod_level(p: &Judged) -> (bool, bool) {
    let Some(c) = &p.container else {
        return (false, false);
    };
    let (Some(pod), Some(own)) = (&c.pod_user, &c.configured_user) else {
        return (false, false);
    };
    let live = p.decided_by.is_none();
    let uid = p.identity.uid;
    let gid = p.identity.gid;
    (
        live && pod.uid == uid && own.uid == uid,
        live && pod.gid == gid && own.gid == gid,
    )
}

/// Whether every id of the process that the mesh exempts is one the pod level set.
fn set_by_pod(p: &Judged, mesh: Option<&Mesh>) -> bool {
    let (uids, gids) = exempt_ids(mesh);
    let (uid_pod, gid_pod) = pod_level(p);
    let uid_exempt = exempt(uids, p.identity.uid);
    let gid_exempt = exempt(gids, p.identity.gid);
    (uid_exempt || gid_exempt) && (!uid_exempt || uid_pod) && (!gid_exempt || gid_pod)
}

/// One finding for every process whose escaping identity the pod level set.
fn pod_finding(
    first: &Judged,
    all: &[&Judged],
    mesh: Option<&Mesh>,
    proxy: Option<&(Vec<u32>, Vec<u32>)>,
) -> Finding {
    let everything = all.iter().all(|p| p.verdict == ProcessVerdict::Bypass);
    let named: Vec<String> = all
        .iter()
        .map(|p| {
            let container = p
                .container
                .as_ref()
                .and_then(|c| c.name.as_deref())
                .unwrap_or("?");
            format!("{container} ({}, pid {})", p.facts.comm, p.facts.pid)
        })
        .collect();
    let mut rules = Vec::new();
    for p in all {
        for r in &p.reasons {
            if !rules.contains(r) {
                rules.push(r.clone());
            }
        }
    }
    Finding {
        kind: FindingKind::IdentityExempt,
        severity: severity(everything),
        pid: None,
        message: format!(
            "the pod's securityContext runs its containers as uid {} gid {}, which the rules exempt as the proxy's: every container that sets no identity of its own {} the mesh: {}",
            first.identity.uid,
            first.identity.gid,
            if everything {
                "leaves"
            } else {
                "partly leaves"
            },
            named.join(", ")
        ),
        rules,
        evidence: all
            .iter()
            .map(|p| format!("pid {}: {}", p.facts.pid, ids(p)))
            .collect(),
        socket: None,
        remedy: identity_remedy(first, mesh, proxy),
    }
}

/// The spec field at fault, in Kubernetes terms: the id of the traffic that matches the
/// proxy's exemption and the field that set it (the pod's or the container's runAsUser or
/// runAsGroup; a supplementary group from the pod's supplementalGroups, fsGroup or the
/// image's /etc/group, never the primary gid the runtime also lists there), or the thread
/// or socket that was made with it. An exempt id the running proxy does not hold
/// (`proxy`: its uids and gids) is not the proxy's: an exemption someone added names it.
fn identity_remedy(
    p: &Judged,
    mesh: Option<&Mesh>,
    proxy: Option<&(Vec<u32>, Vec<u32>)>,
) -> String {
    let (uid, gid) = p
        .decided_by
        .as_ref()
        .map_or((p.identity.uid, p.identity.gid), |d| (d.uid, d.gid));
    let (uids, gids) = exempt_ids(mesh);
    let (held_uids, held_gids) = proxy.map_or((None, None), |(u, g)| (Some(u), Some(g)));
    let not_proxys = |held: Option<&Vec<u32>>, id: u32| held.is_some_and(|h| !h.contains(&id));
    let inserted = |what: &str, id: u32| {
        format!(
            "{what} {id} is exempted by a rule the running proxy does not need (it does not run as {id}): find who added the rule (see foreign-rule) and remove it"
        )
    };
    let (uid_pod, gid_pod) = pod_level(p);
    let whose = p
        .container
        .as_ref()
        .and_then(|c| c.name.as_deref())
        .map_or("the container's".to_string(), |n| {
            format!("container {n}'s")
        });
    // The field that set an id, in the pod's or the container's securityContext.
    let field = |what: &str, id: u32, field: &str, by_pod: bool, unset: &str| {
        if by_pod {
            format!(
                "{what} {id} is the proxy's and the pod's spec.securityContext.{field} sets it for every container that sets none: set it to another {what}"
            )
        } else {
            format!(
                "{what} {id} is the proxy's: set {whose} securityContext.{field} to another {what} (where none is set, {unset})"
            )
        }
    };
    let mut fixes = Vec::new();
    if exempt(uids, uid) {
        fixes.push(if not_proxys(held_uids, uid) {
            inserted("uid", uid)
        } else {
            field("uid", uid, "runAsUser", uid_pod, "the image's USER decides")
        });
    }
    if exempt(gids, gid) {
        fixes.push(if not_proxys(held_gids, gid) {
            inserted("gid", gid)
        } else {
            field(
                "gid",
                gid,
                "runAsGroup",
                gid_pod,
                "the gid of its uid in the image's /etc/passwd, or 0",
            )
        });
    }
    // The runtime lists the primary gid among the supplementary groups too: that one is
    // runAsGroup's, said above.
    if let Some(g) = p
        .identity
        .groups
        .iter()
        .find(|g| **g != gid && exempt(gids, **g))
    {
        fixes.push(if not_proxys(held_gids, *g) {
            inserted("group", *g)
        } else {
            format!(
                "group {g} is the proxy's, a supplementary group: remove it from the pod's spec.securityContext.supplementalGroups or fsGroup, whichever holds it (or from the image's /etc/group)"
            )
        });
    }
    if let Some(d) = &p.decided_by {
        fixes.push(format!(
            "its traffic carries {uid}:{gid} because {}: find what switched identity and drop CAP_SETUID/CAP_SETGID",
            d.why
        ));
    }
    if fixes.is_empty() {
        return "run the app with a uid, gid and groups no exemption rule names (see the rule)"
            .into();
    }
    fixes.join("; ")
}
