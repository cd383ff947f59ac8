//! The fuzz targets' bodies (`fuzz/` holds one-line libFuzzer wrappers), so the regression
//! test (`tests/fuzz_regressions.rs`) replays what the fuzzers found through exactly the same
//! code; and how each target frames its bytes, shared with the seed writer
//! (`examples/fuzz_seeds.rs`). Every target must return, never panic or hang, on any input.

use crate::eval::{Flow, Identity, SourcePort, trace};
use crate::model::IpVersion;
use crate::parse::{Hints, combine, parse_dump};
use crate::xt::bytes::Bytes;
use crate::xt::table::TableInfo;
use crate::xt::{matches, targets};

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/Cargo.toml` names them.
pub const TARGETS: [(&str, Target); 7] = [
    ("xtables", xtables),
    ("nft_json", nft_json),
    ("evaluate", evaluate),
    ("nf_tables", nf_tables),
    ("xt_table", xt_table_target),
    ("xt_ext", xt_ext_target),
    ("rtnl", rtnl),
];

/// rtnetlink route and rule replies (netlink messages back to back, as a dump gives
/// them), each decoded as both; then route lookups over what decoded, which must end (a
/// `goto` back, a rule loop) and never panic.
pub fn rtnl(data: &[u8]) {
    use crate::route::{Query, Routing};
    let (mut routes, mut rules) = (Vec::new(), Vec::new());
    for msg in crate::nlmsg::split(data) {
        if let Ok(Some(r)) = crate::rtnl::decode_route(msg, &mut |i| format!("if{i}")) {
            routes.push(r);
        }
        if let Ok(Some(r)) = crate::rtnl::decode_rule(msg) {
            rules.push(r);
        }
    }
    let interfaces = Vec::new();
    let routing = Routing {
        routes: &routes,
        rules: Some(&rules),
        interfaces: &interfaces,
        ephemeral: crate::eval::SourcePort::DEFAULT_EPHEMERAL,
    };
    for dst in ["192.0.2.1", "2001:db8::1", "127.0.0.1"] {
        let _ = routing.lookup(&Query::to(dst.parse().expect("an address")));
    }
}

/// iptables-save / restore input: tables or a ParseError.
pub fn xtables(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && !text.trim_start().starts_with('{')
    {
        let _ = parse_dump("fuzz.rules", text, Hints::default());
    }
}

/// `nft -j list ruleset` JSON, whole or as the `nftables` array's contents.
pub fn nft_json(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let wrapped = format!("{{\"nftables\": {text}}}");
        let _ = parse_dump("fuzz.json", &wrapped, Hints::default());
        let _ = parse_dump("fuzz.json", text, Hints::default());
    }
}

/// Whatever parses must trace and analyse (offline dumps can hold jump loops the kernel
/// would refuse).
pub fn evaluate(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(tables) = parse_dump("fuzz.rules", text, Hints::default()) else {
        return;
    };
    let Ok(rules) = combine(vec![tables]) else {
        return;
    };
    for (dst, port, uid) in [
        ([10, 0, 0, 1], 80, 1337),
        ([127, 0, 0, 1], 15001, 0),
        ([10, 96, 0, 10], 53, 10001),
    ] {
        let flow = Flow {
            version: IpVersion::V4,
            proto: if port == 53 { 17 } else { 6 },
            src: None,
            dst: std::net::IpAddr::from(dst),
            sport: SourcePort::DEFAULT_EPHEMERAL,
            dport: port,
            oif: "eth0".into(),
            identity: Identity {
                uid,
                gid: uid,
                groups: vec![1337],
            },
            mark: 0,
            local: vec![],
        };
        let _ = trace(&rules, &flow);
    }
    let proxy = Identity {
        uid: 1337,
        gid: 1337,
        groups: vec![],
    };
    let _ = crate::analyze::analyze(&rules, &[proxy]);
}

/// nf_tables netlink replies back to back: tables or an NftError; each message also as a
/// ctnetlink entry (the same attribute reader, another layout).
pub fn nf_tables(data: &[u8]) {
    let messages = netlink_messages(data);
    for m in &messages {
        let _ = crate::ctnetlink::decode(m);
    }
    let _ = crate::nft::replies::decode(messages, "fuzz");
}

/// An x_tables table through the entry walker and every match and target decoder.
pub fn xt_table_target(data: &[u8]) {
    if let Some((info, version, blob)) = xt_table(data) {
        let _ = crate::xt::table::decode(&info, blob, version, "fuzz");
    }
}

/// One match or target payload under any name and revision: decoded or "unknown".
pub fn xt_ext_target(data: &[u8]) {
    if let Some(ext) = xt_ext(data) {
        let payload = Bytes::new(ext.data);
        if ext.target {
            let _ = targets::decode(ext.name, ext.revision, payload, ext.version);
        } else {
            let _ = matches::decode(ext.name, ext.revision, payload, ext.version, ext.protos);
        }
    }
}

const TABLES: [&str; 5] = ["filter", "nat", "mangle", "raw", "security"];
/// Longest extension name x_tables stores (`XT_EXTENSION_MAXNAMELEN` - 1).
const MAX_NAME: usize = 28;

/// Netlink messages back to back (see [`crate::nlmsg::split`]), each copied.
pub fn netlink_messages(data: &[u8]) -> Vec<Vec<u8>> {
    crate::nlmsg::split(data)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect()
}

/// `[v6 flag][table][valid_hooks][hook_entry x5][underflow x5]` (u32s native-endian), then
/// the entries blob.
pub fn xt_table(data: &[u8]) -> Option<(TableInfo, IpVersion, &[u8])> {
    let word = |i: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(data.get(i..i + 4)?.try_into().ok()?))
    };
    let version = if *data.first()? & 1 == 0 {
        IpVersion::V4
    } else {
        IpVersion::V6
    };
    let name = TABLES[*data.get(1)? as usize % TABLES.len()].to_string();
    let mut hook_entry = [0u32; 5];
    let mut underflow = [0u32; 5];
    for h in 0..5 {
        hook_entry[h] = word(6 + 4 * h)?;
        underflow[h] = word(26 + 4 * h)?;
    }
    let info = TableInfo {
        name,
        valid_hooks: word(2)?,
        hook_entry,
        underflow,
    };
    Some((info, version, &data[46..]))
}

/// The inverse of [`xt_table`], for seeds.
pub fn xt_table_input(info: &TableInfo, version: IpVersion, blob: &[u8]) -> Vec<u8> {
    let table = TABLES.iter().position(|t| *t == info.name).unwrap_or(0);
    let mut out = vec![u8::from(version == IpVersion::V6), table as u8];
    out.extend_from_slice(&info.valid_hooks.to_ne_bytes());
    for w in info.hook_entry.iter().chain(&info.underflow) {
        out.extend_from_slice(&w.to_ne_bytes());
    }
    out.extend_from_slice(blob);
    out
}

/// One match or target payload and what the decoder is told about it.
pub struct XtExt<'a> {
    pub target: bool,
    pub version: IpVersion,
    pub name: &'a str,
    pub revision: u8,
    pub protos: &'a [u8],
    pub data: &'a [u8],
}

/// `[flags: 1 target, 2 v6][revision][name length][name][protos length][protos]` then the
/// payload.
pub fn xt_ext(data: &[u8]) -> Option<XtExt<'_>> {
    let flags = *data.first()?;
    let revision = *data.get(1)?;
    let name_len = (*data.get(2)? as usize).min(MAX_NAME);
    let name = std::str::from_utf8(data.get(3..3 + name_len)?).ok()?;
    let at = 3 + name_len;
    let protos_len = (*data.get(at)? as usize).min(4);
    let protos = data.get(at + 1..at + 1 + protos_len)?;
    Some(XtExt {
        target: flags & 1 != 0,
        version: if flags & 2 == 0 {
            IpVersion::V4
        } else {
            IpVersion::V6
        },
        name,
        revision,
        protos,
        data: &data[at + 1 + protos_len..],
    })
}

/// The inverse of [`xt_ext`], for seeds.
pub fn xt_ext_input(ext: &XtExt) -> Vec<u8> {
    let name = &ext.name.as_bytes()[..ext.name.len().min(MAX_NAME)];
    let protos = &ext.protos[..ext.protos.len().min(4)];
    let flags = u8::from(ext.target) | (u8::from(ext.version == IpVersion::V6) << 1);
    let mut out = vec![flags, ext.revision, name.len() as u8];
    out.extend_from_slice(name);
    out.push(protos.len() as u8);
    out.extend_from_slice(protos);
    out.extend_from_slice(ext.data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framings_round_trip() {
        let info = TableInfo {
            name: "nat".into(),
            valid_hooks: 25,
            hook_entry: [0, 1, 2, 3, 4],
            underflow: [5, 6, 7, 8, 9],
        };
        let input = xt_table_input(&info, IpVersion::V6, b"blob");
        let (back, version, blob) = xt_table(&input).unwrap();
        assert_eq!((back, version, blob), (info, IpVersion::V6, &b"blob"[..]));

        let ext = XtExt {
            target: true,
            version: IpVersion::V4,
            name: "REDIRECT",
            revision: 0,
            protos: &[6],
            data: b"payload",
        };
        let input = xt_ext_input(&ext);
        let back = xt_ext(&input).unwrap();
        assert_eq!(
            (back.target, back.name, back.protos, back.data),
            (true, "REDIRECT", &[6u8][..], &b"payload"[..])
        );

        let mut two = vec![0u8; 40];
        two[..4].copy_from_slice(&20u32.to_ne_bytes());
        two[20..24].copy_from_slice(&16u32.to_ne_bytes());
        assert_eq!(netlink_messages(&two).len(), 2);
        two[20..24].copy_from_slice(&999u32.to_ne_bytes());
        assert_eq!(netlink_messages(&two).len(), 1);
    }
}
