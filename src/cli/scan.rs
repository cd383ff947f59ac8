//! `meshleak scan`, `pod` and `collect`: the live node, one pod, or a saved snapshot.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};

use super::ReportFormat;
use super::args::CollectArgs;
use super::select::{Pods, Show};
use meshleak_collect::netns::Netns;
use meshleak_collect::scan::{self, ScanOptions};
use meshleak_core::report;
use meshleak_core::sanitize::sanitize;
use meshleak_core::selection::{FailOn, Selection};
use meshleak_core::snapshot::Snapshot;
use meshleak_core::wanted::Wanted;

#[derive(clap::Args, Debug)]
pub(super) struct ScanArgs {
    #[command(flatten)]
    collect: CollectArgs,
    #[command(flatten)]
    pods: Pods,
    #[command(flatten)]
    show: Show,
    /// table for people (wide: whole names, groups and container ids), json or yaml for
    /// tools (the same fields), policyreport for `kubectl apply -f -`.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: ReportFormat,
}

pub(super) fn run_scan(args: ScanArgs) -> anyhow::Result<u8> {
    let started = Instant::now();
    let snapshot = scan::scan(&args.collect.options())?;
    finish(
        &snapshot,
        started,
        args.format,
        &args.show,
        Some(&args.pods),
    )
}

#[derive(clap::Args, Debug)]
pub(super) struct PodArgs {
    /// The pod of this process.
    #[arg(long, group = "which")]
    pid: Option<u32>,
    /// The pod of this namespace file.
    #[arg(long, group = "which")]
    netns: Option<PathBuf>,
    /// A pod by Kubernetes namespace and name.
    #[arg(long, group = "which", value_name = "NS/NAME")]
    pod: Option<String>,
    /// The pod of a container id.
    #[arg(long, group = "which", value_name = "ID")]
    container: Option<String>,
    #[command(flatten)]
    collect: CollectArgs,
    #[command(flatten)]
    show: Show,
    /// table for people (wide: whole names, groups and container ids), json or yaml for
    /// tools (the same fields), policyreport for `kubectl apply -f -`.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: ReportFormat,
}

pub(super) fn run_pod(args: PodArgs) -> anyhow::Result<u8> {
    let started = Instant::now();
    let file = match (&args.pid, &args.netns, &args.pod, &args.container) {
        (Some(pid), ..) => Netns::Pid {
            pid: *pid,
            proc_root: args.collect.proc_root.clone(),
        }
        .file(),
        (_, Some(path), ..) => path.clone(),
        (_, _, Some(pod), _) => {
            let wanted = Wanted::pod(pod).map_err(anyhow::Error::msg)?;
            return by_container(&args, started, &wanted);
        }
        (_, _, _, Some(id)) => {
            let wanted = Wanted::container(id).map_err(anyhow::Error::msg)?;
            return by_container(&args, started, &wanted);
        }
        _ => bail!("say which pod: --pid, --netns, --pod or --container"),
    };
    let inode = meshleak_collect::netns::named(&file).map_err(anyhow::Error::msg)?;
    let mut opts = args.collect.options();
    opts.only = vec![inode];
    opts.include_host = true;
    let mut snapshot = scan::scan(&opts)?;
    if snapshot.netns.is_empty() && snapshot.errors.is_empty() {
        // A bind-mounted namespace outside the scanned directories.
        if let Some(dir) = file.parent() {
            opts.netns_dirs.push(dir.to_path_buf());
            snapshot = scan::scan(&opts)?;
        }
    }
    finish(&snapshot, started, args.format, &args.show, None)
}

/// Scans the node and keeps the namespaces of the pod asked for; an error lists the pods
/// seen when none matches.
fn by_container(args: &PodArgs, started: Instant, wanted: &Wanted) -> anyhow::Result<u8> {
    let mut snapshot = scan::scan(&args.collect.options())?;
    if let Err(seen) = wanted.keep(&mut snapshot) {
        let seen: Vec<String> = seen.iter().map(|s| sanitize(s)).collect();
        bail!(
            "no {} on this node (pods seen: {}); names come from the container runtime's files under --host-root",
            sanitize(&wanted.describe()),
            if seen.is_empty() {
                "none".to_string()
            } else {
                seen.join(", ")
            }
        );
    }
    finish(&snapshot, started, args.format, &args.show, None)
}

#[derive(clap::Args, Debug)]
pub(super) struct SaveArgs {
    /// Where to write the snapshot (JSON; `-`: standard output). A file is made readable
    /// by its owner only (0600): snapshots name every process and identity of the node.
    /// `-o`/`--output` is an old name for it.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        alias = "output",
        short_alias = 'o'
    )]
    output: PathBuf,
    #[command(flatten)]
    collect: CollectArgs,
}

/// Writes `bytes` to `path`, readable and writable by its owner only, also when the file
/// was there before with wider permissions.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)
}

pub(super) fn run_collect(args: SaveArgs) -> anyhow::Result<u8> {
    let snapshot = scan::scan(&ScanOptions {
        include_exe: true,
        ..args.collect.options()
    })?;
    let json = meshleak_core::json::to_string(&snapshot)?;
    let to_stdout = args.output.as_os_str() == "-";
    if to_stdout {
        println!("{json}");
    } else {
        write_private(&args.output, json.as_bytes())
            .with_context(|| format!("cannot write {}", args.output.display()))?;
    }
    let report = report::build(&snapshot, 0);
    print_problems(&report.incomplete, &report.errors);
    eprintln!(
        "meshleak: saved {} network namespaces to {}",
        snapshot.netns.len(),
        if to_stdout {
            "standard output".to_string()
        } else {
            args.output.display().to_string()
        }
    );
    Ok(super::status::of(
        false,
        !report.incomplete.is_empty(),
        false,
    ))
}

/// Reports a saved snapshot (`analyze --snapshot`), narrowed as `scan` narrows.
pub(super) fn report_snapshot(
    path: &std::path::Path,
    format: ReportFormat,
    pods: &Pods,
    show: &Show,
) -> anyhow::Result<u8> {
    let snapshot = load_snapshot(path)?;
    finish(&snapshot, Instant::now(), format, show, Some(pods))
}

/// A snapshot `meshleak collect` wrote, of a version this meshleak reads.
pub(super) fn load_snapshot(path: &std::path::Path) -> anyhow::Result<Snapshot> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read snapshot {}", path.display()))?;
    let snapshot: Snapshot = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a meshleak snapshot (written by `meshleak collect`)",
            path.display()
        )
    })?;
    if snapshot.snapshot_version != meshleak_core::snapshot::SNAPSHOT_VERSION {
        bail!(
            "{}: snapshot version {} is not one this meshleak reads ({})",
            path.display(),
            snapshot.snapshot_version,
            meshleak_core::snapshot::SNAPSHOT_VERSION
        );
    }
    Ok(snapshot)
}

fn finish(
    snapshot: &Snapshot,
    started: Instant,
    format: ReportFormat,
    show: &Show,
    pods: Option<&Pods>,
) -> anyhow::Result<u8> {
    let (selection, fail_on) = (&show.selection(pods), show.fail_on());
    let mut report = report::build(snapshot, started.elapsed().as_millis() as u64);
    if let Err(none) = selection.apply(&mut report) {
        bail!(
            "no pod on this node matches {} (pods seen: {})",
            describe(selection),
            if none.pods.is_empty() {
                "none".to_string()
            } else {
                sanitize(&none.pods.join(", "))
            }
        );
    }
    // What could not be read comes first, on stderr too, so a JSON reader's log shows it.
    print_problems(&report.incomplete, &[]);
    match format {
        ReportFormat::Json => println!("{}", meshleak_core::json::to_string_pretty(&report)?),
        ReportFormat::PolicyReport => println!(
            "{}",
            meshleak_core::json::to_string_pretty(&meshleak_core::policyreport::build(&report))?
        ),
        ReportFormat::Table => super::report_table::print(&report, false),
        ReportFormat::Wide => super::report_table::print(&report, true),
        ReportFormat::Yaml => print!("{}", meshleak_core::yaml::to_string(&report)?),
    }
    print_problems(&[], &report.errors);
    // Some namespaces unreadable: reported above, the rest stands. None readable: an error.
    if report.netns.is_empty() && report.unread_netns > 0 {
        bail!(
            "none of the {} network namespace{} found could be read (why is above)",
            report.unread_netns,
            if report.unread_netns == 1 { "" } else { "s" }
        );
    }
    if fail_on == FailOn::Never {
        return Ok(super::status::CLEAN);
    }
    Ok(super::status::of(
        fail_on.fails(&report),
        !report.incomplete.is_empty(),
        report.unknown(),
    ))
}

/// `-n shop --pod web`, as the user gave it.
fn describe(s: &Selection) -> String {
    let mut parts = Vec::new();
    if let Some(n) = &s.namespace {
        parts.push(format!("-n {n}"));
    }
    if let Some(p) = &s.pod_prefix {
        parts.push(format!("--pod {p}"));
    }
    sanitize(&parts.join(" "))
}

/// What could not be read, then errors, on stderr (sanitized).
pub(super) fn print_problems(incomplete: &[String], errors: &[String]) {
    for line in incomplete {
        eprintln!("meshleak: incomplete: {}", sanitize(line));
    }
    for e in errors {
        eprintln!("meshleak: {}", sanitize(e));
    }
}
