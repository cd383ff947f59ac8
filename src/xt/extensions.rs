//! x_tables matches meshleak prints but does not model: rate limits, sampling, packet
//! lengths and types, ICMP types, header fields, cgroups, helpers, connection counters.
//! Each decodes its `struct xt_*_info` into the text the extension's `save` function of
//! iptables 1.8 prints, so a rule reads as `iptables-save` shows it; where such a match
//! stands, evaluation forks and may end `unknown` (the match is never taken as true).

use super::bytes::{Bytes, Truncated};
use super::matches::save_string;
use crate::model::IpVersion;

/// The save text of one match (after `-m NAME`), or `None` for a name or revision whose
/// layout meshleak does not know.
pub fn save(
    name: &str,
    revision: u8,
    d: Bytes,
    version: IpVersion,
) -> Result<Option<String>, Truncated> {
    Ok(Some(match (name, revision) {
        ("limit", 0) => limit(d)?,
        ("statistic", 0) => statistic(d)?,
        ("pkttype", 0) => {
            let (kind, invert) = (d.i32(0, "pkttype")?, d.i32(4, "pkttype invert")?);
            let name = ["unicast", "broadcast", "multicast", "otherhost", "outgoing"]
                .get(kind as usize)
                .map_or_else(|| kind.to_string(), |n| n.to_string());
            format!("{} --pkt-type {name}", inv(invert != 0))
        }
        ("length", 0) => format!(
            "{} --length {}",
            inv(d.u8(4, "length invert")? != 0),
            range(d.u16(0, "length min")?, d.u16(2, "length max")?)
        ),
        ("tcpmss", 0) => format!(
            "{} --mss {}",
            inv(d.u8(4, "tcpmss invert")? != 0),
            range(d.u16(0, "mss min")?, d.u16(2, "mss max")?)
        ),
        ("icmp", 0) if version == IpVersion::V4 => icmp(d, "--icmp-type", true)?,
        ("icmp6", 0) if version == IpVersion::V6 => icmp(d, "--icmpv6-type", false)?,
        ("tos", 1) => format!(
            "{} --tos 0x{:02x}/0x{:02x}",
            inv(d.u8(2, "tos invert")? != 0),
            d.u8(1, "tos value")?,
            d.u8(0, "tos mask")?
        ),
        ("dscp", 0) => format!(
            "{} --dscp 0x{:02x}",
            inv(d.u8(1, "dscp invert")? != 0),
            d.u8(0, "dscp")?
        ),
        ("ttl", 0) if version == IpVersion::V4 => hop(d, "ttl")?,
        ("hl", 0) if version == IpVersion::V6 => hop(d, "hl")?,
        ("connlimit", 1) => connlimit(d, version)?,
        ("cgroup", 2) => cgroup(d)?,
        ("helper", 0) => format!(
            "{} --helper{}",
            inv(d.i32(0, "helper invert")? != 0),
            save_string(&d.name(4, 30, "helper name")?)
        ),
        ("ecn", 0) => ecn(d)?,
        ("esp", 0) => spi(d, "--espspi", 8)?,
        ("ah", 0) if version == IpVersion::V4 => spi(d, "--ahspi", 8)?,
        ("cpu", 0) => format!(
            "{} --cpu {}",
            inv(d.u32(4, "cpu invert")? != 0),
            d.u32(0, "cpu")?
        ),
        ("quota", 0) => format!(
            "{} --quota {}",
            inv(d.u32(0, "quota flags")? & 1 != 0),
            u64_at(d, 8, "quota")?
        ),
        ("connbytes", 0) => connbytes(d)?,
        ("recent", 0 | 1) => recent(d, revision, version)?,
        ("realm", 0) => {
            let (id, mask) = (d.u32(0, "realm id")?, d.u32(4, "realm mask")?);
            let mask = if mask == u32::MAX {
                String::new()
            } else {
                format!("/0x{mask:x}")
            };
            format!(
                "{} --realm 0x{id:x}{mask}",
                inv(d.u8(8, "realm invert")? != 0)
            )
        }
        _ => return Ok(None),
    }))
}

fn inv(flag: bool) -> &'static str {
    if flag { " !" } else { "" }
}

fn range(lo: u16, hi: u16) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}:{hi}")
    }
}

fn u64_at(d: Bytes, at: usize, what: &'static str) -> Result<u64, Truncated> {
    let lo = u64::from(d.u32(at, what)?);
    let hi = u64::from(d.u32(at + 4, what)?);
    Ok(if cfg!(target_endian = "little") {
        lo | hi << 32
    } else {
        hi | lo << 32
    })
}

/// `struct xt_rateinfo`: avg (XT_LIMIT_SCALE ticks per packet), burst.
fn limit(d: Bytes) -> Result<String, Truncated> {
    Ok(limit_text(d.u32(0, "limit avg")?, d.u32(4, "limit burst")?))
}

/// One XT_LIMIT_SCALE unit of a second, as `struct xt_rateinfo`'s avg counts.
pub const LIMIT_SCALE: u32 = 10_000;

/// `-m limit`'s save text from avg (LIMIT_SCALE ticks per packet) and burst: libxt_limit
/// prints the largest unit that keeps the rate whole, and the burst unless it is 5.
pub fn limit_text(period: u32, burst: u32) -> String {
    const SCALE: u32 = LIMIT_SCALE;
    const RATES: [(&str, u32); 4] = [
        ("day", SCALE * 24 * 60 * 60),
        ("hour", SCALE * 60 * 60),
        ("min", SCALE * 60),
        ("sec", SCALE),
    ];
    let rate = if period == 0 {
        " inf".to_string()
    } else {
        let mut i = 1;
        while i < RATES.len() {
            let mult = RATES[i].1;
            if period > mult || mult / period < mult % period {
                break;
            }
            i += 1;
        }
        let (unit, mult) = RATES[i - 1];
        format!(" {}/{unit}", mult / period)
    };
    let burst = if burst == 5 {
        String::new()
    } else {
        format!(" --limit-burst {burst}")
    };
    format!(" --limit{rate}{burst}")
}

/// `struct xt_statistic_info`: mode, flags (invert 1), then random's probability (of
/// 2^31) or nth's every (minus one) and packet.
fn statistic(d: Bytes) -> Result<String, Truncated> {
    let (mode, invert) = (
        d.u16(0, "statistic mode")?,
        d.u16(2, "statistic flags")? & 1 != 0,
    );
    Ok(match mode {
        0 => format!(
            " --mode random{} --probability {:.11}",
            inv(invert),
            f64::from(d.u32(4, "statistic probability")?) / f64::from(0x8000_0000u32)
        ),
        1 => {
            let (every, packet) = (d.u32(4, "statistic every")?, d.u32(8, "statistic packet")?);
            let packet = if packet != 0 {
                format!(" --packet {packet}")
            } else {
                String::new()
            };
            format!(
                " --mode nth{} --every {}{packet}",
                inv(invert),
                u64::from(every) + 1
            )
        }
        n => format!(" --mode {n}"),
    })
}

/// `struct ipt_icmp` / `ip6t_icmp`: type, code range, invflags (1). IPv4 prints 255 as
/// `any`; a code is shown unless it spans every code.
fn icmp(d: Bytes, opt: &str, any: bool) -> Result<String, Truncated> {
    let (kind, lo, hi) = (
        d.u8(0, "icmp type")?,
        d.u8(1, "icmp code min")?,
        d.u8(2, "icmp code max")?,
    );
    let neg = inv(d.u8(3, "icmp invflags")? & 1 != 0);
    if kind == 0xff && any {
        return Ok(format!("{neg} {opt} any"));
    }
    let code = if lo != 0 || hi != 0xff {
        format!("/{lo}")
    } else {
        String::new()
    };
    Ok(format!("{neg} {opt} {kind}{code}"))
}

/// `struct ipt_ttl_info` / `ip6t_hl_info`: mode (eq, ne, lt, gt) and the value.
fn hop(d: Bytes, name: &str) -> Result<String, Truncated> {
    let (mode, value) = (d.u8(0, "ttl mode")?, d.u8(1, "ttl value")?);
    Ok(match mode {
        0 => format!(" --{name}-eq {value}"),
        1 => format!(" ! --{name}-eq {value}"),
        2 => format!(" --{name}-lt {value}"),
        3 => format!(" --{name}-gt {value}"),
        m => format!(" (mode {m}) {value}"),
    })
}

/// `struct xt_connlimit_info`: mask (nf_inet_addr), limit, flags (invert 1: `--upto`,
/// daddr 2).
fn connlimit(d: Bytes, version: IpVersion) -> Result<String, Truncated> {
    let bits = match version {
        IpVersion::V4 => u32::from(d.ipv4(0, "connlimit mask")?).count_ones(),
        IpVersion::V6 => u128::from(d.ipv6(0, "connlimit mask")?).count_ones(),
    };
    let (limit, flags) = (d.u32(16, "connlimit limit")?, d.u32(20, "connlimit flags")?);
    let kind = if flags & 1 != 0 { "upto" } else { "above" };
    let side = if flags & 2 != 0 { "daddr" } else { "saddr" };
    Ok(format!(
        " --connlimit-{kind} {limit} --connlimit-mask {bits} --connlimit-{side}"
    ))
}

/// `struct xt_cgroup_info_v2`: has_path, has_classid, their inversions, then the path or
/// the class id.
fn cgroup(d: Bytes) -> Result<String, Truncated> {
    let mut out = String::new();
    if d.u8(0, "cgroup has_path")? != 0 {
        out += &format!(
            "{} --path{}",
            inv(d.u8(2, "cgroup invert_path")? != 0),
            save_string(&d.name(4, 512, "cgroup path")?)
        );
    }
    if d.u8(1, "cgroup has_classid")? != 0 {
        out += &format!(
            "{} --cgroup {}",
            inv(d.u8(3, "cgroup invert_classid")? != 0),
            d.u32(4, "cgroup classid")?
        );
    }
    Ok(out)
}

/// `struct xt_ecn_info`: operation and invert bits (IP 0x01, ECE 0x10, CWR 0x20), ip_ect.
fn ecn(d: Bytes) -> Result<String, Truncated> {
    let (op, invert, ect) = (
        d.u8(0, "ecn operation")?,
        d.u8(1, "ecn invert")?,
        d.u8(2, "ecn ip_ect")?,
    );
    let mut out = String::new();
    for (bit, text) in [
        (0x10, " --ecn-tcp-ece".to_string()),
        (0x20, " --ecn-tcp-cwr".to_string()),
        (0x01, format!(" --ecn-ip-ect {ect}")),
    ] {
        if op & bit != 0 {
            out += inv(invert & bit != 0);
            out += &text;
        }
    }
    Ok(out)
}

/// `struct xt_esp` / `ipt_ah`: an SPI range and invflags (1) at `inv_at`; the full range
/// prints nothing.
fn spi(d: Bytes, opt: &str, inv_at: usize) -> Result<String, Truncated> {
    let (lo, hi) = (d.u32(0, "spi min")?, d.u32(4, "spi max")?);
    if lo == 0 && hi == u32::MAX {
        return Ok(String::new());
    }
    let neg = inv(d.u8(inv_at, "spi invflags")? & 1 != 0);
    let spis = if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}:{hi}")
    };
    Ok(format!("{neg} {opt} {spis}"))
}

/// `struct xt_connbytes_info`: from, to (u64), what (packets, bytes, avgpkt), direction
/// (original, reply, both); from above to is the inverted form, no upper bound is
/// u64::MAX.
fn connbytes(d: Bytes) -> Result<String, Truncated> {
    let (from, to) = (
        u64_at(d, 0, "connbytes from")?,
        u64_at(d, 8, "connbytes to")?,
    );
    let count = if from > to {
        format!(" ! --connbytes {to}:{from}")
    } else if to != u64::MAX {
        format!(" --connbytes {from}:{to}")
    } else {
        format!(" --connbytes {from}")
    };
    let mode = ["packets", "bytes", "avgpkt"];
    let dir = ["original", "reply", "both"];
    let pick = |names: &[&str], i: u8| {
        names
            .get(i as usize)
            .map_or_else(|| i.to_string(), |n| n.to_string())
    };
    Ok(format!(
        "{count} --connbytes-mode {} --connbytes-dir {}",
        pick(&mode, d.u8(16, "connbytes what")?),
        pick(&dir, d.u8(17, "connbytes direction")?)
    ))
}

/// `struct xt_recent_mtinfo(_v1)`: seconds, hit_count, check_set (CHECK 1, SET 2, UPDATE 4,
/// REMOVE 8, TTL 16, REAP 32), invert, name[200], side; revision 1 adds the mask.
fn recent(d: Bytes, revision: u8, version: IpVersion) -> Result<String, Truncated> {
    let (seconds, hits, check) = (
        d.u32(0, "recent seconds")?,
        d.u32(4, "recent hit_count")?,
        d.u8(8, "recent check_set")?,
    );
    let mut out = inv(d.u8(9, "recent invert")? != 0).to_string();
    for (bit, opt) in [
        (2, " --set"),
        (1, " --rcheck"),
        (4, " --update"),
        (8, " --remove"),
    ] {
        if check & bit != 0 {
            out += opt;
        }
    }
    if seconds != 0 {
        out += &format!(" --seconds {seconds}");
    }
    if check & 32 != 0 {
        out += " --reap";
    }
    if hits != 0 {
        out += &format!(" --hitcount {hits}");
    }
    if check & 16 != 0 {
        out += " --rttl";
    }
    out += &format!(" --name {}", d.name(10, 200, "recent name")?);
    if revision == 1 {
        let mask = match version {
            IpVersion::V4 => d.ipv4(212, "recent mask")?.to_string(),
            IpVersion::V6 => d.ipv6(212, "recent mask")?.to_string(),
        };
        out += &format!(" --mask {mask}");
    }
    match d.u8(210, "recent side")? {
        0 => out += " --rsource",
        1 => out += " --rdest",
        _ => {}
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_probabilities_print_as_iptables_prints_them() {
        assert_eq!(limit_text(10_000, 5), " --limit 1/sec");
        assert_eq!(limit_text(60_000, 3), " --limit 10/min --limit-burst 3");
        assert_eq!(limit_text(432_000_000, 5), " --limit 2/day");
        let mut blob = vec![0u8; 24];
        blob[4..8].copy_from_slice(&0x0ccc_cccdu32.to_ne_bytes());
        assert_eq!(
            statistic(Bytes::new(&blob)).unwrap(),
            " --mode random --probability 0.10000000009"
        );
        // A blob cut short is an error naming the field, never a guess.
        let e = save("connbytes", 0, Bytes::new(&[0; 10]), IpVersion::V4).unwrap_err();
        assert_eq!(e.what, "connbytes to");
    }
}
