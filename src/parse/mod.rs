//! Reading rule dumps into the [`Ruleset`] model. Formats are detected from the text:
//! `nft -j list ruleset` JSON, or `iptables-save`/restore input of either backend and family.

mod nft_json;
mod nft_text;
mod xtables;
mod xtables_match;
mod xtables_target;

use std::fmt;

pub use xtables::builtin_chains;

use crate::model::{Backend, DumpFormat, Family, Ruleset, Table};

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

/// Parses one dump, detecting its format.
pub fn parse_dump(file: &str, text: &str, hints: Hints) -> Result<Vec<Table>, ParseError> {
    if text.trim_start().starts_with('{') {
        nft_json::parse(file, text)
    } else {
        xtables::parse(file, text, hints)
    }
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
