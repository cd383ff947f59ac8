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
    for (name, target) in meshleak::fuzzing::TARGETS {
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
