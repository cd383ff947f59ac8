//! Findings that need to know containers: a proxy container whose traffic the rules
//! capture, and a process whose identity differs from the one its spec configured.

use super::Context;
use crate::analyze::IdentityVerdict;
use crate::eval::Identity;
use crate::meshes::Mesh;
use crate::schema::{Finding, FindingKind, ProcessVerdict, Severity};

/// `proxy-not-exempt`: a process of a container named like the mesh's proxy whose own
/// traffic is captured: the proxy would redirect to itself, or it is not the proxy.
pub(super) fn proxy_not_exempt(c: &Context, mesh: &Mesh, out: &mut Vec<Finding>) {
    for p in c.processes.iter() {
        let Some(container) = p.container.as_ref().filter(|k| k.proxy_name) else {
            continue;
        };
        if !matches!(
            p.verdict,
            ProcessVerdict::Captured | ProcessVerdict::Partial
        ) {
            continue;
        }
        out.push(Finding {
            kind: FindingKind::ProxyNotExempt,
            severity: Severity::High,
            pid: Some(p.facts.pid),
            message: format!(
                "{} runs in the proxy container {} as uid {} gid {}, which the {} rules do not exempt: its own traffic is captured",
                p.facts.comm,
                container.name.as_deref().unwrap_or("?"),
                p.identity.uid,
                p.identity.gid,
                mesh.kind
            ),
            rules: p.reasons.clone(),
            evidence: vec![format!(
                "container {} ({}); exempt uids {:?}, gids {:?}",
                container.id,
                container.runtime,
                mesh.proxy_uids.iter().map(ToString::to_string).collect::<Vec<_>>(),
                mesh.proxy_gids.iter().map(ToString::to_string).collect::<Vec<_>>()
            )],
            socket: None,
            remedy: "run the proxy with the identity the capture rules exempt (or fix the rules' proxy uid/gid)".into(),
        });
    }
}

/// `identity-changed`: a process whose live identity bypasses the mesh while the identity
/// its container's spec configured would not: something changed identity at run time
/// (setuid, `exec --user`, a setgid binary).
pub(super) fn identity_changed(c: &Context, out: &mut Vec<Finding>) {
    for p in c.processes.iter() {
        let live = &p.identity;
        if !p.verdict.bypasses() {
            continue;
        }
        let Some(container) = &p.container else {
            continue;
        };
        let Some(user) = &container.configured_user else {
            continue;
        };
        if (user.uid, user.gid) == (live.uid, live.gid) {
            continue;
        }
        let configured = Identity {
            uid: user.uid,
            gid: user.gid,
            groups: user.additional_gids.clone(),
        };
        // Only a configured identity that is definitely captured makes this a change
        // (an unknown one is the `unknown` finding's).
        let configured_captured =
            crate::analyze::analyze(&c.ns.rules, std::slice::from_ref(&configured))
                .map(|a| {
                    a.identities
                        .iter()
                        .all(|i| i.verdict == IdentityVerdict::Captured)
                })
                .unwrap_or(false);
        if !configured_captured {
            continue;
        }
        out.push(Finding {
            kind: FindingKind::IdentityChanged,
            severity: Severity::High,
            pid: Some(p.facts.pid),
            message: format!(
                "{} runs as uid {} gid {}, but its container {} is configured as uid {} gid {}: the change at run time takes it out of the mesh",
                p.facts.comm,
                live.uid,
                live.gid,
                container.name.as_deref().unwrap_or(&container.id),
                user.uid,
                user.gid
            ),
            rules: p.reasons.clone(),
            evidence: vec![format!("configured by {} ({})", container.runtime, container.id)],
            socket: None,
            remedy: "find what switched identity (setuid binary, exec --user, an entrypoint) and remove CAP_SETUID/CAP_SETGID".into(),
        });
    }
}
