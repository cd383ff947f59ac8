//! The rules source: in every namespace the agent knows (pods, meshed or not yet: a mesh's
//! init container writes its rules after the namespace exists), an nf_tables notification
//! socket announces each commit with the committing process, and iptables-legacy tables,
//! which announce nothing, are polled every [`LEGACY_POLL`]. One thread, one epoll set;
//! a namespace's sockets are closed once the owner no longer lists it, so the kernel can
//! free it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use serde_json::json;

use super::epoll::{Epoll, latest_plan};
use super::events::{Bus, Event, RuleChange};
use super::log::{LogFormat, line};
use super::status::Sources;
use meshleak_collect::rule_events::{LegacyTables, RuleEvents};

/// How often iptables-legacy tables are compared: a legacy change is seen within this
/// (plus the owner's re-read), the cost of a poll is a few reads per namespace.
pub(super) const LEGACY_POLL: Duration = Duration::from_secs(2);
const BUFFER: usize = 1 << 16;

/// A namespace to follow and how to enter it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Entrance {
    pub inode: u64,
    pub paths: Vec<String>,
    pub pids: Vec<u32>,
}

/// The owner's end: each publish hands over the namespaces to follow.
pub(super) struct Handle(Sender<Vec<Entrance>>);

impl Handle {
    pub(super) fn follow(&self, plan: Vec<Entrance>) {
        let _ = self.0.send(plan);
    }
}

struct Followed {
    nft: RuleEvents,
    legacy: Option<(LegacyTables, Vec<u8>)>,
}

pub(super) fn start(
    bus: Bus,
    sources: Sources,
    format: LogFormat,
    proc_root: PathBuf,
    host_root: PathBuf,
) -> std::io::Result<Handle> {
    let (tx, rx) = mpsc::channel();
    let epoll = Epoll::new()?;
    sources.set(
        "rules",
        "events",
        format!(
            "nf_tables notifications; iptables-legacy polled every {} s",
            LEGACY_POLL.as_secs()
        ),
    );
    std::thread::Builder::new()
        .name("meshleak-rules".into())
        .spawn(move || run(&rx, &epoll, &bus, &sources, format, &proc_root, &host_root))?;
    Ok(Handle(tx))
}

fn run(
    rx: &Receiver<Vec<Entrance>>,
    epoll: &Epoll,
    bus: &Bus,
    sources: &Sources,
    format: LogFormat,
    proc_root: &std::path::Path,
    host_root: &std::path::Path,
) {
    let mut followed: HashMap<u64, Followed> = HashMap::new();
    let mut refused: HashMap<u64, String> = HashMap::new();
    let mut buf = vec![0u8; BUFFER];
    let mut ready = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut polled = Instant::now();
    loop {
        let Ok(plan) = latest_plan(rx) else { return };
        if let Some(plan) = plan {
            followed.retain(|inode, _| plan.iter().any(|e| e.inode == *inode));
            refused.retain(|inode, _| plan.iter().any(|e| e.inode == *inode));
            for e in &plan {
                if followed.contains_key(&e.inode) {
                    continue;
                }
                match open(e, epoll, proc_root) {
                    Ok(f) => {
                        refused.remove(&e.inode);
                        followed.insert(e.inode, f);
                        // A commit between the read that listed it and now is not lost.
                        if !bus.send(Event::Followed { inode: e.inode }) {
                            return;
                        }
                    }
                    Err(why) if refused.get(&e.inode) != Some(&why) => {
                        line(
                            format,
                            "warn",
                            "cannot follow rule changes",
                            json!({ "netns": e.inode, "error": why }),
                        );
                        refused.insert(e.inode, why);
                    }
                    Err(_) => {}
                }
            }
            if refused.is_empty() {
                sources.set(
                    "rules",
                    "events",
                    format!(
                        "nf_tables notifications in {} namespaces; iptables-legacy polled every {} s",
                        followed.len(),
                        LEGACY_POLL.as_secs()
                    ),
                );
            } else {
                sources.set(
                    "rules",
                    "failed",
                    format!(
                        "{} namespaces cannot be followed (their changes are seen at the next scan): {}",
                        refused.len(),
                        refused.values().next().cloned().unwrap_or_default()
                    ),
                );
            }
        }
        let wait = LEGACY_POLL.saturating_sub(polled.elapsed()).as_millis() as libc::c_int;
        for inode in epoll.wait(&mut ready, wait.clamp(1, 250)) {
            let Some(f) = followed.get_mut(&inode) else {
                continue;
            };
            let drained = f.nft.drain(&mut buf);
            // A committer's container is read once per drain: a storm's commits are
            // mostly one process's.
            let mut known: HashMap<u32, Option<String>> = HashMap::new();
            let mut changes: Vec<RuleChange> = drained
                .commits
                .into_iter()
                .map(|commit| {
                    let container = commit.pid.and_then(|pid| {
                        known
                            .entry(pid)
                            .or_insert_with(|| committer(proc_root, host_root, pid))
                            .clone()
                    });
                    RuleChange::Commit { commit, container }
                })
                .collect();
            if drained.lost {
                changes.push(RuleChange::Lost);
            }
            for change in changes {
                if !bus.send(Event::Rules { inode, change }) {
                    return;
                }
            }
        }
        if polled.elapsed() >= LEGACY_POLL {
            polled = Instant::now();
            for (inode, f) in &mut followed {
                let Some((tables, last)) = &mut f.legacy else {
                    continue;
                };
                let now = tables.state();
                if now != *last {
                    *last = now;
                    if !bus.send(Event::Rules {
                        inode: *inode,
                        change: RuleChange::Legacy,
                    }) {
                        return;
                    }
                }
            }
        }
    }
}

fn open(e: &Entrance, epoll: &Epoll, proc_root: &std::path::Path) -> Result<Followed, String> {
    let nft = RuleEvents::open(e.inode, &e.paths, &e.pids, proc_root)?;
    epoll
        .add(nft.fd(), e.inode)
        .map_err(|err| format!("epoll_ctl: {err}"))?;
    // Legacy polling is best effort beside the notifications: without it, a legacy change
    // is seen at the next scan.
    let legacy = LegacyTables::open(e.inode, &e.paths, &e.pids, proc_root)
        .ok()
        .map(|mut t| {
            let state = t.state();
            (t, state)
        });
    Ok(Followed { nft, legacy })
}

/// The committing process's container as `namespace/pod container`, read at once: the
/// committer (iptables-restore, nft) usually exits a moment after its commit.
fn committer(proc_root: &std::path::Path, host_root: &std::path::Path, pid: u32) -> Option<String> {
    let cgroup = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    let ids = meshleak_core::attribution::from_cgroup(&cgroup);
    let id = ids.container_id?;
    let wanted: BTreeMap<String, Option<String>> = [(id.clone(), ids.pod_uid)].into();
    let (found, _) = meshleak_collect::containers::read(host_root, &wanted);
    let c = found.into_iter().next();
    let short = &id[..12.min(id.len())];
    Some(match c {
        Some(c) => match (c.pod, c.name) {
            (Some(p), Some(n)) => format!("{}/{} {n}", p.namespace, p.name),
            (Some(p), None) => format!("{}/{} {short}", p.namespace, p.name),
            (None, Some(n)) => format!("{n} {short}"),
            (None, None) => short.to_string(),
        },
        None => short.to_string(),
    })
}
