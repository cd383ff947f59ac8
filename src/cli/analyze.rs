//! `meshleak analyze`: exemptions, escapes, and a verdict per socket identity.

use anyhow::Context;

use super::Format;
use super::input::RulesArgs;
use super::text::{cite_line, rule_line};
use meshleak_core::analyze::{self, Analysis, IdentityVerdict, Region};
use meshleak_core::eval::Identity;
use meshleak_core::meshes::Mesh;
use meshleak_core::range::addr_key;
use meshleak_core::sanitize::sanitize;

#[derive(clap::Args, Debug)]
pub(super) struct Args {
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
    /// table for people (wide: the same, nothing cut), json or yaml for tools.
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

pub(super) fn run(args: Args) -> anyhow::Result<u8> {
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
    let super::input::Loaded { rules, cut_short } = args.rules.load()?;
    let analysis =
        analyze::analyze(&rules, &args.identities).context("cannot analyse these rules")?;
    // Offline the namespace's own addresses are unknown: a DNAT to one of them is not
    // taken for a proxy (only REDIRECT, TPROXY and DNAT to loopback are).
    let mesh = meshleak_core::meshes::detect(&rules, &[]);
    let output = Output {
        mesh: mesh.as_ref(),
        incomplete: &cut_short,
        analysis: &analysis,
    };
    if !args.format.print_data(&output)? {
        for c in &cut_short {
            println!("INCOMPLETE: {}", sanitize(c));
        }
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
    Ok(super::status::of(bypass, !cut_short.is_empty(), unknown))
}

/// `analyze -o json`: the analysis, and the mesh the rules show (as `pod` reports it).
#[derive(serde::Serialize)]
struct Output<'a> {
    mesh: Option<&'a Mesh>,
    /// What may be missing from the rules (a dump cut short): exit 4 at best.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    incomplete: &'a [String],
    #[serde(flatten)]
    analysis: &'a Analysis,
}

/// `mesh istio-sidecar, proxy ports 15001,15006, exempt uid 1337, gid 1337`.
fn mesh_line(mesh: Option<&Mesh>) -> String {
    let Some(m) = mesh else {
        return "mesh      none: nothing in these rules redirects to a proxy".into();
    };
    let list = |v: &[meshleak_core::range::IdRange]| {
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
    let nothing_captured = a.captured_on.is_empty();
    println!(
        "reference uid {} gid {}: an ordinary app (no owner rule names it); verdicts compare each identity with it",
        r.uid, r.gid
    );
    if !a.identities.is_empty() {
        println!("{:<24} {:<9} DECIDING RULE", "IDENTITY", "VERDICT");
        for i in &a.identities {
            let who = if i.groups.is_empty() {
                format!("uid {} gid {}", i.uid, i.gid)
            } else {
                let groups: Vec<String> = i.groups.iter().map(u32::to_string).collect();
                format!("uid {} gid {} +{}", i.uid, i.gid, groups.join(","))
            };
            let verdict = serde_json::to_value(i.verdict).expect("enum serializes");
            let verdict = verdict.as_str().unwrap_or_default();
            match i.rules.first() {
                Some(first) => {
                    println!("{who:<24} {verdict:<9} {}", cite_line(first));
                    println!("{:<34} {}", "", rule_line(first));
                    for more in &i.rules[1..] {
                        println!("{:<34} {}", "", cite_line(more));
                        println!("{:<34} {}", "", rule_line(more));
                    }
                }
                None => println!("{who:<24} {verdict}"),
            }
            if i.verdict == IdentityVerdict::Partial {
                for region in &i.escapes {
                    println!("{:<34} escapes: {}", "", region_line(region));
                }
            }
            // Rules that capture only some identities: say what they capture of this one.
            if nothing_captured {
                for (line, _) in fold_protocols(&i.captured) {
                    println!("{:<34} {line}", "");
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
            None => println!(
                "  {line}\n      by default: no rule on its way decides it, so nothing captures it"
            ),
        }
    }
}

/// Regions that differ only in protocol, shown as one line listing the protocols.
fn fold_protocols(regions: &[Region]) -> Vec<(String, Option<&meshleak_core::explain::RuleRef>)> {
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
    let mut s = format!(
        "{} {} {} oif {} dst {}",
        r.verdict.name(),
        r.family,
        r.protocol,
        sanitize(&interfaces(&r.oif)),
        addresses(&r.dst, r.family == "ipv6")
    );
    if !r.dport.is_empty() {
        s += &format!(" dport {}", ports(&r.dport));
    }
    if r.src != ["any"] {
        s += &format!(" src {}", addresses(&r.src, r.family == "ipv6"));
    }
    if !r.sport.is_empty() && r.sport != ["any"] {
        s += &format!(" sport {}", ports(&r.sport));
    }
    s
}

/// `lo,eth0 or any other`: `*` in a region is every interface the rules do not name.
fn interfaces(oif: &[String]) -> String {
    let named: Vec<&str> = oif
        .iter()
        .map(String::as_str)
        .filter(|i| *i != "*")
        .collect();
    match (named.is_empty(), oif.iter().any(|i| i == "*")) {
        (true, true) => "any other than those the rules name".into(),
        (false, true) => format!("{} or any other", named.join(",")),
        _ => named.join(","),
    }
}

/// Address ranges, or `any except ...` when the ranges left out are fewer.
fn addresses(list: &[String], v6: bool) -> String {
    let parsed: Option<Vec<(u128, u128)>> = list
        .iter()
        .map(|t| {
            let r = meshleak_core::range::AddrRange::parse(t)?;
            Some((addr_key(&r.start), addr_key(&r.end)))
        })
        .collect();
    let max = if v6 { u128::MAX } else { u32::MAX as u128 };
    let show = |(a, b): (u128, u128)| {
        let ip = |k: u128| -> std::net::IpAddr {
            if v6 {
                std::net::Ipv6Addr::from(k).into()
            } else {
                std::net::Ipv4Addr::from(k as u32).into()
            }
        };
        meshleak_core::range::AddrRange {
            start: ip(a),
            end: ip(b),
        }
        .to_string()
    };
    except(list, parsed, max, show)
}

/// Port ranges, or `any except ...` when the ports left out are fewer.
fn ports(list: &[String]) -> String {
    let parsed: Option<Vec<(u128, u128)>> = list
        .iter()
        .map(|t| {
            let r = meshleak_core::range::PortRange::parse(t)?;
            Some((r.start as u128, r.end as u128))
        })
        .collect();
    let show = |(a, b): (u128, u128)| {
        if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        }
    };
    except(list, parsed, u16::MAX as u128, show)
}

/// `list` as is, or as `any except GAPS` when its complement in `0..=max` is shorter.
fn except(
    list: &[String],
    parsed: Option<Vec<(u128, u128)>>,
    max: u128,
    show: impl Fn((u128, u128)) -> String,
) -> String {
    let plain = list.join(",");
    let Some(mut ranges) = parsed else {
        return plain;
    };
    ranges.sort_unstable();
    let mut gaps = Vec::new();
    // The first value no range covered so far; None once the ranges reach `max`.
    let mut next = Some(0u128);
    for (a, b) in ranges {
        let Some(n) = next else { break };
        if a > n {
            gaps.push((n, a - 1));
        }
        next = if b >= max { None } else { Some(n.max(b + 1)) };
    }
    if let Some(n) = next {
        gaps.push((n, max));
    }
    if gaps.is_empty() || gaps.len() >= list.len() {
        return plain;
    }
    let gaps: Vec<String> = gaps.into_iter().map(show).collect();
    format!("any except {}", gaps.join(","))
}
