//! x_tables target blobs (`struct xt_entry_target` payloads) other than the standard
//! verdicts: their action and the text their `save` function prints after `-j NAME`.

use std::net::IpAddr;

use super::bytes::{Bytes, Truncated};
use super::continuing;
use super::matches::prefix_len;
use crate::model::{
    Action, IpVersion, MarkReg, MarkSet, NAT_FLAGS, NatPorts, NatSource, netmap_mask,
};
use crate::range::PortRange;

pub struct Decoded {
    /// The name `iptables-save` shows when it differs (CT's `NOTRACK` alias).
    pub alias: Option<&'static str>,
    pub save: String,
    pub action: Action,
}

const MAP_IPS: u32 = 1;
const PROTO_SPECIFIED: u32 = 2;
const PROTO_OFFSET: u32 = 32;

pub fn decode(name: &str, revision: u8, data: Bytes, version: IpVersion) -> Decoded {
    if continuing::TARGETS.contains(&name) {
        return match continuing::decode(name, revision, data) {
            Ok(Some(d)) => d,
            // A revision whose options meshleak cannot print still continues.
            Ok(None) => Decoded {
                alias: None,
                save: format!(" (revision {revision}: {})", data.hex()),
                action: Action::Continue {
                    name: name.to_string(),
                },
            },
            Err(e) => unknown(name, revision, data, &e.to_string()),
        };
    }
    match decode_known(name, revision, data, version) {
        Ok(Some(d)) => d,
        Ok(None) => unknown(name, revision, data, "not modelled"),
        Err(e) => unknown(name, revision, data, &e.to_string()),
    }
}

/// A target printed as the tool prints it whose effect is not modelled: unknown, named as
/// the text reader names it.
fn named_unknown(name: &str, save: String) -> Decoded {
    Decoded {
        alias: None,
        save,
        action: Action::Unknown { name: name.into() },
    }
}

fn unknown(name: &str, revision: u8, data: Bytes, why: &str) -> Decoded {
    Decoded {
        alias: None,
        save: format!(" (revision {revision}, {why}: {})", data.hex()),
        action: Action::Unknown {
            name: format!("{name} revision {revision}"),
        },
    }
}

fn decode_known(
    name: &str,
    revision: u8,
    d: Bytes,
    version: IpVersion,
) -> Result<Option<Decoded>, Truncated> {
    Ok(Some(match (name, revision, version) {
        ("REDIRECT" | "DNAT" | "SNAT" | "MASQUERADE", 0, IpVersion::V4) => {
            nat(name, ipv4_compat_range(d)?)
        }
        ("REDIRECT" | "MASQUERADE", 0, IpVersion::V6) | ("DNAT" | "SNAT", 1, _) => {
            nat(name, nat_range(d, version)?)
        }
        ("DNAT" | "SNAT", 2, _) => {
            let mut r = nat_range(d, version)?;
            if r.flags & PROTO_OFFSET != 0 {
                r.base = Some(d.u16_be(40, "nat base port")?);
            }
            nat(name, r)
        }
        ("MARK", 2, _) => {
            let (mark, mask) = (d.u32(0, "mark")?, d.u32(4, "mask")?);
            Decoded {
                alias: None,
                save: format!(" --set-xmark 0x{mark:x}/0x{mask:x}"),
                action: Action::SetMark(MarkSet {
                    reg: MarkReg::Mark,
                    keep: !mask,
                    or: 0,
                    xor: mark,
                    copy: None,
                }),
            }
        }
        ("CONNMARK", 1 | 2, _) => connmark(d, revision)?,
        ("CT", 1 | 2, _) => ct(d)?,
        ("NOTRACK", 0, _) => Decoded {
            alias: None,
            save: String::new(),
            action: Action::Notrack,
        },
        ("TPROXY", 1, _) => {
            let (mask, value) = (
                d.u32(0, "tproxy mark mask")?,
                d.u32(4, "tproxy mark value")?,
            );
            let ip: IpAddr = match version {
                IpVersion::V4 => d.ipv4(8, "tproxy laddr")?.into(),
                IpVersion::V6 => d.ipv6(8, "tproxy laddr")?.into(),
            };
            let port = d.u16_be(24, "tproxy lport")?;
            Decoded {
                alias: None,
                save: format!(
                    " --on-port {port} --on-ip {ip} --tproxy-mark 0x{value:x}/0x{mask:x}"
                ),
                action: Action::Tproxy {
                    port: (port != 0).then_some(port),
                },
            }
        }
        ("REJECT", 0, _) => {
            let with = d.u32(0, "reject with")? as usize;
            let names: &[&str] = match version {
                IpVersion::V4 => &[
                    "icmp-net-unreachable",
                    "icmp-host-unreachable",
                    "icmp-proto-unreachable",
                    "icmp-port-unreachable",
                    "icmp-echo-reply",
                    "icmp-net-prohibited",
                    "icmp-host-prohibited",
                    "tcp-reset",
                    "icmp-admin-prohibited",
                ],
                IpVersion::V6 => &[
                    "icmp6-no-route",
                    "icmp6-adm-prohibited",
                    "icmp6-not-neighbour",
                    "icmp6-addr-unreachable",
                    "icmp6-port-unreachable",
                    "echo-reply",
                    "tcp-reset",
                    "icmp6-policy-fail",
                    "icmp6-reject-route",
                ],
            };
            let shown = names
                .get(with)
                .map_or_else(|| with.to_string(), |n| n.to_string());
            Decoded {
                alias: None,
                save: format!(" --reject-with {shown}"),
                action: Action::Reject,
            }
        }
        // A copy of the packet leaves by another route: unknown.
        ("TEE", 1, _) => {
            let gw = match version {
                IpVersion::V4 => d.ipv4(0, "TEE gateway")?.to_string(),
                IpVersion::V6 => d.ipv6(0, "TEE gateway")?.to_string(),
            };
            let oif = d.name(16, 16, "TEE oif")?;
            let oif = if oif.is_empty() {
                String::new()
            } else {
                format!(" --oif {oif}")
            };
            named_unknown("TEE", format!(" --gateway {gw}{oif}"))
        }
        // Maps the destination (nat OUTPUT) or source (POSTROUTING) network to another.
        ("NETMAP", 0, IpVersion::V4) => netmap(
            d.ipv4(8, "NETMAP min")?.into(),
            d.ipv4(12, "NETMAP max")?.into(),
        ),
        ("NETMAP", 0, IpVersion::V6) => netmap(
            d.ipv6(4, "NETMAP min")?.into(),
            d.ipv6(20, "NETMAP max")?.into(),
        ),
        // Stateless prefix translation: rewrites the destination (DNPT) or the source
        // (SNPT), which routing and address matches read; not modelled.
        ("DNPT" | "SNPT", 0, IpVersion::V6) => named_unknown(name, npt(d)?),
        // Sets the packet mark to a hash of the flow's addresses and ports: which mark a
        // flow gets is not modelled.
        ("HMARK", 0, _) => named_unknown("HMARK", hmark(d, version)?),
        // Answers or drops the handshake itself.
        ("SYNPROXY", 0, _) => {
            let (options, wscale, mss) = (
                d.u8(0, "SYNPROXY options")?,
                d.u8(1, "SYNPROXY wscale")?,
                d.u16(2, "SYNPROXY mss")?,
            );
            let save = super::extensions::set_options(
                options.into(),
                &[
                    (4, " --sack-perm".to_string()),
                    (8, " --timestamp".to_string()),
                    (2, format!(" --wscale {wscale}")),
                    (1, format!(" --mss {mss}")),
                    (16, " --ecn".to_string()),
                ],
            );
            named_unknown("SYNPROXY", save)
        }
        // userspace decides: unknown, named as the text reader names it.
        ("NFQUEUE", 3, _) => {
            let (num, total, flags) = (
                d.u16(0, "NFQUEUE queuenum")?,
                d.u16(2, "NFQUEUE queues_total")?,
                d.u16(4, "NFQUEUE flags")?,
            );
            let mut save = if total > 1 {
                format!(
                    " --queue-balance {num}:{}",
                    u32::from(num) + u32::from(total) - 1
                )
            } else {
                format!(" --queue-num {num}")
            };
            if flags & 1 != 0 {
                save += " --queue-bypass";
            }
            if flags & 2 != 0 {
                save += " --queue-cpu-fanout";
            }
            named_unknown("NFQUEUE", save)
        }
        _ => return Ok(None),
    }))
}

/// One NAT range, whatever struct it came in.
struct Range {
    flags: u32,
    addrs: Option<(IpAddr, IpAddr)>,
    ports: (u16, u16),
    /// `nf_nat_range2`'s base port, with NF_NAT_RANGE_PROTO_OFFSET (`A:P-Q/BASE`).
    base: Option<u16>,
}

/// `struct nf_nat_ipv4_multi_range_compat`: rangesize, then flags, min_ip, max_ip, min, max.
fn ipv4_compat_range(d: Bytes) -> Result<Range, Truncated> {
    let flags = d.u32(4, "nat flags")?;
    Ok(Range {
        flags,
        addrs: Some((
            d.ipv4(8, "nat min_ip")?.into(),
            d.ipv4(12, "nat max_ip")?.into(),
        )),
        ports: (d.u16_be(16, "nat min port")?, d.u16_be(18, "nat max port")?),
        base: None,
    })
}

/// `struct nf_nat_range` / `nf_nat_range2`: flags, min_addr, max_addr (16 bytes each), min and
/// max proto (network order).
fn nat_range(d: Bytes, version: IpVersion) -> Result<Range, Truncated> {
    let flags = d.u32(0, "nat flags")?;
    let addr = |at: usize| -> Result<IpAddr, Truncated> {
        Ok(match version {
            IpVersion::V4 => d.ipv4(at, "nat address")?.into(),
            IpVersion::V6 => d.ipv6(at, "nat address")?.into(),
        })
    };
    Ok(Range {
        flags,
        addrs: Some((addr(4)?, addr(20)?)),
        ports: (d.u16_be(36, "nat min port")?, d.u16_be(38, "nat max port")?),
        base: None,
    })
}

fn nat(name: &str, r: Range) -> Decoded {
    let port_range = (r.flags & PROTO_SPECIFIED != 0).then_some(PortRange {
        start: r.ports.0,
        end: r.ports.1,
    });
    let base = r.base.map(|b| format!("/{b}")).unwrap_or_default();
    let ports_text = |sep: &str| match port_range {
        Some(p) if p.start != p.end => format!("{sep}{}-{}{base}", p.start, p.end),
        Some(p) => format!("{sep}{}{base}", p.start),
        None => String::new(),
    };
    let flags_text: String = NAT_FLAGS
        .into_iter()
        .filter(|(bit, _, _)| r.flags & bit != 0)
        .map(|(_, _, option)| format!(" {option}"))
        .collect();
    let source_ports = NatPorts {
        // A base port shifts the port from it (`A:P-Q/BASE`): not modelled.
        unknown: r.base.is_some(),
        ..NatPorts::of(port_range, r.flags)
    };
    let (save, action) = match name {
        "REDIRECT" | "MASQUERADE" => {
            let save = if port_range.is_some() {
                ports_text(" --to-ports ")
            } else {
                String::new()
            };
            let action = if name == "REDIRECT" {
                Action::Redirect { ports: port_range }
            } else {
                Action::Masquerade {
                    ports: source_ports,
                }
            };
            (save, action)
        }
        _ => {
            let (min, max) = r.addrs.filter(|_| r.flags & MAP_IPS != 0).unzip();
            let mut to = match (min, max) {
                (Some(a), Some(b)) if a != b => format!("{a}-{b}"),
                (Some(a), _) => a.to_string(),
                _ => String::new(),
            };
            if to.contains(':') && port_range.is_some() {
                to = format!("[{to}]");
            }
            let opt = if name == "DNAT" {
                "--to-destination"
            } else {
                "--to-source"
            };
            let action = if name == "DNAT" && r.base.is_some() {
                // The port the connection gets is shifted from the base: not modelled.
                Action::Unknown {
                    name: "DNAT with a port offset".into(),
                }
            } else if name == "DNAT" {
                Action::Dnat {
                    addr: min,
                    ports: port_range,
                }
            } else {
                Action::Snat {
                    addr: NatSource::of(min, max),
                    ports: source_ports,
                }
            };
            (format!(" {opt} {to}{}", ports_text(":")), action)
        }
    };
    Decoded {
        alias: None,
        save: save + &flags_text,
        action,
    }
}

/// `struct xt_connmark_tginfo1/2`: ctmark, ctmask, nfmask, (shift_dir, shift_bits,) mode.
fn connmark(d: Bytes, revision: u8) -> Result<Decoded, Truncated> {
    let (ctmark, ctmask, nfmask) = (
        d.u32(0, "ctmark")?,
        d.u32(4, "ctmask")?,
        d.u32(8, "nfmask")?,
    );
    let (mode, shift) = if revision == 2 {
        (d.u8(14, "connmark mode")?, d.u8(13, "connmark shift bits")?)
    } else {
        (d.u8(12, "connmark mode")?, 0)
    };
    if shift != 0 {
        return Ok(Decoded {
            alias: None,
            save: format!(" (shifted by {shift})"),
            action: Action::Unknown {
                name: "CONNMARK with shift".into(),
            },
        });
    }
    Ok(match mode {
        0 => Decoded {
            alias: None,
            save: format!(" --set-xmark 0x{ctmark:x}/0x{ctmask:x}"),
            action: Action::SetMark(MarkSet {
                reg: MarkReg::CtMark,
                keep: !ctmask,
                or: 0,
                xor: ctmark,
                copy: None,
            }),
        },
        1 => Decoded {
            alias: None,
            save: format!(" --save-mark --nfmask 0x{nfmask:x} --ctmask 0x{ctmask:x}"),
            action: Action::SetMark(MarkSet {
                reg: MarkReg::CtMark,
                keep: !ctmask,
                or: 0,
                xor: 0,
                copy: Some((MarkReg::Mark, nfmask)),
            }),
        },
        _ => Decoded {
            alias: None,
            save: format!(" --restore-mark --nfmask 0x{nfmask:x} --ctmask 0x{ctmask:x}"),
            action: Action::SetMark(MarkSet {
                reg: MarkReg::Mark,
                keep: !nfmask,
                or: 0,
                xor: 0,
                copy: Some((MarkReg::CtMark, ctmask)),
            }),
        },
    })
}

/// `struct xt_ct_target_info_v1`: flags, zone, ct_events, exp_events, helper[16],
/// timeout[32]. `-j NOTRACK` is CT with the NOTRACK_ALIAS flag.
fn ct(d: Bytes) -> Result<Decoded, Truncated> {
    const NOTRACK: u16 = 1;
    const NOTRACK_ALIAS: u16 = 2;
    const ZONE_ORIG: u16 = 4;
    const ZONE_REPLY: u16 = 8;
    const ZONE_MARK: u16 = 16;
    let (flags, zone) = (d.u16(0, "CT flags")?, d.u16(2, "CT zone")?);
    let (ct_events, exp_events) = (d.u32(4, "CT events")?, d.u32(8, "CT expectation events")?);
    let (helper, timeout) = (d.name(12, 16, "CT helper")?, d.name(28, 32, "CT timeout")?);
    if flags & NOTRACK_ALIAS != 0 {
        return Ok(Decoded {
            alias: Some("NOTRACK"),
            save: String::new(),
            action: Action::Notrack,
        });
    }
    let mut save = String::new();
    if flags & NOTRACK != 0 {
        save += " --notrack";
    }
    if !helper.is_empty() {
        save += &format!(" --helper {helper}");
    }
    // IPCT_* and IPEXP_* event bits, in libxt_CT's table order.
    const CT_EVENTS: [&str; 10] = [
        "new",
        "related",
        "destroy",
        "reply",
        "assured",
        "protoinfo",
        "helper",
        "mark",
        "natseqinfo",
        "secmark",
    ];
    for (opt, mask, names) in [
        ("--ctevents", ct_events, &CT_EVENTS[..]),
        ("--expevents", exp_events, &CT_EVENTS[..1]),
    ] {
        if mask != 0 {
            let set: Vec<&str> = (0..names.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| names[i])
                .collect();
            save += &format!(" {opt} {}", set.join(","));
        }
    }
    let dir = match (flags & ZONE_ORIG != 0, flags & ZONE_REPLY != 0) {
        (true, false) => "-orig",
        (false, true) => "-reply",
        _ => "",
    };
    if flags & ZONE_MARK != 0 {
        save += &format!(" --zone{dir} mark");
    } else if zone != 0 {
        save += &format!(" --zone{dir} {zone}");
    }
    if !timeout.is_empty() {
        save += &format!(" --timeout {timeout}");
    }
    let action = if flags & NOTRACK != 0 {
        Action::Notrack
    } else {
        Action::Continue { name: "CT".into() }
    };
    Ok(Decoded {
        alias: None,
        save,
        action,
    })
}

/// NETMAP from its range's first and last address: the mask the range spans (as the
/// kernel takes it, `~(min ^ max)`), printed as libip(6)t_NETMAP prints `--to`: a prefix
/// length or, when it is none, the mask in address form.
fn netmap(min: IpAddr, max: IpAddr) -> Decoded {
    let Some(mask) = netmap_mask(min, max) else {
        return named_unknown("NETMAP", String::new());
    };
    let bits = match mask {
        IpAddr::V4(m) => prefix_len(u128::from(u32::from(m)) << 96, 32),
        IpAddr::V6(m) => prefix_len(u128::from(m), 128),
    }
    .map_or_else(|| mask.to_string(), |n| n.to_string());
    Decoded {
        alias: None,
        save: format!(" --to {min}/{bits}"),
        action: Action::Netmap { to: min, mask },
    }
}

/// `struct ip6t_npt_tginfo`: src_pfx, dst_pfx (16 bytes each), their lengths; a prefix that
/// is all zero with length 0 is not printed.
fn npt(d: Bytes) -> Result<String, Truncated> {
    let mut out = String::new();
    for (i, opt) in ["--src-pfx", "--dst-pfx"].into_iter().enumerate() {
        let (addr, len) = (
            d.ipv6(i * 16, "NPT prefix")?,
            d.u8(32 + i, "NPT prefix length")?,
        );
        if !addr.is_unspecified() || len != 0 {
            out += &format!(" {opt} {addr}/{len}");
        }
    }
    Ok(out)
}

/// `struct xt_hmark_info`: src_mask, dst_mask (16 bytes each), port_mask, port_set (ports
/// or SPI, network order), flags (one bit per option, in `XT_HMARK_*` order), proto_mask,
/// hashrnd, hmodulus, hoffset; printed as libxt_HMARK's save.
fn hmark(d: Bytes, version: IpVersion) -> Result<String, Truncated> {
    let flags = d.u32(40, "HMARK flags")?;
    let on = |bit: u32| flags & (1 << bit) != 0;
    let mut out = String::new();
    for (bit, at, opt) in [(0, 0, "--hmark-src-prefix"), (1, 16, "--hmark-dst-prefix")] {
        if on(bit) {
            let len = match version {
                IpVersion::V4 => {
                    prefix_len(u128::from(u32::from(d.ipv4(at, "HMARK mask")?)) << 96, 32)
                }
                IpVersion::V6 => prefix_len(u128::from(d.ipv6(at, "HMARK mask")?), 128),
            };
            // libxtables' mask-to-cidr gives -1 for a mask that is no prefix; `%d` shows it.
            out += &format!(" {opt} {}", len.map_or(-1, i64::from));
        }
    }
    let fields = [
        (
            6,
            format!(
                " --hmark-sport-mask 0x{:04x}",
                d.u16_be(32, "HMARK sport mask")?
            ),
        ),
        (
            7,
            format!(
                " --hmark-dport-mask 0x{:04x}",
                d.u16_be(34, "HMARK dport mask")?
            ),
        ),
        (
            3,
            format!(
                " --hmark-spi-mask 0x{:08x}",
                u32_be(d, 32, "HMARK spi mask")?
            ),
        ),
        (
            4,
            format!(" --hmark-sport 0x{:04x}", d.u16_be(36, "HMARK sport")?),
        ),
        (
            5,
            format!(" --hmark-dport 0x{:04x}", d.u16_be(38, "HMARK dport")?),
        ),
        (
            2,
            format!(" --hmark-spi 0x{:08x}", u32_be(d, 36, "HMARK spi")?),
        ),
        (
            8,
            format!(
                " --hmark-proto-mask 0x{:02x}",
                d.u16(44, "HMARK proto mask")?
            ),
        ),
        (9, format!(" --hmark-rnd 0x{:08x}", d.u32(48, "HMARK rnd")?)),
        (10, format!(" --hmark-mod {}", d.u32(52, "HMARK modulus")?)),
        (
            11,
            format!(" --hmark-offset {}", d.u32(56, "HMARK offset")?),
        ),
        (12, " --hmark-tuple ct".to_string()),
    ];
    for (bit, text) in fields {
        if on(bit) {
            out += &text;
        }
    }
    Ok(out)
}

fn u32_be(d: Bytes, at: usize, what: &'static str) -> Result<u32, Truncated> {
    Ok(u32::from_be_bytes(d.u32(at, what)?.to_ne_bytes()))
}
