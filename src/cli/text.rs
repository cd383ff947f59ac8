//! Helpers for the human-readable tables: every string from a dump is sanitized.

use meshleak_core::explain::RuleRef;
use meshleak_core::sanitize::sanitize;

/// `iptables-nft ipv4 nat/ISTIO_OUTPUT #7` (or `policy` for a chain policy).
pub(super) fn cite_line(r: &RuleRef) -> String {
    sanitize(&r.place())
}

/// The rule's text in full, as its tool prints it.
pub(super) fn rule_line(r: &RuleRef) -> String {
    sanitize(&r.rule)
}

/// Words of `text` in lines of at most `first` columns for the first line and `rest` for
/// the others (a longer word keeps its own line).
pub(super) fn wrap(text: &str, first: usize, rest: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let width = if lines.is_empty() { first } else { rest };
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// `1 process`, `2 processes`, `0 network namespaces`.
pub(super) fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Text written through `fmt::Write` onto a buffered byte stream (standard output), so a
/// long listing is printed as it is made instead of held whole. The first I/O error is
/// kept and reported by [`IoText::finish`].
pub(super) struct IoText<W: std::io::Write> {
    out: std::io::BufWriter<W>,
    error: Option<std::io::Error>,
}

impl<W: std::io::Write> IoText<W> {
    pub(super) fn new(out: W) -> Self {
        IoText {
            out: std::io::BufWriter::new(out),
            error: None,
        }
    }

    /// Flushes; the I/O error that stopped the writing, if any, else `written`'s.
    pub(super) fn finish(mut self, written: std::fmt::Result) -> std::io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        written.map_err(std::io::Error::other)?;
        std::io::Write::flush(&mut self.out)
    }
}

impl<W: std::io::Write> std::fmt::Write for IoText<W> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        std::io::Write::write_all(&mut self.out, s.as_bytes()).map_err(|e| {
            self.error = Some(e);
            std::fmt::Error
        })
    }
}

/// The width of each column of a table: its widest cell or its heading, in characters.
pub(super) fn column_widths<const N: usize>(heads: &[&str; N], rows: &[[String; N]]) -> [usize; N] {
    std::array::from_fn(|i| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([heads[i].chars().count()])
            .max()
            .unwrap_or(0)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_agree_with_their_number() {
        use super::count;
        assert_eq!(count(1, "process", "processes"), "1 process");
        assert_eq!(count(0, "process", "processes"), "0 processes");
        assert_eq!(count(2, "namespace", "namespaces"), "2 namespaces");
    }

    #[test]
    fn wraps_at_word_boundaries() {
        assert_eq!(super::wrap("aa bb cc dd", 5, 5), ["aa bb", "cc dd"]);
        assert_eq!(super::wrap("aa bb cc dd", 2, 8), ["aa", "bb cc dd"]);
        assert_eq!(
            super::wrap("averyverylongword x", 5, 5),
            ["averyverylongword", "x"]
        );
        assert!(super::wrap("", 5, 5).is_empty());
    }
}
