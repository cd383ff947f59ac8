//! Collection: reading facts from the running system into the serializable model. Strictly
//! read-only: nothing here creates tables, changes rules or signals processes.

pub mod conntrack;
pub mod containers;
pub mod legacy;
pub mod netinfo;
mod netlink;
pub mod netns;
mod nfnetlink;
pub mod nftables;
mod parallel;
pub mod procs;
pub mod scan;

use crate::model::{IpVersion, Ruleset};
use crate::snapshot::{Interface, Route, SocketFacts, Tracked};
use netns::{Netns, NetnsError, in_netns};

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Legacy(#[from] legacy::LegacyError),
    #[error(transparent)]
    Nftables(#[from] nftables::NftError),
    #[error("cannot list processes under {path}: {cause}")]
    Proc { path: String, cause: std::io::Error },
}

/// What one visit to a namespace reads.
pub struct NetnsRead {
    pub rules: Ruleset,
    pub interfaces: Vec<Interface>,
    pub routes: Vec<Route>,
    pub sockets: Vec<SocketFacts>,
    pub conntrack: Option<Vec<Tracked>>,
}

/// Every rule of a namespace: iptables-legacy tables of both families, then nf_tables
/// (iptables-nft and native), read in one visit to the namespace.
pub fn ruleset(ns: &Netns) -> Result<Ruleset, CollectError> {
    Ok(read_netns(ns)?.rules)
}

/// Rules, interfaces, routes, sockets and tracked connections of a namespace, in one visit.
pub fn read_netns(ns: &Netns) -> Result<NetnsRead, CollectError> {
    let origin = ns.file().display().to_string();
    let (legacy, dump, interfaces, routes, conntrack, sockets) =
        in_netns(ns, || -> Result<_, CollectError> {
            let mut legacy = legacy::read_family(IpVersion::V4)?;
            legacy.extend(legacy::read_family(IpVersion::V6)?);
            let dump = nftables::dump()?;
            let sockets = netinfo::sockets();
            Ok((
                legacy,
                dump,
                netinfo::interfaces(),
                netinfo::routes(),
                conntrack::entries(&sockets),
                sockets,
            ))
        })??;
    let objects = crate::nft::Objects {
        tables: &dump.tables,
        chains: &dump.chains,
        rules: &dump.rules,
        sets: &dump.sets,
        elements: &dump.elements,
    };
    let mut tables = legacy;
    tables.extend(crate::nft::tables(&objects, &origin));
    Ok(NetnsRead {
        rules: Ruleset { tables },
        interfaces,
        routes,
        sockets,
        conntrack,
    })
}
