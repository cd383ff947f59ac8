//! The x_tables binary formats: entry tables (legacy iptables) and the match and target
//! blobs that both legacy iptables and iptables-nft's xt compat expressions carry. Pure
//! decoding of bytes the collectors read; no I/O.

pub mod bytes;
pub mod continuing;
pub mod extensions;
mod ipv6ext;
pub mod matches;
pub mod save;
pub mod table;
pub mod targets;

#[cfg(test)]
mod tests;
