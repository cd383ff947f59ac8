//! Every command the README shows in its `sh` blocks is run here, so the README cannot
//! drift from the binary, the Makefile or the manifests: `meshleak` commands for real (the
//! offline examples must decide, exit 0 or 1), `make` targets by name, `kubectl apply -k`
//! against the kustomization's files, and the command a `kubectl debug` pod runs, with the
//! host's root where the debug pod mounts it (tests/daemonset.rs runs it in the image
//! itself). A command of another kind fails the test until a check is added here.

mod common;

use std::path::Path;

use common::is_root;

const README: &str = include_str!("../README.md");

/// The commands of the README's `sh` blocks: trailing comments cut, continued lines joined.
fn commands() -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in README.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let code = line.split(" #").next().unwrap_or("").trim_end();
        match code.strip_suffix('\\') {
            Some(part) => pending.push_str(part),
            None => {
                pending.push_str(code);
                if !pending.trim().is_empty() {
                    out.push(pending.trim().to_string());
                }
                pending.clear();
            }
        }
    }
    out
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs meshleak from the repository's root: (status, stdout, stderr).
fn meshleak(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshleak"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check_make(target: &str) {
    let makefile = std::fs::read_to_string(root().join("Makefile")).unwrap();
    assert!(
        makefile
            .lines()
            .any(|l| l.starts_with(&format!("{target}:"))),
        "the README's `make {target}`: no such target in the Makefile"
    );
}

fn check_kustomization(dir: &str) {
    let dir = root().join(dir);
    let k = std::fs::read_to_string(dir.join("kustomization.yaml"))
        .unwrap_or_else(|e| panic!("the README's `kubectl apply -k {}`: {e}", dir.display()));
    let resources: Vec<&str> = k
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .collect();
    assert!(resources.contains(&"daemonset.yaml"), "{k}");
    for r in resources {
        assert!(
            dir.join(r).is_file(),
            "kustomization lists {r}, which is missing"
        );
    }
}

/// What a `kubectl debug node/NODE ... -- /meshleak ARGS` pod runs, run on this host with
/// `/host` at `/`: the arguments must parse and reach the pod lookup (no such pod here).
fn check_debug(words: &[&str]) {
    let image = words
        .iter()
        .find_map(|w| w.strip_prefix("--image="))
        .expect("an image");
    assert_eq!(
        image,
        format!("REGISTRY/meshleak:{}", env!("CARGO_PKG_VERSION")),
        "the README's debug image is this version's"
    );
    let at = words
        .iter()
        .position(|w| *w == "--")
        .expect("`--` before the command");
    assert_eq!(words[at + 1], "/meshleak", "the image's binary");
    let args: Vec<String> = words[at + 2..]
        .iter()
        .map(|w| w.replace("=/host/", "=/").replace("=/host", "=/"))
        .collect();
    if !is_root() {
        return;
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = meshleak(&args);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("no pod NS/NAME on this node") && !err.contains("Usage:"),
        "the arguments parse and the pod is looked up: {err}"
    );
}

#[test]
fn every_command_the_readme_shows_runs() {
    let commands = commands();
    assert!(commands.len() >= 7, "{commands:?}");
    for cmd in &commands {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        match words.as_slice() {
            ["make", target] => check_make(target),
            ["meshleak", args @ ..] => {
                let (code, out, err) = meshleak(args);
                assert!(
                    (code == 0 || code == 1) && !out.is_empty(),
                    "the README's `{cmd}` exits {code}: {out}{err}"
                );
            }
            ["kubectl", "apply", "-k", dir] => check_kustomization(dir),
            ["kubectl", "apply", "-f", dir] => {
                let yamls = std::fs::read_dir(root().join(dir))
                    .unwrap_or_else(|e| panic!("the README's `{cmd}`: {e}"))
                    .filter(|e| {
                        e.as_ref()
                            .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "yaml"))
                    })
                    .count();
                assert!(yamls > 0, "the README's `{cmd}`: no manifests in {dir}");
            }
            ["kubectl", "debug", ..] => check_debug(&words),
            _ => panic!("the README shows `{cmd}`, which no test runs: add a check here"),
        }
    }
}

/// The exit statuses the README lists mean what `--help` says they mean.
#[test]
fn the_readme_exit_statuses_are_the_binarys() {
    let (_, help, _) = meshleak(&["scan", "--help"]);
    for (n, in_help, in_readme) in [
        (0, "nothing bypasses", "nothing bypasses"),
        (1, "something bypasses", "something bypasses"),
        (2, "error", "error"),
        (
            3,
            "nothing definitely bypasses but some verdict is unknown",
            "is `unknown`",
        ),
        (
            4,
            "nothing definitely bypasses but something could not be read",
            "could not be read",
        ),
    ] {
        let row = README
            .lines()
            .find(|l| l.starts_with(&format!("| {n} |")))
            .unwrap_or_else(|| panic!("the README lists exit status {n}"));
        assert!(row.contains(in_readme), "{row}");
        assert!(help.contains(&format!("{n} {in_help}")), "--help: {help}");
    }
}
