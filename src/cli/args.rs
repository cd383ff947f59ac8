//! Arguments more than one command takes: what to read from the node (`scan`, `pod`,
//! `collect`, `agent`), and durations.

use std::path::PathBuf;
use std::time::Duration;

use meshleak_collect::scan::ScanOptions;

/// What to read from the node.
#[derive(clap::Args, Debug)]
pub(super) struct CollectArgs {
    /// Where the host's /proc is (e.g. /host/proc in a container).
    #[arg(long, default_value = "/proc")]
    pub(super) proc_root: PathBuf,
    /// Directories holding namespace bind mounts.
    #[arg(long = "netns-dir", default_values = ["/run/netns", "/var/run/netns"])]
    netns_dirs: Vec<PathBuf>,
    /// Also report the host's own network namespace.
    #[arg(long)]
    include_host: bool,
    /// Also collect command lines (they often hold secrets).
    #[arg(long)]
    include_cmdline: bool,
    /// Where the host's root is (e.g. /host in a container): container runtime state and
    /// kubelet's logs are read under it.
    #[arg(long, default_value = "/")]
    host_root: PathBuf,
    /// Give up on a network namespace that takes longer than this to read (it is reported
    /// and skipped; the rest of the scan goes on).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    netns_deadline: Duration,
    /// The node's name in reports, logs and metrics (a DaemonSet sets NODE_NAME from
    /// `spec.nodeName`: in a container the hostname is the pod's). Default: the hostname.
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
}

impl CollectArgs {
    pub(super) fn options(&self) -> ScanOptions {
        ScanOptions {
            proc_root: self.proc_root.clone(),
            netns_dirs: self.netns_dirs.clone(),
            include_host: self.include_host,
            include_cmdline: self.include_cmdline,
            include_exe: false,
            only: Vec::new(),
            host_root: self.host_root.clone(),
            netns_deadline: self.netns_deadline,
            node_name: self.node_name.clone(),
        }
    }
}

/// `90`, `90s`, `5m`, `1h`, `500ms`.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 60s, 5m)"))?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("`{text}`: unit must be ms, s, m or h")),
    };
    if d.is_zero() {
        return Err("the duration must be more than zero".into());
    }
    Ok(d)
}
