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

/// A namespace's nf_tables as read: the raw replies of a small dump (kept so a scan decodes
/// each distinct rule set once, and so tests can capture them), or the tables of a large
/// one, decoded while its rules arrive so its raw replies are never held whole.
pub enum Dump {
    Raw(Vec<Vec<u8>>),
    Tables(Vec<crate::model::Table>),
}

/// Dumps every object kind (tables, chains, sets, their elements, then rules); once the
/// rule replies pass `raw_up_to` bytes, the rest is decoded as it arrives (`origin` names
/// the tables).
pub fn dump(
    limit: super::netlink::Limit,
    raw_up_to: usize,
    origin: &str,
) -> Result<Dump, NftError> {
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
    // are decoded here.
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
    // Rules last: by then everything they refer to is here.
    let mut sink = Rules {
        raw,
        bytes: 0,
        raw_up_to,
        origin,
        builder: None,
        failed: None,
    };
    let dumped = socket.dump_each(
        all,
        NfTablesMessage::GetRule(RuleMessage { attributes: vec![] }),
        |m| {
            sink.take(m).map_err(|e| {
                sink.failed = Some(e);
                io::Error::other("decoding failed")
            })
        },
    );
    if let Some(e) = sink.failed {
        return Err(e);
    }
    dumped.map_err(|cause| dump_error("rules", cause))?;
    Ok(match sink.builder {
        Some(b) => Dump::Tables(b.finish()),
        None => Dump::Raw(sink.raw),
    })
}

/// Where rule replies go as they arrive: kept raw with the rest of the dump up to
/// `raw_up_to` bytes, then decoded into tables one message at a time.
struct Rules<'a> {
    raw: Vec<Vec<u8>>,
    bytes: usize,
    raw_up_to: usize,
    origin: &'a str,
    builder: Option<crate::nft::Builder>,
    /// Why decoding stopped the dump.
    failed: Option<NftError>,
}

impl Rules<'_> {
    fn take(&mut self, m: &[u8]) -> Result<(), NftError> {
        if let Some(b) = self.builder.as_mut() {
            return add_rules(b, m);
        }
        self.bytes += m.len();
        self.raw.push(m.to_vec());
        if self.bytes > self.raw_up_to {
            let (rules, others): (Vec<Vec<u8>>, Vec<Vec<u8>>) = std::mem::take(&mut self.raw)
                .into_iter()
                .partition(|m| is_rule(m));
            let mut b = crate::nft::Builder::new(&from_raw(others)?, self.origin);
            for r in rules {
                add_rules(&mut b, &r)?;
            }
            self.builder = Some(b);
        }
        Ok(())
    }
}

/// nlmsg_type NFNL_SUBSYS_NFTABLES (10) << 8 | NFT_MSG_NEWRULE (6).
fn is_rule(m: &[u8]) -> bool {
    m.get(4..6) == Some(&[6, 10][..])
}

fn add_rules(builder: &mut crate::nft::Builder, m: &[u8]) -> Result<(), NftError> {
    for (family, rule) in from_raw([m])? {
        builder.add_rule(family, &rule);
    }
    Ok(())
}

/// The tables of raw nf_tables messages (each a whole netlink message), rules lifted into
/// the model; each table's origin is `origin`. Rules, most of a dump, are decoded and lifted
/// one at a time and each message is freed once decoded, so the raw dump and the tables
/// built from it are not all held at once.
pub fn decode(raw: Vec<Vec<u8>>, origin: &str) -> Result<Vec<crate::model::Table>, NftError> {
    let (rules, others): (Vec<Vec<u8>>, Vec<Vec<u8>>) = raw.into_iter().partition(|m| is_rule(m));
    let mut builder = crate::nft::Builder::new(&from_raw(others)?, origin);
    for m in rules {
        add_rules(&mut builder, &m)?;
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
        .map_err(|cause| dump_error(what, cause))
}

fn dump_error(what: &'static str, cause: io::Error) -> NftError {
    match super::netlink::stopped(&cause) {
        Some(stop) => NftError::Stopped { what, cause: *stop },
        None => NftError::Dump { what, cause },
    }
}
