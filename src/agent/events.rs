//! The typed events the agent's sources produce, and how they reach the one owner of the
//! per-namespace state: folded at once, per namespace, into what is pending for it, so a
//! storm costs a source a lock and a map entry, never blocks it, and loses nothing. Only a
//! kernel buffer that overran loses events; that is counted, and the owner scans the node.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;

use meshleak_core::nft::msg::Commit;

#[derive(Clone, Debug)]
pub(super) enum Event {
    /// A namespace was mounted under a netns directory, or its mount was removed.
    Netns {
        inode: u64,
        path: String,
        appeared: bool,
    },
    /// A namespace's rules changed.
    Rules { inode: u64, change: RuleChange },
    /// A source began following a namespace: what changed before it did is seen only by
    /// reading the namespace again now.
    Followed { inode: u64 },
    /// Processes of a namespace were made, ran a program or changed ids (`count` events
    /// of one batch): the namespace is read again whole, so which ones does not matter.
    Processes { inode: u64, count: usize },
}

/// How a namespace's rules changed, and who changed them as far as the kernel says.
#[derive(Clone, Debug)]
pub(super) enum RuleChange {
    /// An nf_tables commit, and the committing process as read at once (it is often gone
    /// a moment later): its pod and container names from its cgroup.
    Commit {
        commit: Commit,
        container: Option<String>,
    },
    /// Notifications were dropped by the kernel: changed, by whom unknown.
    Lost,
    /// iptables-legacy tables differ from when last polled.
    Legacy,
}

/// Rule changes kept per namespace between two re-reads: the first ones and always the
/// latest; a commit storm's others are counted (`Pending::more_rules`).
const RULE_CHANGES: usize = 8;

/// What a namespace's events said since it was last read: bounded whatever the storm
/// (one per namespace, a few rule changes each).
#[derive(Clone, Debug, Default)]
pub(super) struct Pending {
    /// Its mount appeared (`true`) or went, at that path (the last such event).
    pub netns: Option<(String, bool)>,
    pub rules: Vec<RuleChange>,
    pub more_rules: usize,
    /// Process events (fork, exec, id changes).
    pub processes: usize,
    pub followed: bool,
}

impl Pending {
    fn add(&mut self, ev: Event) {
        match ev {
            Event::Netns { path, appeared, .. } => self.netns = Some((path, appeared)),
            Event::Rules { change, .. } => self.add_rule(change),
            Event::Processes { count, .. } => self.processes += count,
            Event::Followed { .. } => self.followed = true,
        }
    }

    fn add_rule(&mut self, change: RuleChange) {
        if self.rules.len() < RULE_CHANGES {
            self.rules.push(change);
        } else {
            // The latest stays named: the one a storm would hide behind earlier ones.
            self.more_rules += 1;
            self.rules[RULE_CHANGES - 1] = change;
        }
    }

    /// Folds in what came later.
    pub(super) fn merge(&mut self, later: Pending) {
        if later.netns.is_some() {
            self.netns = later.netns;
        }
        self.more_rules += later.more_rules;
        for r in later.rules {
            self.add_rule(r);
        }
        self.processes += later.processes;
        self.followed |= later.followed;
    }

    /// Whether only process events are pending.
    pub(super) fn processes_only(&self) -> bool {
        self.processes > 0 && self.netns.is_none() && self.rules.is_empty() && !self.followed
    }

    /// The causes, as `meshleak_rescans_total` labels them.
    pub(super) fn kinds(&self) -> impl Iterator<Item = &'static str> {
        [
            (self.netns.is_some(), "namespace"),
            (!self.rules.is_empty(), "rules"),
            (self.processes > 0, "processes"),
            (self.followed, "followed"),
        ]
        .into_iter()
        .filter_map(|(on, kind)| on.then_some(kind))
    }
}

impl Event {
    fn inode(&self) -> u64 {
        match self {
            Event::Netns { inode, .. }
            | Event::Rules { inode, .. }
            | Event::Processes { inode, .. }
            | Event::Followed { inode } => *inode,
        }
    }
}

/// The sources' end: events are folded at once into what is pending per namespace, so no
/// storm can fill a queue or lose one; the owner takes it all when it wakes.
#[derive(Clone)]
pub(super) struct Bus(Arc<Inner>);

struct Inner {
    pending: Mutex<BTreeMap<u64, Pending>>,
    wake: tokio::sync::Notify,
    /// A source's kernel buffer overran: a whole scan is owed.
    overflowed: AtomicBool,
    /// Times that happened (`meshleak_source_overruns_total`).
    lost: Counter,
    closed: AtomicBool,
}

impl Bus {
    pub(super) fn new(lost: Counter) -> Bus {
        Bus(Arc::new(Inner {
            pending: Mutex::new(BTreeMap::new()),
            wake: tokio::sync::Notify::new(),
            overflowed: AtomicBool::new(false),
            lost,
            closed: AtomicBool::new(false),
        }))
    }

    /// Hands `event` to the owner. `false` once the agent is stopping.
    pub(super) fn send(&self, event: Event) -> bool {
        if self.0.closed.load(Ordering::Acquire) {
            return false;
        }
        self.0
            .pending
            .lock()
            .unwrap()
            .entry(event.inode())
            .or_default()
            .add(event);
        self.0.wake.notify_one();
        true
    }

    /// Says a source's kernel buffer overran (the kernel dropped events before they reached
    /// it): counted, and a whole scan is owed.
    pub(super) fn overflow(&self) {
        self.0.lost.inc();
        self.0.overflowed.store(true, Ordering::Release);
        self.0.wake.notify_one();
    }

    /// What is pending, taken.
    pub(super) fn take(&self) -> BTreeMap<u64, Pending> {
        std::mem::take(&mut *self.0.pending.lock().unwrap())
    }

    /// Whether a whole scan is owed (without taking it).
    pub(super) fn overflow_owed(&self) -> bool {
        self.0.overflowed.load(Ordering::Acquire)
    }

    /// Whether a whole scan is owed since last asked.
    pub(super) fn take_overflow(&self) -> bool {
        self.0.overflowed.swap(false, Ordering::AcqRel)
    }

    /// Waits until something is sent (at once if something was since the last wait).
    pub(super) async fn wait(&self) {
        self.0.wake.notified().await;
    }

    pub(super) fn lost(&self) -> u64 {
        self.0.lost.get()
    }

    /// Sources stop at their next event.
    pub(super) fn close(&self) {
        self.0.closed.store(true, Ordering::Release);
    }
}
