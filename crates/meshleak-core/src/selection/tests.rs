use super::*;
use crate::attribution::PodFacts;
use crate::schema::{Capture, Finding, FindingKind, ProcessReport, ProcessVerdict, Severity};

fn process(pid: u32, verdict: ProcessVerdict) -> ProcessReport {
    ProcessReport {
        pid,
        comm: "app".into(),
        uid: 10001,
        gid: 10001,
        groups: Vec::new(),
        container: None,
        verdict,
        reasons: Vec::new(),
        decided_by: None,
        lives_in: None,
        cmdline: None,
    }
}

fn finding(kind: FindingKind, severity: Severity, pid: Option<u32>) -> Finding {
    Finding {
        kind,
        severity,
        pid,
        message: String::new(),
        rules: Vec::new(),
        evidence: Vec::new(),
        socket: None,
        remedy: String::new(),
    }
}

fn pod(
    namespace: &str,
    name: &str,
    processes: Vec<ProcessReport>,
    findings: Vec<Finding>,
) -> NetnsReport {
    NetnsReport {
        inode: 1,
        paths: Vec::new(),
        pod: Some(PodFacts {
            namespace: namespace.into(),
            name: name.into(),
            uid: String::new(),
        }),
        mesh: None,
        capture: Capture::default(),
        processes,
        findings,
        incomplete: Vec::new(),
    }
}

/// shop/web-0: pid 1 bypasses (high), pid 2 captured but able to become exempt (medium),
/// a low exclusion; shop/db-0: all captured, one low finding; ops/tool: a partial (medium).
fn node() -> Report {
    Report {
        schema_version: 1,
        node: "n".into(),
        scanned_at: 0,
        duration_ms: 0,
        netns: vec![
            pod(
                "shop",
                "web-0",
                vec![
                    process(1, ProcessVerdict::Bypass),
                    process(2, ProcessVerdict::Captured),
                ],
                vec![
                    finding(FindingKind::IdentityExempt, Severity::High, Some(1)),
                    finding(FindingKind::CanBecomeExempt, Severity::Medium, Some(2)),
                    finding(FindingKind::PortExcluded, Severity::Low, None),
                ],
            ),
            pod(
                "shop",
                "db-0",
                vec![process(3, ProcessVerdict::Captured)],
                vec![finding(FindingKind::CidrExcluded, Severity::Low, None)],
            ),
            pod(
                "ops",
                "tool",
                vec![process(4, ProcessVerdict::Partial)],
                vec![finding(
                    FindingKind::IdentityExempt,
                    Severity::Medium,
                    Some(4),
                )],
            ),
        ],
        incomplete: Vec::new(),
        errors: Vec::new(),
        vanished_processes: 0,
        vanished_netns: 0,
        unread_netns: 0,
        unread_processes: 0,
        unread_gaps: 0,
        owners: Default::default(),
    }
}

fn names(r: &Report) -> Vec<String> {
    r.netns
        .iter()
        .map(|n| n.pod.as_ref().unwrap().name.clone())
        .collect()
}

#[test]
fn namespace_and_pod_prefix_select_pods() {
    let mut r = node();
    let sel = Selection {
        namespace: Some("shop".into()),
        ..Default::default()
    };
    sel.apply(&mut r).unwrap();
    assert_eq!(names(&r), ["web-0", "db-0"]);
    let mut r = node();
    let sel = Selection {
        namespace: Some("shop".into()),
        pod_prefix: Some("db".into()),
        ..Default::default()
    };
    sel.apply(&mut r).unwrap();
    assert_eq!(names(&r), ["db-0"]);
}

#[test]
fn a_filter_matching_nothing_names_what_there_is() {
    let mut r = node();
    let sel = Selection {
        namespace: Some("shpo".into()),
        ..Default::default()
    };
    assert_eq!(
        sel.apply(&mut r).unwrap_err().pods,
        ["ops/tool", "shop/db-0", "shop/web-0"]
    );
}

#[test]
fn bypassing_keeps_what_escapes() {
    let mut r = node();
    let sel = Selection {
        bypassing: true,
        ..Default::default()
    };
    sel.apply(&mut r).unwrap();
    assert_eq!(names(&r), ["web-0", "tool"]);
    let web = &r.netns[0];
    assert_eq!(web.processes.iter().map(|p| p.pid).collect::<Vec<_>>(), [1]);
    let kinds: Vec<&str> = web.findings.iter().map(|f| f.kind.name()).collect();
    assert_eq!(kinds, ["identity-exempt", "port-excluded"]);
}

#[test]
fn severity_keeps_findings_at_least_as_bad() {
    let mut r = node();
    let sel = Selection {
        severity: Some(Severity::Medium),
        ..Default::default()
    };
    sel.apply(&mut r).unwrap();
    assert_eq!(names(&r), ["web-0", "tool"]);
    assert_eq!(r.netns[0].findings.len(), 2);
}

#[test]
fn fail_on_chooses_what_fails() {
    let r = node();
    assert!(FailOn::Bypass.fails(&r));
    assert!(FailOn::Severity(Severity::High).fails(&r));
    assert!(!FailOn::Never.fails(&r));
    let mut calm = node();
    calm.netns
        .retain(|n| n.pod.as_ref().unwrap().name == "db-0");
    assert!(!FailOn::Bypass.fails(&calm));
    assert!(!FailOn::Severity(Severity::Medium).fails(&calm));
    assert!(FailOn::Severity(Severity::Low).fails(&calm));
}
