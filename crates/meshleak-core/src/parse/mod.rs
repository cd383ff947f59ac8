//! Reading rule dumps into the [`Ruleset`] model. Formats are detected from the text:
//! `nft -j list ruleset` JSON, `nft list ruleset` text, or `iptables-save`/restore input of
//! either backend and family.

mod nft_json;
mod nft_listing;
mod nft_text;
mod xtables;
mod xtables_match;
mod xtables_target;

use std::fmt;

pub(crate) use xtables::builtin_chains;

use crate::model::{Action, Backend, DumpFormat, Family, Ruleset, Table};

/// What to assume where a dump does not say: older `iptables-save` headers name no backend,
/// and restore input with no addresses names no family.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hints {
    pub backend: Option<Backend>,
    pub family: Option<Family>,
}

/// A malformed input: names the file, the line (1-based, 0 for whole-file errors) and token.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub token: Option<String>,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(token) = &self.token {
            write!(f, " (at `{}`)", crate::sanitize::sanitize(token))?;
        }
        Ok(())
    }
}

/// Parses one dump, detecting its format; what it read despite a flaw is an error here
/// (see [`parse_dump_lenient`]).
pub fn parse_dump(file: &str, text: &str, hints: Hints) -> Result<Vec<Table>, ParseError> {
    let mut warnings = Vec::new();
    let tables = parse_dump_lenient(file, text, hints, &mut warnings)?;
    match warnings.into_iter().next() {
        Some(w) => Err(w),
        None => Ok(tables),
    }
}

/// Parses one dump as users paste it: a restore input that lacks only its final COMMIT is
/// read, with a warning in `warnings` for the user.
pub fn parse_dump_lenient(
    file: &str,
    text: &str,
    hints: Hints,
    warnings: &mut Vec<ParseError>,
) -> Result<Vec<Table>, ParseError> {
    let tables = if text.trim_start().starts_with('{') {
        nft_json::parse(file, text)?
    } else if nft_listing::detect(text) {
        nft_listing::parse(file, text)?
    } else {
        xtables::parse(file, text, hints, warnings)?
    };
    Ok(tables)
}

/// Target extensions of iptables 1.8 (`-j NAME` that is not a chain): a jump to a name
/// neither a chain nor one of these is refused by iptables-restore.
const TARGET_EXTENSIONS: &[&str] = &[
    "ACCEPT",
    "DROP",
    "RETURN",
    "QUEUE",
    "AUDIT",
    "CHECKSUM",
    "CLASSIFY",
    "CLUSTERIP",
    "CONNMARK",
    "CONNSECMARK",
    "CT",
    "DNAT",
    "DNPT",
    "DSCP",
    "ECN",
    "HL",
    "HMARK",
    "IDLETIMER",
    "LED",
    "LOG",
    "MARK",
    "MASQUERADE",
    "MIRROR",
    "NETMAP",
    "NFLOG",
    "NFQUEUE",
    "NOTRACK",
    "RATEEST",
    "REDIRECT",
    "REJECT",
    "SAME",
    "SECMARK",
    "SET",
    "SNAT",
    "SNPT",
    "SYNPROXY",
    "TCPMSS",
    "TCPOPTSTRIP",
    "TEE",
    "TOS",
    "TPROXY",
    "TRACE",
    "TTL",
    "ULOG",
    "ERROR",
];

fn is_target_extension(name: &str) -> bool {
    TARGET_EXTENSIONS.contains(&name)
}

/// A loop of jumps and gotos (`A -> B -> A`) that a base chain reaches, which the kernel
/// refuses to load (ELOOP); x_tables and nf_tables alike let a loop no hook reaches load.
pub(super) fn jump_loop(table: &Table) -> Option<Vec<String>> {
    let index = |name: &str| table.chains.iter().position(|c| c.name == name);
    let edges: Vec<Vec<usize>> = table
        .chains
        .iter()
        .map(|c| {
            c.rules
                .iter()
                .flat_map(|r| &r.actions)
                .filter_map(|a| match a {
                    Action::Jump { chain } | Action::Goto { chain } => index(chain),
                    _ => None,
                })
                .collect()
        })
        .collect();
    // Depth-first search: 0 unseen, 1 on the current path, 2 done.
    let mut state = vec![0u8; edges.len()];
    let mut path = Vec::new();
    fn visit(
        n: usize,
        edges: &[Vec<usize>],
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[n] = 1;
        path.push(n);
        for &m in &edges[n] {
            if state[m] == 1 {
                let from = path.iter().position(|&p| p == m).unwrap_or(0);
                let mut cycle = path[from..].to_vec();
                cycle.push(m);
                return Some(cycle);
            }
            if state[m] == 0
                && let Some(c) = visit(m, edges, state, path)
            {
                return Some(c);
            }
        }
        path.pop();
        state[n] = 2;
        None
    }
    let starts: Vec<usize> = (0..edges.len())
        .filter(|&i| table.chains[i].base.is_some())
        .collect();
    for s in starts {
        if state[s] == 0
            && let Some(cycle) = visit(s, &edges, &mut state, &mut path)
        {
            return Some(
                cycle
                    .iter()
                    .map(|&i| table.chains[i].name.clone())
                    .collect(),
            );
        }
    }
    None
}

/// Combines the tables of several dumps into one ruleset.
///
/// `nft -j` shows iptables-nft tables too, but with their `-m owner` and `REDIRECT` values
/// lost; when an `iptables-nft-save` dump supplies the same table, that copy wins.
/// The same table given twice otherwise is an error: the kernel has one of each.
pub fn combine(dumps: Vec<Vec<Table>>) -> Result<Ruleset, ParseError> {
    let mut tables: Vec<Table> = Vec::new();
    let mut from_json: Vec<Table> = Vec::new();
    for table in dumps.into_iter().flatten() {
        if table.backend == Backend::IptablesNft && table.format == DumpFormat::NftJson {
            from_json.push(table);
            continue;
        }
        if let Some(old) = tables.iter().find(|t| same_table(t, &table)) {
            return Err(ParseError {
                file: table.origin.clone(),
                line: 0,
                token: Some(table.name.clone()),
                message: format!(
                    "table {} {} {} is also given by {}; give each table once",
                    table.backend.name(),
                    table.family.name(),
                    table.name,
                    old.origin
                ),
            });
        }
        tables.push(table);
    }
    for table in from_json {
        if !tables.iter().any(|t| same_table(t, &table)) {
            tables.push(table);
        }
    }
    Ok(Ruleset { tables })
}

fn same_table(a: &Table, b: &Table) -> bool {
    a.backend == b.backend && a.family == b.family && a.name == b.name
}

#[cfg(test)]
mod tests;
