//! iptables-legacy rules straight from the kernel: `IPT_SO_GET_INFO` and
//! `IPT_SO_GET_ENTRIES` (and the IPv6 equivalents) on a raw socket, as libiptc does.
//!
//! Only tables listed in `ip_tables_names` / `ip6_tables_names` are read: asking for a table
//! that does not exist makes the kernel create it, and meshleak never changes anything.

use std::io;

use crate::netns::thread_net_file;
use meshleak_core::model::{IpVersion, Table};
use meshleak_core::xt::table::{self, TableInfo};

const SO_GET_INFO: libc::c_int = 64;
const SO_GET_ENTRIES: libc::c_int = 65;
const GET_INFO_SIZE: usize = 84;
const GET_ENTRIES_HEADER: usize = 40;
const TABLE_NAME_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    #[error("cannot read {file}: {cause}")]
    Names { file: String, cause: io::Error },
    #[error("cannot open a socket to read iptables-legacy rules: {0}")]
    Socket(io::Error),
    #[error(
        "cannot read iptables-legacy table {table} ({family}): {cause}; reading rules needs CAP_NET_ADMIN"
    )]
    Read {
        table: String,
        family: &'static str,
        cause: io::Error,
    },
    #[error("iptables-legacy table {table} ({family}) kept changing while read; try again")]
    Changing { table: String, family: &'static str },
    #[error("iptables-legacy table {table} ({family}) is malformed: {cause}")]
    Decode {
        table: String,
        family: &'static str,
        cause: table::DecodeError,
    },
}

/// Every legacy table of one family in the calling thread's namespace.
pub(crate) fn read_family(version: IpVersion) -> Result<Vec<Table>, LegacyError> {
    let family = family_name(version);
    read_raw_family(version)?
        .into_iter()
        .map(|(info, blob)| {
            let origin = format!("kernel iptables-legacy {family} {}", info.name);
            table::decode(&info, &blob, version, &origin).map_err(|source| LegacyError::Decode {
                table: info.name.clone(),
                family,
                cause: source,
            })
        })
        .collect()
}

/// The raw entry blobs (what `IPT_SO_GET_ENTRIES` returns) of one family's tables.
pub fn read_raw_family(version: IpVersion) -> Result<Vec<(TableInfo, Vec<u8>)>, LegacyError> {
    let names_file = match version {
        IpVersion::V4 => "ip_tables_names",
        IpVersion::V6 => "ip6_tables_names",
    };
    let path = thread_net_file(names_file);
    let names = match super::procfile::read_string(&path) {
        Ok(text) => text,
        // No legacy module loaded: no legacy tables.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(LegacyError::Names {
                file: path.display().to_string(),
                cause: source,
            });
        }
    };
    let names: Vec<&str> = names
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let sock = XtSocket::open(version)?;
    // iptables-save prints tables in the order the kernel lists them.
    names
        .into_iter()
        .map(|name| read_table(&sock, name, version))
        .collect()
}

pub(crate) struct XtSocket {
    fd: libc::c_int,
    level: libc::c_int,
}

impl XtSocket {
    pub(crate) fn open(version: IpVersion) -> Result<XtSocket, LegacyError> {
        let (domain, level) = match version {
            IpVersion::V4 => (libc::AF_INET, libc::IPPROTO_IP),
            IpVersion::V6 => (libc::AF_INET6, libc::IPPROTO_IPV6),
        };
        // Any IPv4 (IPv6) socket reaches the x_tables getsockopt handlers once the IP
        // level does not know the option (ip_getsockopt hands it to nf_getsockopt): a UDP
        // socket needs no CAP_NET_RAW, unlike the raw one iptables opens. Reading still
        // takes CAP_NET_ADMIN, which the handlers check.
        // SAFETY: plain socket(2); the fd is owned by XtSocket and closed on drop.
        let fd = unsafe {
            libc::socket(
                domain,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::IPPROTO_UDP,
            )
        };
        if fd < 0 {
            return Err(LegacyError::Socket(io::Error::last_os_error()));
        }
        Ok(XtSocket { fd, level })
    }

    /// `IPT_SO_GET_INFO` of table `name`: its name, hooks, underflows, entry count and
    /// size, as the kernel returns them. Ask only for a table `*_tables_names` lists.
    pub(crate) fn info(&self, name: &str) -> io::Result<[u8; GET_INFO_SIZE]> {
        let mut info = [0u8; GET_INFO_SIZE];
        let n = name.len().min(TABLE_NAME_LEN - 1);
        info[..n].copy_from_slice(&name.as_bytes()[..n]);
        self.get(SO_GET_INFO, &mut info)?;
        Ok(info)
    }

    /// getsockopt into `buf`, which carries the request (table name, size) on input.
    fn get(&self, opt: libc::c_int, buf: &mut [u8]) -> io::Result<()> {
        let mut len = buf.len() as libc::socklen_t;
        // SAFETY: buf is valid for len bytes; the kernel writes at most len bytes.
        let rc = unsafe {
            libc::getsockopt(self.fd, self.level, opt, buf.as_mut_ptr().cast(), &mut len)
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

impl Drop for XtSocket {
    fn drop(&mut self) {
        // SAFETY: fd came from socket(2) and is closed once.
        unsafe { libc::close(self.fd) };
    }
}

fn family_name(version: IpVersion) -> &'static str {
    version.family().name()
}

fn read_table(
    sock: &XtSocket,
    name: &str,
    version: IpVersion,
) -> Result<(TableInfo, Vec<u8>), LegacyError> {
    let family = family_name(version);
    let read_err = |source| LegacyError::Read {
        table: name.to_string(),
        family,
        cause: source,
    };
    // The table may change between the two calls (EAGAIN): a few tries, as libiptc does.
    for _ in 0..5 {
        let info = sock.info(name).map_err(read_err)?;
        let word = |i: usize| {
            u32::from_ne_bytes(info[32 + i * 4..36 + i * 4].try_into().expect("4 bytes"))
        };
        let parsed = TableInfo {
            name: name.to_string(),
            valid_hooks: word(0),
            hook_entry: std::array::from_fn(|h| word(1 + h)),
            underflow: std::array::from_fn(|h| word(6 + h)),
        };
        let size = word(12) as usize;
        let mut entries = vec![0u8; GET_ENTRIES_HEADER + size];
        entries[..TABLE_NAME_LEN].copy_from_slice(&info[..TABLE_NAME_LEN]);
        entries[TABLE_NAME_LEN..TABLE_NAME_LEN + 4].copy_from_slice(&(size as u32).to_ne_bytes());
        match sock.get(SO_GET_ENTRIES, &mut entries) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
            Err(e) => return Err(read_err(e)),
        }
        entries.drain(..GET_ENTRIES_HEADER);
        return Ok((parsed, entries));
    }
    Err(LegacyError::Changing {
        table: name.to_string(),
        family,
    })
}
