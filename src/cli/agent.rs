//! `meshleak agent`: the always-on DaemonSet mode.

use std::net::SocketAddr;
use std::time::Duration;

use clap::ValueEnum;

use super::args::{CollectArgs, parse_duration};
use crate::agent::log::LogFormat;
use crate::agent::{self, AgentOptions};

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub(super) enum LogFormatArg {
    /// `ts=... level=info node=... msg="scan done" ...` (`human`, its first name, works too).
    #[default]
    #[value(name = "logfmt", alias = "human")]
    Human,
    /// One JSON object per line.
    Json,
}

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// Time between scans (e.g. 60s, 5m); each is jittered by up to 10%.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    interval: Duration,
    /// Metrics and health (/metrics, /healthz, /readyz): ADDR:PORT, or :PORT for every
    /// IPv4 address.
    #[arg(long, default_value = "0.0.0.0:9808", value_parser = parse_listen)]
    listen: SocketAddr,
    /// The last report (/report, /report?fresh=1). It names processes and identities: keep
    /// it on loopback and reach it with `kubectl port-forward`.
    #[arg(long, default_value = "127.0.0.1:9809", value_parser = parse_listen)]
    report_listen: SocketAddr,
    /// The shortest time between two on-demand scans (/report?fresh=1).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    fresh_interval: Duration,
    /// Label a per-pod bypass metric with namespace and pod (more series).
    #[arg(long)]
    metrics_pod_labels: bool,
    #[arg(long, value_enum, default_value_t)]
    log_format: LogFormatArg,
    #[command(flatten)]
    collect: CollectArgs,
}

/// `IP:PORT`, `[IPV6]:PORT`, or `:PORT` (Go's and Prometheus exporters' form) for every
/// IPv4 address, as the default `0.0.0.0:9808` is.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let full = match text.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => text.to_string(),
    };
    full.parse()
        .map_err(|_| format!("`{text}` is not ADDR:PORT, [IPV6]:PORT or :PORT"))
}

pub(super) fn run(args: Args) -> anyhow::Result<u8> {
    agent::run(AgentOptions {
        interval: args.interval,
        listen: args.listen,
        report_listen: args.report_listen,
        scan: args.collect.options(),
        log_format: match args.log_format {
            LogFormatArg::Human => LogFormat::Human,
            LogFormatArg::Json => LogFormat::Json,
        },
        pod_labels: args.metrics_pod_labels,
        fresh_every: args.fresh_interval,
    })?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen(":9808").unwrap(),
            "0.0.0.0:9808".parse().unwrap()
        );
        assert_eq!(parse_listen("[::1]:1").unwrap(), "[::1]:1".parse().unwrap());
        assert!(parse_listen(":x").unwrap_err().contains(":PORT"));
        assert!(parse_listen("9808").is_err());
    }
}
