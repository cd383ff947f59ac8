//! A node report as people read it (`scan`, `pod`, `analyze --snapshot`): a summary that
//! answers first (how many processes bypass, where, the worst finding and its fix), then
//! pods worst first, each finding once with its rules, evidence and remedy, then the
//! processes. Every string from the node is sanitized; lines wrap to the terminal.

use super::term::{self, Paint, Term};
use super::text::{cite_line, count, rule_line};
use meshleak_core::analyze::ExemptionKind;
use meshleak_core::sanitize::sanitize;
use meshleak_core::schema::{
    Finding, FindingKind, NetnsReport, ProcessReport, ProcessVerdict, Report, Severity,
};
use meshleak_core::snapshot::OwnerSource;

/// Pods named in the summary's `in` line; the rest are counted.
const SUMMARY_PODS: usize = 8;

pub(super) fn print(r: &Report, wide: bool) {
    let t = term::get();
    let mut out = Vec::new();
    incomplete(&t, r, &mut out);
    summary(&t, r, &mut out);
    let mut order: Vec<&NetnsReport> = r.netns.iter().collect();
    order.sort_by_key(|ns| (rank(ns), name(ns)));
    for ns in order {
        out.push(String::new());
        netns(&t, ns, wide, &mut out);
    }
    for line in out {
        println!("{line}");
    }
}

/// The name people know a namespace by: its pod, else its bind mount, else its inode.
pub(super) fn name(ns: &NetnsReport) -> String {
    let name = match (&ns.pod, ns.paths.first()) {
        (Some(p), _) => format!("pod {}/{}", p.namespace, p.name),
        (None, Some(path)) => path.clone(),
        (None, None) => format!("netns {}", ns.inode),
    };
    sanitize(&name)
}

/// Worst first: something bypassing, then by the worst finding, then unknown verdicts.
fn rank(ns: &NetnsReport) -> (bool, bool, Option<Severity>, bool) {
    let worst = ns.findings.iter().map(|f| f.severity).min();
    (!bypasses(ns), worst.is_none(), worst, !unknown(ns))
}

fn bypasses(ns: &NetnsReport) -> bool {
    ns.processes.iter().any(|p| p.verdict.bypasses())
        || ns
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::ObservedBypass && f.pid.is_none())
}

fn unknown(ns: &NetnsReport) -> bool {
    ns.processes
        .iter()
        .any(|p| p.verdict == ProcessVerdict::Unknown)
        || ns.findings.iter().any(|f| f.kind == FindingKind::Unknown)
}

fn incomplete(t: &Term, r: &Report, out: &mut Vec<String>) {
    if r.incomplete.is_empty() {
        return;
    }
    out.push(t.paint(
        &format!(
            "INCOMPLETE: this report may miss bypasses, {} could not be read:",
            count(r.incomplete.len(), "thing", "things")
        ),
        Paint::Yellow,
    ));
    for line in &r.incomplete {
        out.extend(t.lines("  - ", 4, &sanitize(line)));
    }
    out.push(String::new());
}

fn summary(t: &Term, r: &Report, out: &mut Vec<String>) {
    let all: Vec<&ProcessReport> = r.netns.iter().flat_map(|n| &n.processes).collect();
    let bypassing = all.iter().filter(|p| p.verdict.bypasses()).count();
    let unknown_n = all
        .iter()
        .filter(|p| p.verdict == ProcessVerdict::Unknown)
        .count();
    let scope = format!(
        "{} in {}",
        count(all.len(), "process", "processes"),
        count(r.netns.len(), "network namespace", "network namespaces")
    );
    let node = sanitize(&r.node);
    let head = if bypassing > 0 {
        format!(
            "node {node}: {} the mesh (of {scope}, {} ms)",
            bypass_count(t, bypassing),
            r.duration_ms
        )
    } else if r.bypasses() {
        format!(
            "node {node}: {} (of {scope}, {} ms)",
            t.paint(
                "a connection no process read holds bypasses the mesh",
                Paint::Red
            ),
            r.duration_ms
        )
    } else {
        format!(
            "node {node}: no process bypasses the mesh ({scope}, {} ms)",
            r.duration_ms
        )
    };
    out.extend(t.lines("", 2, &head));
    if r.owners.source == OwnerSource::Inode {
        let why = r.owners.why.as_deref().unwrap_or("not recorded");
        out.extend(t.lines(
            "  owners:  ",
            11,
            &sanitize(&format!(
                "sockets judged by their inodes' owners, not the credentials the kernel compares (BPF not used: {why})"
            )),
        ));
    }
    let escaping: Vec<String> = r
        .netns
        .iter()
        .filter(|ns| bypasses(ns))
        .map(|ns| {
            let n = ns.processes.iter().filter(|p| p.verdict.bypasses()).count();
            format!("{} ({n})", name(ns))
        })
        .collect();
    if !escaping.is_empty() {
        let mut list = escaping
            .iter()
            .take(SUMMARY_PODS)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if escaping.len() > SUMMARY_PODS {
            list += &format!(" and {} more", escaping.len() - SUMMARY_PODS);
        }
        out.extend(t.lines("  in:      ", 11, &list));
    }
    if unknown_n > 0 {
        out.extend(t.lines(
            "  unknown: ",
            11,
            &format!(
                "{} whose verdict meshleak cannot decide (each one's decided_by says why)",
                count(unknown_n, "process", "processes")
            ),
        ));
    }
    let worst = r
        .netns
        .iter()
        .flat_map(|ns| ns.findings.iter().map(move |f| (ns, f)))
        .min_by_key(|(ns, f)| (f.severity, rank(ns)));
    if let Some((ns, f)) = worst {
        let text = format!("{} {}, {}: {}", f.severity, label(f), name(ns), message(f));
        out.extend(t.lines("  worst:   ", 11, &text));
        out.extend(t.lines("  fix:     ", 11, &sanitize(&f.remedy)));
    }
}

/// `2 processes bypass`, in red on a terminal.
fn bypass_count(t: &Term, n: usize) -> String {
    t.paint(
        &count(n, "process bypasses", "processes bypass"),
        Paint::Red,
    )
}

fn netns(t: &Term, ns: &NetnsReport, wide: bool, out: &mut Vec<String>) {
    let mesh = ns.mesh.as_ref().map_or("no mesh capture".to_string(), |m| {
        let ports: Vec<String> = m.proxy_ports.iter().map(u16::to_string).collect();
        format!("{}, proxy ports {}", m.kind, ports.join(","))
    });
    let n = ns.processes.iter().filter(|p| p.verdict.bypasses()).count();
    let state = if n > 0 {
        format!(": {}", bypass_count(t, n))
    } else {
        String::new()
    };
    let head = format!("{} ", t.paint(&name(ns), Paint::Bold));
    out.extend(t.lines(&head, 2, &format!("({}){state}", sanitize(&mesh))));
    if ns.mesh.is_some() {
        capture(t, ns, out);
    }
    for (f, pids) in distinct(&ns.findings) {
        finding(t, f, &pids, out);
    }
    processes(t, ns, wide, out);
}

/// What an ordinary app's traffic is captured on, and what leaves for everyone.
fn capture(t: &Term, ns: &NetnsReport, out: &mut Vec<String>) {
    let mut captured = if ns.capture.families.is_empty() {
        "nothing".to_string()
    } else {
        format!(
            "{} {}",
            ns.capture.families.join("+"),
            ns.capture.protocols.join(",")
        )
    };
    if !ns.capture.undecided.is_empty() {
        captured += &format!(
            " (unknown: {}, decided by rules meshleak does not model)",
            ns.capture.undecided.join(", ")
        );
    }
    out.extend(t.lines("  captured for an ordinary app: ", 4, &captured));
    // Identity exemptions show up as process verdicts and findings below.
    for e in ns
        .capture
        .exemptions
        .iter()
        .filter(|e| !matches!(e.kind, ExemptionKind::Uid | ExemptionKind::Gid))
    {
        let family = e
            .rule
            .as_ref()
            .map(|r| r.family)
            .or(e.family)
            .and_then(family_label)
            .map_or(String::new(), |f| format!("{f} "));
        let what = match &e.rule {
            Some(rule) => rule_line(rule),
            None => sanitize(&e.conditions.join("; ")),
        };
        let head = format!("  exempt {:<9} ", e.kind);
        out.extend(t.lines(&head, 19, &format!("{family}{what}")));
    }
}

/// Findings that say the same thing (a parent and its child sharing one socket) once,
/// with every pid they are about, in the report's order (worst first).
fn distinct(findings: &[Finding]) -> Vec<(&Finding, Vec<u32>)> {
    let mut groups: Vec<(&Finding, Vec<u32>)> = Vec::new();
    for f in findings {
        let same = |g: &Finding| {
            g.kind == f.kind
                && g.severity == f.severity
                && g.message == f.message
                && g.evidence == f.evidence
                && g.rules == f.rules
                && g.remedy == f.remedy
        };
        match groups.iter_mut().find(|(g, _)| same(g)) {
            Some((_, pids)) => pids.extend(f.pid),
            None => groups.push((f, f.pid.into_iter().collect())),
        }
    }
    groups
}

/// `identity-exempt (pid 812, IPv4)`: the kind, the processes, the family of its rules.
fn label(f: &Finding) -> String {
    label_pids(f, &f.pid.into_iter().collect::<Vec<_>>())
}

fn label_pids(f: &Finding, pids: &[u32]) -> String {
    let mut notes = Vec::new();
    match pids {
        [] => {}
        [pid] => notes.push(format!("pid {pid}")),
        _ => notes.push(format!(
            "pids {}",
            pids.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
    let mut families: Vec<&str> = f.rules.iter().map(|r| r.family).collect();
    families.dedup();
    if let [one] = families.as_slice()
        && let Some(label) = family_label(one)
    {
        notes.push(label.to_string());
    }
    if notes.is_empty() {
        f.kind.to_string()
    } else {
        format!("{} ({})", f.kind, notes.join(", "))
    }
}

fn family_label(family: &str) -> Option<&'static str> {
    match family {
        "ipv4" => Some("IPv4"),
        "ipv6" => Some("IPv6"),
        _ => None,
    }
}

fn message(f: &Finding) -> String {
    sanitize(&f.message)
}

fn severity_paint(severity: Severity) -> Paint {
    match severity {
        Severity::High => Paint::Red,
        Severity::Medium => Paint::Yellow,
        Severity::Low => Paint::Dim,
    }
}

/// A finding: its line, the rules it cites, its evidence and its fix, indented under it.
fn finding(t: &Term, f: &Finding, pids: &[u32], out: &mut Vec<String>) {
    const INDENT: usize = 11;
    let mark = if f.severity == Severity::High {
        t.paint("!", Paint::Red)
    } else {
        " ".into()
    };
    let head = format!(
        "  {mark} {} ",
        t.paint(&format!("{:<6}", f.severity), severity_paint(f.severity))
    );
    let text = format!("{}: {}", label_pids(f, pids), message(f));
    let lines = t.lines(&head, INDENT, &text);
    out.extend(lines);
    let pad = " ".repeat(INDENT);
    for rule in &f.rules {
        let cite = t.paint(&cite_line(rule), Paint::Dim);
        out.extend(t.lines(&format!("{pad}{cite}: "), INDENT + 2, &rule_line(rule)));
    }
    for e in &f.evidence {
        out.extend(t.lines(&pad, INDENT + 2, &sanitize(e)));
    }
    out.extend(t.lines(
        &format!("{pad}{} ", t.paint("fix:", Paint::Bold)),
        INDENT + 5,
        &sanitize(&f.remedy),
    ));
}

fn verdict_paint(v: ProcessVerdict) -> Paint {
    match v {
        ProcessVerdict::Bypass => Paint::Red,
        ProcessVerdict::Partial => Paint::Yellow,
        ProcessVerdict::Unknown => Paint::Magenta,
        ProcessVerdict::Captured => Paint::Green,
        ProcessVerdict::Proxy | ProcessVerdict::Unmeshed | ProcessVerdict::Sandbox => Paint::Dim,
    }
}

/// One row a process; `wide` keeps names whole and adds groups and container ids.
fn processes(t: &Term, ns: &NetnsReport, wide: bool, out: &mut Vec<String>) {
    if ns.processes.is_empty() {
        out.push("  no processes".into());
        return;
    }
    let cut = |s: String| -> String {
        if wide {
            s
        } else {
            s.chars().take(16).collect()
        }
    };
    let rows: Vec<[String; 5]> = ns
        .processes
        .iter()
        .map(|p| {
            let container = p.container.as_ref().map_or("-".to_string(), |c| {
                let id = &c.id[..12.min(c.id.len())];
                match (&c.name, wide) {
                    _ if c.sandbox && wide => format!("(sandbox) ({id})"),
                    _ if c.sandbox => "(sandbox)".to_string(),
                    (Some(n), true) => format!("{n} ({id})"),
                    (Some(n), false) => n.clone(),
                    (None, _) => id.to_string(),
                }
            });
            let mut ids = format!("{}:{}", p.uid, p.gid);
            if wide && !p.groups.is_empty() {
                let g: Vec<String> = p.groups.iter().map(u32::to_string).collect();
                ids += &format!(" +{}", g.join(","));
            }
            [
                p.pid.to_string(),
                cut(sanitize(&p.comm)),
                cut(sanitize(&container)),
                ids,
                p.verdict.name().to_string(),
            ]
        })
        .collect();
    let heads = ["PID", "COMM", "CONTAINER", "UID:GID", "VERDICT"];
    let widths = super::text::column_widths(&heads, &rows);
    let row = |mark: &str, cells: &[String; 5], verdict: String| {
        format!(
            "  {mark} {:>w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {verdict}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        )
    };
    let heads = heads.map(String::from);
    out.push(t.paint(&row(" ", &heads, heads[4].clone()), Paint::Bold));
    let indent = 4 + widths[0] + 2;
    for (p, cells) in ns.processes.iter().zip(&rows) {
        let mark = if p.verdict.bypasses() {
            t.paint("!", Paint::Red)
        } else {
            " ".into()
        };
        out.push(row(
            &mark,
            cells,
            t.paint(&cells[4], verdict_paint(p.verdict)),
        ));
        let pad = " ".repeat(indent);
        if let Some(d) = &p.decided_by {
            out.extend(t.lines(&pad, indent, &sanitize(&d.why)));
        }
        // A bypass's rules are in its identity-exempt finding above; an unknown verdict
        // has no finding of its own, so its deciding rules are here.
        if p.verdict == ProcessVerdict::Unknown {
            for rule in &p.reasons {
                let cite = t.paint(&cite_line(rule), Paint::Dim);
                out.extend(t.lines(&format!("{pad}{cite}: "), indent + 2, &rule_line(rule)));
            }
        }
    }
}
