//! The benchmark's floor (`make bench`): the irreducible part of a scan. Lists processes,
//! reads each one's `/proc/PID/status` and namespace link, and enters each network namespace
//! once (on a dedicated thread, as the scan does) without reading anything there.

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::AsFd;

fn main() {
    let mut by_ns: BTreeMap<String, u32> = BTreeMap::new();
    let mut bytes = 0usize;
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let (Ok(status), Ok(ns)) = (
            fs::read_to_string(format!("/proc/{pid}/status")),
            fs::read_link(format!("/proc/{pid}/ns/net")),
        ) else {
            continue;
        };
        bytes += status.len();
        by_ns.entry(ns.display().to_string()).or_insert(pid);
    }
    for pid in by_ns.values() {
        let path = format!("/proc/{pid}/ns/net");
        std::thread::spawn(move || {
            if let Ok(f) = fs::File::open(&path) {
                let _ = nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET);
            }
        })
        .join()
        .unwrap();
    }
    println!("{} namespaces, {bytes} bytes of status", by_ns.len());
}
