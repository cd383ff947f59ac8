//! `meshleak check`: each container of each workload judged before deploy, against the
//! mesh's real rules (a dump, a live pod's from a snapshot, or a mesh's defaults), as
//! `analyze --identity` judges an identity, with the field that set the identity and the
//! rule that decides; plus what needs no rules: hostNetwork, injection turned off,
//! annotations that exclude traffic, and capabilities that let an app escape.

use std::cell::RefCell;
use std::collections::HashMap;

use serde::Serialize;

use super::annotations::{self, Exclusion};
use super::identity::{Container, ImageUser, Role, Set, containers};
use super::workload::Workload;
use crate::analyze::{self, IdentityVerdict};
use crate::eval::Identity;
use crate::explain::RuleRef;
use crate::meshes::Mesh;
use crate::model::Ruleset;
use crate::range::IdRange;
use crate::schema::Severity;

/// The rules the manifests are judged against.
pub struct Rules<'a> {
    pub rules: &'a Ruleset,
    /// Where they come from (`--rules FILE`, `--mesh istio-1.28`, ...).
    pub source: String,
    /// Each identity's verdict, once: one analysis of many identities costs little more
    /// than one of a single identity ([`Rules::prime`] asks for a whole stream's at once).
    known: RefCell<HashMap<Identity, analyze::IdentityReport>>,
}

impl<'a> Rules<'a> {
    pub fn new(rules: &'a Ruleset, source: String) -> Rules<'a> {
        Rules {
            rules,
            source,
            known: Default::default(),
        }
    }

    /// Analyses every identity of `ids` not analysed yet, in one analysis.
    pub fn prime(&self, ids: impl IntoIterator<Item = Identity>) -> Result<(), String> {
        let mut missing: Vec<Identity> = {
            let known = self.known.borrow();
            ids.into_iter().filter(|i| !known.contains_key(i)).collect()
        };
        missing.sort_by_key(|i| (i.uid, i.gid, i.groups.clone()));
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let a = analyze::analyze(self.rules, &missing).map_err(|e| e.to_string())?;
        let mut known = self.known.borrow_mut();
        for (id, report) in missing.into_iter().zip(a.identities) {
            known.insert(id, report);
        }
        Ok(())
    }

    /// Each identity's verdict under these rules.
    fn judge(&self, ids: &[Identity]) -> Result<Vec<analyze::IdentityReport>, String> {
        self.prime(ids.iter().cloned())?;
        let known = self.known.borrow();
        Ok(ids.iter().filter_map(|i| known.get(i).cloned()).collect())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Its traffic escapes the capture.
    Bypass,
    /// Some of it does.
    Partial,
    Captured,
    /// The mesh's proxy: a container named like it, whose identity is exempt.
    Proxy,
    /// No capture at all: hostNetwork, or the mesh's injection turned off.
    Unmeshed,
    /// The rules' answer depends on what is not known here (the image's USER) or not
    /// modelled.
    Unknown,
    /// No rules were given.
    Unjudged,
}

#[derive(Clone, Debug, Serialize)]
pub struct Located {
    pub file: String,
    pub line: usize,
    /// The field (`spec.template.spec.containers[1].securityContext.runAsGroup`).
    pub field: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ContainerReport {
    pub file: String,
    pub document: usize,
    pub kind: String,
    pub workload: String,
    pub namespace: Option<String>,
    pub container: String,
    /// The line the container's entry starts on.
    pub line: usize,
    pub role: &'static str,
    /// The effective ids; null where the image decides and was not given.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub groups: Vec<u32>,
    pub verdict: Verdict,
    /// The field that decides the verdict, where one does.
    pub decided_by: Option<Located>,
    /// The rules that let its traffic out.
    pub rules: Vec<RuleRef>,
    pub why: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    IdentityExempt,
    IdentityUnknown,
    HostNetwork,
    InjectionDisabled,
    TrafficExcluded,
    Privileged,
    CanModifyRules,
    CanSendBelowMesh,
    CanBecomeExempt,
}

impl Verdict {
    /// The verdict's name, as the JSON spells it.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Bypass => "bypass",
            Verdict::Partial => "partial",
            Verdict::Captured => "captured",
            Verdict::Proxy => "proxy",
            Verdict::Unmeshed => "unmeshed",
            Verdict::Unknown => "unknown",
            Verdict::Unjudged => "unjudged",
        }
    }
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::IdentityExempt,
        Kind::IdentityUnknown,
        Kind::HostNetwork,
        Kind::InjectionDisabled,
        Kind::TrafficExcluded,
        Kind::Privileged,
        Kind::CanModifyRules,
        Kind::CanSendBelowMesh,
        Kind::CanBecomeExempt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::IdentityExempt => "identity-exempt",
            Kind::IdentityUnknown => "identity-unknown",
            Kind::HostNetwork => "host-network",
            Kind::InjectionDisabled => "injection-disabled",
            Kind::TrafficExcluded => "traffic-excluded",
            Kind::Privileged => "privileged",
            Kind::CanModifyRules => "can-modify-rules",
            Kind::CanSendBelowMesh => "can-send-below-mesh",
            Kind::CanBecomeExempt => "can-become-exempt",
        }
    }

    /// What the kind means, for SARIF's rule descriptions.
    pub fn description(self) -> &'static str {
        match self {
            Kind::IdentityExempt => {
                "A container's identity is one the mesh's capture rules exempt: its traffic leaves the mesh."
            }
            Kind::IdentityUnknown => {
                "Whether a container's traffic is captured depends on its image's USER, which the manifest does not set."
            }
            Kind::HostNetwork => {
                "The pod uses the node's network: no sidecar captures its traffic."
            }
            Kind::InjectionDisabled => {
                "The mesh's sidecar injection is turned off for the pod: nothing captures its traffic."
            }
            Kind::TrafficExcluded => "An annotation excludes traffic from the mesh's capture.",
            Kind::Privileged => {
                "A privileged container can change the capture rules, take any identity and send below netfilter."
            }
            Kind::CanModifyRules => {
                "A container with NET_ADMIN can rewrite or delete the capture rules."
            }
            Kind::CanSendBelowMesh => {
                "A container running as root with NET_RAW can open packet sockets, whose frames skip netfilter."
            }
            Kind::CanBecomeExempt => {
                "A container running as root with SETUID or SETGID can switch to the proxy's identity."
            }
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub kind: Kind,
    pub severity: Severity,
    pub file: String,
    pub line: usize,
    pub workload: String,
    pub container: Option<String>,
    pub message: String,
    pub remedy: String,
    pub rules: Vec<RuleRef>,
}

/// One workload judged, as the caller collects them per file.
pub struct Judged {
    pub containers: Vec<ContainerReport>,
    pub findings: Vec<Finding>,
}

/// An id no rule is likely to name: the stand-in for "some other id" when the image
/// decides one.
const OTHER_ID: u32 = 2_000_000_000;

/// Judges one workload of `file`.
pub fn judge(
    file: &str,
    w: &Workload,
    rules: Option<&Rules>,
    mesh: Option<&Mesh>,
    images: &[ImageUser],
) -> Judged {
    let mut out = Judged {
        containers: Vec::new(),
        findings: Vec::new(),
    };
    let workload = format!("{}/{}", w.kind, w.name);
    let finding = |kind, severity, line, container: Option<&str>, message, remedy| Finding {
        kind,
        severity,
        file: file.to_string(),
        line,
        workload: workload.clone(),
        container: container.map(str::to_string),
        message,
        remedy,
        rules: Vec::new(),
    };
    let host_network = w.spec.get("hostNetwork").filter(|n| n.bool() == Some(true));
    if let Some(n) = host_network {
        out.findings.push(finding(
            Kind::HostNetwork,
            Severity::High,
            n.line,
            None,
            format!("{workload} uses the node's network (hostNetwork: true): no sidecar captures any of its traffic"),
            format!("remove {}.hostNetwork unless the pod must be on the node's network; it is then outside the mesh", w.spec_path),
        ));
    }
    let meta = w.metadata.as_ref();
    let found = annotations::read(meta);
    let mut off = None;
    for e in &found {
        match e {
            Exclusion::InjectionOff { key, value, line } => {
                off = Some(*line);
                out.findings.push(finding(
                    Kind::InjectionDisabled,
                    Severity::High,
                    *line,
                    None,
                    format!("{workload}: `{key}: {value}` turns the mesh's sidecar off for the pod: nothing captures its traffic"),
                    format!("remove `{key}` (or set it to enable injection) if this workload must be in the mesh"),
                ));
            }
            Exclusion::Traffic {
                key,
                value,
                line,
                what,
            } => out.findings.push(finding(
                Kind::TrafficExcluded,
                Severity::Medium,
                *line,
                None,
                format!("{workload}: `{key}: {value}`: {what} leave the mesh uncaptured, for every container of the pod"),
                format!("remove the entries of `{key}` that must go through the proxy"),
            )),
        }
    }
    let unmeshed = host_network.map(|n| n.line).or(off);
    for c in containers(w, images) {
        let report = container(file, w, &c, rules, mesh, unmeshed);
        if matches!(report.verdict, Verdict::Bypass | Verdict::Partial) {
            let d = report.decided_by.clone();
            let mut f = finding(
                Kind::IdentityExempt,
                if report.verdict == Verdict::Bypass {
                    Severity::High
                } else {
                    Severity::Medium
                },
                d.as_ref().map_or(c.line, |d| d.line),
                Some(&c.name),
                format!("{workload} container {}: {}", c.name, report.why),
                identity_remedy(&c, d.as_ref(), mesh),
            );
            f.rules = report.rules.clone();
            out.findings.push(f);
        }
        if report.verdict == Verdict::Unknown && (c.uid.is_none() || c.gid.is_none()) {
            out.findings.push(finding(
                Kind::IdentityUnknown,
                Severity::Medium,
                c.line,
                Some(&c.name),
                format!("{workload} container {}: {}", c.name, report.why),
                "set runAsUser and runAsGroup in its securityContext (or give the image's user with --image-user IMAGE=UID:GID)".into(),
            ));
        }
        if unmeshed.is_none() {
            capability_findings(&c, &workload, file, mesh, &mut out.findings);
        }
        out.containers.push(report);
    }
    out
}

fn role(r: Role) -> &'static str {
    match r {
        Role::Init => "init",
        Role::App => "app",
        Role::Ephemeral => "ephemeral",
    }
}

/// The candidate ids for one the image decides: some other id, and each the mesh exempts.
fn candidates(known: Option<u32>, exempt: &[IdRange]) -> Vec<u32> {
    match known {
        Some(v) => vec![v],
        None => std::iter::once(OTHER_ID)
            .chain(exempt.iter().map(|r| r.start))
            .collect(),
    }
}

fn exempt_ids(mesh: Option<&Mesh>) -> (&[IdRange], &[IdRange]) {
    mesh.map_or((&[][..], &[][..]), |m| {
        (m.proxy_uids.as_slice(), m.proxy_gids.as_slice())
    })
}

/// The identities a container may run with: its own where the manifest sets it, else
/// each the image might give it (some other id, and each the mesh exempts); its
/// supplementary groups, with the gid the runtime lists among them too.
pub fn candidate_ids(c: &Container, mesh: Option<&Mesh>) -> Vec<Identity> {
    let (uids, gids) = exempt_ids(mesh);
    let mut ids = Vec::new();
    for uid in candidates(c.uid.as_ref().map(|s| s.value), uids) {
        for gid in candidates(c.gid.as_ref().map(|s| s.value), gids) {
            let mut groups: Vec<u32> = c.groups.iter().map(|g| g.value).collect();
            groups.push(gid);
            groups.sort_unstable();
            groups.dedup();
            ids.push(Identity { uid, gid, groups });
        }
    }
    ids
}

fn container(
    file: &str,
    w: &Workload,
    c: &Container,
    rules: Option<&Rules>,
    mesh: Option<&Mesh>,
    unmeshed: Option<usize>,
) -> ContainerReport {
    let groups: Vec<u32> = c.groups.iter().map(|g| g.value).collect();
    let mut r = ContainerReport {
        file: file.to_string(),
        document: w.document,
        kind: w.kind.clone(),
        workload: w.name.clone(),
        namespace: w.namespace.clone(),
        container: c.name.clone(),
        line: c.line,
        role: role(c.role),
        uid: c.uid.as_ref().map(|s| s.value),
        gid: c.gid.as_ref().map(|s| s.value),
        groups: groups.clone(),
        verdict: Verdict::Unjudged,
        decided_by: None,
        rules: Vec::new(),
        why: String::new(),
    };
    let at = |s: &Set<u32>| Located {
        file: file.to_string(),
        line: s.line,
        field: s.field.clone(),
    };
    if let Some(line) = unmeshed {
        r.verdict = Verdict::Unmeshed;
        r.why = format!("the pod is not meshed (line {line})");
        return r;
    }
    let Some(rules) = rules else {
        r.why = "no rules given (--rules, --snapshot --like, --mesh)".into();
        return r;
    };
    let (uids, gids) = exempt_ids(mesh);
    let identities = match rules.judge(&candidate_ids(c, mesh)) {
        Ok(a) => a,
        Err(e) => {
            r.verdict = Verdict::Unknown;
            r.why = format!("the rules are too large to analyse: {e}");
            return r;
        }
    };
    let verdicts: Vec<&analyze::IdentityReport> = identities.iter().collect();
    let first = verdicts[0];
    let same = verdicts.iter().all(|v| v.verdict == first.verdict);
    let exempt_uid = r.uid.is_some_and(|u| uids.iter().any(|x| x.contains(u)));
    let exempt_gid = r.gid.is_some_and(|g| gids.iter().any(|x| x.contains(g)));
    r.verdict = if !same {
        Verdict::Unknown
    } else {
        match first.verdict {
            IdentityVerdict::Bypass => Verdict::Bypass,
            IdentityVerdict::Partial => Verdict::Partial,
            IdentityVerdict::Captured => Verdict::Captured,
            IdentityVerdict::Unmeshed => Verdict::Unmeshed,
            IdentityVerdict::Unknown => Verdict::Unknown,
        }
    };
    let injected = mesh.is_some_and(|m| m.profile().is_injected_proxy(&c.name, c.image.as_deref()));
    if matches!(r.verdict, Verdict::Bypass | Verdict::Partial) && injected {
        r.verdict = Verdict::Proxy;
    }
    let show = |v: Option<u32>| v.map_or("the image's".to_string(), |v| v.to_string());
    let who = format!("uid {} gid {}", show(r.uid), show(r.gid));
    r.why = match r.verdict {
        Verdict::Unknown if !same => format!(
            "{who}: the rules' answer depends on the id the image gives it, which the manifest does not set"
        ),
        Verdict::Unknown => format!(
            "{who}: rules meshleak does not model decide ({})",
            rules.source
        ),
        Verdict::Bypass => format!("{who}: the rules exempt it, so its traffic leaves the mesh"),
        Verdict::Partial => format!("{who}: the rules exempt some of its traffic"),
        Verdict::Captured => format!("{who}: its traffic is captured"),
        Verdict::Proxy => format!("{who}: the proxy, exempt as it must be"),
        Verdict::Unmeshed => format!("{who}: nothing in these rules captures it"),
        Verdict::Unjudged => String::new(),
    };
    if same
        && matches!(
            r.verdict,
            Verdict::Bypass | Verdict::Partial | Verdict::Proxy
        )
    {
        r.rules = first.rules.clone();
        // The field that set the exempt id: the uid's when the uid is exempt, else the gid's.
        r.decided_by = if exempt_uid {
            c.uid.as_ref().map(at)
        } else if exempt_gid {
            c.gid.as_ref().map(at)
        } else {
            c.groups
                .iter()
                .find(|g| gids.iter().any(|x| x.contains(g.value)))
                .map(at)
        };
    }
    r
}

/// The remedy in manifest terms: the field to change and what to.
fn identity_remedy(c: &Container, at: Option<&Located>, mesh: Option<&Mesh>) -> String {
    let Some(at) = at else {
        return "run the container with a uid, gid and groups no exemption rule names (see the rule)".into();
    };
    let is_uid = c.uid.as_ref().is_some_and(|u| u.field == at.field);
    let what = if is_uid { "uid" } else { "gid" };
    let avoid: Vec<String> = mesh
        .map(|m| if is_uid { &m.proxy_uids } else { &m.proxy_gids })
        .map(|l| l.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    let place = if at.line > 0 {
        format!("{} ({}:{})", at.field, at.file, at.line)
    } else {
        at.field.clone()
    };
    let pod_level = !at.field.contains("ontainers[");
    let scope = if pod_level {
        " (it is the pod's: every container that sets none inherits it; or set the container's own)"
    } else {
        ""
    };
    format!(
        "set {place} to a {what} other than {}{scope}",
        if avoid.is_empty() {
            "the exempt one".to_string()
        } else {
            avoid.join(", ")
        }
    )
}

/// Capabilities that let a container out of the mesh: all when privileged; NET_ADMIN
/// (rewrite the rules) for anyone who holds it effective; as root (or a uid the image
/// decides), NET_RAW (packet sockets) and SETUID/SETGID (become the proxy).
fn capability_findings(
    c: &Container,
    workload: &str,
    file: &str,
    mesh: Option<&Mesh>,
    out: &mut Vec<Finding>,
) {
    let has = |cap: &str| {
        c.capabilities
            .iter()
            .find(|s| s.value == cap || s.value == "ALL")
    };
    let root = match &c.uid {
        Some(u) => u.value == 0,
        None => !c.non_root,
    };
    let push =
        |out: &mut Vec<Finding>, kind, severity, s: &Set<String>, message: String, remedy: &str| {
            out.push(Finding {
                kind,
                severity,
                file: file.to_string(),
                line: if s.line > 0 { s.line } else { c.line },
                workload: workload.to_string(),
                container: Some(c.name.clone()),
                message,
                remedy: remedy.to_string(),
                rules: Vec::new(),
            });
        };
    let granted = |s: &Set<String>| {
        if s.line > 0 {
            format!("{} ({file}:{})", s.field, s.line)
        } else {
            s.field.clone()
        }
    };
    if let Some(p) = c.privileged.as_ref().filter(|p| p.value) {
        let s = Set {
            value: "ALL".to_string(),
            field: p.field.clone(),
            line: p.line,
        };
        push(
            out,
            Kind::Privileged,
            Severity::High,
            &s,
            format!(
                "{workload} container {} is privileged ({}): it can change the capture rules, take any identity and send below netfilter",
                c.name,
                granted(&s)
            ),
            "remove privileged: true; grant only the capabilities it needs",
        );
        return;
    }
    if let Some(s) = has("NET_ADMIN") {
        push(
            out,
            Kind::CanModifyRules,
            Severity::High,
            s,
            format!(
                "{workload} container {} has NET_ADMIN ({}): it can rewrite or delete the capture rules",
                c.name,
                granted(s)
            ),
            "remove NET_ADMIN from capabilities.add (only the mesh's init container needs it)",
        );
    }
    if !root {
        // A setuid or setgid file of its image (or one it writes) gives it that file's id
        // unless NoNewPrivs (allowPrivilegeEscalation: false) is set.
        let escalates = c
            .allow_privilege_escalation
            .as_ref()
            .is_none_or(|s| s.value);
        let exempt = mesh.is_some_and(|m| !m.proxy_uids.is_empty() || !m.proxy_gids.is_empty());
        if escalates && exempt {
            let s = Set {
                value: "allowPrivilegeEscalation".to_string(),
                field: c
                    .allow_privilege_escalation
                    .as_ref()
                    .map_or("allowPrivilegeEscalation unset (true)".into(), |s| {
                        s.field.clone()
                    }),
                line: c.allow_privilege_escalation.as_ref().map_or(0, |s| s.line),
            };
            push(
                out,
                Kind::CanBecomeExempt,
                Severity::Low,
                &s,
                format!(
                    "{workload} container {} may gain privileges ({}): a setuid or setgid file in its image owned by the proxy's id gives it that id, and its traffic leaves the mesh",
                    c.name,
                    granted(&s)
                ),
                "set allowPrivilegeEscalation: false in its securityContext (NoNewPrivs)",
            );
        }
        return;
    }
    let who = if c.uid.is_some() {
        "runs as root"
    } else {
        "may run as root (the image's USER decides)"
    };
    if let Some(s) = has("NET_RAW") {
        push(
            out,
            Kind::CanSendBelowMesh,
            Severity::Medium,
            s,
            format!(
                "{workload} container {} {who} with NET_RAW ({}): it can open packet sockets, whose frames skip netfilter and the capture",
                c.name,
                granted(s)
            ),
            "add NET_RAW to capabilities.drop (or drop ALL), or run as a non-root runAsUser",
        );
    }
    if let Some(s) = has("SETUID").or_else(|| has("SETGID")) {
        let proxy = mesh
            .map(|m| {
                m.proxy_uids
                    .iter()
                    .chain(&m.proxy_gids)
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "the proxy's".into());
        push(
            out,
            Kind::CanBecomeExempt,
            Severity::Medium,
            s,
            format!(
                "{workload} container {} {who} with {} ({}): it can switch to the proxy's identity ({proxy}) and leave the mesh",
                c.name,
                s.value,
                granted(s)
            ),
            "add SETUID and SETGID to capabilities.drop (or drop ALL), or run as a non-root runAsUser with allowPrivilegeEscalation: false",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::Verdict;

    /// The table's verdict words are the JSON's.
    #[test]
    fn verdict_names_are_the_json_names() {
        for v in [
            Verdict::Bypass,
            Verdict::Partial,
            Verdict::Captured,
            Verdict::Proxy,
            Verdict::Unmeshed,
            Verdict::Unknown,
            Verdict::Unjudged,
        ] {
            assert_eq!(serde_json::to_value(v).unwrap(), v.name());
        }
    }
}
