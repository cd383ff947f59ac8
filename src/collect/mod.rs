//! Collection: reading facts from the running system into the serializable model. Strictly
//! read-only: nothing here creates tables, changes rules or signals processes.

pub mod legacy;
pub mod netns;

use crate::model::{IpVersion, Table};
use netns::{Netns, NetnsError, in_netns};

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Legacy(#[from] legacy::LegacyError),
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
