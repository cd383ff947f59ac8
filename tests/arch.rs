//! The image's arm64 binary answers as its amd64 binary does. Both are taken from the
//! multi-arch image `make image` writes to be pushed (common::image); the arm64 one runs
//! under Debian's qemu-aarch64-static (user-mode emulation, called directly: no binfmt), on
//! the offline commands, over the repository's inputs: no kernel state is read, so the two
//! must exit alike and print the same bytes.

mod common;

use std::path::Path;
use std::process::Command;

use common::image;

const COMMANDS: &[&[&str]] = &[
    &["--version"],
    &[
        "analyze",
        "--rules",
        "testdata/istio-sidecar.rules",
        "--identity",
        "10001:1337",
        "--identity",
        "10001:10001:4,5",
        "-o",
        "json",
    ],
    &["analyze", "--rules", "testdata/nft-redirect-15002.json"],
    &[
        "trace",
        "--rules",
        "testdata/istio-sidecar.rules",
        "--uid",
        "10001",
        "--gid",
        "1337",
        "--dst",
        "10.0.0.5:80",
    ],
    &["check", "--mesh", "istio-1.28", "examples/check/web.yaml"],
    &[
        "check",
        "--mesh",
        "istio-1.28",
        "examples/check/web.yaml",
        "-o",
        "json",
    ],
];

fn qemu_ready() -> bool {
    let here = Command::new("qemu-aarch64-static")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    common::required(here, "qemu-aarch64-static", "make setup")
}

/// The ELF machine of a binary (e_machine): 62 x86-64, 183 AArch64.
fn machine(binary: &Path) -> u16 {
    let elf = std::fs::read(binary).unwrap();
    assert_eq!(
        &elf[..4],
        b"\x7fELF",
        "{} is not an ELF file",
        binary.display()
    );
    u16::from_le_bytes([elf[18], elf[19]])
}

/// Exit code, stdout and stderr.
fn answer(command: &mut Command, args: &[&str]) -> (i32, String, String) {
    let out = command.args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_arm64_binary_answers_as_the_amd64_one() {
    if !image::layout_ready() || !qemu_ready() {
        return;
    }
    let platforms = image::platforms();
    let manifest = |platform: &str| {
        platforms
            .iter()
            .find(|(p, _)| p == platform)
            .map(|(_, digest)| digest.clone())
            .unwrap_or_else(|| panic!("the image has no {platform}: {platforms:?}"))
    };
    let dir = std::env::temp_dir().join(format!("meshleak-arch-{}", std::process::id()));
    let amd64 = image::binary(&manifest("linux/amd64"), &dir.join("amd64"));
    let arm64 = image::binary(&manifest("linux/arm64"), &dir.join("arm64"));
    assert_eq!(machine(&amd64), 62, "linux/amd64's binary is not x86-64");
    assert_eq!(machine(&arm64), 183, "linux/arm64's binary is not AArch64");
    for args in COMMANDS {
        let native = answer(&mut Command::new(&amd64), args);
        assert!(
            !native.1.is_empty(),
            "meshleak {} printed nothing: {native:?}",
            args.join(" ")
        );
        let emulated = answer(Command::new("qemu-aarch64-static").arg(&arm64), args);
        assert_eq!(
            emulated,
            native,
            "meshleak {}: arm64 vs amd64",
            args.join(" ")
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
