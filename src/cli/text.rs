//! Helpers for the human-readable tables: every string from a dump is sanitized.

use meshleak::explain::RuleRef;
use meshleak::sanitize::sanitize;

/// `iptables-nft ipv4 nat/ISTIO_OUTPUT #7` (or `policy` for a chain policy).
pub fn cite_line(r: &RuleRef) -> String {
    let pos = r.position.map_or("policy".into(), |p| format!("#{p}"));
    sanitize(&format!(
        "{} {} {}/{} {pos}",
        r.backend.name(),
        r.family,
        r.table,
        r.chain
    ))
}

/// The rule's text in full, as its tool prints it.
pub fn rule_line(r: &RuleRef) -> String {
    sanitize(&r.rule)
}
