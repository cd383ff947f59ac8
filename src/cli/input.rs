//! `--rules FILE...`: reads and combines rule dumps, with errors that name the file.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

use meshleak_core::model::{Backend, Family, Ruleset};
use meshleak_core::parse::{self, Hints};

#[derive(Args, Debug)]
pub(super) struct RulesArgs {
    /// Rule dump: iptables-save/ip6tables-save output (either backend), restore input,
    /// `nft list ruleset` text or `nft -j list ruleset` JSON. Repeat to combine dumps into
    /// one ruleset.
    #[arg(long = "rules", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Backend of xtables dumps whose header does not say (default iptables-nft).
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
    /// Family of xtables dumps that neither header nor addresses reveal (default ipv4).
    #[arg(long, value_enum)]
    pub family: Option<FamilyArg>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(super) enum BackendArg {
    IptablesLegacy,
    IptablesNft,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(super) enum FamilyArg {
    Ipv4,
    Ipv6,
}

/// Rules read from dumps, and what says they may be cut short (a paste whose last table
/// lacks its COMMIT): an answer from them is never an all-clear (exit 4 at best).
pub(super) struct Loaded {
    pub rules: Ruleset,
    pub cut_short: Vec<String>,
}

impl RulesArgs {
    pub(super) fn load(&self) -> anyhow::Result<Loaded> {
        let hints = Hints {
            backend: self.backend.map(|b| match b {
                BackendArg::IptablesLegacy => Backend::IptablesLegacy,
                BackendArg::IptablesNft => Backend::IptablesNft,
            }),
            family: self.family.map(|f| match f {
                FamilyArg::Ipv4 => Family::Ipv4,
                FamilyArg::Ipv6 => Family::Ipv6,
            }),
        };
        let mut dumps = Vec::new();
        let mut cut_short = Vec::new();
        for path in &self.files {
            let name = path.display().to_string();
            let bytes = std::fs::read(path).with_context(|| {
                format!("cannot read rules file {name}; check the path and permissions")
            })?;
            let text = String::from_utf8(bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{name}: not UTF-8 text (byte {}); expected a rule dump",
                    e.utf8_error().valid_up_to()
                )
            })?;
            let mut warnings = Vec::new();
            let tables = parse::parse_dump_lenient(&name, &text, hints, &mut warnings)?;
            for w in warnings {
                eprintln!("meshleak: warning: {w}");
                cut_short.push(w.to_string());
            }
            let blank = text
                .lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
            if tables.is_empty() && blank {
                anyhow::bail!(
                    "{name} holds no rules (it is empty or only comments): iptables-save prints nothing when run without root, or where no table exists; dump the rules as root inside the pod's namespace (`nsenter -n -t PID iptables-save`), or let meshleak read them (`meshleak pod --pid PID`)"
                );
            }
            dumps.push(tables);
        }
        Ok(Loaded {
            rules: parse::combine(dumps)?,
            cut_short,
        })
    }
}
