//! nf_tables over netlink: one dump per object kind (tables, chains, rules, sets, set
//! elements) of every family, in the calling thread's namespace. Only GET requests are
//! sent; nothing is created or changed.

use std::io;

use netlink_packet_netfilter::NetfilterProtoFamily;
use netlink_packet_netfilter::nftables::{
    ChainMessage, NfTablesMessage, RuleMessage, SetElementList, SetElementMessage, SetMessage,
    TableMessage,
};

use super::nfnetlink::Nfnetlink;
use crate::nft::msg::{self, Object};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot open a netlink socket to read nf_tables: {0}")]
    Socket(io::Error),
    #[error("cannot dump nf_tables {what}: {cause}; reading rules needs CAP_NET_ADMIN")]
    Dump {
        what: &'static str,
        cause: io::Error,
    },
    #[error(
        "stopped reading nf_tables {what}: {cause}; this namespace's rules are too large to judge (a pod that loads this many rules is suspicious in itself), so none of its verdicts is given"
    )]
    Stopped {
        what: &'static str,
        cause: super::netlink::Stopped,
    },
    #[error("nf_tables sent a message meshleak cannot decode while dumping {what}: {detail}")]
    Decode { what: &'static str, detail: String },
}

/// The raw netlink messages of a full dump (kept apart so they can be captured and decoded
/// elsewhere, e.g. in tests without root).
pub fn dump_raw(limit: super::netlink::Limit) -> Result<Vec<Vec<u8>>, NftError> {
    let mut socket = Nfnetlink::open_limited(limit).map_err(NftError::Socket)?;
    let all = NetfilterProtoFamily::Unspec;
    let mut raw = Vec::new();
    for (what, msg) in [
        (
            "tables",
            NfTablesMessage::GetTable(TableMessage { attributes: vec![] }),
        ),
        (
            "chains",
            NfTablesMessage::GetChain(ChainMessage { attributes: vec![] }),
        ),
        (
            "rules",
            NfTablesMessage::GetRule(RuleMessage { attributes: vec![] }),
        ),
    ] {
        raw.extend(request(&mut socket, what, all, msg)?);
    }
    let sets = request(
        &mut socket,
        "sets",
        all,
        NfTablesMessage::GetSet(SetMessage { attributes: vec![] }),
    )?;
    // Elements are dumped per set: the request names the table and the set. Only the sets
    // are decoded here (decoding is most of a dump's cost; the rules are decoded once, later).
    let decoded = from_raw(&sets)?;
    raw.extend(sets);
    for (family, s) in decoded {
        let Object::Set { table, name, .. } = s else {
            continue;
        };
        let req = NfTablesMessage::GetSetElement(SetElementMessage {
            attributes: vec![SetElementList::Table(table), SetElementList::Set(name)],
        });
        raw.extend(request(
            &mut socket,
            "set elements",
            NetfilterProtoFamily::from(family),
            req,
        )?);
    }
    Ok(raw)
}

/// The tables of raw nf_tables messages (each a whole netlink message), rules lifted into
/// the model; each table's origin is `origin`. Rules, most of a dump, are decoded and lifted
/// one at a time and each message is freed once decoded, so the raw dump and the tables
/// built from it are not all held at once.
pub fn decode(raw: Vec<Vec<u8>>, origin: &str) -> Result<Vec<crate::model::Table>, NftError> {
    // nlmsg_type: NFNL_SUBSYS_NFTABLES (10) << 8 | NFT_MSG_NEWRULE (6).
    let is_rule = |m: &Vec<u8>| m.get(4..6) == Some(&[6, 10][..]);
    let (rules, others): (Vec<Vec<u8>>, Vec<Vec<u8>>) = raw.into_iter().partition(is_rule);
    let objects = from_raw(others)?;
    let mut builder = crate::nft::Builder::new(&objects, origin);
    drop(objects);
    for m in rules {
        for (family, rule) in from_raw([m])? {
            builder.add_rule(family, &rule);
        }
    }
    Ok(builder.finish())
}

/// Decodes raw nf_tables messages (each a whole netlink message) with meshleak's own
/// bounds-checked decoder ([`crate::nft::msg`]): each object with its NFPROTO_* family.
pub fn from_raw<M: AsRef<[u8]>>(
    raw: impl IntoIterator<Item = M>,
) -> Result<Vec<(u8, Object)>, NftError> {
    let mut out = Vec::new();
    for bytes in raw {
        if let Some(o) = msg::decode(bytes.as_ref()).map_err(|e| NftError::Decode {
            what: "a stored message",
            detail: e.to_string(),
        })? {
            out.push(o);
        }
    }
    Ok(out)
}

fn request(
    socket: &mut Nfnetlink,
    what: &'static str,
    family: NetfilterProtoFamily,
    msg: NfTablesMessage,
) -> Result<Vec<Vec<u8>>, NftError> {
    socket
        .dump(family, msg)
        .map_err(|cause| match super::netlink::stopped(&cause) {
            Some(stop) => NftError::Stopped { what, cause: *stop },
            None => NftError::Dump { what, cause },
        })
}
