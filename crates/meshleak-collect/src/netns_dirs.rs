//! New and removed pod network namespaces, as their bind mounts come and go: containerd and
//! CRI-O (through their CNI setup) and podman mount each pod's namespace under
//! `/run/netns` or `/var/run/netns` before its containers start, and remove it when the pod
//! is deleted. inotify on those directories says so at once, for no cost while nothing
//! changes. A file is made first and mounted on after, so a new name is a namespace only
//! once it is one (checked until [`MOUNT_WITHIN`]). A directory that does not exist yet (no
//! pod has run on the node) is watched for from its parent.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use super::netns::is_nsfs;
use super::procs::netns_inode;

/// The directories that exist, each once: `/var/run` is a symlink to `/run` on most
/// nodes, and a container's `/host/var/run` a second mount of the same directory, so two
/// spellings would list every namespace twice. Compared by file identity, not by text.
pub fn distinct(dirs: &[PathBuf]) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for d in dirs {
        let Ok(m) = std::fs::metadata(d) else {
            continue;
        };
        if m.is_dir() && !seen.contains(&(m.dev(), m.ino())) {
            seen.push((m.dev(), m.ino()));
            out.push(d.clone());
        }
    }
    out
}

/// How long a new file may take to become a namespace (its bind mount).
pub const MOUNT_WITHIN: Duration = Duration::from_secs(2);

/// What the directories said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A namespace mounted at `path`.
    Appeared { inode: u64, path: PathBuf },
    /// The namespace that was mounted at `path` is gone from there.
    Removed { inode: u64, path: PathBuf },
}

pub struct NetnsDirs {
    inotify: Inotify,
    /// The directories wanted, and for each the watch on it or on its parent.
    dirs: Vec<PathBuf>,
    watches: HashMap<WatchDescriptor, PathBuf>,
    /// Namespaces seen at each path: a removed file's namespace is named by it.
    known: HashMap<PathBuf, u64>,
    /// New files not yet mounted on, with when they stop being waited for.
    pending: Vec<(PathBuf, Instant)>,
}

impl NetnsDirs {
    /// Watches `dirs` (the host's, under the host root in a container). The namespaces
    /// already there are known, not new.
    pub fn open(dirs: &[PathBuf]) -> std::io::Result<NetnsDirs> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        let mut me = NetnsDirs {
            inotify,
            dirs: dirs.to_vec(),
            watches: HashMap::new(),
            known: HashMap::new(),
            pending: Vec::new(),
        };
        for d in dirs {
            me.watch(d);
        }
        let _ = me.found_in_dirs();
        Ok(me)
    }

    pub fn fd(&self) -> RawFd {
        self.inotify.as_fd().as_raw_fd()
    }

    /// Watches `dir`, or its parent while it does not exist.
    fn watch(&mut self, dir: &Path) {
        let flags = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_ONLYDIR;
        let target = if dir.is_dir() {
            dir
        } else {
            match dir.parent() {
                Some(p) => p,
                None => return,
            }
        };
        if let Ok(wd) = self.inotify.add_watch(target, flags) {
            self.watches.insert(wd, target.to_path_buf());
        }
    }

    /// When [`NetnsDirs::changes`] should be asked again even if nothing is readable: a
    /// new file is waiting for its mount.
    pub fn next_check(&self) -> Option<Instant> {
        self.pending
            .iter()
            .map(|(_, until)| *until)
            .min()
            .map(|until| until.min(Instant::now() + Duration::from_millis(10)))
    }

    /// What changed since the last call: the inotify events waiting, and the new files
    /// that have become namespaces since.
    pub fn changes(&mut self) -> Vec<Change> {
        let mut out = Vec::new();
        let mut rescan = false;
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for e in events {
                if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    rescan = true;
                    continue;
                }
                let (Some(dir), Some(name)) = (self.watches.get(&e.wd).cloned(), e.name) else {
                    continue;
                };
                let path = dir.join(&name);
                if self.dirs.contains(&path) {
                    // A wanted directory was made: watch it, and read what is in it.
                    self.watch(&path.clone());
                    rescan = true;
                    continue;
                }
                if !self.dirs.contains(&dir) {
                    continue;
                }
                let removed = e
                    .mask
                    .intersects(AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM);
                if removed {
                    self.pending.retain(|(p, _)| *p != path);
                    if let Some(inode) = self.known.remove(&path) {
                        out.push(Change::Removed { inode, path });
                    }
                } else {
                    self.pending.push((path, Instant::now() + MOUNT_WITHIN));
                }
            }
        }
        if rescan {
            out.extend(self.found_in_dirs());
        }
        let now = Instant::now();
        let mut waiting = Vec::new();
        for (path, until) in std::mem::take(&mut self.pending) {
            if is_nsfs(&path) {
                if let Ok(inode) = netns_inode(&path) {
                    self.known.insert(path.clone(), inode);
                    out.push(Change::Appeared { inode, path });
                }
            } else if now < until {
                waiting.push((path, until));
            }
        }
        self.pending = waiting;
        out
    }

    /// Every namespace in the directories not known yet (at start, after a directory
    /// appeared, after the event queue overflowed).
    fn found_in_dirs(&mut self) -> Vec<Change> {
        let mut out = Vec::new();
        for dir in distinct(&self.dirs) {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                if self.known.contains_key(&path) || !is_nsfs(&path) {
                    continue;
                }
                if let Ok(inode) = netns_inode(&path) {
                    self.known.insert(path.clone(), inode);
                    out.push(Change::Appeared { inode, path });
                }
            }
        }
        out
    }
}
