//! Builds the BPF program meshleak loads (`bpf/held.bpf.c`, a read-only `task_file`
//! iterator) from source with clang, so no compiled object is ever checked in. Its headers
//! (`bpf/bpf_helpers.h`, `linux/types.h`) come from Debian's libbpf-dev and linux-libc-dev;
//! `make setup` installs them with clang.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "bpf/held.bpf.c";
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("held.bpf.o");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    // linux/types.h includes asm/types.h, which Debian keeps under the multiarch directory.
    let multiarch = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        other => panic!("meshleak's BPF program is built for x86_64 and aarch64 only, not {other}"),
    };
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let status = Command::new(&clang)
        .args(["-g", "-O2", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .args(["-c", source, "-o"])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{clang} could not compile {source} ({s}): see its messages above"),
        Err(e) => panic!(
            "cannot run {clang} to build {source}: {e}; install clang and libbpf-dev (`make setup` does), or set CLANG"
        ),
    }
}
