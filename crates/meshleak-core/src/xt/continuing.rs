//! x_tables targets that always let evaluation go on (the kernel's target function returns
//! `XT_CONTINUE` whatever its options): logging, tracing, header rewrites that no modelled
//! match reads (MSS, DSCP/TOS, ECN, TTL/hop limit, checksums, TCP options), classification,
//! rate estimators, LEDs and timers. They decide no verdict; their options are decoded only to print the rule as
//! `iptables-save` does.
//!
//! Not here on purpose: NFQUEUE (userspace decides), TEE (a copy of the packet leaves by
//! another route), HMARK (rewrites the packet mark, which mark matches read) and DNPT/SNPT
//! (rewrite addresses that address matches and routing read): they stay unknown. ECN
//! rewrites only ECN bits (IP ECT, TCP ECE/CWR), which no modelled match reads.

use super::bytes::{Bytes, Truncated};
use super::matches::save_string;
use super::targets::Decoded;
use crate::model::Action;

/// Names of the targets that always continue, as `-j NAME` writes them.
pub const TARGETS: &[&str] = &[
    "LOG",
    "NFLOG",
    "ULOG",
    "CHECKSUM",
    "TCPMSS",
    "DSCP",
    "TOS",
    "TTL",
    "HL",
    "CLASSIFY",
    "AUDIT",
    "TRACE",
    "SECMARK",
    "CONNSECMARK",
    "IDLETIMER",
    "LED",
    "RATEEST",
    "TCPOPTSTRIP",
    "ECN",
];

/// The target's options as `iptables-save` prints them, or `None` for a revision whose
/// layout meshleak does not know (the rule still continues).
pub fn decode(name: &str, revision: u8, d: Bytes) -> Result<Option<Decoded>, Truncated> {
    let save = match (name, revision) {
        ("TCPMSS", 0) => match d.u16(0, "TCPMSS mss")? {
            0xffff => " --clamp-mss-to-pmtu".to_string(),
            mss => format!(" --set-mss {mss}"),
        },
        ("DSCP", 0) => format!(" --set-dscp 0x{:02x}", d.u8(0, "DSCP value")?),
        ("TOS", 1) => format!(
            " --set-tos 0x{:02x}/0x{:02x}",
            d.u8(0, "TOS value")?,
            d.u8(1, "TOS mask")?
        ),
        ("CHECKSUM", 0) => {
            if d.u8(0, "CHECKSUM operation")? & 1 != 0 {
                " --checksum-fill".to_string()
            } else {
                String::new()
            }
        }
        ("LOG", 0) => log(d)?,
        ("NFLOG", 0) => nflog(d)?,
        ("TRACE", 0) => String::new(),
        ("CLASSIFY", 0) => {
            let class = d.u32(0, "CLASSIFY priority")?;
            format!(" --set-class {:04x}:{:04x}", class >> 16, class & 0xffff)
        }
        ("AUDIT", 0) => match d.u8(0, "AUDIT type")? {
            0 => " --type accept".to_string(),
            1 => " --type drop".to_string(),
            2 => " --type reject".to_string(),
            other => format!(" --type {other}"),
        },
        ("CONNSECMARK", 0) => match d.u8(0, "CONNSECMARK mode")? {
            1 => " --save".to_string(),
            2 => " --restore".to_string(),
            other => format!(" (mode {other})"),
        },
        ("IDLETIMER", 0 | 1) => {
            let mut s = format!(
                " --timeout {} --label {}",
                d.u32(0, "IDLETIMER timeout")?,
                d.name(4, 28, "IDLETIMER label")?
            );
            if revision == 1 && d.u8(33, "IDLETIMER timer type")? & 1 != 0 {
                s += " --alarm";
            }
            s
        }
        ("TTL" | "HL", 0) => {
            let (mode, value) = (d.u8(0, "TTL mode")?, d.u8(1, "TTL value")?);
            let word = if name == "TTL" { "ttl" } else { "hl" };
            match mode {
                0 => format!(" --{word}-set {value}"),
                1 => format!(" --{word}-inc {value}"),
                _ => format!(" --{word}-dec {value}"),
            }
        }
        ("TCPOPTSTRIP", 0) => {
            let mut options = Vec::new();
            for option in 0..256u32 {
                let word = d.u32((option / 32) as usize * 4, "TCPOPTSTRIP bitmap")?;
                if word & (1 << (option % 32)) != 0 {
                    options.push(option.to_string());
                }
            }
            if options.is_empty() {
                String::new()
            } else {
                format!(" --strip-options {}", options.join(","))
            }
        }
        ("ECN", 0) => ecn(d)?,
        ("RATEEST", 0) => rateest(d)?,
        ("LED", 0) => led(d)?,
        _ => return Ok(None),
    };
    Ok(Some(Decoded {
        alias: None,
        save,
        action: Action::Continue {
            name: name.to_string(),
        },
    }))
}

/// `struct xt_nflog_info`: len, group, threshold, flags, pad, prefix[64].
fn nflog(d: Bytes) -> Result<String, Truncated> {
    const COPY_LEN: u16 = 1;
    let (len, group, threshold, flags) = (
        d.u32(0, "NFLOG len")?,
        d.u16(4, "NFLOG group")?,
        d.u16(6, "NFLOG threshold")?,
        d.u16(8, "NFLOG flags")?,
    );
    let prefix = d.name(12, 64, "NFLOG prefix")?;
    let size = (flags & COPY_LEN != 0).then_some(len);
    Ok(nflog_text(&prefix, group, size, len, threshold))
}

/// `-j NFLOG`'s save text: prefix, group, a copy size (`size`, the COPY_LEN flag) or the
/// old range `len`, and a threshold other than 0. iptables-nft's native `log group` prints
/// the same.
pub(crate) fn nflog_text(
    prefix: &str,
    group: u16,
    size: Option<u32>,
    len: u32,
    threshold: u16,
) -> String {
    let mut s = String::new();
    if !prefix.is_empty() {
        s += &format!(" --nflog-prefix{}", save_string(prefix));
    }
    if group != 0 {
        s += &format!(" --nflog-group {group}");
    }
    match size {
        Some(size) => s += &format!(" --nflog-size {size}"),
        None if len != 0 => s += &format!(" --nflog-range {len}"),
        None => {}
    }
    if threshold != 0 {
        s += &format!(" --nflog-threshold {threshold}");
    }
    s
}

/// `struct xt_log_info`: level, logflags, prefix[30].
fn log(d: Bytes) -> Result<String, Truncated> {
    let (level, flags, prefix) = (
        d.u8(0, "log level")?,
        d.u8(1, "log flags")?,
        d.name(2, 30, "log prefix")?,
    );
    let mut save = String::new();
    if !prefix.is_empty() {
        save += &format!(" --log-prefix{}", save_string(&prefix));
    }
    if level != 4 {
        save += &format!(" --log-level {level}");
    }
    for (bit, word) in [
        (1, " --log-tcp-sequence"),
        (2, " --log-tcp-options"),
        (4, " --log-ip-options"),
        (8, " --log-uid"),
        (0x20, " --log-macdecode"),
    ] {
        if flags & bit != 0 {
            save += word;
        }
    }
    Ok(save)
}

/// `struct ipt_ECN_info`: operation (SET_IP 1, SET_ECE 0x10, SET_CWR 0x20), ip_ect, then
/// the TCP bits (ece bit 0, cwr bit 1). Removing both TCP bits prints as
/// `--ecn-tcp-remove`.
fn ecn(d: Bytes) -> Result<String, Truncated> {
    let (op, ect, tcp) = (
        d.u8(0, "ECN operation")?,
        d.u8(1, "ECN ip_ect")?,
        d.u8(2, "ECN tcp bits")?,
    );
    let (ece, cwr) = (tcp & 1, (tcp >> 1) & 1);
    if op == 0x30 && ece == 0 && cwr == 0 {
        return Ok(" --ecn-tcp-remove".to_string());
    }
    Ok(super::extensions::set_options(
        op.into(),
        &[
            (0x10, format!(" --ecn-tcp-ece {ece}")),
            (0x20, format!(" --ecn-tcp-cwr {cwr}")),
            (0x01, format!(" --ecn-ip-ect {ect}")),
        ],
    ))
}

/// `struct xt_rateest_target_info`: name[16], interval (log2 of quarter seconds, signed),
/// ewma_log; printed as libxt_RATEEST's save, both times in microseconds shown in the
/// largest unit (`250.0ms`, `1.0s`, `500us`).
fn rateest(d: Bytes) -> Result<String, Truncated> {
    let (name, interval, ewma) = (
        d.name(0, 16, "RATEEST name")?,
        d.u8(16, "RATEEST interval")? as i8,
        d.u8(17, "RATEEST ewma_log")?,
    );
    // C's unsigned int arithmetic, wrapping as it does.
    let local = 1_000_000u32
        .checked_shl((i32::from(interval) + 2) as u32)
        .unwrap_or(0)
        / 4;
    let ewma = local.wrapping_mul(1u32.checked_shl(ewma.into()).unwrap_or(0));
    let time = |t: u32| {
        let f = f64::from(t);
        if f >= 1e6 {
            format!(" {:.1}s", f / 1e6)
        } else if f >= 1e3 {
            format!(" {:.1}ms", f / 1e3)
        } else {
            format!(" {t}us")
        }
    };
    Ok(format!(
        " --rateest-name {name} --rateest-interval{} --rateest-ewmalog{}",
        time(local),
        time(ewma)
    ))
}

/// `struct xt_led_info`: id[27] (with the `netfilter-` prefix libxt_LED adds and its save
/// strips), always_blink, delay (ms; printed signed, as libxt_LED's `%d` does).
fn led(d: Bytes) -> Result<String, Truncated> {
    let id = d.name(0, 27, "LED id")?;
    let id = id.get("netfilter-".len()..).unwrap_or_default();
    let mut out = String::from(" --led-trigger-id \"");
    for c in id.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    let delay = d.u32(28, "LED delay")?;
    if delay != 0 {
        out += &format!(" --led-delay {}", delay as i32);
    }
    if d.u8(27, "LED always_blink")? != 0 {
        out += " --led-always-blink";
    }
    Ok(out)
}
