//! Talking to a running agent: a free port, one plain HTTP/1.1 request, and a guard that
//! kills the agent when a test fails before stopping it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// A port no other test of this binary gets, free on every IPv4 address now. Taken below
/// the ephemeral range (32768 and up) rather than from `bind(":0")`: a port the kernel hands
/// out there can be the local port of a concurrent test's client connection, or another
/// test's by the time the agent binds it, and an agent listening on `:PORT` then fails or
/// a request reaches another test's agent being stopped (a reset).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id() * 97;
    loop {
        let port = 20_000 + (base + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000;
        let port = u16::try_from(port).expect("below 32,000");
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
}

/// (status, body) of one plain HTTP/1.1 request.
pub fn request(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("agent listens");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    (status, body)
}

/// Kills the agent if the test fails before it stops it.
pub fn scopeguard(pid: u32) -> impl Drop {
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            // SAFETY: kill has no memory preconditions; the pid may be gone already.
            unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
        }
    }
    Kill(pid)
}

/// A `meshleak agent` on free loopback ports (stderr discarded), killed when dropped.
pub struct Agent {
    child: std::process::Child,
    pub metrics: u16,
}

impl Agent {
    pub fn start(args: &[&str]) -> Agent {
        Agent::start_with(args, |port| format!("127.0.0.1:{port}"))
    }

    /// Like `start`, its metrics listener given as `listen(port)` says (`:PORT`, ...).
    /// Returns once both listeners accept. An agent that exits first is shown with its
    /// stderr; one that could not bind a port (taken since `free_port` saw it free, by a
    /// process outside this test) is started again on other ports, up to 3 times.
    pub fn start_with(args: &[&str], listen: impl Fn(u16) -> String) -> Agent {
        for _ in 0..3 {
            let (metrics, report) = (free_port(), free_port());
            let log = std::env::temp_dir().join(format!("meshleak-agent-{metrics}.log"));
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_meshleak"))
                .arg("agent")
                .args(args)
                .args(["--listen", &listen(metrics)])
                .args(["--report-listen", &format!("127.0.0.1:{report}")])
                .stderr(std::fs::File::create(&log).expect("a log file"))
                .spawn()
                .expect("the agent starts");
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            let up = |p: u16| TcpStream::connect(("127.0.0.1", p)).is_ok();
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let err = std::fs::read_to_string(&log).unwrap_or_default();
                    assert!(
                        err.contains("cannot listen on"),
                        "the agent exited ({status}) before listening:\n{err}"
                    );
                    break;
                }
                if up(metrics) && up(report) {
                    let _ = std::fs::remove_file(&log);
                    return Agent { child, metrics };
                }
                assert!(std::time::Instant::now() < deadline, "never listened");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("no free ports for the agent in 3 tries");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().is_ok_and(|s| s.is_none())
    }

    /// Whether it accepts connections yet.
    pub fn listening(&self) -> bool {
        TcpStream::connect(("127.0.0.1", self.metrics)).is_ok()
    }

    /// A GET on the metrics listener.
    pub fn get(&self, path: &str) -> (u16, String) {
        request(self.metrics, "GET", path)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON log lines an agent writes on `stderr`, on a channel, read on a thread of their
/// own. `strict`: a line that is not JSON fails the test.
pub fn json_lines(
    stderr: std::process::ChildStderr,
    strict: bool,
) -> std::sync::mpsc::Receiver<serde_json::Value> {
    use std::io::BufRead;
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let v = match serde_json::from_str::<serde_json::Value>(&l) {
                Ok(v) => v,
                Err(e) if strict => panic!("not a JSON log line ({e}): {l}"),
                Err(_) => continue,
            };
            if tx.send(v).is_err() {
                return;
            }
        }
    });
    lines
}
