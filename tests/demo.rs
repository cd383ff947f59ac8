//! `make demo` as a newcomer runs it (root): the script must run to its end and show what
//! the README's "What it shows" promises, line for line (pids, timings, names and the
//! node's name aside).

mod common;

use common::is_root;

/// Runs of digits become `N` and the demo's namespace names (`mldemo` and its pid) `POD`,
/// so a line compares across runs; column padding is collapsed with them.
fn normalize(line: &str) -> String {
    let line = line.trim_end().replace("mldemo", "POD");
    let mut out = String::new();
    let mut last = ' ';
    for c in line.chars() {
        let c = if c.is_ascii_digit() { 'N' } else { c };
        if !(c == last && (c == 'N' || c == ' ')) {
            out.push(c);
        }
        last = c;
    }
    out
}

#[test]
fn the_demo_shows_what_the_readme_says() {
    if !is_root() {
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("sh")
        .args(["scripts/demo.sh", env!("CARGO_BIN_EXE_meshleak")])
        .current_dir(root)
        .output()
        .expect("runs the demo");
    let text = String::from_utf8_lossy(&out.stdout);
    let plain: String = text
        .split('\x1b')
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part
            } else {
                part.split_once('m').map_or(part, |(_, rest)| rest)
            }
        })
        .collect();
    assert!(out.status.success(), "{plain}");
    let shown: Vec<String> = plain.lines().map(normalize).collect();
    let readme = include_str!("../README.md");
    let block = readme
        .split("```text\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the README shows the demo's output");
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        let want = normalize(line);
        assert!(
            shown.contains(&want),
            "the README shows `{line}`, the demo does not:\n{plain}"
        );
    }
    for step in ["meshleak trace --pid", "meshleak check"] {
        assert!(plain.contains(step), "{plain}");
    }
    assert!(plain.contains("verdict   bypass"), "{plain}");
}
