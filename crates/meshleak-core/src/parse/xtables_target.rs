//! xtables targets (`-j NAME [options]`, `-g CHAIN`).

use std::net::IpAddr;

use super::ParseError;
use super::xtables::{Ctx, Cursor, resolve_option};
use super::xtables_match::{mark_value, parse_u32};
use crate::model::{Action, MarkReg, MarkSet, NAT_FLAGS, NatPorts, NatSource, netmap_mask};
use crate::range::AddrRange;
use crate::range::PortRange;

pub(super) fn parse(
    ctx: &Ctx,
    name: &str,
    goto: bool,
    cur: &mut Cursor,
) -> Result<Action, ParseError> {
    if goto {
        return Ok(Action::Goto {
            chain: name.to_string(),
        });
    }
    let opts: Vec<(&str, &str)> = options(cur)
        .into_iter()
        .map(|(k, v)| {
            (
                target_options(name)
                    .and_then(|known| resolve_option(k, known))
                    .unwrap_or(k),
                v,
            )
        })
        .collect();
    let get = |key: &str| opts.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let has = |key: &str| opts.iter().any(|(k, _)| *k == key);
    Ok(match name {
        "ACCEPT" => Action::Accept,
        "DROP" => Action::Drop,
        "REJECT" => Action::Reject,
        "RETURN" => Action::Return,
        "REDIRECT" => Action::Redirect {
            ports: get("--to-ports").map(|p| port_range(ctx, p)).transpose()?,
        },
        "DNAT" => {
            let to = get("--to-destination")
                .ok_or_else(|| ctx.err(Some(name), "DNAT needs --to-destination"))?;
            let NatTo {
                first: addr,
                ports,
                offset,
                ..
            } = nat_to(ctx, to)?;
            // A range of addresses maps to its first here: only the port decides capture.
            if offset {
                // `A:P-Q/BASE` shifts the port from BASE: not modelled.
                Action::Unknown {
                    name: "DNAT with a port offset".into(),
                }
            } else {
                Action::Dnat { addr, ports }
            }
        }
        "SNAT" => {
            let to =
                get("--to-source").ok_or_else(|| ctx.err(Some(name), "SNAT needs --to-source"))?;
            let to = nat_to(ctx, to)?;
            Action::Snat {
                addr: NatSource::of(to.first, to.last),
                ports: NatPorts {
                    unknown: to.offset,
                    ..NatPorts::of(to.ports, nat_flags(&has))
                },
            }
        }
        "NETMAP" => {
            let to = get("--to").ok_or_else(|| ctx.err(Some(name), "NETMAP needs --to"))?;
            // A prefix (`10.0.0.0/8`, or a mask that is one); another mask stays unknown.
            match AddrRange::parse(to).and_then(|r| Some((r.start, netmap_mask(r.start, r.end)?))) {
                Some((to, mask)) => Action::Netmap { to, mask },
                None => Action::Unknown {
                    name: format!("NETMAP --to {to}"),
                },
            }
        }
        "MASQUERADE" => Action::Masquerade {
            ports: NatPorts::of(
                get("--to-ports").map(|p| port_range(ctx, p)).transpose()?,
                nat_flags(&has),
            ),
        },
        "TPROXY" => Action::Tproxy {
            port: get("--on-port").and_then(|p| p.parse().ok()),
        },
        "MARK" => Action::SetMark(mark_op(ctx, MarkReg::Mark, &opts)?),
        "CONNMARK" => Action::SetMark(connmark_op(ctx, &opts)?),
        "CT" if has("--notrack") => Action::Notrack,
        "NOTRACK" => Action::Notrack,
        "CT" => Action::Continue { name: "CT".into() },
        n if crate::xt::continuing::TARGETS.contains(&n) => Action::Continue {
            name: n.to_string(),
        },
        // A chain name, or an unknown target when no such chain exists (resolved at COMMIT).
        other => Action::Jump {
            chain: other.to_string(),
        },
    })
}

/// Long options of the targets meshleak reads, for abbreviation (`--to-port`).
fn target_options(target: &str) -> Option<&'static [&'static str]> {
    Some(match target {
        "REDIRECT" => &["--to-ports", "--random"],
        "DNAT" => &["--to-destination", "--random", "--persistent"],
        "SNAT" => &["--to-source", "--random", "--random-fully", "--persistent"],
        "MASQUERADE" => &["--to-ports", "--random", "--random-fully"],
        "NETMAP" => &["--to"],
        "TPROXY" => &["--on-port", "--on-ip", "--tproxy-mark"],
        "MARK" => &[
            "--set-xmark",
            "--set-mark",
            "--and-mark",
            "--or-mark",
            "--xor-mark",
        ],
        "CONNMARK" => &[
            "--set-xmark",
            "--set-mark",
            "--and-mark",
            "--or-mark",
            "--xor-mark",
            "--save-mark",
            "--restore-mark",
            "--nfmask",
            "--ctmask",
            "--mask",
        ],
        "CT" => &[
            "--notrack",
            "--helper",
            "--ctevents",
            "--expevents",
            "--zone",
            "--zone-orig",
            "--zone-reply",
            "--timeout",
        ],
        _ => return None,
    })
}

/// The target's options as (name, value) pairs; flags get an empty value.
fn options<'w>(cur: &mut Cursor<'w>) -> Vec<(&'w str, &'w str)> {
    let mut out = Vec::new();
    while cur.at_module_option() {
        let opt = cur.next().expect("checked");
        let value = match cur.peek() {
            Some(w) if !w.starts_with("--") => {
                cur.next();
                w
            }
            _ => "",
        };
        out.push((opt, value));
    }
    out
}

/// NF_NAT_RANGE_* flags from a NAT target's options.
fn nat_flags(has: &dyn Fn(&str) -> bool) -> u32 {
    NAT_FLAGS
        .into_iter()
        .filter(|(_, _, option)| has(option))
        .fold(0, |flags, (bit, _, _)| flags | bit)
}

fn port_range(ctx: &Ctx, text: &str) -> Result<PortRange, ParseError> {
    PortRange::parse(text).ok_or_else(|| ctx.err(Some(text), "not a port or port range"))
}

/// `ADDR`, `ADDR:PORT[-PORT]`, `[V6]:PORT`, `:PORT`.
/// A NAT target's `--to-destination`/`--to-source`.
struct NatTo {
    /// The first and last address of the range (the same for one), `None` when absent.
    first: Option<IpAddr>,
    last: Option<IpAddr>,
    ports: Option<PortRange>,
    /// A base port follows the ports (an offset mapping).
    offset: bool,
}

/// `ADDR[-ADDR][:PORTS[/BASE]]` or `[ADDR]:PORTS[/BASE]`.
fn nat_to(ctx: &Ctx, text: &str) -> Result<NatTo, ParseError> {
    let bad = || ctx.err(Some(text), "not ADDR[:PORT] or [ADDR]:PORT");
    let (addr, port) = if let Some(rest) = text.strip_prefix('[') {
        let (a, p) = rest.split_once(']').ok_or_else(bad)?;
        (a, p.strip_prefix(':'))
    } else if text.matches(':').count() > 1 {
        (text, None)
    } else {
        match text.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        }
    };
    // A range of addresses: `A-B`, the first and the last.
    let (first, last) = addr.split_once('-').unwrap_or((addr, addr));
    let parse = |a: &str| match a {
        "" => Ok(None),
        a => a.parse().map(Some).map_err(|_| bad()),
    };
    let (first, last) = (parse(first)?, parse(last)?);
    let (port, base) = match port.map(|p| p.split_once('/')) {
        Some(Some((p, b))) => (Some(p), Some(b)),
        _ => (port, None),
    };
    if let Some(b) = base {
        b.parse::<u16>().map_err(|_| bad())?;
    }
    let ports = port.map(|p| port_range(ctx, p)).transpose()?;
    Ok(NatTo {
        first,
        last,
        ports,
        offset: base.is_some(),
    })
}

fn mark_op(ctx: &Ctx, reg: MarkReg, opts: &[(&str, &str)]) -> Result<MarkSet, ParseError> {
    let mut set = MarkSet {
        reg,
        keep: u32::MAX,
        or: 0,
        xor: 0,
        copy: None,
    };
    for (opt, value) in opts {
        let (v, m) = mark_value(ctx, value)?;
        match *opt {
            // The kernel computes (mark & ~mask) ^ value for every form.
            "--set-xmark" => (set.keep, set.xor) = (!m, v),
            "--set-mark" => (set.keep, set.xor) = (!(m | v), v),
            "--and-mark" => set.keep = v,
            "--or-mark" => (set.keep, set.xor) = (!v, v),
            "--xor-mark" => set.xor = v,
            _ => continue,
        }
    }
    Ok(set)
}

fn connmark_op(ctx: &Ctx, opts: &[(&str, &str)]) -> Result<MarkSet, ParseError> {
    let mask_of = |key: &str| -> Result<u32, ParseError> {
        opts.iter()
            .find(|(k, _)| *k == key || *k == "--mask")
            .map(|(_, v)| parse_u32(v).ok_or_else(|| ctx.err(Some(v), "not a mask")))
            .unwrap_or(Ok(u32::MAX))
    };
    let (nfmask, ctmask) = (mask_of("--nfmask")?, mask_of("--ctmask")?);
    if opts.iter().any(|(k, _)| *k == "--save-mark") {
        return Ok(MarkSet {
            reg: MarkReg::CtMark,
            keep: !ctmask,
            or: 0,
            xor: 0,
            copy: Some((MarkReg::Mark, nfmask)),
        });
    }
    if opts.iter().any(|(k, _)| *k == "--restore-mark") {
        return Ok(MarkSet {
            reg: MarkReg::Mark,
            keep: !nfmask,
            or: 0,
            xor: 0,
            copy: Some((MarkReg::CtMark, ctmask)),
        });
    }
    mark_op(ctx, MarkReg::CtMark, opts)
}
