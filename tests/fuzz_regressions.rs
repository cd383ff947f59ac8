//! Replays every input kept under fuzz/regressions/<target>/ (crashes, hangs and slow
//! inputs the fuzzers found, and hand-made hostile inputs) through the fuzz targets' own
//! bodies: each must return, within a bound generous enough for a debug build.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn every_kept_input_returns() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut replayed = 0;
    for (name, target) in meshleak_core::fuzzing::TARGETS {
        let Ok(entries) = std::fs::read_dir(root.join(name)) else {
            continue;
        };
        for entry in entries.flatten() {
            let data = std::fs::read(entry.path()).expect("read a kept input");
            let (done, wait) = mpsc::channel();
            std::thread::spawn(move || {
                target(&data);
                let _ = done.send(());
            });
            match wait.recv_timeout(Duration::from_secs(60)) {
                Ok(()) => replayed += 1,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("{name} {} did not return", entry.path().display())
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("{name} {} panicked", entry.path().display())
                }
            }
        }
    }
    assert!(replayed > 0, "no inputs under {}", root.display());
}

/// The hand-made lying inputs are refused with an error that says where, not decoded into
/// something: x_tables offsets and sizes past the end, an nf_tables attribute past its message.
#[test]
fn lying_lengths_are_errors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    for name in [
        "truncated-mid-entry",
        "next-offset-past-end",
        "target-offset-past-next",
        "match-size-past-entry",
    ] {
        let data = std::fs::read(root.join("xt_table").join(name)).unwrap();
        let (info, version, blob) = meshleak_core::fuzzing::xt_table(&data).unwrap();
        let err = meshleak_core::xt::table::decode(&info, blob, version, "test")
            .expect_err(name)
            .to_string();
        assert!(
            err.contains("offset") || err.contains("size") || err.contains("bytes"),
            "{name}: {err}"
        );
    }
    let data = std::fs::read(root.join("nf_tables/attribute-past-message")).unwrap();
    let messages = meshleak_core::fuzzing::netlink_messages(&data);
    let err = meshleak_core::nft::replies::decode(messages, "test").expect_err("refused");
    assert!(err.to_string().contains(" at byte "), "{err}");
}
