//! The scenario helper (tests/helpers/sockets.py): a process that builds sockets with
//! chosen credentials, says what it holds, and on `go` connects them and reports what the
//! kernel did with each.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use super::pod::{Pod, json};

pub const HELPER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/helpers/sockets.py");
pub const PEER: &str = "169.254.78.2";

/// The helper process of one scenario, killed on drop.
pub struct Helper {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub ready: serde_json::Value,
}

impl Helper {
    /// Starts the helper in the pod as root, behind `wrap` (e.g. setpriv + unshare).
    pub fn start(pod: &Pod, wrap: &[&str], scenario: &str, extra: &[&str]) -> Helper {
        Helper::start_in(&pod.ns, wrap, scenario, extra)
    }

    /// Starts the helper in the named network namespace.
    pub fn start_in(ns: &str, wrap: &[&str], scenario: &str, extra: &[&str]) -> Helper {
        Helper::start_program(ns, wrap, &["/usr/bin/python3", HELPER], scenario, extra)
    }

    /// Starts the io_uring helper (tests/helpers/uring.c) in the pod, as root.
    pub fn start_uring(pod: &Pod, scenario: &str) -> Helper {
        Helper::start_program(&pod.ns, &[], &[uring()], scenario, &[])
    }

    fn start_program(
        ns: &str,
        wrap: &[&str],
        program: &[&str],
        scenario: &str,
        extra: &[&str],
    ) -> Helper {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(wrap)
            .args(program)
            .args([scenario, PEER, "80"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the helper");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let ready = read_tagged(&mut stdout, "ready");
        Helper {
            child,
            stdin,
            stdout,
            ready,
        }
    }

    pub fn pid(&self) -> u32 {
        self.ready["pid"].as_u64().unwrap() as u32
    }

    pub fn fd(&self, label: &str) -> u32 {
        self.ready["fds"][label].as_u64().unwrap() as u32
    }

    pub fn tid(&self, label: &str) -> u32 {
        self.ready["tids"][label].as_u64().unwrap() as u32
    }

    /// Connects every socket; per label, whether the kernel let it bypass (the peer
    /// answered) or captured it (the proxy echoed).
    pub fn go(&mut self) -> BTreeMap<String, bool> {
        writeln!(self.stdin, "go").unwrap();
        let r = read_tagged(&mut self.stdout, "result");
        r.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let bypass = match v.as_str().unwrap() {
                    "B" => true,
                    "x" => false,
                    other => panic!("{k}: unexpected answer {other}"),
                };
                (k.clone(), bypass)
            })
            .collect()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The io_uring helper, built once per test binary with the system's C compiler.
fn uring() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/helpers/uring.c");
        let bin = format!("{}/uring-helper", env!("CARGO_TARGET_TMPDIR"));
        let out = Command::new("cc")
            .args(["-O2", "-Wall", "-Werror", "-pthread", "-o", &bin, src])
            .output()
            .expect("run cc");
        assert!(
            out.status.success(),
            "cc {src}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        bin
    })
}

pub fn read_tagged(out: &mut impl BufRead, tag: &str) -> serde_json::Value {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let rest = line
        .strip_prefix(tag)
        .unwrap_or_else(|| panic!("helper said `{line}`, expected {tag}"));
    json(rest.trim())
}
