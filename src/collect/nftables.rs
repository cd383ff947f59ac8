//! nf_tables over netlink: one dump per object kind (tables, chains, rules, sets, set
//! elements) of every family, in the calling thread's namespace. Only GET requests are
//! sent; nothing is created or changed.

use std::io;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::nftables::{
    ChainMessage, NfTablesMessage, RuleMessage, SetAttribute, SetElementList, SetElementMessage,
    SetMessage, TableMessage,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

/// Everything one namespace's nf_tables holds, as the kernel sent it, with each object's
/// family (NFPROTO_*).
#[derive(Debug, Default)]
pub struct Dump {
    pub tables: Vec<(u8, TableMessage)>,
    pub chains: Vec<(u8, ChainMessage)>,
    pub rules: Vec<(u8, RuleMessage)>,
    pub sets: Vec<(u8, SetMessage)>,
    pub elements: Vec<(u8, SetElementMessage)>,
}

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot open a netlink socket to read nf_tables: {0}")]
    Socket(io::Error),
    #[error("cannot dump nf_tables {what}: {source}; reading rules needs CAP_NET_ADMIN")]
    Dump {
        what: &'static str,
        source: io::Error,
    },
    #[error("nf_tables sent a message meshleak cannot decode while dumping {what}: {detail}")]
    Decode { what: &'static str, detail: String },
}

pub fn dump() -> Result<Dump, NftError> {
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(NftError::Socket)?;
    socket.bind_auto().map_err(NftError::Socket)?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(NftError::Socket)?;
    let mut out = Dump::default();
    let all = NetfilterProtoFamily::Unspec;
    for (family, msg) in request(
        &mut socket,
        "tables",
        all,
        NfTablesMessage::GetTable(TableMessage { attributes: vec![] }),
    )? {
        if let NfTablesMessage::NewTable(t) = msg {
            out.tables.push((family, t));
        }
    }
    for (family, msg) in request(
        &mut socket,
        "chains",
        all,
        NfTablesMessage::GetChain(ChainMessage { attributes: vec![] }),
    )? {
        if let NfTablesMessage::NewChain(c) = msg {
            out.chains.push((family, c));
        }
    }
    for (family, msg) in request(
        &mut socket,
        "rules",
        all,
        NfTablesMessage::GetRule(RuleMessage { attributes: vec![] }),
    )? {
        if let NfTablesMessage::NewRule(r) = msg {
            out.rules.push((family, r));
        }
    }
    for (family, msg) in request(
        &mut socket,
        "sets",
        all,
        NfTablesMessage::GetSet(SetMessage { attributes: vec![] }),
    )? {
        if let NfTablesMessage::NewSet(s) = msg {
            out.sets.push((family, s));
        }
    }
    // Elements are dumped per set: the request names the table and the set.
    let sets: Vec<(u8, String, String)> = out
        .sets
        .iter()
        .filter_map(|(family, s)| {
            let table = s.attributes.iter().find_map(|a| match a {
                SetAttribute::Table(t) => Some(t.clone()),
                _ => None,
            })?;
            let name = s.attributes.iter().find_map(|a| match a {
                SetAttribute::Name(n) => Some(n.clone()),
                _ => None,
            })?;
            Some((*family, table, name))
        })
        .collect();
    for (family, table, set) in sets {
        let req = NfTablesMessage::GetSetElement(SetElementMessage {
            attributes: vec![SetElementList::Table(table), SetElementList::Set(set)],
        });
        for (family, msg) in request(
            &mut socket,
            "set elements",
            NetfilterProtoFamily::from(family),
            req,
        )? {
            if let NfTablesMessage::NewSetElement(e) = msg {
                out.elements.push((family, e));
            }
        }
    }
    Ok(out)
}

/// Sends one dump request and collects the replies until NLMSG_DONE.
fn request(
    socket: &mut Socket,
    what: &'static str,
    family: NetfilterProtoFamily,
    msg: NfTablesMessage,
) -> Result<Vec<(u8, NfTablesMessage)>, NftError> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut packet = NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(family, 0, 0),
            msg,
        )),
    );
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket
        .send(&buf, 0)
        .map_err(|source| NftError::Dump { what, source })?;

    let mut out = Vec::new();
    let mut rx = vec![0u8; 1 << 16];
    loop {
        let n = socket
            .recv(&mut &mut rx[..], 0)
            .map_err(|source| NftError::Dump { what, source })?;
        let mut at = 0;
        while at < n {
            let reply =
                NetlinkMessage::<NetfilterMessage>::deserialize(&rx[at..n]).map_err(|e| {
                    NftError::Decode {
                        what,
                        detail: e.to_string(),
                    }
                })?;
            let len = reply.header.length as usize;
            match reply.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => {
                    let code = e.code.map_or(0, |c| -c.get());
                    // A family or object kind with nothing in it answers ENOENT.
                    if code == libc::ENOENT {
                        return Ok(out);
                    }
                    return Err(NftError::Dump {
                        what,
                        source: io::Error::from_raw_os_error(code),
                    });
                }
                NetlinkPayload::InnerMessage(NetfilterMessage {
                    header,
                    inner: NetfilterMessageInner::NfTables(m),
                    ..
                }) => {
                    out.push((u8::from(header.family), m));
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            at += len;
        }
    }
}
