//! What the agent's event sources are doing and what it has seen recently: served in
//! `/report` (`agent`), summed up by `/readyz`, and kept for pods already gone.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use meshleak_core::schema::{AgentEvent, SourceStatus};

/// Events kept: enough for a storm's worth of the last minutes; older ones fall off.
const RECENT: usize = 512;

/// Each source's mode, shared by the sources (which set it) and the HTTP side.
#[derive(Clone, Default)]
pub(super) struct Sources(Arc<Mutex<Vec<SourceStatus>>>);

impl Sources {
    pub(super) fn set(&self, name: &'static str, mode: &'static str, detail: String) {
        let mut all = self.0.lock().unwrap();
        all.retain(|s| s.name != name);
        all.push(SourceStatus { name, mode, detail });
        all.sort_by_key(|s| s.name);
    }

    pub(super) fn all(&self) -> Vec<SourceStatus> {
        self.0.lock().unwrap().clone()
    }

    /// The sources that do not see changes as they happen, each with why.
    pub(super) fn degraded(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|s| s.mode != "events")
            .map(|s| format!("{} ({}): {}", s.name, s.mode, s.detail))
            .collect()
    }
}

/// The recent events, a bounded ring.
#[derive(Clone, Default)]
pub(super) struct Recent(Arc<Mutex<VecDeque<AgentEvent>>>);

impl Recent {
    pub(super) fn push(&self, e: AgentEvent) {
        let mut ring = self.0.lock().unwrap();
        if ring.len() == RECENT {
            ring.pop_front();
        }
        ring.push_back(e);
    }

    pub(super) fn all(&self) -> Vec<AgentEvent> {
        self.0.lock().unwrap().iter().cloned().collect()
    }
}

/// Now, in seconds since the Unix epoch to the millisecond.
pub(super) fn now() -> f64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    (t * 1000.0).round() / 1000.0
}
