//! `meshleak analyze`: exemptions, escapes, and a verdict per socket identity.

use anyhow::Context;

use super::Format;
use super::input::RulesArgs;
use super::text::{cite_line, rule_line};
use meshleak::analyze::{self, Analysis, IdentityVerdict, Region};
use meshleak::eval::Identity;
use meshleak::report::Mesh;
use meshleak::sanitize::sanitize;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    rules: RulesArgs,
    /// Report a snapshot saved by `meshleak collect` instead of rule files.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["files", "identities"])]
    snapshot: Option<std::path::PathBuf>,
    /// A socket identity to judge: UID:GID or UID:GID:G1,G2 (supplementary groups).
    #[arg(long = "identity", value_name = "UID:GID[:G1,G2]", value_parser = parse_identity)]
    identities: Vec<Identity>,
    /// With --snapshot: which pods, what to show and what fails, as `scan` has them.
    #[command(flatten, next_help_heading = "Snapshot selection")]
    pods: super::select::Pods,
    #[command(flatten, next_help_heading = "Snapshot selection")]
    show: super::select::Show,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: Format,
}

fn parse_identity(text: &str) -> Result<Identity, String> {
    let bad = || format!("`{text}` is not UID:GID or UID:GID:G1,G2");
    let mut parts = text.splitn(3, ':');
    let uid = parts.next().and_then(|u| u.parse().ok()).ok_or_else(bad)?;
    let gid = parts.next().and_then(|g| g.parse().ok()).ok_or_else(bad)?;
    let groups = match parts.next() {
        Some("") | None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|g| g.parse().map_err(|_| bad()))
            .collect::<Result<_, _>>()?,
    };
    Ok(Identity { uid, gid, groups })
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    if let Some(path) = &args.snapshot {
        return super::scan::report_snapshot(path, args.format.into(), &args.pods, &args.show);
    }
    if args.pods.given() || args.show.given() {
        anyhow::bail!(
            "-n, --pod, -A, --bypassing, --severity and --fail-on narrow a node report: use them with --snapshot (or scan)"
        );
    }
    if args.rules.files.is_empty() {
        anyhow::bail!("give --rules FILE (rule dumps) or --snapshot FILE (from meshleak collect)");
    }
    let rules = args.rules.load()?;
    let analysis =
        analyze::analyze(&rules, &args.identities).context("cannot analyse these rules")?;
    // Offline the namespace's own addresses are unknown: a DNAT to one of them is not
    // taken for a proxy (only REDIRECT, TPROXY and DNAT to loopback are).
    let mesh = meshleak::report::detect_mesh(&rules, &[]);
    let output = Output {
        mesh: mesh.as_ref(),
        analysis: &analysis,
    };
    if !args.format.print_data(&output)? {
        println!("{}", mesh_line(mesh.as_ref()));
        print_table(&analysis);
    }
    let bypass = analysis.identities.iter().any(|i| {
        matches!(
            i.verdict,
            IdentityVerdict::Bypass | IdentityVerdict::Partial | IdentityVerdict::Unmeshed
        )
    });
    let unknown = analysis
        .identities
        .iter()
        .any(|i| i.verdict == IdentityVerdict::Unknown)
        || !analysis.undecided_on.is_empty();
    Ok(super::status::of(bypass, false, unknown))
}

/// `analyze -o json`: the analysis, and the mesh the rules show (as `pod` reports it).
#[derive(serde::Serialize)]
struct Output<'a> {
    mesh: Option<&'a Mesh>,
    #[serde(flatten)]
    analysis: &'a Analysis,
}

/// `mesh istio-sidecar, proxy ports 15001,15006, exempt uid 1337, gid 1337`.
fn mesh_line(mesh: Option<&Mesh>) -> String {
    let Some(m) = mesh else {
        return "mesh      none: nothing in these rules redirects to a proxy".into();
    };
    let list = |v: &[meshleak::range::IdRange]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let ports: Vec<String> = m.proxy_ports.iter().map(u16::to_string).collect();
    let mut exempt = Vec::new();
    if !m.proxy_uids.is_empty() {
        exempt.push(format!("uid {}", list(&m.proxy_uids)));
    }
    if !m.proxy_gids.is_empty() {
        exempt.push(format!("gid {}", list(&m.proxy_gids)));
    }
    let exempt = if exempt.is_empty() {
        String::new()
    } else {
        format!(", exempt {}", exempt.join(", "))
    };
    sanitize(&format!(
        "mesh      {}, proxy ports {}{exempt}",
        m.kind,
        ports.join(",")
    ))
}

fn print_table(a: &Analysis) {
    let r = &a.reference_identity;
    if !a.identities.is_empty() {
        println!("{:<24} {:<9} DECIDING RULE", "IDENTITY", "VERDICT");
        for i in &a.identities {
            let who = if i.groups.is_empty() {
                format!("uid {} gid {}", i.uid, i.gid)
            } else {
                let groups: Vec<String> = i.groups.iter().map(u32::to_string).collect();
                format!("uid {} gid {} +{}", i.uid, i.gid, groups.join(","))
            };
            let mark = match i.verdict {
                IdentityVerdict::Bypass | IdentityVerdict::Partial | IdentityVerdict::Unmeshed => {
                    "!"
                }
                _ => " ",
            };
            let verdict = serde_json::to_value(i.verdict).expect("enum serializes");
            let verdict = verdict.as_str().unwrap_or_default();
            match i.rules.first() {
                Some(first) => {
                    println!("{mark}{who:<23} {verdict:<9} {}", cite_line(first));
                    println!("{:<34} {}", "", rule_line(first));
                    for more in &i.rules[1..] {
                        println!("{:<34} {}", "", cite_line(more));
                        println!("{:<34} {}", "", rule_line(more));
                    }
                }
                None => println!("{mark}{who:<23} {verdict}"),
            }
            if i.verdict == IdentityVerdict::Partial {
                for region in &i.escapes {
                    println!("{:<34} escapes: {}", "", region_line(region));
                }
            }
        }
        println!();
    }
    println!("exemptions");
    for e in &a.exemptions {
        match &e.rule {
            Some(rule) => {
                println!("  {:<10} {}", e.kind, cite_line(rule));
                println!("  {:<10} {}", "", rule_line(rule));
            }
            None => println!("  {:<10} {}", e.kind, sanitize(&e.conditions.join("; "))),
        }
    }
    println!();
    println!(
        "not captured for an ordinary app (uid {} gid {})",
        r.uid, r.gid
    );
    for (line, rule) in fold_protocols(&a.escapes) {
        match rule {
            Some(rule) => println!(
                "  {line}\n      by {}: {}",
                cite_line(rule),
                rule_line(rule)
            ),
            None => println!("  {line}\n      by no rule"),
        }
    }
}

/// Regions that differ only in protocol, shown as one line listing the protocols.
fn fold_protocols(regions: &[Region]) -> Vec<(String, Option<&meshleak::explain::RuleRef>)> {
    let mut out: Vec<(String, Vec<String>, &Region)> = Vec::new();
    for r in regions {
        let key = region_line(&Region {
            protocol: String::new(),
            ..r.clone()
        });
        match out
            .iter_mut()
            .find(|(k, _, first)| *k == key && first.rule == r.rule)
        {
            Some((_, protos, _)) => protos.push(r.protocol.clone()),
            None => out.push((key, vec![r.protocol.clone()], r)),
        }
    }
    out.into_iter()
        .map(|(_, protos, r)| {
            let line = region_line(&Region {
                protocol: protos.join(","),
                ..r.clone()
            });
            (line, r.rule.as_ref())
        })
        .collect()
}

fn region_line(r: &Region) -> String {
    let list = |v: &[String]| v.join(",");
    let mut s = format!(
        "{} {} {} oif {} dst {}",
        r.verdict.name(),
        r.family,
        r.protocol,
        sanitize(&list(&r.oif)),
        list(&r.dst)
    );
    if !r.dport.is_empty() {
        s += &format!(" dport {}", list(&r.dport));
    }
    if r.src != ["any"] {
        s += &format!(" src {}", list(&r.src));
    }
    if !r.sport.is_empty() && r.sport != ["any"] {
        s += &format!(" sport {}", list(&r.sport));
    }
    s
}
