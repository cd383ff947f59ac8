//! Collection: reading facts from the running system into the serializable model. Strictly
//! read-only: nothing here creates tables, changes rules or signals processes.

pub mod cgroup_bpf;
pub mod conntrack;
pub mod containers;
pub mod follow;
pub mod legacy;
pub mod netinfo;
pub mod netlink;
pub mod netns;
pub mod netns_dirs;
mod nfnetlink;
pub mod nftables;
pub mod proc_events;
mod procfile;
pub mod procs;
pub mod rule_events;
pub mod scan;
pub mod sockprobe;
pub mod task_files;
pub mod userns;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use meshleak_core::model::{IpVersion, Ruleset, Table};
use meshleak_core::nft;
use meshleak_core::range::PortRange;
use meshleak_core::snapshot::{Interface, PacketSocket, Route, RoutingRule, SocketFacts, Tracked};
use netns::{Netns, NetnsError, in_netns_within};

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Legacy(#[from] legacy::LegacyError),
    #[error(transparent)]
    Nftables(#[from] nftables::NftError),
    /// The rules are beyond what meshleak reads from one namespace.
    #[error("{0}")]
    RulesUnread(String),
    #[error(
        "skipped: the reader of an earlier scan is still stuck in this namespace (inode {inode})"
    )]
    Stuck { inode: u64 },
    #[error("cannot list processes under {path}: {cause}")]
    Proc { path: String, cause: std::io::Error },
    #[error(
        "--proc-root {path} cannot be used: {why}; give the host's /proc (/host/proc in a container that mounts it there)"
    )]
    NotProc { path: String, why: String },
}

/// What one visit to a namespace reads.
pub struct NetnsRead {
    pub rules: Ruleset,
    pub interfaces: Vec<Interface>,
    pub routes: Vec<Route>,
    pub routing_rules: Option<Vec<RoutingRule>>,
    pub sockets: Vec<SocketFacts>,
    pub packet_sockets: Vec<PacketSocket>,
    pub conntrack: Option<Vec<Tracked>>,
    /// The inode of its `/proc/net/dev` (see [`netinfo::net_dev_inode`]).
    pub net_dev: Option<u64>,
    pub unprivileged_port_start: Option<u16>,
    pub ephemeral_ports: Option<PortRange>,
    /// Held sockets in none of its socket tables (see [`netinfo::sockets`]).
    pub unlisted: Vec<u64>,
    /// Inodes of the user namespace owning it and of that one's ancestors.
    pub owner: Option<Vec<u64>>,
    /// What could not be read (sockets, routes, interfaces), with why.
    pub gaps: Vec<String>,
    /// Why the rules were not read whole (beyond [`MAX_NFT_BYTES`]).
    pub rules_unread: Option<String>,
}

/// Every rule of a namespace: iptables-legacy tables of both families, then nf_tables
/// (iptables-nft and native), read in one visit to the namespace.
pub fn ruleset(ns: &Netns) -> Result<Ruleset, CollectError> {
    let read = read_netns(ns, &NftCache::default(), None, Vec::new(), false)?;
    match read.rules_unread {
        Some(why) => Err(CollectError::RulesUnread(why)),
        None => Ok(read.rules),
    }
}

/// Dumps larger than this are decoded without being cached.
const CACHED_DUMP_MAX: usize = 1 << 20;

/// nf_tables already decoded in this scan, by their raw messages: the pods of a node carry
/// the same mesh rules, and decoding is most of what a dump costs (the netlink decoder
/// formats every attribute it parses), so each distinct dump is decoded once.
#[derive(Default)]
pub struct NftCache(Mutex<HashMap<Vec<u8>, Vec<Table>>>);

impl NftCache {
    fn tables(&self, raw: Vec<Vec<u8>>, origin: &str) -> Result<Vec<Table>, CollectError> {
        // A dump this large is no shared mesh rule set; keeping it would only cost memory
        // (each message is freed as soon as it is decoded).
        if raw.iter().map(Vec::len).sum::<usize>() > CACHED_DUMP_MAX {
            return Ok(nft::replies::decode(raw, origin).map_err(nftables::NftError::from)?);
        }
        // The key is every message without its sequence number and port id.
        let mut key = Vec::with_capacity(raw.iter().map(Vec::len).sum());
        for m in &raw {
            key.extend_from_slice(&m[..8.min(m.len())]);
            key.extend_from_slice(m.get(16..).unwrap_or_default());
        }
        let cached = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some(mut tables) = cached {
            for t in &mut tables {
                t.origin = origin.to_string();
            }
            return Ok(tables);
        }
        let tables = nft::replies::decode(raw, origin).map_err(nftables::NftError::from)?;
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, tables.clone());
        Ok(tables)
    }
}

/// The most nf_tables reply bytes read from one namespace: about 20,000 iptables-nft rules
/// (each with its xt blobs) or 50,000 native ones. Decoding takes about ten times the
/// bytes, which must stay well inside the agent's 128 MiB limit.
pub const MAX_NFT_BYTES: usize = 12 << 20;

/// Rules, interfaces, routes, sockets and tracked connections of a namespace, in one visit
/// that gives up after `deadline`. `held`: the socket inodes its processes hold;
/// `every_tcp`: list connected TCP sockets even if none of them holds one (see
/// [`netinfo::sockets`]).
pub(crate) fn read_netns(
    ns: &Netns,
    cache: &NftCache,
    deadline: Option<Duration>,
    held: Vec<u64>,
    every_tcp: bool,
) -> Result<NetnsRead, CollectError> {
    let origin = ns.file().display().to_string();
    // The reader stops at the deadline too: abandoned, it must not go on reading.
    let until = deadline.map(|d| std::time::Instant::now() + d);
    let origin_in = origin.clone();
    let (
        legacy,
        (raw, rules_unread),
        ((interfaces, routes, routing_rules), conntrack, sockets),
        (net_dev, unlisted, owner, gaps, packet_sockets, ports),
    ) = in_netns_within(ns, deadline, move || -> Result<_, CollectError> {
        let mut legacy = legacy::read_family(IpVersion::V4)?;
        legacy.extend(legacy::read_family(IpVersion::V6)?);
        // Beyond the budget the namespace is still reported (its processes, a finding),
        // with no verdicts.
        let limit = netlink::Limit::new(MAX_NFT_BYTES, until);
        let (raw, rules_unread) = match nftables::dump(limit, CACHED_DUMP_MAX, &origin_in) {
            Err(e @ nftables::NftError::Stopped { .. }) => {
                (nftables::Dump::Raw(Vec::new()), Some(e.to_string()))
            }
            other => (other?, None),
        };
        let mut gaps = Vec::new();
        let (sockets, packet_sockets, unlisted) = netinfo::sockets(&held, every_tcp, &mut gaps);
        // Asked of the namespace this thread is in: the path it was entered by may be
        // gone already (its process exited).
        let owner = userns::owner(std::path::Path::new("/proc/thread-self/ns/net"))
                .map_err(|e| gaps.push(format!("the user namespace owning it (ioctl NS_GET_USERNS: {e}): ids are compared as meshleak's user namespace sees them")))
                .ok();
        Ok((
            legacy,
            (raw, rules_unread),
            (
                netinfo::rtnetlink(&mut gaps),
                conntrack::entries(&sockets),
                sockets,
            ),
            (
                netinfo::net_dev_inode(),
                unlisted,
                owner,
                gaps,
                packet_sockets,
                netinfo::port_sysctls(),
            ),
        ))
    })??;
    let mut tables = legacy;
    tables.extend(match raw {
        nftables::Dump::Raw(raw) => cache.tables(raw, &origin)?,
        nftables::Dump::Tables(t) => t,
    });
    Ok(NetnsRead {
        rules: Ruleset { tables },
        interfaces,
        routes,
        routing_rules,
        sockets,
        packet_sockets,
        conntrack,
        net_dev,
        unprivileged_port_start: ports.unprivileged_start,
        ephemeral_ports: ports.ephemeral,
        unlisted,
        owner,
        gaps,
        rules_unread,
    })
}
