//! The namespaces source: pod network namespaces as their bind mounts appear and go (see
//! `meshleak_collect::netns_dirs`), on a thread of its own that sleeps in poll(2) until the
//! directories change.

use std::path::PathBuf;

use serde_json::json;

use super::events::{Bus, Event};
use super::log::{LogFormat, line};
use super::status::Sources;
use meshleak_collect::netns_dirs::{Change, NetnsDirs};

/// Starts the source; when inotify cannot be used, says so (only the periodic scan then
/// finds new pods).
pub(super) fn start(dirs: Vec<PathBuf>, bus: Bus, sources: Sources, format: LogFormat) {
    let shown = dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut watched = match NetnsDirs::open(&dirs) {
        Ok(w) => w,
        Err(e) => {
            let why = format!("inotify on {shown}: {e}; new pods are found at the next scan");
            line(
                format,
                "warn",
                "source failed",
                json!({ "source": "namespaces", "error": why }),
            );
            sources.set("namespaces", "failed", why);
            return;
        }
    };
    sources.set("namespaces", "events", format!("inotify on {shown}"));
    let spawned = std::thread::Builder::new()
        .name("meshleak-netns-dirs".into())
        .spawn(move || {
            loop {
                let timeout = watched.next_check().map_or(-1, |at| {
                    at.saturating_duration_since(std::time::Instant::now())
                        .as_millis()
                        .max(1) as libc::c_int
                });
                let mut pfd = libc::pollfd {
                    fd: watched.fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, timeout) };
                for c in watched.changes() {
                    let event = match c {
                        Change::Appeared { inode, path } => Event::Netns {
                            inode,
                            path: path.display().to_string(),
                            appeared: true,
                        },
                        Change::Removed { inode, path } => Event::Netns {
                            inode,
                            path: path.display().to_string(),
                            appeared: false,
                        },
                    };
                    if !bus.send(event) {
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        sources.set(
            "namespaces",
            "failed",
            format!("cannot start its thread: {e}"),
        );
    }
}
