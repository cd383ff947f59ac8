//! The ways a process's traffic can leave, each with the credentials the kernel judges it
//! by. Owner matches compare the socket file's credentials: its creator's fsuid and fsgid,
//! fixed at creation, whoever holds it now. So a process is not one identity: each thread's
//! credentials go to the sockets it creates, and each socket it already holds carries its
//! own. A socket of another network namespace meets none of this one's rules.

use serde::Serialize;

use crate::eval::Identity;
use crate::explain::RuleRef;
use crate::model::{Ruleset, Test};
use crate::range::IdRange;
use crate::schema::ProcessVerdict;
use crate::snapshot::{HeldSocket, NetnsFacts, OwnerSource, ProcessFacts, SocketProto};

/// Where a way's traffic comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Source {
    /// New sockets of the thread group leader (`/proc/PID/status`).
    Process,
    /// New sockets of a thread whose credentials differ from the leader's.
    Thread { tid: u32 },
    /// A socket it holds, judged by its own credentials.
    Socket {
        fd: u32,
        inode: u64,
        tid: Option<u32>,
        /// In the fixed-file table of the io_uring ring `fd`, at this index.
        #[serde(skip_serializing_if = "Option::is_none")]
        slot: Option<u32>,
    },
    /// A personality registered on an io_uring ring: any request on the ring may create a
    /// socket with its credentials, whatever the process runs as now.
    RingPersonality { fd: u32, id: u32 },
    /// The SQPOLL thread of an io_uring ring, which submits with the credentials of the
    /// ring's creator.
    RingSqpoll { fd: u32 },
    /// An io_uring ring whose credentials could not be read; `registered`: `fd` is its
    /// index among the registered rings (its descriptor closed).
    Ring {
        fd: u32,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        registered: bool,
    },
    /// A packet socket: what it sends skips netfilter altogether.
    PacketSocket { fd: u32, inode: u64 },
    /// A unix socket connected to a process of another network namespace, which can send
    /// for it from there (`unix-relay`).
    UnixRelay { fd: u32, inode: u64 },
    /// A BPF program on its cgroup that acts on its sockets before netfilter
    /// (`cgroup-program`).
    CgroupProgram {
        id: u32,
        name: String,
        attach: String,
    },
    /// A socket of another network namespace: its traffic never meets this one's rules.
    ForeignSocket {
        fd: u32,
        inode: u64,
        tid: Option<u32>,
        netns: u64,
    },
    /// A live connection of the process that did not pass the proxy (`observed-bypass`):
    /// not a prediction from the rules but the kernel's own tables.
    Connection { fd: u32, inode: u64 },
    /// A socket in none of the namespace's socket tables that could not be asked what it
    /// is: judged by its credentials, but an escape through it is only possible.
    UnknownSocket {
        fd: u32,
        inode: u64,
        tid: Option<u32>,
    },
}

/// One way out: its source and the identity owner matches see on it.
#[derive(Clone, Debug)]
pub struct Way {
    /// What the way itself decides, whatever the rules say of its identity: a socket of
    /// another namespace escapes; a ring whose credentials were not read is unknown.
    pub decides: Option<ProcessVerdict>,
    /// The rules that make `decides` so, when rules do (an exempt source port).
    pub cites: Vec<RuleRef>,
    pub source: Source,
    /// As the network namespace's owning user namespace sees it.
    pub identity: Identity,
    /// The supplementary groups are not known (a socket's creator's are not recorded):
    /// `--suppl-groups` matches make its verdict unknown.
    pub groups_unknown: bool,
    /// Why this way exists, in words: `socket created with uid 10001 gid 1337 ...`.
    pub why: String,
}

/// The ids as the namespace's owner sees them: global ids (as meshleak sees them) mapped
/// through the owning user namespace's maps. An id the owner does not map matches no
/// rule: it becomes the overflow id the kernel shows for it.
pub(crate) fn in_owner(ns: &NetnsFacts, uid: u32, gid: u32, groups: &[u32]) -> Identity {
    let owner = ns.owner.as_ref();
    let uids = owner.and_then(|o| o.uid_map.as_deref());
    let gids = owner.and_then(|o| o.gid_map.as_deref());
    Identity {
        uid: map_id(uids, uid),
        gid: map_id(gids, gid),
        groups: groups.iter().map(|g| map_id(gids, *g)).collect(),
    }
}

/// The id the kernel shows for one a user namespace does not map (`overflowuid`).
const OVERFLOW_ID: u32 = 65534;

fn map_id(map: Option<&[(u32, u32, u32)]>, id: u32) -> u32 {
    let Some(map) = map else { return id };
    map.iter()
        .find(|(_, outside, count)| id >= *outside && id - outside < *count)
        .map_or(OVERFLOW_ID, |(inside, outside, _)| inside + (id - outside))
}

/// The identity of the process's leader thread: what its new sockets get.
pub fn leader(p: &ProcessFacts, ns: &NetnsFacts) -> Identity {
    in_owner(ns, p.fsuid, p.fsgid, &p.groups)
}

/// Every distinct way out of a process: its leader's new sockets first, then its other
/// threads', then the sockets it holds whose identity differs from all of those (a
/// listening socket sends nothing first; unix, netlink and packet sockets meet no IP rule).
pub fn ways(p: &ProcessFacts, ns: &NetnsFacts) -> Vec<Way> {
    let now = format!("{}:{}", p.fsuid, p.fsgid);
    let mut out = vec![Way {
        decides: None,
        cites: Vec::new(),
        source: Source::Process,
        identity: leader(p, ns),
        groups_unknown: false,
        why: format!(
            "new sockets of the process get uid {} gid {}",
            p.fsuid, p.fsgid
        ),
    }];
    // Rings before threads: an SQPOLL ring's thread runs with the ring's credentials, and
    // the ring is the cause to name.
    for way in rings(p, ns) {
        if way.decides.is_some() || !out.iter().any(|w| w.identity == way.identity) {
            out.push(way);
        }
    }
    for t in &p.threads {
        let identity = in_owner(ns, t.fsuid, t.fsgid, &t.groups);
        if out.iter().any(|w| w.identity == identity) {
            continue;
        }
        out.push(Way {
            decides: None,
            cites: Vec::new(),
            source: Source::Thread { tid: t.tid },
            identity,
            groups_unknown: false,
            why: format!(
                "thread {} runs as uid {} gid {}; the process's leader as {now}",
                t.tid, t.fsuid, t.fsgid
            ),
        });
    }
    for s in &p.sockets {
        match socket(p, ns, s) {
            Some(way) if !out.iter().any(|w| w.identity == way.identity) => out.push(way),
            Some(way) if way.decides.is_some() => out.push(way),
            _ => {}
        }
    }
    out
}

/// The identity of credentials the process made something with (a socket, a ring's
/// personality): their supplementary groups are not recorded, so they are taken from a
/// thread with the same ids, if any; else they are unknown (the second value).
fn with_groups(p: &ProcessFacts, ns: &NetnsFacts, uid: u32, gid: u32) -> (Identity, bool) {
    let same_ids = std::iter::once((p.fsuid, p.fsgid, &p.groups))
        .chain(p.threads.iter().map(|t| (t.fsuid, t.fsgid, &t.groups)))
        .find(|(u, g, _)| (*u, *g) == (uid, gid));
    match same_ids {
        Some((_, _, groups)) => (in_owner(ns, uid, gid, groups), false),
        None => (in_owner(ns, uid, gid, &[]), true),
    }
}

/// The ways out through its io_uring rings: each registered personality and SQPOLL
/// thread creates sockets with its own credentials; a ring whose credentials were not
/// read makes the process unknown.
fn rings(p: &ProcessFacts, ns: &NetnsFacts) -> Vec<Way> {
    let mut out = Vec::new();
    for ring in &p.rings {
        let fd = ring.fd;
        for c in &ring.personalities {
            let (identity, groups_unknown) = with_groups(p, ns, c.fsuid, c.fsgid);
            out.push(Way {
                decides: None,
                cites: Vec::new(),
                source: Source::RingPersonality { fd, id: c.id },
                identity,
                groups_unknown,
                why: format!(
                    "io_uring fd {fd} has personality {} registered with uid {} gid {}: a request naming it creates sockets with those credentials, whatever the process runs as now ({}:{})",
                    c.id, c.fsuid, c.fsgid, p.fsuid, p.fsgid
                ),
            });
        }
        if let Some(c) = ring.sqpoll {
            let (identity, groups_unknown) = with_groups(p, ns, c.fsuid, c.fsgid);
            out.push(Way {
                decides: None,
                cites: Vec::new(),
                source: Source::RingSqpoll { fd },
                identity,
                groups_unknown,
                why: format!(
                    "io_uring fd {fd} submits through an SQPOLL thread with its creator's credentials, uid {} gid {}: sockets its requests create get them",
                    c.fsuid, c.fsgid
                ),
            });
        }
        if let Some(unread) = &ring.unread {
            let what = if ring.registered {
                format!("io_uring ring registered at index {fd}")
            } else {
                format!("io_uring fd {fd}")
            };
            out.push(Way {
                decides: Some(ProcessVerdict::Unknown),
                cites: Vec::new(),
                source: Source::Ring {
                    fd,
                    registered: ring.registered,
                },
                identity: leader(p, ns),
                groups_unknown: false,
                why: format!(
                    "{what}: {unread}; a ring can create sockets with credentials the process no longer has"
                ),
            });
        }
    }
    out
}

/// The ways into `ns`'s rules of a process living in another network namespace: the
/// sockets it holds that were made in `ns` (a socket stays in the namespace it was created
/// in, whoever holds it). Its own new sockets never meet `ns`'s rules.
pub(crate) fn visiting(p: &ProcessFacts, ns: &NetnsFacts) -> Vec<Way> {
    let mut out: Vec<Way> = Vec::new();
    for s in p.sockets.iter().filter(|s| made_in(s, ns)) {
        match socket(p, ns, s) {
            Some(way) if !out.iter().any(|w| w.identity == way.identity) => out.push(way),
            _ => {}
        }
    }
    out
}

/// Whether a held socket was made in `ns` although its holder lives elsewhere.
pub(crate) fn made_in(s: &HeldSocket, ns: &NetnsFacts) -> bool {
    s.probed
        .is_some_and(|p| p.netns == ns.inode && p.sends_ip())
}

/// The way out through one held socket; `None` for one that sends no IP traffic first (a
/// listener, a unix, netlink or packet socket).
pub fn socket(p: &ProcessFacts, ns: &NetnsFacts, s: &HeldSocket) -> Option<Way> {
    let now = format!("{}:{}", p.fsuid, p.fsgid);
    let (fd, inode, tid) = (s.fd, s.inode, s.tid);
    let slot = s.fixed_slot;
    let place = match (slot, tid) {
        (Some(i), _) => format!("slot {i} of io_uring fd {fd}'s fixed files, socket:[{inode}]"),
        (None, Some(t)) => format!("fd {fd} of thread {t}'s own fd table, socket:[{inode}]"),
        (None, None) => format!("fd {fd}, socket:[{inode}]"),
    };
    let created = match (s.owner_source, s.inode_owner) {
        (OwnerSource::FCred, Some((u, g))) => format!(
            "created with uid {} gid {} (its file's credentials; its inode's owner was changed to {u}:{g}, which owner matches never look at)",
            s.uid, s.gid
        ),
        (OwnerSource::FCred, None) => format!("created with uid {} gid {}", s.uid, s.gid),
        (OwnerSource::Inode, _) => format!(
            "created with uid {} gid {} (as its inode's owner says: the file's own credentials were not read)",
            s.uid, s.gid
        ),
    };
    let source = match (s.unlisted, s.probed) {
        (true, Some(probe)) if !probe.sends_ip() => return None,
        (true, Some(probe)) if probe.netns != ns.inode => {
            return Some(Way {
                decides: Some(ProcessVerdict::Bypass),
                cites: Vec::new(),
                source: Source::ForeignSocket {
                    fd,
                    inode,
                    tid,
                    netns: probe.netns,
                },
                identity: in_owner(ns, s.uid, s.gid, &[]),
                groups_unknown: true,
                why: format!(
                    "socket ({place}) belongs to network namespace {}, not this one: its traffic never meets this namespace's capture rules",
                    probe.netns
                ),
            });
        }
        (true, Some(_)) => Source::Socket {
            fd,
            inode,
            tid,
            slot,
        },
        (true, None) => Source::UnknownSocket { fd, inode, tid },
        (false, _) => {
            let listed = ns.sockets.iter().find(|l| l.inode == inode)?;
            if listed.proto == SocketProto::Tcp && listed.state == "listen" {
                return None;
            }
            Source::Socket {
                fd,
                inode,
                tid,
                slot,
            }
        }
    };
    let (identity, groups_unknown) = with_groups(p, ns, s.uid, s.gid);
    let why = match source {
        Source::UnknownSocket { .. } => format!(
            "socket ({place}) {created} is in none of this namespace's socket tables and could not be inspected; the process is now {now}"
        ),
        _ => format!("socket ({place}) {created}; the process is now {now}"),
    };
    Some(Way {
        decides: None,
        cites: Vec::new(),
        source,
        identity,
        groups_unknown,
        why,
    })
}

/// Whether some rule matches supplementary groups (`--suppl-groups`).
pub fn matches_groups(rules: &Ruleset) -> bool {
    rules
        .tables
        .iter()
        .flat_map(|t| &t.chains)
        .flat_map(|c| &c.rules)
        .flat_map(|r| &r.matches)
        .any(|m| {
            matches!(
                m.test,
                Test::Gid {
                    suppl_groups: true,
                    ..
                }
            )
        })
}

/// Whether a process's capabilities act on this network namespace: only those held in the
/// user namespace owning it, or in an ancestor of that one (`ns_capable(net->user_ns)`).
pub(crate) fn caps_count(p: &ProcessFacts, ns: &NetnsFacts) -> bool {
    match &ns.owner {
        Some(owner) if p.userns != 0 => owner.userns.contains(&p.userns),
        _ => true,
    }
}

/// Whether a process holding CAP_SETUID (or CAP_SETGID) in its own user namespace can
/// take some id of `range` (the owner's terms): only ids its own namespace maps can be set
/// (`setuid(1337)` is EINVAL elsewhere). `own` and `owner` are maps (inside, outside,
/// count), outside as meshleak sees ids.
pub(crate) fn can_take(
    own: &[(u32, u32, u32)],
    owner: Option<&[(u32, u32, u32)]>,
    range: IdRange,
) -> bool {
    // The range as meshleak sees ids: through the owner's map, or as is without one.
    let outside: Vec<(u64, u64)> = match owner {
        None => vec![(u64::from(range.start), u64::from(range.end))],
        Some(map) => map
            .iter()
            .filter_map(|&(inside, out, count)| {
                let (lo, hi) = (u64::from(inside), u64::from(inside) + u64::from(count));
                let a = u64::from(range.start).max(lo);
                let b = (u64::from(range.end) + 1).min(hi);
                (a < b).then(|| (a - lo + u64::from(out), b - 1 - lo + u64::from(out)))
            })
            .collect(),
    };
    own.iter().any(|&(_, out, count)| {
        let (lo, hi) = (u64::from(out), u64::from(out) + u64::from(count));
        outside.iter().any(|&(a, b)| a < hi && lo <= b)
    })
}
