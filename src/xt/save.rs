//! Prints xtables tables the way `iptables-save` does: `*table`, chain declarations
//! (built-ins in hook order, then user chains by name), rules chain by chain, `COMMIT`.

use crate::model::{Hook, Policy, Table};

/// One table in `iptables-save` form. Counters are printed as `[0:0]`.
pub fn render(table: &Table) -> String {
    let mut order: Vec<&crate::model::Chain> = table.chains.iter().collect();
    order.sort_by(|a, b| match (&a.base, &b.base) {
        (Some(x), Some(y)) => hook_rank(x.hook).cmp(&hook_rank(y.hook)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.name.as_bytes().cmp(b.name.as_bytes()),
    });
    let mut out = format!("*{}\n", table.name);
    for c in &order {
        let policy = match c.base.as_ref().map(|b| b.policy) {
            Some(Policy::Accept) => "ACCEPT",
            Some(Policy::Drop) => "DROP",
            None => "-",
        };
        out += &format!(":{} {policy} [0:0]\n", c.name);
    }
    for c in &order {
        for r in &c.rules {
            out += &r.text;
            out.push('\n');
        }
    }
    out + "COMMIT\n"
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
