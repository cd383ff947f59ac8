//! A dump's raw netlink replies into tables: meshleak's bounds-checked decoder
//! ([`super::msg`]) over each message, then the lift of each rule. Pure: the replies were
//! read elsewhere (live, or captured in a test).

use super::Builder;
use super::msg::{self, DecodeError, Object};
use crate::model::Table;

/// The tables of raw nf_tables messages (each a whole netlink message), rules lifted into
/// the model; each table's origin is `origin`. Rules, most of a dump, are decoded and lifted
/// one at a time and each message is freed once decoded, so the raw dump and the tables
/// built from it are not all held at once.
pub fn decode(raw: Vec<Vec<u8>>, origin: &str) -> Result<Vec<Table>, DecodeError> {
    decode_stream(raw, std::iter::empty(), origin)
}

/// The tables of a dump whose first messages are `held` and whose other rules arrive in
/// `rest` (a channel while the kernel still sends them), each decoded as it comes.
pub fn decode_stream(
    held: Vec<Vec<u8>>,
    rest: impl IntoIterator<Item = Vec<u8>>,
    origin: &str,
) -> Result<Vec<Table>, DecodeError> {
    let (rules, others): (Vec<Vec<u8>>, Vec<Vec<u8>>) = held.into_iter().partition(|m| is_rule(m));
    let mut builder = Builder::new(&from_raw(others)?, origin);
    for m in rules.into_iter().chain(rest) {
        for (family, rule) in from_raw([m])? {
            builder.add_rule(family, &rule);
        }
    }
    Ok(builder.finish())
}

/// nlmsg_type NFNL_SUBSYS_NFTABLES (10) << 8 | NFT_MSG_NEWRULE (6).
fn is_rule(m: &[u8]) -> bool {
    m.get(4..6) == Some(&[6, 10][..])
}

/// Decodes raw nf_tables messages (each a whole netlink message): each object with its
/// NFPROTO_* family.
pub fn from_raw<M: AsRef<[u8]>>(
    raw: impl IntoIterator<Item = M>,
) -> Result<Vec<(u8, Object)>, DecodeError> {
    let mut out = Vec::new();
    for bytes in raw {
        if let Some(o) = msg::decode(bytes.as_ref())? {
            out.push(o);
        }
    }
    Ok(out)
}
