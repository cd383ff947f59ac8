//! `meshleak rules`: the rules of a namespace read straight from the kernel.

use std::path::PathBuf;

use clap::ValueEnum;

use meshleak::collect::{self, netns::Netns};
use meshleak::model::{Backend, Ruleset};
use meshleak::xt::save;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Read the network namespace of this process.
    #[arg(long, conflicts_with = "netns", required_unless_present = "netns")]
    pid: Option<u32>,
    /// Read this network namespace file (e.g. /run/netns/NAME).
    #[arg(long)]
    netns: Option<PathBuf>,
    /// Where the host's /proc is (e.g. /host/proc in a container).
    #[arg(long, default_value = "/proc")]
    proc_root: PathBuf,
    #[arg(long, value_enum, default_value_t = RulesFormat::IptablesSave)]
    format: RulesFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RulesFormat {
    IptablesSave,
    Json,
}

pub fn run(args: Args) -> anyhow::Result<u8> {
    let ns = match (args.pid, &args.netns) {
        (Some(pid), _) => Netns::Pid {
            pid,
            proc_root: args.proc_root.clone(),
        },
        (None, Some(path)) => Netns::Path(path.clone()),
        (None, None) => unreachable!("clap requires --pid or --netns"),
    };
    let rules = Ruleset {
        tables: collect::legacy_tables(&ns)?,
    };
    match args.format {
        RulesFormat::Json => println!("{}", serde_json::to_string_pretty(&rules)?),
        RulesFormat::IptablesSave => print!("{}", xtables_save(&rules)),
    }
    Ok(0)
}

/// Each xtables backend and family in `iptables-save` form, each block led by one
/// `# meshleak:` line naming them.
fn xtables_save(rules: &Ruleset) -> String {
    let mut out = String::new();
    for backend in [Backend::IptablesLegacy, Backend::IptablesNft] {
        for family in [meshleak::model::Family::Ipv4, meshleak::model::Family::Ipv6] {
            let tables: Vec<_> = rules
                .tables
                .iter()
                .filter(|t| t.backend == backend && t.family == family)
                .collect();
            if tables.is_empty() {
                continue;
            }
            out += &format!(
                "# meshleak: backend={} family={}\n",
                backend.name(),
                family.name()
            );
            for t in tables {
                out += &save::render(t);
            }
        }
    }
    out
}
