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
    let groups_matter = crate::ways::matches_groups(&c.ns.rules);
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
            remedy: identity_remedy(p, c.mesh, proxy_ids.as_ref(), groups_matter),
        });
    }
    if !from_pod.is_empty() {
        out.push(pod_finding(&from_pod, c.mesh, proxy_ids.as_ref()));
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

/// The pod-level fields that set a process's exempt ids: (`runAsUser`, uid) and
/// (`runAsGroup`, gid), each where the mesh exempts it and the pod level set it.
fn pod_fields(p: &Judged, mesh: Option<&Mesh>) -> Vec<(&'static str, u32)> {
    let (uids, gids) = exempt_ids(mesh);
    let (uid_pod, gid_pod) = pod_level(p);
    let mut out = Vec::new();
    if uid_pod && exempt(uids, p.identity.uid) {
        out.push(("runAsUser", p.identity.uid));
    }
    if gid_pod && exempt(gids, p.identity.gid) {
        out.push(("runAsGroup", p.identity.gid));
    }
    out
}

/// One finding for every process whose escaping identity the pod level set, naming the
/// pod's fields and each container they reach.
fn pod_finding(all: &[&Judged], mesh: Option<&Mesh>, proxy: Option<&ProxyIds>) -> Finding {
    let everything = all.iter().all(|p| p.verdict == ProcessVerdict::Bypass);
    let mut fields: Vec<(&str, u32)> = all.iter().flat_map(|p| pod_fields(p, mesh)).collect();
    fields.sort_unstable();
    fields.dedup();
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
    let set: Vec<String> = fields.iter().map(|(f, id)| format!("{f} {id}")).collect();
    let (uids, gids) = proxy.map_or((None, None), |(u, g)| (Some(u), Some(g)));
    let remedy: Vec<String> = fields
        .iter()
        .map(|&(field, id)| {
            let (what, held) = if field == "runAsUser" {
                ("uid", uids)
            } else {
                ("gid", gids)
            };
            fix(what, id, held, Field::Pod(field))
        })
        .collect();
    Finding {
        kind: FindingKind::IdentityExempt,
        severity: severity(everything),
        pid: None,
        message: format!(
            "the pod's spec.securityContext sets {}, which the rules exempt as the proxy's: each container that sets none of its own (or repeats it) {} the mesh: {}",
            set.join(" and "),
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
        remedy: remedy.join("; "),
    }
}

/// The running proxy's uids and gids.
type ProxyIds = (Vec<u32>, Vec<u32>);

/// Where an exempt id came from.
enum Field<'a> {
    /// The pod's securityContext field.
    Pod(&'a str),
    /// A container's own field (`whose`: "container NAME's"), or the image's default
    /// (`unset`) where it sets none.
    Container {
        field: &'a str,
        whose: &'a str,
        unset: &'a str,
    },
    /// Not what the spec set (`configured`): switched at run time.
    Switched { configured: u32 },
}

/// Whether the running proxy (`held`: its ids, when known) does not hold `id`.
fn not_proxys(held: Option<&Vec<u32>>, id: u32) -> bool {
    held.is_some_and(|h| !h.contains(&id))
}

/// The remedy for an exempt id the running proxy does not hold: a rule someone added.
fn inserted(what: &str, id: u32) -> String {
    format!(
        "{what} {id} is exempted by a rule the running proxy does not need (it does not run as {id}): find who added the rule (see foreign-rule) and remove it"
    )
}

/// The remedy for one exempt id (`what`: uid or gid), by the field that set it. An id
/// the running proxy does not hold (`held`: its ids) is exempted by a rule someone added.
fn fix(what: &str, id: u32, held: Option<&Vec<u32>>, field: Field) -> String {
    if not_proxys(held, id) {
        return inserted(what, id);
    }
    match field {
        Field::Pod(field) => format!(
            "{what} {id} is the proxy's and the pod's spec.securityContext.{field} sets it for every container that sets none: set it to another {what} (and in each container that repeats it)"
        ),
        Field::Container {
            field,
            whose,
            unset,
        } => format!(
            "{what} {id} is the proxy's: set {whose} securityContext.{field} to another {what} (where none is set, {unset})"
        ),
        Field::Switched { configured } => format!(
            "{what} {id} is the proxy's, but the container's spec sets {configured}: the process switched to it at run time (see identity-changed); drop CAP_SETUID/CAP_SETGID and set allowPrivilegeEscalation: false"
        ),
    }
}

/// The spec field at fault, in Kubernetes terms: the id of the traffic that matches the
/// proxy's exemption and the field that set it (the pod's or the container's runAsUser or
/// runAsGroup, or a switch at run time when the container's spec sets another; a
/// supplementary group from the pod's supplementalGroups, fsGroup or the image's
/// /etc/group), or the thread or socket that was made with it. The primary gid, which
/// runtimes list among the supplementary groups too, is runAsGroup's; only where the rules
/// match supplementary groups (`groups_matter`: `--suppl-groups`) may the pod's lists hold
/// it as well.
fn identity_remedy(
    p: &Judged,
    mesh: Option<&Mesh>,
    proxy: Option<&ProxyIds>,
    groups_matter: bool,
) -> String {
    let (uid, gid) = p
        .decided_by
        .as_ref()
        .map_or((p.identity.uid, p.identity.gid), |d| (d.uid, d.gid));
    let (uids, gids) = exempt_ids(mesh);
    let (held_uids, held_gids) = proxy.map_or((None, None), |(u, g)| (Some(u), Some(g)));
    let (uid_pod, gid_pod) = pod_level(p);
    let whose = p
        .container
        .as_ref()
        .and_then(|c| c.name.as_deref())
        .map_or("the container's".to_string(), |n| {
            format!("container {n}'s")
        });
    let configured = p
        .container
        .as_ref()
        .and_then(|c| c.configured_user.as_ref())
        .filter(|_| p.decided_by.is_none());
    let field = |by_pod: bool, own: Option<u32>, id: u32, field: &'static str, unset| match own {
        Some(c) if c != id => Field::Switched { configured: c },
        _ if by_pod => Field::Pod(field),
        _ => Field::Container {
            field,
            whose: &whose,
            unset,
        },
    };
    let mut fixes = Vec::new();
    if exempt(uids, uid) {
        let f = field(
            uid_pod,
            configured.map(|c| c.uid),
            uid,
            "runAsUser",
            "the image's USER decides",
        );
        fixes.push(fix("uid", uid, held_uids, f));
    }
    if exempt(gids, gid) {
        let f = field(
            gid_pod,
            configured.map(|c| c.gid),
            gid,
            "runAsGroup",
            "the gid of its uid in the image's /etc/passwd, or 0",
        );
        fixes.push(fix("gid", gid, held_gids, f));
    }
    let supplementary = p
        .identity
        .groups
        .iter()
        .find(|g| exempt(gids, **g) && (**g != gid || groups_matter));
    if let Some(&g) = supplementary {
        fixes.push(if not_proxys(held_gids, g) {
            inserted("group", g)
        } else if g == gid {
            format!(
                "the rules match supplementary groups (--suppl-groups): if the pod's spec.securityContext.supplementalGroups or fsGroup also hold {g} (runtimes list the primary gid there too, so it cannot be told apart), remove it there as well"
            )
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
