//! Serving one listener so that no client can exhaust the agent. The metrics listener is
//! reachable from every pod of the cluster; `axum::serve` builds hyper without a timer, so
//! a connection that sends half a header stays open forever, and nothing caps how many
//! there are (each costs memory and a descriptor, and at the fd limit scans fail). Here:
//! a header-read timeout, which also closes a keep-alive connection idle that long, at
//! most [`MAX_CONNECTIONS`] open and [`MAX_PER_CLIENT`] from one address, at most
//! [`MAX_IN_FLIGHT`] requests being answered (more get 503), and memory handed back after
//! a burst. An address at its cap that connects again displaces its oldest connection not
//! answering a request (half-sent, or idle between requests): kubelet's probes come from
//! the node's address, as does every hostNetwork pod, so refusing the newest would let
//! any of them starve the probes; a prober that sends a whole request is always served.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};

/// Open connections per listener (each holds a descriptor and ~20 KiB); Prometheus and
/// kubelet need a handful.
pub(super) const MAX_CONNECTIONS: usize = 1024;
/// Open connections from one address.
pub(super) const MAX_PER_CLIENT: usize = 32;
/// Requests answered at once per listener; more get 503 (as node-exporter's
/// `--web.max-requests`).
pub(super) const MAX_IN_FLIGHT: usize = 32;
/// A client must send its whole request header within this time; hyper starts it when it
/// waits for a request, so a keep-alive connection idle this long is closed too
/// (tests/agent_load.rs checks both).
pub(super) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Every request is answered or cut within this time (an on-demand scan has its own,
/// shorter limit).
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(150);
/// At shutdown, requests being answered get this long.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// A burst of at least this many connections is handed back to the system when it is over.
const BURST: usize = 64;

/// Serves `app` on `listener` until `stop` changes.
pub(super) async fn serve(listener: TcpListener, app: Router, mut stop: watch::Receiver<bool>) {
    let requests = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let app = app.layer(axum::middleware::from_fn(move |req, next| {
        guard(requests.clone(), req, next)
    }));
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let peak = Arc::new(AtomicUsize::new(0));
    let clients: Clients = Arc::default();
    let ids = AtomicU64::new(0);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => break,
        };
        while conns.try_join_next().is_some() {}
        let (stream, client) = match accepted {
            Ok((stream, peer)) => (stream, peer.ip().to_canonical()),
            // Out of descriptors (EMFILE) or a connection reset before accept: back off a
            // little rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let state = Arc::new(Conn {
            id: ids.fetch_add(1, Ordering::Relaxed),
            busy: AtomicBool::new(false),
            close: Notify::new(),
        });
        let Some(client) = Client::admit(&clients, client, state.clone()) else {
            drop(stream);
            continue;
        };
        let in_use = MAX_CONNECTIONS - open.available_permits();
        peak.fetch_max(in_use, Ordering::Relaxed);
        let inner = TowerToHyperService::new(app.clone());
        let busy = state.clone();
        // Marks the connection busy while it answers a request: only idle ones are displaced.
        let svc = hyper::service::service_fn(move |req| {
            let (busy, inner) = (busy.clone(), inner.clone());
            async move {
                busy.busy.store(true, Ordering::Relaxed);
                let r = hyper::service::Service::call(&inner, req).await;
                busy.busy.store(false, Ordering::Relaxed);
                r
            }
        });
        let mut stop = stop.clone();
        let (open, peak) = (open.clone(), peak.clone());
        conns.spawn(async move {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true)
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                // Displaced by a newer connection of its address.
                _ = state.close.notified() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
                }
            }
            drop((permit, client));
            if open.available_permits() == MAX_CONNECTIONS
                && peak.swap(0, Ordering::Relaxed) >= BURST
            {
                super::return_memory();
            }
        });
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
}

/// Each address's open connections, oldest first.
type Clients = Arc<Mutex<HashMap<IpAddr, Vec<Arc<Conn>>>>>;

/// An open connection: whether it is answering a request, and how to close it.
struct Conn {
    id: u64,
    busy: AtomicBool,
    close: Notify,
}

/// One open connection of a client address, counted while it lives.
struct Client {
    clients: Clients,
    addr: IpAddr,
    id: u64,
}

impl Client {
    /// Counts `conn` for `addr`. At [`MAX_PER_CLIENT`], the address's oldest connection
    /// that is not answering a request is closed to make room; `None` when every one is.
    fn admit(clients: &Clients, addr: IpAddr, conn: Arc<Conn>) -> Option<Client> {
        let mut all = clients.lock().unwrap_or_else(|e| e.into_inner());
        let open = all.entry(addr).or_default();
        if open.len() >= MAX_PER_CLIENT {
            let idle = open.iter().position(|c| !c.busy.load(Ordering::Relaxed))?;
            open.remove(idle).close.notify_one();
        }
        let id = conn.id;
        open.push(conn);
        Some(Client {
            clients: clients.clone(),
            addr,
            id,
        })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let mut all = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = all.get_mut(&self.addr) {
            open.retain(|c| c.id != self.id);
            if open.is_empty() {
                all.remove(&self.addr);
            }
        }
    }
}

/// Per request: GET and HEAD only, no body, at most [`MAX_IN_FLIGHT`] at once, each
/// answered within [`REQUEST_TIMEOUT`].
async fn guard(
    requests: Arc<Semaphore>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::Method;
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
            "GET or HEAD only\n",
        )
            .into_response();
    }
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if has_body {
        return (StatusCode::PAYLOAD_TOO_LARGE, "requests take no body\n").into_response();
    }
    let Ok(_slot) = requests.try_acquire() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "too many requests at once\n",
        )
            .into_response();
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "request timed out\n").into_response(),
    }
}
