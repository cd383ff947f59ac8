//! IPv6 extension-header matches (ah, hbh, dst, frag, rt, mh, srh, ipv6header, eui64) and
//! ipcomp: each decodes its `struct ip6t_*` into the text the extension's `save` function of
//! iptables 1.8.9 prints. None is modelled: whether a locally generated packet carries a
//! given extension header depends on socket options (IPV6_HOPOPTS, IPV6_RTHDR, ...) and
//! IPsec policy meshleak does not see, so where such a match stands the outcome is unknown.

use super::bytes::{Bytes, Truncated};
use super::extensions::{inv, u32_range};

/// The save text of one of these matches, or `None` for a name this module does not print.
pub(crate) fn save(name: &str, revision: u8, d: Bytes) -> Result<Option<String>, Truncated> {
    Ok(Some(match (name, revision) {
        ("ah", 0) => ah(d)?,
        ("hbh" | "dst", 0) => opts(name, d)?,
        ("frag", 0) => frag(d)?,
        ("rt", 0) => rt(d)?,
        ("mh", 0) => mh(d)?,
        ("srh", 0 | 1) => srh(d, revision)?,
        ("ipv6header", 0) => ipv6header(d)?,
        ("ipcomp", 0) => ipcomp(d)?,
        // Matches a source address built from the MAC address; no options.
        ("eui64", 0) => String::new(),
        _ => return Ok(None),
    }))
}

/// `struct ip6t_ah`: spis[2], hdrlen, hdrres, invflags (SPI 1, LEN 2).
fn ah(d: Bytes) -> Result<String, Truncated> {
    let (lo, hi, len) = (
        d.u32(0, "ah spi min")?,
        d.u32(4, "ah spi max")?,
        d.u32(8, "ah hdrlen")?,
    );
    let (res, invflags) = (d.u8(12, "ah hdrres")?, d.u8(13, "ah invflags")?);
    let mut out = u32_range("--ahspi", lo, hi, invflags & 1 != 0);
    if len != 0 || invflags & 2 != 0 {
        out += &format!("{} --ahlen {len}", inv(invflags & 2 != 0));
    }
    if res != 0 {
        out += " --ahres";
    }
    Ok(out)
}

/// `struct ip6t_opts` (hbh and dst): hdrlen, flags (LEN 1, OPTS 2), invflags (LEN 1),
/// opts[16] (type << 8 | length, 0xff for any length), optsnr.
fn opts(name: &str, d: Bytes) -> Result<String, Truncated> {
    let (len, flags, invflags) = (
        d.u32(0, "opts hdrlen")?,
        d.u8(4, "opts flags")?,
        d.u8(5, "opts invflags")?,
    );
    let count = usize::from(d.u8(38, "opts optsnr")?).min(16);
    let mut out = String::new();
    if flags & 1 != 0 {
        out += &format!("{} --{name}-len {len}", inv(invflags & 1 != 0));
    }
    if flags & 2 != 0 {
        out += &format!(" --{name}-opts");
    }
    for i in 0..count {
        let opt = d.u16(6 + i * 2, "opts option")?;
        out.push(if i == 0 { ' ' } else { ',' });
        out += &(opt >> 8).to_string();
        if opt & 0xff != 0xff {
            out += &format!(":{}", opt & 0xff);
        }
    }
    Ok(out)
}

/// `struct ip6t_frag`: ids[2], hdrlen, flags (IDS 1, LEN 2, RES 4, FST 8, MF 16, NMF 32),
/// invflags (IDS 1, LEN 2).
fn frag(d: Bytes) -> Result<String, Truncated> {
    let (lo, hi, len) = (
        d.u32(0, "frag id min")?,
        d.u32(4, "frag id max")?,
        d.u32(8, "frag hdrlen")?,
    );
    let (flags, invflags) = (d.u8(12, "frag flags")?, d.u8(13, "frag invflags")?);
    let mut out = u32_range("--fragid", lo, hi, invflags & 1 != 0);
    if flags & 2 != 0 {
        out += &format!("{} --fraglen {len}", inv(invflags & 2 != 0));
    }
    out += &super::extensions::set_options(
        flags.into(),
        &[
            (4, " --fragres"),
            (8, " --fragfirst"),
            (16, " --fragmore"),
            (32, " --fraglast"),
        ],
    );
    Ok(out)
}

/// `struct ip6t_rt`: rt_type, segsleft[2], hdrlen, flags (TYP 1, SGS 2, LEN 4, RES 8,
/// FST 0x10, FST_NSTRICT 0x20), invflags (TYP 1, SGS 2, LEN 4), addrs[16], addrnr.
fn rt(d: Bytes) -> Result<String, Truncated> {
    let (kind, lo, hi, len) = (
        d.u32(0, "rt type")?,
        d.u32(4, "rt segsleft min")?,
        d.u32(8, "rt segsleft max")?,
        d.u32(12, "rt hdrlen")?,
    );
    let (flags, invflags) = (d.u8(16, "rt flags")?, d.u8(17, "rt invflags")?);
    let mut out = String::new();
    if flags & 1 != 0 {
        out += &format!("{} --rt-type {kind}", inv(invflags & 1 != 0));
    }
    out += &u32_range("--rt-segsleft", lo, hi, invflags & 2 != 0);
    if flags & 4 != 0 {
        out += &format!("{} --rt-len {len}", inv(invflags & 4 != 0));
    }
    if flags & 8 != 0 {
        out += " --rt-0-res";
    }
    if flags & 0x10 != 0 {
        out += " --rt-0-addrs";
    }
    let count = usize::from(d.u8(276, "rt addrnr")?).min(16);
    for i in 0..count {
        out.push(if i == 0 { ' ' } else { ',' });
        out += &d.ipv6(20 + i * 16, "rt address")?.to_string();
    }
    if flags & 0x20 != 0 {
        out += " --rt-0-not-strict";
    }
    Ok(out)
}

/// `struct ip6t_mh`: types[2], invflags (TYPE 1); every type prints nothing, even inverted.
fn mh(d: Bytes) -> Result<String, Truncated> {
    let (lo, hi, negated) = (
        d.u8(0, "mh type min")?,
        d.u8(1, "mh type max")?,
        d.u8(2, "mh invflags")? & 1 != 0,
    );
    if lo == 0 && hi == u8::MAX {
        return Ok(String::new());
    }
    let types = if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}:{hi}")
    };
    Ok(format!("{} --mh-type {types}", inv(negated)))
}

/// `struct ip6t_srh` / `ip6t_srh1`: next_hdr, hdr_len, segs_left, last_entry, tag, (revision
/// 1: previous, next and last SID addresses, then their masks,) mt_flags, mt_invflags.
fn srh(d: Bytes, revision: u8) -> Result<String, Truncated> {
    let flags_at = if revision == 1 { 104 } else { 6 };
    let (flags, invflags) = (
        d.u16(flags_at, "srh flags")?,
        d.u16(flags_at + 2, "srh invflags")?,
    );
    let fields = [
        ("--srh-next-hdr", d.u8(0, "srh next_hdr")?),
        ("--srh-hdr-len-eq", d.u8(1, "srh hdr_len")?),
        ("--srh-hdr-len-gt", d.u8(1, "srh hdr_len")?),
        ("--srh-hdr-len-lt", d.u8(1, "srh hdr_len")?),
        ("--srh-segs-left-eq", d.u8(2, "srh segs_left")?),
        ("--srh-segs-left-gt", d.u8(2, "srh segs_left")?),
        ("--srh-segs-left-lt", d.u8(2, "srh segs_left")?),
        ("--srh-last-entry-eq", d.u8(3, "srh last_entry")?),
        ("--srh-last-entry-gt", d.u8(3, "srh last_entry")?),
        ("--srh-last-entry-lt", d.u8(3, "srh last_entry")?),
    ];
    let mut out = String::new();
    for (bit, (opt, value)) in fields.into_iter().enumerate() {
        if flags & (1 << bit) != 0 {
            out += &format!("{} {opt} {value}", inv(invflags & (1 << bit) != 0));
        }
    }
    if flags & 0x400 != 0 {
        out += &format!(
            "{} --srh-tag {}",
            inv(invflags & 0x400 != 0),
            d.u16(4, "srh tag")?
        );
    }
    if revision == 1 {
        for (i, opt) in ["--srh-psid", "--srh-nsid", "--srh-lsid"]
            .into_iter()
            .enumerate()
        {
            let bit = 0x800 << i;
            if flags & bit == 0 {
                continue;
            }
            let addr = d.ipv6(8 + i * 16, "srh sid")?;
            let mask = u128::from(d.ipv6(56 + i * 16, "srh sid mask")?);
            out += &format!(
                "{} {opt} {addr}/{}",
                inv(invflags & bit != 0),
                // libxtables' -1 for a mask that is no prefix, printed with `%u`.
                super::matches::prefix_len(mask, 128).unwrap_or(u32::MAX)
            );
        }
    }
    Ok(out)
}

/// `struct ip6t_ipv6header_info`: matchflags (HOPOPTS 128, DSTOPTS 64, ROUTING 32,
/// FRAGMENT 16, AH 8, ESP 4, NONE 2, PROTO 1), invflags, modeflag (soft). Headers are
/// named as libip6t_ipv6header names them: by /etc/protocols (the embedded netbase table),
/// except 0 (hop-by-hop) and 255 (`protocol`), which it does not look up or lacks.
fn ipv6header(d: Bytes) -> Result<String, Truncated> {
    const HEADERS: [(u8, u8); 8] = [
        (128, 0),
        (64, 60),
        (32, 43),
        (16, 44),
        (8, 51),
        (4, 50),
        (2, 59),
        (1, 255),
    ];
    let (flags, invflags, soft) = (
        d.u8(0, "ipv6header matchflags")?,
        d.u8(1, "ipv6header invflags")?,
        d.u8(2, "ipv6header modeflag")?,
    );
    let names: Vec<String> = HEADERS
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, proto)| match proto {
            0 => "hop-by-hop".to_string(),
            255 => "protocol".to_string(),
            p => crate::model::proto_name(*p),
        })
        .collect();
    let headers = if names.is_empty() {
        "NONE".to_string()
    } else {
        names.join(",")
    };
    let soft = if soft != 0 { " --soft" } else { "" };
    Ok(format!("{} --header {headers}{soft}", inv(invflags != 0)))
}

/// `struct xt_ipcomp`: spis[2], invflags (SPI 1), hdrres.
fn ipcomp(d: Bytes) -> Result<String, Truncated> {
    let (lo, hi) = (d.u32(0, "ipcomp spi min")?, d.u32(4, "ipcomp spi max")?);
    let (negated, res) = (
        d.u8(8, "ipcomp invflags")? & 1 != 0,
        d.u8(9, "ipcomp hdrres")?,
    );
    let mut out = u32_range("--ipcompspi", lo, hi, negated);
    if res != 0 {
        out += " --compres";
    }
    Ok(out)
}
