//! The typed events the agent's sources produce, and the bounded queue that carries them to
//! the one owner of the per-namespace state. A full queue never blocks a source and never
//! loses silently: the event is counted as dropped and the owner runs a whole scan instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::counter::Counter;

use meshleak_core::nft::msg::Commit;

/// Events waiting for the owner at most: a storm beyond this is coalesced into a whole scan.
const QUEUE: usize = 4096;

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

/// The sources' end of the queue.
#[derive(Clone)]
pub(super) struct Bus {
    tx: tokio::sync::mpsc::Sender<Event>,
    shared: Arc<Shared>,
}

pub(super) struct Shared {
    /// Events dropped since the start (`meshleak_events_dropped_total`).
    dropped: Counter,
    overflowed: AtomicBool,
}

impl Shared {
    pub(super) fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// Whether events were dropped since last asked (a whole scan is owed).
    pub(super) fn take_overflow(&self) -> bool {
        self.overflowed.swap(false, Ordering::AcqRel)
    }
}

impl Bus {
    /// A queue whose drops count in `dropped`.
    pub(super) fn new(dropped: Counter) -> (Bus, tokio::sync::mpsc::Receiver<Event>, Arc<Shared>) {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        let shared = Arc::new(Shared {
            dropped,
            overflowed: AtomicBool::new(false),
        });
        (
            Bus {
                tx,
                shared: shared.clone(),
            },
            rx,
            shared,
        )
    }

    /// Says a source lost events before they reached it (the kernel dropped them): a
    /// whole scan is owed, as for a full queue.
    pub(super) fn overflow(&self) {
        self.shared.dropped.inc();
        self.shared.overflowed.store(true, Ordering::Release);
    }

    /// Hands `event` to the owner; when the queue is full, counts it and owes a whole scan.
    /// `false` once the owner is gone (the agent is stopping).
    pub(super) fn send(&self, event: Event) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                self.shared.dropped.inc();
                // The owner is busy with the queue's events; it looks for this after them.
                self.shared.overflowed.store(true, Ordering::Release);
                true
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}
