//! Command-line parsing and dispatch. Each command lives in its own module; output names
//! (JSON fields, verdict words) are a contract other tools depend on.

mod agent;
mod analyze;
mod args;
mod check;
mod help;
mod input;
mod report_table;
mod rules;
mod scan;
mod select;
pub(crate) mod status;
mod term;
mod text;
mod trace;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "meshleak",
    version,
    about = "Shows which processes really bypass their service-mesh sidecar, and why",
    after_help = status::HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Colour the tables: `auto` on a terminal unless NO_COLOR is set.
    #[arg(long, global = true, value_enum, default_value_t, value_name = "WHEN")]
    color: term::ColorChoice,
}

#[derive(Subcommand)]
enum Command {
    /// Every network namespace of this node: which processes bypass their sidecar, and why.
    #[command(after_help = help::SCAN)]
    Scan(scan::ScanArgs),
    /// One pod (network namespace): its processes' verdicts and the rules deciding them.
    #[command(after_help = help::POD)]
    Pod(scan::PodArgs),
    /// One connection's first packet, rule by rule: against saved rules, or as a live
    /// process sends it (--pid: its namespace's rules, routes and credentials).
    #[command(after_help = help::TRACE)]
    Trace(trace::Args),
    /// Derive every exemption from saved rules and judge socket identities.
    #[command(after_help = help::ANALYZE)]
    Analyze(analyze::Args),
    /// Judge Kubernetes manifests before deploy: each container's identity against the
    /// mesh's rules, and what else lets it out (hostNetwork, annotations, capabilities).
    #[command(after_help = help::CHECK)]
    Check(check::Args),
    /// Print a network namespace's rules as read straight from the kernel.
    #[command(after_help = help::RULES)]
    Rules(rules::Args),
    /// Save the node's facts (rules, processes, sockets) to judge later with `analyze --snapshot`.
    #[command(after_help = help::COLLECT)]
    Collect(scan::SaveArgs),
    /// Scan periodically and serve Prometheus metrics, health and the last report.
    #[command(after_help = help::AGENT)]
    Agent(agent::Args),
    /// Print a shell completion script: `meshleak completion bash > /etc/bash_completion.d/meshleak`.
    Completion { shell: clap_complete::Shell },
    /// Print the man page (roff): `meshleak man > meshleak.1` (`make man`).
    #[command(hide = true)]
    Man,
}

/// `-o`, as kubectl has it: a table for people (`wide`: every column, nothing cut), JSON
/// or YAML for tools (the same fields).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    #[default]
    #[value(alias = "iptables-save")]
    Table,
    Wide,
    Json,
    Yaml,
}

impl Format {
    /// Prints `value` as JSON or YAML; `false` for the table forms, which the caller prints.
    pub(crate) fn print_data<T: serde::Serialize>(self, value: &T) -> anyhow::Result<bool> {
        match self {
            Format::Json => println!("{}", meshleak_core::json::to_string_pretty(value)?),
            Format::Yaml => print!("{}", meshleak_core::yaml::to_string(value)?),
            Format::Table | Format::Wide => return Ok(false),
        }
        Ok(true)
    }
}

impl From<Format> for ReportFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Table => ReportFormat::Table,
            Format::Wide => ReportFormat::Wide,
            Format::Json => ReportFormat::Json,
            Format::Yaml => ReportFormat::Yaml,
        }
    }
}

/// How a node report is printed (`scan`, `pod`, `analyze --snapshot`).
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub(crate) enum ReportFormat {
    #[default]
    Table,
    Wide,
    Json,
    Yaml,
    /// PolicyReport objects (wgpolicyk8s.io/v1alpha2) in a List, for `kubectl apply -f -`.
    #[value(name = "policyreport")]
    PolicyReport,
}

/// Runs the command; returns the exit status (see [`status`]).
pub(crate) fn run() -> anyhow::Result<u8> {
    let cli = Cli::parse();
    term::configure(cli.color);
    if !matches!(cli.command, Command::Agent(_)) {
        quiet_on_closed_pipe();
    }
    match cli.command {
        Command::Trace(args) => trace::run(args),
        Command::Analyze(args) => analyze::run(args),
        Command::Check(args) => check::run(args),
        Command::Rules(args) => rules::run(args),
        Command::Scan(args) => scan::run_scan(args),
        Command::Pod(args) => scan::run_pod(args),
        Command::Collect(args) => scan::run_collect(args),
        Command::Agent(args) => agent::run(args),
        Command::Completion { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "meshleak", &mut std::io::stdout());
            Ok(status::CLEAN)
        }
        Command::Man => {
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut std::io::stdout())?;
            Ok(status::CLEAN)
        }
    }
}

/// A command whose reader goes away (`meshleak scan | head -1`) ends as `cat` or `grep`
/// do, by SIGPIPE, silently: Rust ignores the signal, so every print after it would panic
/// ("failed printing to stdout: Broken pipe", exit 101). Not for the agent, which must
/// outlive any client: its writes to a closed socket or stderr stay errors.
fn quiet_on_closed_pipe() {
    // SAFETY: restores a signal's default disposition; no handler is installed.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
