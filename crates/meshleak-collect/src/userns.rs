//! Which user namespace owns a network namespace (`ioctl(NS_GET_USERNS)`), and its
//! ancestors (`NS_GET_PARENT`): owner matches interpret the ids of their rules in the
//! owner, and a capability acts on the network namespace only when held in the owner or
//! an ancestor of it. Both ioctls only return new namespace file descriptors.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// `_IO(0xb7, 1)` and `_IO(0xb7, 2)` (linux/nsfs.h).
const NS_GET_USERNS: libc::c_ulong = 0xb701;
const NS_GET_PARENT: libc::c_ulong = 0xb702;

/// Nesting is limited to 32 user namespaces by the kernel.
const MAX_DEPTH: usize = 33;

/// Inodes of the user namespace owning the namespace file at `path`, then of its
/// ancestors up to the one meshleak runs in (whose parent the kernel does not show).
pub fn owner(path: &Path) -> io::Result<Vec<u64>> {
    let ns = File::open(path)?;
    let mut current = ioctl_ns(&ns, NS_GET_USERNS)?;
    let mut chain = vec![inode(&current)?];
    while chain.len() < MAX_DEPTH {
        match ioctl_ns(&current, NS_GET_PARENT) {
            Ok(parent) => {
                chain.push(inode(&parent)?);
                current = parent;
            }
            // EPERM: the parent is outside meshleak's user namespace (or this is the
            // initial one); the chain ends here.
            Err(_) => break,
        }
    }
    Ok(chain)
}

/// The inode of meshleak's own user namespace.
pub fn own() -> io::Result<u64> {
    Ok(std::fs::metadata("/proc/self/ns/user")?.ino())
}

fn ioctl_ns(fd: &impl AsRawFd, request: libc::c_ulong) -> io::Result<File> {
    // SAFETY: both requests take no argument and return a new file descriptor or -1.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as _) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: rc is a file descriptor the kernel just opened for us.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(rc) }))
}

fn inode(f: &File) -> io::Result<u64> {
    Ok(f.metadata()?.ino())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_namespace_is_owned_by_a_user_namespace_ending_in_our_own() {
        let chain = super::owner("/proc/self/ns/net".as_ref()).unwrap();
        assert_eq!(chain.last().copied(), Some(super::own().unwrap()));
    }
}
