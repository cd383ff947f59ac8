//! The agent's listeners under abuse, on loopback only: connections that send half a header
//! (from 127.0.0.2, one client), while kubelet's probe (from 127.0.0.1) must still be
//! answered; the header-read timeout closes them; memory comes back; the soft descriptor
//! limit is raised; SIGHUP does not kill it; GET and HEAD only, no bodies. Bounded: a few
//! hundred connections, about 15 s.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::http::{Agent, request};
use common::is_root;

/// The agent's (meshleak::agent::listener) limits, as documented in docs/agent.md.
const MAX_PER_CLIENT: usize = 32;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// A connection from 127.0.0.2 that sends the start of a request and never finishes it.
fn half_header(port: u16) -> Option<TcpStream> {
    let mut s = from_second_address(port)?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x").ok()?;
    Some(s)
}

/// A whole `GET /healthz` from 127.0.0.2 (the flood's address, as kubelet's probes share
/// the node's address with every hostNetwork pod): its status line, within `limit`.
fn probe_from_second_address(port: u16, limit: Duration) -> Option<String> {
    let mut s = from_second_address(port)?;
    s.set_read_timeout(Some(limit)).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.lines().next().map(str::to_string)
}

/// A connection from 127.0.0.2.
fn from_second_address(port: u16) -> Option<TcpStream> {
    use std::os::fd::FromRawFd;
    let addr = |ip: [u8; 4], port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns (closed on failure
    // by the TcpStream that takes it).
    let s = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let s = TcpStream::from_raw_fd(fd);
        let src = addr([127, 0, 0, 2], 0);
        let dst = addr([127, 0, 0, 1], port);
        if libc::bind(fd, (&src as *const libc::sockaddr_in).cast(), len) != 0
            || libc::connect(fd, (&dst as *const libc::sockaddr_in).cast(), len) != 0
        {
            return None;
        }
        s
    };
    Some(s)
}

/// Whether the server has closed the connection (read gives EOF or an error soon).
fn closed(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => true, // an error response, then close
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn slow_clients_cannot_starve_the_probes_and_are_cut() {
    if !is_root() {
        return;
    }
    let mut agent = Agent::start(&["--interval", "60s"]);
    let (pid, metrics) = (agent.pid(), agent.metrics);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent.listening() {
        assert!(Instant::now() < deadline, "the agent never listened");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The soft descriptor limit is the hard one.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let f: Vec<&str> = files.split_whitespace().collect();
    assert_eq!(f[3], f[4], "{files}");

    let before = rss_kib(pid);
    let mut slow: Vec<TcpStream> = (0..300).filter_map(|_| half_header(metrics)).collect();
    assert_eq!(slow.len(), 300, "connections made");
    std::thread::sleep(Duration::from_millis(500));
    // Beyond the per-client cap they are closed at once.
    let open_now = slow.iter_mut().map(closed).filter(|c| !c).count();
    assert!(
        open_now <= MAX_PER_CLIENT,
        "{open_now} of one client's connections held open"
    );
    // The probe (another address) is answered while they hang.
    let t = Instant::now();
    let (status, body) = request(metrics, "GET", "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // So is a prober at the flood's own address, every time, while the flood goes on: a
    // new connection displaces the address's oldest unfinished one.
    for i in 0..40 {
        slow.extend(half_header(metrics));
        let t = Instant::now();
        let line = probe_from_second_address(metrics, Duration::from_secs(1));
        assert_eq!(
            line.as_deref(),
            Some("HTTP/1.1 200 OK"),
            "probe {i} from the flooding address, after {:?}",
            t.elapsed()
        );
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "probe {i}: {:?}",
            t.elapsed()
        );
        slow.extend((0..8).filter_map(|_| half_header(metrics)));
    }
    // The header-read timeout closes the rest.
    std::thread::sleep(HEADER_TIMEOUT + Duration::from_secs(1));
    let still = slow.iter_mut().map(closed).filter(|c| !c).count();
    assert_eq!(still, 0, "half headers outlive the header timeout");
    drop(slow);
    std::thread::sleep(Duration::from_millis(300));
    let after = rss_kib(pid);
    assert!(
        after < before + 8 * 1024,
        "RSS {before} KiB before, {after} KiB after the burst"
    );

    // A keep-alive connection left idle is closed by the same timeout.
    let mut idle = TcpStream::connect(("127.0.0.1", metrics)).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 64];
    let n = idle.read(&mut first).unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    idle.set_read_timeout(Some(HEADER_TIMEOUT + Duration::from_secs(3)))
        .unwrap();
    let t = Instant::now();
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest);
    assert!(
        t.elapsed() < HEADER_TIMEOUT + Duration::from_secs(2),
        "an idle connection stayed open {:?}",
        t.elapsed()
    );

    // GET and HEAD only, no bodies.
    assert_eq!(request(metrics, "HEAD", "/healthz").0, 200);
    assert_eq!(request(metrics, "POST", "/healthz").0, 405);
    let mut s = TcpStream::connect(("127.0.0.1", metrics)).unwrap();
    s.write_all(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");

    // SIGHUP is logged and ignored.
    // SAFETY: kill sends a signal to the agent this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);
    std::thread::sleep(Duration::from_millis(300));
    assert!(agent.running(), "SIGHUP killed the agent");
    assert_eq!(request(metrics, "GET", "/healthz").0, 200);
}
