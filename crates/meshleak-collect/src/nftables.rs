//! nf_tables over netlink: one dump per object kind (tables, chains, rules, sets, set
//! elements) of every family, in the calling thread's namespace. Only GET requests are
//! sent; nothing is created or changed.

use std::io;
use std::sync::mpsc;

use super::nfnetlink::{Nfnetlink, dump_request, get_request};
use meshleak_core::nft::msg::{self, DecodeError, Object};
use meshleak_core::nft::replies;
use meshleak_core::nlmsg;

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
    #[error(
        "the nf_tables rule set changed while it was read, {attempts} times in a row; a process is rewriting rules: read again, or find it (`meshleak scan` lists processes with CAP_NET_ADMIN)"
    )]
    Changing { attempts: usize },
    #[error("nf_tables sent a message meshleak cannot decode while dumping {what}: {detail}")]
    Decode { what: &'static str, detail: String },
}

/// A namespace's nf_tables as read: the raw replies of a small dump (kept so a scan decodes
/// each distinct rule set once, and so tests can capture them), or the tables of a large
/// one, decoded while its rules arrive so its raw replies are never held whole.
pub enum Dump {
    Raw(Vec<Vec<u8>>),
    Tables(Vec<meshleak_core::model::Table>),
}

/// How many times a dump is taken again when the rule set changed while it was read.
const ATTEMPTS: usize = 3;

/// Dumps every object kind (tables, chains, sets, their elements, then rules); once the
/// rule replies pass `raw_up_to` bytes, the rest is decoded as it arrives (`origin` names
/// the tables). The rule set's generation is read before and after: a dump that saw a
/// change (a commit between two of its requests) is taken again, and after
/// [`ATTEMPTS`] an error, never a mix of two rule sets.
pub fn dump(
    limit: super::netlink::Limit,
    raw_up_to: usize,
    origin: &str,
) -> Result<Dump, NftError> {
    let mut socket = Nfnetlink::open_limited(limit).map_err(NftError::Socket)?;
    for _ in 0..ATTEMPTS {
        let before = generation(&mut socket)?;
        let dumped = dump_once(&mut socket, raw_up_to, origin)?;
        if generation(&mut socket)? == before {
            return Ok(dumped);
        }
    }
    Err(NftError::Changing { attempts: ATTEMPTS })
}

/// The rule set's generation id (NFT_MSG_GETGEN).
fn generation(socket: &mut Nfnetlink) -> Result<Option<u32>, NftError> {
    let reply = socket
        .ask(&get_request(SUBSYS_NFTABLES, NFT_MSG_GETGEN))
        .map_err(|cause| dump_error("the generation", cause))?;
    match reply {
        Some(m) => msg::generation(&m).map_err(|e| NftError::Decode {
            what: "the generation",
            detail: e.to_string(),
        }),
        None => Ok(None),
    }
}

fn dump_once(socket: &mut Nfnetlink, raw_up_to: usize, origin: &str) -> Result<Dump, NftError> {
    let mut raw = Vec::new();
    for (what, msg) in [("tables", NFT_MSG_GETTABLE), ("chains", NFT_MSG_GETCHAIN)] {
        raw.extend(request(socket, what, &everything(msg))?);
    }
    let sets = request(socket, "sets", &everything(NFT_MSG_GETSET))?;
    // Elements are dumped per set: the request names the table and the set. Only the sets
    // are decoded here.
    let decoded = replies::from_raw(&sets)?;
    raw.extend(sets);
    for (family, s) in decoded {
        let Object::Set { table, name, .. } = s else {
            continue;
        };
        // NFTA_SET_ELEM_LIST_TABLE 1, NFTA_SET_ELEM_LIST_SET 2
        let (table, name) = (nlmsg::c_string(&table), nlmsg::c_string(&name));
        let req = dump_request(
            SUBSYS_NFTABLES,
            NFT_MSG_GETSETELEM,
            family,
            &[(1, &table), (2, &name)],
        );
        raw.extend(request(socket, "set elements", &req)?);
    }
    // Rules last: by then everything they refer to is here. Past `raw_up_to` bytes a
    // decoder thread takes the messages as they arrive, so decoding overlaps the kernel's
    // dump instead of following it, and no more than a channel's worth is held raw.
    std::thread::scope(|scope| {
        let mut bytes = 0;
        let mut decoder = None;
        let dumped = socket.dump_each(&everything(NFT_MSG_GETRULE), |m| {
            if let Some((tx, _)) = &decoder {
                let tx: &mpsc::SyncSender<Vec<u8>> = tx;
                // Closed: the decoder stopped on an error, which its join reports.
                return tx
                    .send(m.to_vec())
                    .map_err(|_| io::Error::other("the decoder stopped"));
            }
            bytes += m.len();
            raw.push(m.to_vec());
            if bytes > raw_up_to {
                let (tx, rx) = mpsc::sync_channel(64);
                let held = std::mem::take(&mut raw);
                decoder = Some((
                    tx,
                    scope.spawn(move || {
                        replies::decode_stream(held, rx, origin).map_err(NftError::from)
                    }),
                ));
            }
            Ok(())
        });
        let Some((tx, handle)) = decoder else {
            dumped.map_err(|cause| dump_error("rules", cause))?;
            return Ok(Dump::Raw(raw));
        };
        drop(tx);
        let tables = handle.join().map_err(|_| NftError::Decode {
            what: "rules",
            detail: "the decoder thread panicked".into(),
        })??;
        dumped.map_err(|cause| dump_error("rules", cause))?;
        Ok(Dump::Tables(tables))
    })
}

/// NFNL_SUBSYS_NFTABLES and the GET messages of `linux/netfilter/nf_tables.h`.
const SUBSYS_NFTABLES: u8 = 10;
const NFT_MSG_GETTABLE: u8 = 1;
const NFT_MSG_GETCHAIN: u8 = 4;
const NFT_MSG_GETRULE: u8 = 7;
const NFT_MSG_GETSET: u8 = 10;
const NFT_MSG_GETSETELEM: u8 = 13;
const NFT_MSG_GETGEN: u8 = 16;

/// The dump request for every object of one kind, of every family (NFPROTO_UNSPEC).
fn everything(msg: u8) -> Vec<u8> {
    dump_request(SUBSYS_NFTABLES, msg, 0, &[])
}

fn request(
    socket: &mut Nfnetlink,
    what: &'static str,
    req: &[u8],
) -> Result<Vec<Vec<u8>>, NftError> {
    socket.dump(req).map_err(|cause| dump_error(what, cause))
}

/// A reply held raw that does not decode.
impl From<DecodeError> for NftError {
    fn from(e: DecodeError) -> Self {
        NftError::Decode {
            what: "a stored message",
            detail: e.to_string(),
        }
    }
}

fn dump_error(what: &'static str, cause: io::Error) -> NftError {
    match super::netlink::stopped(&cause) {
        Some(stop) => NftError::Stopped { what, cause: *stop },
        None => NftError::Dump { what, cause },
    }
}
