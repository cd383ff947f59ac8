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
        ("socket", 0) => String::new(),
        ("socket", 1..=3) => set_options(
            d.u8(0, "socket flags")?.into(),
            &[
                (1, " --transparent"),
                (2, " --nowildcard"),
                (4, " --restore-skmark"),
            ],
        ),
        ("mac", 0) => {
            let mac: Vec<String> = d
                .slice(0, 6, "mac address")?
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!(
                "{} --mac-source {}",
                inv(d.i32(8, "mac invert")? != 0),
                mac.join(":")
            )
        }
        ("rpfilter", 0) => set_options(
            d.u8(0, "rpfilter flags")?.into(),
            &[
                (1, " --loose"),
                (2, " --validmark"),
                (4, " --accept-local"),
                (8, " --invert"),
            ],
        ),
        ("physdev", 0) => physdev(d)?,
        ("devgroup", 0) => devgroup(d)?,
        ("string", 1) => string(d)?,
        ("time", 0) => time(d)?,
        ("u32", 0) => u32_match(d)?,
        ("dccp", 0) => dccp(d)?,
        ("cluster", 0) if d.u32(12, "cluster flags")? & 1 == 0 => format!(
            " --cluster-local-nodemask 0x{:08x} --cluster-total-nodes {} --cluster-hash-seed 0x{:08x}",
            d.u32(4, "cluster node mask")?,
            d.u32(0, "cluster total nodes")?,
            d.u32(8, "cluster hash seed")?
        ),
        // Labels by number: a name needs the node's /etc/xtables/connlabel.conf.
        ("connlabel", 0) => {
            let (bit, options) = (d.u16(0, "connlabel bit")?, d.u16(2, "connlabel options")?);
            let set = if options & 2 != 0 { " --set" } else { "" };
            let neg = if options & 1 != 0 { "! " } else { "" };
            format!(" {neg}--label \"{bit}\"{set}")
        }
        ("bpf", 1) => match bpf(d)? {
            Some(text) => text,
            None => return Ok(None),
        },
        ("policy", 0) => policy(d, version)?,
        ("hashlimit", 3) => hashlimit(d, version)?,
        ("osf", 0) => osf(d)?,
        ("rateest", 0) => rateest(d)?,
        _ => return super::ipv6ext::save(name, revision, d),
    }))
}

/// `struct xt_hashlimit_mtinfo3`: name[255], then (8-aligned) `hashlimit_cfg3`: avg,
/// burst (u64), mode (DIP 1, DPT 2, SIP 4, SPT 8, INVERT 0x10, BYTES 0x20, RATE_MATCH
/// 0x40), size, max, gc_interval, expire, interval, srcmask, dstmask.
fn hashlimit(d: Bytes, version: IpVersion) -> Result<String, Truncated> {
    let c = 256;
    let (avg, burst, mode) = (
        u64_at(d, c, "hashlimit avg")?,
        u64_at(d, c + 8, "hashlimit burst")?,
        d.u32(c + 16, "hashlimit mode")?,
    );
    let (size, max, gc, expire, interval) = (
        d.u32(c + 20, "hashlimit size")?,
        d.u32(c + 24, "hashlimit max")?,
        d.u32(c + 28, "hashlimit gc_interval")?,
        d.u32(c + 32, "hashlimit expire")?,
        d.u32(c + 36, "hashlimit interval")?,
    );
    let (srcmask, dstmask) = (
        d.u8(c + 40, "hashlimit srcmask")?,
        d.u8(c + 41, "hashlimit dstmask")?,
    );
    let mut out = if mode & 0x10 != 0 {
        " --hashlimit-above".to_string()
    } else {
        " --hashlimit-upto".to_string()
    };
    let (rate, quantum) = if mode & 0x20 != 0 {
        hashlimit_bytes(avg, burst)
    } else {
        let (rate, quantum) = hashlimit_rate(avg);
        (format!("{rate} --hashlimit-burst {burst}"), quantum)
    };
    out += &rate;
    let hashed: Vec<&str> = [(4, "srcip"), (8, "srcport"), (1, "dstip"), (2, "dstport")]
        .into_iter()
        .filter(|(bit, _)| mode & bit != 0)
        .map(|(_, name)| name)
        .collect();
    if !hashed.is_empty() {
        out += &format!(" --hashlimit-mode {}", hashed.join(","));
    }
    out += &format!(" --hashlimit-name {}", d.name(0, 255, "hashlimit name")?);
    if size != 0 {
        out += &format!(" --hashlimit-htable-size {size}");
    }
    if max != 0 {
        out += &format!(" --hashlimit-htable-max {max}");
    }
    if gc != 1000 {
        out += &format!(" --hashlimit-htable-gcinterval {gc}");
    }
    if u64::from(expire) != quantum {
        out += &format!(" --hashlimit-htable-expire {expire}");
    }
    let full = if version == IpVersion::V4 { 32 } else { 128 };
    if srcmask != full {
        out += &format!(" --hashlimit-srcmask {srcmask}");
    }
    if dstmask != full {
        out += &format!(" --hashlimit-dstmask {dstmask}");
    }
    if mode & 0x40 != 0 {
        out += " --hashlimit-rate-match";
        if interval != 1 {
            out += &format!(" --hashlimit-rate-interval {interval}");
        }
    }
    Ok(out)
}

/// A packet rate as libxt_hashlimit's `print_rate` shows it (the largest unit that keeps
/// it whole) and the default expiry (ms) it implies.
fn hashlimit_rate(period: u64) -> (String, u64) {
    const SCALE: u64 = 1_000_000;
    let rates = [
        ("day", SCALE * 86_400),
        ("hour", SCALE * 3600),
        ("min", SCALE * 60),
        ("sec", SCALE),
    ];
    if period == 0 {
        return (" inf".to_string(), 0);
    }
    let mut i = 1;
    while i < rates.len() && !(period > rates[i].1 || rates[i].1 / period < rates[i].1 % period) {
        i += 1;
    }
    let (unit, mult) = rates[i - 1];
    (format!(" {}/{unit}", mult / period), mult / SCALE * 1000)
}

/// A byte rate as libxt_hashlimit's `print_bytes` shows it: the cost (u32::MAX / (bytes >>
/// 4) + 1) turned back into bytes per second in the largest unit (m, k) that gives the same
/// cost, then the burst in bytes; the default expiry is 15 s, 60 s with a burst.
fn hashlimit_bytes(avg: u64, burst: u64) -> (String, u64) {
    const SHIFT: u32 = 4;
    const UNITS: [(&str, u64); 3] = [("m", 1024 * 1024), ("k", 1024), ("", 1)];
    let max = u64::from(u32::MAX);
    let bytes = (max.checked_div(avg).unwrap_or(max).wrapping_sub(1)) << SHIFT;
    let cost = |b: u64| max / (u64::from((b >> SHIFT) as u32) + 1);
    let (unit, per) = UNITS
        .iter()
        .take(UNITS.len() - 1)
        .find(|(_, t)| bytes >= *t && cost(bytes & !(t - 1)) == avg)
        .unwrap_or(&UNITS[2]);
    let mut out = format!(" {}{unit}b/s", bytes / per);
    if burst == 0 {
        return (out, 15_000);
    }
    let total = bytes.wrapping_mul(burst);
    let (unit, per) = UNITS
        .iter()
        .take(UNITS.len() - 1)
        .find(|(_, t)| total >= *t)
        .unwrap_or(&UNITS[2]);
    out += &format!(" --hashlimit-burst {}{unit}b", total / per);
    (out, 60_000)
}

/// `struct xt_osf_info`: genre[32], len, flags (GENRE 1, TTL 2, LOG 4, INVERT 8), loglevel,
/// ttl.
fn osf(d: Bytes) -> Result<String, Truncated> {
    let flags = d.u32(36, "osf flags")?;
    let mut out = format!(
        "{} --genre {}",
        inv(flags & 8 != 0),
        d.name(0, 32, "osf genre")?
    );
    if flags & 2 != 0 {
        out += &format!(" --ttl {}", d.u32(44, "osf ttl")?);
    }
    if flags & 4 != 0 {
        out += &format!(" --log {}", d.u32(40, "osf loglevel")?);
    }
    Ok(out)
}

/// `struct xt_rateest_match_info`: name1, name2 (16 bytes each), flags (INVERT 1, ABS 2,
/// REL 4, DELTA 8, BPS 16, PPS 32), mode (eq 1, lt 2, gt 3), bps1, pps1, bps2, pps2;
/// printed as libxt_rateest's save.
fn rateest(d: Bytes) -> Result<String, Truncated> {
    let (flags, mode) = (d.u16(32, "rateest flags")?, d.u16(34, "rateest mode")?);
    let (bps1, pps1, bps2, pps2) = (
        d.u32(36, "rateest bps1")?,
        d.u32(40, "rateest pps1")?,
        d.u32(44, "rateest bps2")?,
        d.u32(48, "rateest pps2")?,
    );
    let mode = match mode {
        1 => " --rateest-eq",
        2 => " --rateest-lt",
        3 => " --rateest-gt",
        _ => " --rateest-(mode)",
    };
    let bits = |rate: u32| {
        let b = f64::from(rate) * 8.0;
        if b >= 1e9 {
            format!(" {:.0}Mbit", b / 1e6)
        } else if b >= 1e6 {
            format!(" {:.0}Kbit", b / 1e3)
        } else {
            format!(" {b:.0}bit")
        }
    };
    let mut rates = String::new();
    for (bit, name, r1, r2) in [
        (16, "bps", bits(bps1), bits(bps2)),
        (32, "pps", format!(" {pps1}"), format!(" {pps2}")),
    ] {
        if flags & bit == 0 {
            continue;
        }
        let negated = inv(flags & 1 != 0);
        if flags & 8 != 0 {
            rates += &format!(" --rateest-{name}1{r1}{negated}{mode} --rateest-{name}2");
        } else {
            rates += &format!("{negated}{mode} --rateest-{name}");
        }
        if flags & (2 | 8) != 0 {
            rates += &r2;
        }
    }
    let name1 = d.name(0, 16, "rateest name1")?;
    let mut out = if flags & 8 != 0 {
        " --rateest-delta".to_string()
    } else {
        String::new()
    };
    if flags & 4 != 0 {
        out += &format!(
            " --rateest1 {name1}{rates} --rateest2 {}",
            d.name(16, 16, "rateest name2")?
        );
    } else {
        out += &format!(" --rateest {name1}{rates}");
    }
    Ok(out)
}

/// `struct xt_policy_info`: four `xt_policy_elem` (tunnel source and destination with
/// masks, spi, reqid, proto, mode, match and invert bit fields: saddr 1, daddr 2, proto 4,
/// mode 8, spi 16, reqid 32), flags (IN 1, OUT 2, NONE 4, STRICT 8), len. The SPI is kept
/// as iptables wrote it (host order) and printed in hex.
fn policy(d: Bytes, version: IpVersion) -> Result<String, Truncated> {
    const ELEM: usize = 76;
    let (flags, len) = (
        d.u16(4 * ELEM, "policy flags")?,
        d.u16(4 * ELEM + 2, "policy len")?,
    );
    let mut out = format!(
        " --dir {} --pol {}",
        if flags & 1 != 0 { "in" } else { "out" },
        if flags & 4 != 0 { "none" } else { "ipsec" }
    );
    if flags & 8 != 0 {
        out += " --strict";
    }
    for i in 0..usize::from(len).min(4) {
        let e = d.sub(i * ELEM, ELEM, "policy element")?;
        let (matched, inverted) = (e.u8(74, "policy match")?, e.u8(75, "policy invert")?);
        let neg = |bit: u8| inv(inverted & bit != 0);
        if matched & 32 != 0 {
            out += &format!("{} --reqid {}", neg(32), e.u32(68, "policy reqid")?);
        }
        if matched & 16 != 0 {
            out += &format!("{} --spi 0x{:x}", neg(16), e.u32(64, "policy spi")?);
        }
        if matched & 4 != 0 {
            let proto = match e.u8(72, "policy proto")? {
                50 => "esp".to_string(),
                51 => "ah".to_string(),
                108 => "ipcomp".to_string(),
                n => n.to_string(),
            };
            out += &format!("{} --proto {proto}", neg(4));
        }
        if matched & 8 != 0 {
            let mode = if e.u8(73, "policy mode")? == 1 {
                "tunnel"
            } else {
                "transport"
            };
            out += &format!("{} --mode {mode}", neg(8));
        }
        for (bit, at, opt) in [(2u8, 32, "--tunnel-dst"), (1, 0, "--tunnel-src")] {
            if matched & bit != 0 {
                let addr = super::matches::addr_with_mask(e, at, at + 16, version)?;
                out += &format!("{} {opt} {addr}", neg(bit));
            }
        }
        if i + 1 < usize::from(len) {
            out += " --next";
        }
    }
    Ok(out)
}

/// `struct xt_u32`: tests[11] (each locations[11] of number and next operator, values[11]
/// of min and max, nnums, nvalues), ntests, invert; printed as libxt_u32's `u32_dump`.
fn u32_match(d: Bytes) -> Result<String, Truncated> {
    const TEST: usize = 180;
    let (count, invert) = (
        usize::from(d.u8(11 * TEST, "u32 ntests")?).min(11),
        d.u8(11 * TEST + 1, "u32 invert")?,
    );
    let mut tests = Vec::new();
    for t in 0..count {
        let test = d.sub(t * TEST, TEST, "u32 test")?;
        let (nums, values) = (
            usize::from(test.u8(176, "u32 nnums")?).min(11),
            usize::from(test.u8(177, "u32 nvalues")?).min(11),
        );
        let mut text = String::new();
        for i in 0..nums {
            if i > 0 {
                text += match test.u8(i * 8 + 4, "u32 nextop")? {
                    0 => "&",
                    1 => "<<",
                    2 => ">>",
                    3 => "@",
                    _ => "?",
                };
            }
            text += &format!("0x{:x}", test.u32(i * 8, "u32 number")?);
        }
        let ranges: Vec<String> = (0..values)
            .map(|i| {
                let (min, max) = (
                    test.u32(88 + i * 8, "u32 min")?,
                    test.u32(88 + i * 8 + 4, "u32 max")?,
                );
                Ok(if min == max {
                    format!("0x{min:x}")
                } else {
                    format!("0x{min:x}:0x{max:x}")
                })
            })
            .collect::<Result<_, Truncated>>()?;
        tests.push(format!("{text}={}", ranges.join(",")));
    }
    Ok(format!(
        "{} --u32 \"{}\"",
        inv(invert != 0),
        tests.join("&&")
    ))
}

/// `struct xt_dccp_info`: dpts[2], spts[2], flags (SRC 1, DEST 2, TYPE 4, OPTION 8),
/// invflags, typemask, option.
fn dccp(d: Bytes) -> Result<String, Truncated> {
    const TYPES: [&str; 11] = [
        "REQUEST", "RESPONSE", "DATA", "ACK", "DATAACK", "CLOSEREQ", "CLOSE", "RESET", "SYNC",
        "SYNCACK", "INVALID",
    ];
    let (flags, invflags) = (d.u16(8, "dccp flags")?, d.u16(10, "dccp invflags")?);
    let mut out = String::new();
    for (bit, at, opt) in [(1, 4, "--sport"), (2, 0, "--dport")] {
        if flags & bit != 0 {
            let ports = range(d.u16(at, "dccp port")?, d.u16(at + 2, "dccp port")?);
            out += &format!("{} {opt} {ports}", inv(invflags & bit != 0));
        }
    }
    if flags & 4 != 0 {
        // libxt_dccp's print_types: names by bit, stopping after INVALID (bit 10).
        let mask = d.u16(12, "dccp typemask")?;
        let names: Vec<&str> = (0..=10)
            .filter(|bit| mask & (1 << bit) != 0)
            .map(|bit| TYPES[bit])
            .collect();
        out += &format!(
            "{} --dccp-types {}",
            inv(invflags & 4 != 0),
            names.join(",")
        );
    }
    if flags & 8 != 0 {
        out += &format!(
            "{} --dccp-option {}",
            inv(invflags & 8 != 0),
            d.u8(14, "dccp option")?
        );
    }
    Ok(out)
}

/// `struct xt_bpf_info_v1`: mode (bytecode 0, pinned object 1), instruction count, fd, then
/// the program (`struct sock_filter`: code, jt, jf, k) or the object's path.
fn bpf(d: Bytes) -> Result<Option<String>, Truncated> {
    let (mode, count) = (d.u16(0, "bpf mode")?, d.u16(2, "bpf length")?);
    Ok(match mode {
        0 => {
            let mut out = format!(" --bytecode \"{count}");
            for i in 0..usize::from(count).min(64) {
                let at = 8 + i * 8;
                out += &format!(
                    ",{} {} {} {}",
                    d.u16(at, "bpf code")?,
                    d.u8(at + 2, "bpf jt")?,
                    d.u8(at + 3, "bpf jf")?,
                    d.u32(at + 4, "bpf k")?
                );
            }
            Some(out + "\"")
        }
        1 => Some(format!(" --object-pinned {}", d.name(8, 512, "bpf path")?)),
        _ => None,
    })
}

/// `struct xt_physdev_info`: physindev, in_mask, physoutdev, out_mask (16 bytes each),
/// invert, bitmask (IN 1, OUT 2, BRIDGED 4, ISIN 8, ISOUT 16).
fn physdev(d: Bytes) -> Result<String, Truncated> {
    let (invert, bits) = (d.u8(64, "physdev invert")?, d.u8(65, "physdev bitmask")?);
    let mut out = String::new();
    for (bit, text) in [
        (8, " --physdev-is-in".to_string()),
        (1, format!(" --physdev-in {}", d.name(0, 16, "physdev in")?)),
        (16, " --physdev-is-out".to_string()),
        (
            2,
            format!(" --physdev-out {}", d.name(32, 16, "physdev out")?),
        ),
        (4, " --physdev-is-bridged".to_string()),
    ] {
        if bits & bit != 0 {
            out += inv(invert & bit != 0);
            out += &text;
        }
    }
    Ok(out)
}

/// `struct xt_devgroup_info`: flags (SRC 1, INVERT_SRC 2, DST 4, INVERT_DST 8), then each
/// side's group and mask.
fn devgroup(d: Bytes) -> Result<String, Truncated> {
    let flags = d.u32(0, "devgroup flags")?;
    let mut out = String::new();
    for (bit, at, opt) in [(1, 4, "--src-group"), (4, 12, "--dst-group")] {
        if flags & bit == 0 {
            continue;
        }
        let (group, mask) = (
            d.u32(at, "devgroup group")?,
            d.u32(at + 4, "devgroup mask")?,
        );
        let mask = if mask == u32::MAX {
            String::new()
        } else {
            format!("/0x{mask:x}")
        };
        out += &format!("{} {opt} 0x{group:x}{mask}", inv(flags & (bit << 1) != 0));
    }
    Ok(out)
}

/// `struct xt_string_info` (revision 1): from, to, algo[16], pattern[128], patlen, flags
/// (INVERT 1, IGNORECASE 2). A pattern with a byte that is not printable ASCII is shown as
/// `--hex-string`.
fn string(d: Bytes) -> Result<String, Truncated> {
    let (from, to) = (d.u16(0, "string from")?, d.u16(2, "string to")?);
    let algo = d.name(4, 16, "string algo")?;
    let len = usize::from(d.u8(148, "string patlen")?);
    let pattern = d.slice(20, len.min(128), "string pattern")?;
    let flags = d.u8(149, "string flags")?;
    let mut out = inv(flags & 1 != 0).to_string();
    if pattern.iter().all(|b| (0x20..0x7f).contains(b)) {
        out += " --string \"";
        for b in pattern {
            if matches!(b, b'"' | b'\\') {
                out.push('\\');
            }
            out.push(char::from(*b));
        }
        out.push('"');
    } else {
        out += " --hex-string \"|";
        out += &Bytes::new(pattern).hex();
        out += "|\"";
    }
    out += &format!(" --algo {algo}");
    if from != 0 {
        out += &format!(" --from {from}");
    }
    if to != u16::MAX {
        out += &format!(" --to {to}");
    }
    if flags & 2 != 0 {
        out += " --icase";
    }
    Ok(out)
}

/// `struct xt_time_info`: date start and stop (seconds since the epoch), daytime start and
/// stop (seconds of the day), monthdays and weekdays bit sets, flags (LOCAL_TZ 1,
/// CONTIGUOUS 2). Defaults are not printed; the date stop always is unless it is 0.
fn time(d: Bytes) -> Result<String, Truncated> {
    let (date_start, date_stop) = (d.u32(0, "time date start")?, d.u32(4, "time date stop")?);
    let (day_start, day_stop) = (
        d.u32(8, "time daytime start")?,
        d.u32(12, "time daytime stop")?,
    );
    let (monthdays, weekdays, flags) = (
        d.u32(16, "time monthdays")?,
        d.u8(20, "time weekdays")?,
        d.u8(21, "time flags")?,
    );
    let hms = |t: u32| format!("{:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60);
    let mut out = String::new();
    if day_start != 0 || day_stop != 86_399 {
        out += &format!(
            " --timestart {} --timestop {}",
            hms(day_start),
            hms(day_stop)
        );
    }
    if monthdays != 0xffff_fffe {
        let days: Vec<String> = (1..=31)
            .filter(|i| monthdays & (1 << i) != 0)
            .map(|i: u32| i.to_string())
            .collect();
        out += &format!(" --monthdays {}", days.join(","));
    }
    if weekdays != 0xfe {
        let names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        let days: Vec<&str> = (1..=7)
            .filter(|i| weekdays & (1 << i) != 0)
            .map(|i| names[i - 1])
            .collect();
        out += &format!(" --weekdays {}", days.join(","));
    }
    for (opt, date) in [("--datestart", date_start), ("--datestop", date_stop)] {
        if date != 0 {
            out += &format!(" {opt} {}", crate::civil::utc(date.into()));
        }
    }
    if flags & 1 != 0 {
        out += " --kerneltz";
    }
    if flags & 2 != 0 {
        out += " --contiguous";
    }
    Ok(out)
}

/// The options whose bit is set in `flags`, in the table's order (the order the tools print
/// them in).
pub(crate) fn set_options<S: AsRef<str>>(flags: u32, options: &[(u32, S)]) -> String {
    options
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, opt)| opt.as_ref())
        .collect()
}

pub(crate) fn inv(flag: bool) -> &'static str {
    if flag { " !" } else { "" }
}

/// A u32 range option (`--espspi`, `--ahspi`, `--fragid`, `--rt-segsleft`): nothing for
/// the full range (iptables 1.8.9 omits it even inverted), else `A` or `A:B`.
pub(crate) fn u32_range(opt: &str, lo: u32, hi: u32, negated: bool) -> String {
    if lo == 0 && hi == u32::MAX {
        return String::new();
    }
    let value = if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}:{hi}")
    };
    format!("{} {opt} {value}", inv(negated))
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
pub(crate) const LIMIT_SCALE: u32 = 10_000;

/// `-m limit`'s save text from avg (LIMIT_SCALE ticks per packet) and burst: libxt_limit
/// prints the largest unit that keeps the rate whole, and the burst unless it is 5.
pub(crate) fn limit_text(period: u32, burst: u32) -> String {
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

/// `struct xt_esp` / `ipt_ah`: an SPI range and invflags (1) at `inv_at`.
fn spi(d: Bytes, opt: &str, inv_at: usize) -> Result<String, Truncated> {
    let (lo, hi) = (d.u32(0, "spi min")?, d.u32(4, "spi max")?);
    let negated = d.u8(inv_at, "spi invflags")? & 1 != 0;
    Ok(u32_range(opt, lo, hi, negated))
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
    out += &set_options(
        check.into(),
        &[
            (2, " --set"),
            (1, " --rcheck"),
            (4, " --update"),
            (8, " --remove"),
        ],
    );
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
