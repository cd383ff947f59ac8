//! The processes source: new processes, programs run and id changes (per thread), mapped
//! to the network namespace they are in. From the kernel's proc connector where the agent
//! may listen (the initial user and PID namespaces: `hostPID: true`); elsewhere, /proc is
//! polled every [`POLL`] for new processes, and id changes of running processes are seen
//! at the next scan. Which one runs is stated in `/report` and `/readyz`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::events::{Bus, Event};
use super::log::{LogFormat, line};
use super::status::Sources;
use meshleak_collect::proc_events::ProcEvents;
use meshleak_collect::procs::netns_inode;
use meshleak_core::cnproc::ProcEvent;

/// Process events read a tenth of a second at most (50,000 a second): a storm beyond
/// costs the agent no more; the kernel drops the rest, which is counted, and the node is
/// scanned whole instead.
const EVENTS_PER_TICK: usize = 5_000;
const TICK: Duration = Duration::from_millis(100);

/// How often /proc is listed for new processes without the proc connector.
pub(super) const POLL: Duration = Duration::from_secs(1);
const BUFFER: usize = 1 << 18;

pub(super) fn start(proc_root: PathBuf, bus: Bus, sources: Sources, format: LogFormat) {
    let host = meshleak_collect::procs::host_netns(&proc_root);
    let connector = ProcEvents::open(&proc_root);
    let spawned = match connector {
        Ok(events) => {
            sources.set(
                "processes",
                "events",
                "proc connector: fork, exec, uid and gid events".into(),
            );
            std::thread::Builder::new()
                .name("meshleak-procs".into())
                .spawn(move || follow(events, &proc_root, host, &bus))
        }
        Err(why) => {
            let detail = format!(
                "{why}; new processes are found by listing /proc every {} s, id changes of running processes at the next scan",
                POLL.as_secs()
            );
            line(
                format,
                "warn",
                "process events not available",
                json!({ "error": why, "fallback": "polling /proc" }),
            );
            sources.set("processes", "polling", detail);
            std::thread::Builder::new()
                .name("meshleak-procs".into())
                .spawn(move || poll(&proc_root, host, &bus))
        }
    };
    if let Err(e) = spawned {
        sources.set(
            "processes",
            "failed",
            format!("cannot start its thread: {e}"),
        );
    }
}

/// The namespace of a process, `None` when gone or in the host's.
fn netns_of(proc_root: &Path, host: Option<u64>, pid: u32) -> Option<u64> {
    let inode = netns_inode(&proc_root.join(pid.to_string()).join("ns/net")).ok()?;
    (Some(inode) != host).then_some(inode)
}

/// Groups events by namespace and hands each group over; `false` once the owner is gone.
fn hand_over(bus: &Bus, batch: impl IntoIterator<Item = (u64, ProcEvent)>) -> bool {
    let mut by_ns: BTreeMap<u64, usize> = BTreeMap::new();
    for (inode, _) in batch {
        *by_ns.entry(inode).or_default() += 1;
    }
    by_ns
        .into_iter()
        .all(|(inode, count)| bus.send(Event::Processes { inode, count }))
}

fn follow(mut events: ProcEvents, proc_root: &Path, host: Option<u64>, bus: &Bus) {
    let mut buf = vec![0u8; BUFFER];
    let (mut tick, mut taken) = (std::time::Instant::now(), 0);
    loop {
        if tick.elapsed() >= TICK {
            (tick, taken) = (std::time::Instant::now(), 0);
        } else if taken >= EVENTS_PER_TICK {
            std::thread::sleep(TICK.saturating_sub(tick.elapsed()));
            continue;
        }
        let mut pfd = libc::pollfd {
            fd: events.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, -1) };
        let drained = events.drain(&mut buf, EVENTS_PER_TICK - taken);
        taken += drained.read.max(1);
        if drained.lost {
            // Some events were dropped: the owner's overflow path runs a whole scan.
            bus.overflow();
        }
        // A thread's event and its process's are about one process: its namespace is read
        // once per batch.
        let mut seen = HashSet::new();
        let batch: Vec<(u64, ProcEvent)> = drained
            .events
            .into_iter()
            .filter(|e| !matches!(e, ProcEvent::Fork { pid, tgid, .. } if pid != tgid))
            .filter(|e| seen.insert((e.process(), e.kind())))
            .filter_map(|e| Some((netns_of(proc_root, host, e.process())?, e)))
            .collect();
        if !hand_over(bus, batch) {
            return;
        }
    }
}

/// Without the connector: the pids /proc lists that were not there a poll ago.
fn poll(proc_root: &Path, host: Option<u64>, bus: &Bus) {
    let list = || -> HashSet<u32> {
        std::fs::read_dir(proc_root)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut known = list();
    loop {
        std::thread::sleep(POLL);
        let now = list();
        let batch: Vec<(u64, ProcEvent)> = now
            .iter()
            .filter(|pid| !known.contains(pid))
            .filter_map(|&pid| {
                Some((
                    netns_of(proc_root, host, pid)?,
                    ProcEvent::Exec { pid, tgid: pid },
                ))
            })
            .collect();
        known = now;
        if !hand_over(bus, batch) {
            return;
        }
    }
}
