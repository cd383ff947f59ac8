//! Prints xtables tables the way `iptables-save` does: `*table`, chain declarations
//! (built-ins in hook order, then user chains by name), rules chain by chain, `COMMIT`.

use crate::model::{BaseChain, Chain, Hook, Policy, Table};

/// The order iptables-nft-save prints tables in (its built-in table list); legacy tables
/// come in the kernel's order.
pub fn nft_table_rank(name: &str) -> usize {
    ["mangle", "security", "raw", "filter", "nat"]
        .iter()
        .position(|n| *n == name)
        .unwrap_or(5)
}

/// iptables' name for a protocol number (from /etc/protocols, where 58 is "ipv6-icmp").
pub(crate) fn proto_text(proto: u8) -> String {
    match proto {
        58 => "ipv6-icmp".to_string(),
        p => crate::model::proto_name(p),
    }
}

/// One table in `iptables-save` form. Counters are printed as `[0:0]`. Every built-in chain
/// of the table is declared, as both tools do (iptables-nft creates them only when used).
pub fn render(table: &Table) -> String {
    let mut out = String::new();
    write(table, &mut out).expect("a String takes every write");
    out
}

/// [`render`] written to `out` as it goes: a large table is never held twice.
pub fn write(table: &Table, out: &mut impl std::fmt::Write) -> std::fmt::Result {
    let missing: Vec<Chain> = crate::parse::builtin_chains(&table.name)
        .unwrap_or(&[])
        .iter()
        .filter(|(name, _, _)| table.chains.iter().all(|c| c.name != *name))
        .map(|(name, priority, chain_type)| Chain {
            name: name.to_string(),
            base: Some(BaseChain {
                hook: Hook::from_name(name).expect("built-in chains are hooks"),
                priority: *priority,
                chain_type: *chain_type,
                policy: Policy::Accept,
            }),
            rules: Vec::new(),
        })
        .collect();
    let mut order: Vec<&Chain> = table.chains.iter().chain(missing.iter()).collect();
    order.sort_by(|a, b| match (&a.base, &b.base) {
        (Some(x), Some(y)) => hook_rank(x.hook).cmp(&hook_rank(y.hook)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.name.as_bytes().cmp(b.name.as_bytes()),
    });
    writeln!(out, "*{}", table.name)?;
    for c in &order {
        let policy = match c.base.as_ref().map(|b| b.policy) {
            Some(Policy::Accept) => "ACCEPT",
            Some(Policy::Drop) => "DROP",
            None => "-",
        };
        writeln!(out, ":{} {policy} [0:0]", c.name)?;
    }
    for c in &order {
        for r in &c.rules {
            writeln!(out, "{}", r.text)?;
        }
    }
    writeln!(out, "COMMIT")
}

fn hook_rank(h: Hook) -> u8 {
    match h {
        Hook::Prerouting => 0,
        Hook::Input => 1,
        Hook::Forward => 2,
        Hook::Output => 3,
        Hook::Postrouting => 4,
    }
}
