//! Collection: reading facts from the running system into the serializable model. Strictly
//! read-only: nothing here creates tables, changes rules or signals processes.

pub mod legacy;
pub mod netns;
pub mod nftables;

use crate::model::{IpVersion, Ruleset, Table};
use netns::{Netns, NetnsError, in_netns};

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Legacy(#[from] legacy::LegacyError),
    #[error(transparent)]
    Nftables(#[from] nftables::NftError),
}

/// Every rule of a namespace: iptables-legacy tables of both families, then nf_tables
/// (iptables-nft and native), read in one visit to the namespace.
pub fn ruleset(ns: &Netns) -> Result<Ruleset, CollectError> {
    let origin = ns.file().display().to_string();
    let (legacy, dump) = in_netns(ns, || -> Result<_, CollectError> {
        let mut legacy = legacy::read_family(IpVersion::V4)?;
        legacy.extend(legacy::read_family(IpVersion::V6)?);
        Ok((legacy, nftables::dump()?))
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
    Ok(Ruleset { tables })
}

/// Every iptables-legacy table, both families, of a namespace.
pub fn legacy_tables(ns: &Netns) -> Result<Vec<Table>, CollectError> {
    let tables = in_netns(ns, || -> Result<Vec<Table>, legacy::LegacyError> {
        let mut all = legacy::read_family(IpVersion::V4)?;
        all.extend(legacy::read_family(IpVersion::V6)?);
        Ok(all)
    })??;
    Ok(tables)
}
