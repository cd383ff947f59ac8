//! `meshleak rules`: the rules of a namespace read straight from the kernel.

use std::fmt::Write;
use std::path::PathBuf;

use meshleak_collect::netns::Netns;
use meshleak_core::model::{Backend, Ruleset};
use meshleak_core::xt::save;

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// Read the network namespace of this process.
    #[arg(long, conflicts_with = "netns", required_unless_present = "netns")]
    pid: Option<u32>,
    /// Read this network namespace file (e.g. /run/netns/NAME).
    #[arg(long)]
    netns: Option<PathBuf>,
    /// Where the host's /proc is (e.g. /host/proc in a container).
    #[arg(long, default_value = "/proc")]
    proc_root: PathBuf,
    /// `table` (or `wide`, the same): each backend and family as `iptables-save` prints
    /// it, native nftables tables in nft syntax; `json`/`yaml`: the rule model.
    /// (`--format iptables-save` is the old spelling.)
    #[arg(
        short = 'o',
        long = "output",
        alias = "format",
        value_enum,
        default_value_t
    )]
    format: super::Format,
}

pub(super) fn run(args: Args) -> anyhow::Result<u8> {
    let ns = match (args.pid, &args.netns) {
        (Some(pid), _) => Netns::Pid {
            pid,
            proc_root: args.proc_root.clone(),
        },
        (None, Some(path)) => Netns::Path(path.clone()),
        (None, None) => unreachable!("clap requires --pid or --netns"),
    };
    meshleak_collect::netns::named(&ns.file()).map_err(anyhow::Error::msg)?;
    let rules = meshleak_collect::ruleset(&ns)?;
    if rules.tables.is_empty() {
        // Said on stderr, so the output stays what the tools print (nothing) for scripts.
        eprintln!(
            "meshleak: {}: no iptables (legacy or nft) and no nftables table: nothing captures traffic here",
            ns.file().display()
        );
    }
    if !args.format.print_data(&rules)? {
        // Written as it is made: 20,000 rules' text is never held whole.
        let mut out = super::text::IoText::new(std::io::stdout().lock());
        let written = xtables_save(&rules, &mut out);
        out.finish(written)?;
    }
    Ok(0)
}

/// Each xtables backend and family in `iptables-save` form, each block led by one
/// `# meshleak:` line naming them; native nftables tables follow in nft syntax.
fn xtables_save(rules: &Ruleset, out: &mut impl Write) -> std::fmt::Result {
    for backend in [Backend::IptablesLegacy, Backend::IptablesNft] {
        for family in [
            meshleak_core::model::Family::Ipv4,
            meshleak_core::model::Family::Ipv6,
        ] {
            let mut tables: Vec<_> = rules
                .tables
                .iter()
                .filter(|t| t.backend == backend && t.family == family)
                .collect();
            if backend == Backend::IptablesNft {
                tables.sort_by_key(|t| save::nft_table_rank(&t.name));
            }
            if tables.is_empty() {
                continue;
            }
            writeln!(
                out,
                "# meshleak: backend={} family={}",
                backend.name(),
                family.name()
            )?;
            for t in tables {
                save::write(t, out)?;
            }
        }
    }
    for t in rules
        .tables
        .iter()
        .filter(|t| t.backend == Backend::Nftables)
    {
        nft_listing(t, out)?;
    }
    Ok(())
}

/// A native table close to `nft -s list ruleset`.
fn nft_listing(t: &meshleak_core::model::Table, out: &mut impl Write) -> std::fmt::Result {
    let family = match t.family {
        meshleak_core::model::Family::Ipv4 => "ip",
        meshleak_core::model::Family::Ipv6 => "ip6",
        meshleak_core::model::Family::Inet => "inet",
    };
    writeln!(out, "table {family} {} {{", t.name)?;
    for c in &t.chains {
        writeln!(out, "\tchain {} {{", c.name)?;
        if let Some(b) = &c.base {
            let ty = format!("{:?}", b.chain_type).to_lowercase();
            let hook = format!("{:?}", b.hook).to_lowercase();
            let policy = format!("{:?}", b.policy).to_lowercase();
            writeln!(
                out,
                "\t\ttype {ty} hook {hook} priority {}; policy {policy};",
                b.priority
            )?;
        }
        // A verdict map's rule is one model rule per element, all at its position.
        let mut last = None;
        for r in c
            .rules
            .iter()
            .filter(|r| last.replace(r.position) != Some(r.position))
        {
            writeln!(out, "\t\t{}", r.text)?;
        }
        writeln!(out, "\t}}")?;
    }
    writeln!(out, "}}")
}
