//! `meshleak trace`: one connection, rule by rule.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};
use serde::Serialize;

use super::Format;
use super::input::RulesArgs;
use super::text::{cite_line, rule_line};
use meshleak_core::eval::{self, Flow, Identity, Outcome, SourcePort, Verdict};
use meshleak_core::explain::{self, Step, UnknownCite};
use meshleak_core::model::{IpVersion, proto_name, proto_number};
use meshleak_core::sanitize::sanitize;
use meshleak_core::schema::ProcessVerdict;
use meshleak_core::ways::{Source, Way};

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    #[command(flatten)]
    rules: RulesArgs,
    /// Trace as this process: its namespace's live rules, routes and addresses, and its
    /// identity (instead of --rules, --uid, --gid).
    #[arg(long, conflicts_with_all = ["files", "uid", "gid", "groups"])]
    pid: Option<u32>,
    /// With --pid: trace only the socket the process holds at this descriptor, by the
    /// socket's own credentials (by default every thread's and socket's are traced, and the
    /// worst decides).
    #[arg(long, requires = "pid")]
    fd: Option<u32>,
    /// Where the host's /proc is (with --pid).
    #[arg(long, default_value = "/proc")]
    proc_root: std::path::PathBuf,
    /// The socket's fsuid.
    #[arg(long, required_unless_present = "pid")]
    uid: Option<u32>,
    /// The socket's fsgid.
    #[arg(long, required_unless_present = "pid")]
    gid: Option<u32>,
    /// Supplementary groups (only `--suppl-groups` owner matches use them).
    #[arg(long, value_delimiter = ',')]
    groups: Vec<u32>,
    /// Destination, IP:PORT or [IPV6]:PORT.
    #[arg(long)]
    dst: String,
    /// Protocol: tcp, udp, sctp, ... or a number.
    #[arg(long, default_value = "tcp")]
    proto: String,
    /// Output interface (default: lo for loopback destinations, eth0 otherwise).
    #[arg(long)]
    oif: Option<String>,
    /// Source address, also taken as one of the pod's own addresses (default: the
    /// loopback address for loopback destinations, otherwise unknown).
    #[arg(long)]
    src: Option<IpAddr>,
    /// Source port the app binds (default: an ephemeral port from 32768-60999).
    #[arg(long)]
    sport: Option<u16>,
    /// The socket's SO_MARK.
    #[arg(long, default_value_t = 0, value_parser = parse_mark)]
    mark: u32,
    /// table for people (wide: the same, nothing cut), json or yaml for tools.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: Format,
}

/// What `--pid` gives a trace: the namespace's live rules, the ways out of the process
/// (its threads' credentials for new sockets, its sockets' own), the route to the
/// destination (interface, source), the namespace's own addresses, and what of them could
/// not be read.
struct Live {
    rules: meshleak_core::model::Ruleset,
    ways: Vec<Way>,
    /// The namespace read, whose routes and routing rules give each way's interface and
    /// source (policy routing may send one uid's traffic elsewhere).
    ns: Option<meshleak_core::snapshot::NetnsFacts>,
    local: Vec<std::net::IpAddr>,
    incomplete: Vec<String>,
}

/// Reads the process's namespace as `meshleak pod` does (its processes' sockets and
/// credentials, the owning user namespace's maps), then the ways out of the process.
fn live(args: &Args, pid: u32) -> anyhow::Result<Live> {
    use meshleak_collect::procs;
    use meshleak_collect::scan::{ScanOptions, scan};
    let proc_dir = args.proc_root.join(pid.to_string());
    let inode = procs::netns_inode(&proc_dir.join("ns/net")).with_context(|| {
        format!(
            "cannot read process {pid}'s network namespace under {}",
            args.proc_root.display()
        )
    })?;
    let snapshot = scan(&ScanOptions {
        proc_root: args.proc_root.clone(),
        include_host: true,
        only: vec![inode],
        ..ScanOptions::default()
    })?;
    let ns = snapshot
        .netns
        .iter()
        .find(|n| n.inode == inode)
        .with_context(|| {
            format!(
                "cannot read process {pid}'s network namespace: {}",
                snapshot.errors.join("; ")
            )
        })?;
    let p = ns
        .processes
        .iter()
        .find(|p| p.pid == pid)
        .with_context(|| format!("cannot read process {pid} (it exited, or is a kernel thread)"))?;
    let ways = match args.fd {
        None => meshleak_core::ways::ways(p, ns),
        Some(fd) => {
            let s = p
                .sockets
                .iter()
                .find(|s| s.fd == fd)
                .with_context(|| format!("process {pid} holds no socket at fd {fd}"))?;
            let way = meshleak_core::ways::socket(p, ns, s).with_context(|| {
                format!("fd {fd} of process {pid} sends no IP traffic first (a listener, or a unix, netlink or packet socket)")
            })?;
            vec![way]
        }
    };
    let local = ns
        .interfaces
        .iter()
        .flat_map(|i| i.addrs.iter().copied())
        .collect();
    let incomplete = ns.gaps.iter().map(|g| format!("not read: {g}")).collect();
    Ok(Live {
        rules: ns.rules.clone(),
        ways,
        ns: Some(ns.clone()),
        local,
        incomplete,
    })
}

fn parse_mark(text: &str) -> Result<u32, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("`{text}` is not a mark (decimal or 0x hex)"))
}

#[derive(Serialize)]
struct Report {
    verdict: Verdict,
    redirect_port: Option<u16>,
    family: IpVersion,
    protocol: String,
    src: Option<IpAddr>,
    dst: String,
    oif: String,
    /// With `--pid`: the routing table and the policy-routing rule (as `ip rule` prints
    /// it) that gave the interface and source.
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<RouteReport>,
    identity: Identity,
    /// Destination after NAT, when NAT changed it.
    nat_destination: Option<String>,
    path: Vec<Step>,
    deciding_rule: Option<Step>,
    /// With verdict unknown: the outcomes that remain possible and what decides between them.
    possible: Vec<Outcome>,
    unknown: Vec<UnknownCite>,
    /// With `--pid`: the thread or socket whose credentials decide, when not the
    /// process's own.
    decided_by: Option<WayReport>,
    /// With `--pid`: every way out traced (the process's new sockets, other threads', held
    /// sockets with their own credentials), each with its verdict; the worst decides.
    ways: Vec<WayReport>,
    /// With `--pid`: what the trace needs and could not be read (routes, addresses), so
    /// the interface or source may be guessed. Empty: everything was read.
    incomplete: Vec<String>,
}

#[derive(Serialize)]
struct RouteReport {
    table: u32,
    rule: Option<String>,
}

#[derive(Serialize)]
struct WayReport {
    #[serde(flatten)]
    source: Source,
    uid: u32,
    gid: u32,
    verdict: Verdict,
    why: String,
}

/// How bad a trace's verdict is, worst first.
fn rank(v: Verdict) -> u8 {
    match v {
        Verdict::Bypass => 0,
        Verdict::Unknown => 1,
        Verdict::Captured => 2,
        Verdict::Dropped => 3,
    }
}

pub(super) fn run(args: Args) -> anyhow::Result<u8> {
    let dst: SocketAddr = args
        .dst
        .parse()
        .with_context(|| format!("--dst {}: expected IP:PORT or [IPV6]:PORT", args.dst))?;
    // An IPv4-mapped address (`[::ffff:10.0.0.5]:80`) is IPv4 on the wire: a dual-stack
    // socket connecting to it sends IPv4, which the IPv4 rules judge.
    let dst = SocketAddr::new(dst.ip().to_canonical(), dst.port());
    let src = args.src.map(|a| a.to_canonical());
    let proto = proto_number(&args.proto)
        .with_context(|| format!("--proto {}: unknown protocol", args.proto))?;
    let version = IpVersion::of(&dst.ip());
    if let Some(src) = src
        && IpVersion::of(&src) != version
    {
        bail!(
            "--src {src} and --dst {} are of different IP versions",
            args.dst
        );
    }
    let loopback = dst.ip().is_loopback();
    let live = match args.pid {
        Some(pid) => live(&args, pid)?,
        None => {
            if args.rules.files.is_empty() {
                bail!("give --rules FILE (rule dumps) or --pid PID (a live process)");
            }
            let identity = Identity {
                uid: args.uid.expect("required without --pid"),
                gid: args.gid.expect("required without --pid"),
                groups: args.groups.clone(),
            };
            let loaded = args.rules.load()?;
            Live {
                rules: loaded.rules,
                ways: vec![Way {
                    decides: None,
                    cites: Vec::new(),
                    source: Source::Process,
                    identity,
                    groups_unknown: false,
                    why: String::new(),
                }],
                ns: None,
                local: src.into_iter().collect(),
                incomplete: loaded.cut_short,
            }
        }
    };
    let rules = &live.rules;
    // The route the kernel gives this identity's socket: policy routing may choose by uid.
    let route_of = |identity: &Identity| {
        live.ns.as_ref().and_then(|ns| {
            ns.routing().lookup(&meshleak_core::route::Query {
                dst: dst.ip(),
                src,
                uid: identity.uid,
                mark: args.mark,
                proto,
                sport: args.sport,
                dport: dst.port(),
            })
        })
    };
    let flow_of = |identity: &Identity| {
        let route = route_of(identity);
        let local =
            meshleak_core::route::Routed::local_addrs(route.as_ref(), dst.ip(), live.local.clone());
        Flow {
            version,
            proto,
            src: src
                .or(route.as_ref().map(|r| r.src))
                .or_else(|| loopback.then(|| version.loopback())),
            dst: dst.ip(),
            // Unbound, a port of the namespace's ip_local_port_range (live) or Linux's.
            sport: args.sport.map_or(
                live.ns
                    .as_ref()
                    .map_or(SourcePort::DEFAULT_EPHEMERAL, |ns| ns.ephemeral()),
                SourcePort::Bound,
            ),
            dport: dst.port(),
            oif: args
                .oif
                .clone()
                .or(route.map(|r| r.oif))
                .unwrap_or_else(|| if loopback { "lo" } else { "eth0" }.to_string()),
            identity: identity.clone(),
            mark: args.mark,
            local,
        }
    };
    let groups_matter = meshleak_core::ways::matches_groups(rules);
    let traced: Vec<(Verdict, eval::Trace, &Way)> = live
        .ways
        .iter()
        .map(|w| {
            let t = eval::trace(rules, &flow_of(&w.identity));
            let verdict = match (&w.source, t.outcome.verdict) {
                // The way decides itself: a socket of another namespace meets none of
                // these rules; a ring whose credentials were not read is unknown.
                _ if w.decides == Some(ProcessVerdict::Unknown) => Verdict::Unknown,
                _ if w.decides.is_some_and(ProcessVerdict::bypasses) => Verdict::Bypass,
                (Source::UnknownSocket { .. }, Verdict::Bypass) => Verdict::Unknown,
                (_, v) if w.groups_unknown && groups_matter && v != Verdict::Unknown => {
                    Verdict::Unknown
                }
                (_, v) => v,
            };
            (verdict, t, w)
        })
        .collect();
    let Some((verdict, t, way)) = traced.iter().min_by_key(|(v, _, _)| rank(*v)) else {
        bail!("no way out of the process to trace");
    };
    let foreign = matches!(way.source, Source::ForeignSocket { .. });
    let flow = flow_of(&way.identity);
    let route = route_of(&way.identity);
    let mut incomplete = live.incomplete.clone();
    if args.oif.is_none() {
        incomplete.extend(route.iter().flat_map(|r| r.uncertain.iter().cloned()));
    }
    let shown = |w: &Way, v: Verdict| WayReport {
        source: w.source.clone(),
        uid: w.identity.uid,
        gid: w.identity.gid,
        verdict: v,
        why: w.why.clone(),
    };
    let report = Report {
        verdict: *verdict,
        redirect_port: t.outcome.redirect_port.filter(|_| !foreign),
        family: version,
        protocol: proto_name(proto),
        src: flow.src,
        dst: explain::addr_port(&flow.dst, flow.dport),
        oif: flow.oif.clone(),
        route: route.filter(|_| args.oif.is_none()).map(|r| RouteReport {
            table: r.table,
            rule: r.rule,
        }),
        identity: flow.identity.clone(),
        nat_destination: t.nat_dst.map(|(a, p)| explain::addr_port(&a, p)),
        path: if foreign {
            Vec::new()
        } else {
            t.path.iter().map(|s| explain::step(rules, s)).collect()
        },
        deciding_rule: explain::deciding(rules, t).filter(|_| !foreign),
        possible: t.possible.clone(),
        unknown: t
            .unknowns
            .iter()
            .map(|u| explain::unknown(rules, u))
            .collect(),
        decided_by: (way.source != Source::Process).then(|| shown(way, *verdict)),
        ways: if args.pid.is_some() {
            traced.iter().map(|(v, _, w)| shown(w, *v)).collect()
        } else {
            Vec::new()
        },
        incomplete,
    };
    super::scan::print_problems(&report.incomplete, &[]);
    if !args.format.print_data(&report)? {
        print_table(&report);
    }
    Ok(super::status::of(
        report.verdict == Verdict::Bypass,
        !report.incomplete.is_empty(),
        report.verdict == Verdict::Unknown,
    ))
}

fn print_table(r: &Report) {
    if !r.incomplete.is_empty() {
        println!(
            "INCOMPLETE: the route may be guessed: {}",
            sanitize(&r.incomplete.join("; "))
        );
    }
    let port = r
        .redirect_port
        .map(|p| format!(" to local port {p}"))
        .unwrap_or_default();
    println!("verdict   {}{port}", r.verdict.name());
    println!(
        "flow      {} {} {} -> {} via {}, uid {} gid {}{}",
        r.family.family().name(),
        r.protocol,
        r.src.map_or("?".into(), |s| s.to_string()),
        r.dst,
        sanitize(&r.oif),
        r.identity.uid,
        r.identity.gid,
        if r.identity.groups.is_empty() {
            String::new()
        } else {
            format!(" groups {:?}", r.identity.groups)
        }
    );
    if let Some(route) = &r.route {
        let rule = route
            .rule
            .as_deref()
            .map(|t| format!(" (ip rule {})", t.replace('\t', " ")))
            .unwrap_or_default();
        println!("route     table {}{}", route.table, sanitize(&rule));
    }
    if let Some(d) = &r.decided_by {
        println!("by        {}", sanitize(&d.why));
    }
    if r.ways.len() > 1 {
        println!("ways");
        for w in &r.ways {
            println!("  {:<9} {}", w.verdict.name(), sanitize(&w.why));
        }
    }
    if let Some(nat) = &r.nat_destination {
        println!("nat       destination becomes {nat}");
    }
    if let Some(d) = &r.deciding_rule {
        println!("decided   {}", cite_line(&d.at));
        println!("          {}", rule_line(&d.at));
    }
    if !r.possible.is_empty() {
        let names: Vec<String> = r
            .possible
            .iter()
            .map(|o| match o.redirect_port {
                Some(p) => format!("{} (port {p})", o.verdict.name()),
                None => o.verdict.name().to_string(),
            })
            .collect();
        println!("possible  {}", names.join(", "));
    }
    for u in &r.unknown {
        println!("unknown   {}: {}", cite_line(&u.at), sanitize(&u.unknown));
    }
    if r.path.is_empty() {
        println!(
            "path      none: no {} rule sees this packet, so nothing captures it",
            r.family.family().name()
        );
    } else {
        println!("path");
    }
    for (i, s) in r.path.iter().enumerate() {
        println!(
            "  {:>2}. {:<48} {}",
            i + 1,
            cite_line(&s.at),
            sanitize(&s.effect)
        );
        println!("      {}", rule_line(&s.at));
    }
}
