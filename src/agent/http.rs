//! The agent's two listeners: metrics and health (meant for Prometheus and kubelet), and
//! the report (loopback by default: it names processes and their identities). GET and HEAD
//! only, bodies refused, connections and requests bounded (see [`super::listener`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, State as Shared};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::State;
use super::owner::scan_now;

/// An on-demand scan that takes longer than this is answered with 504 (it still finishes
/// and updates the stored report).
const FRESH_TIMEOUT: Duration = Duration::from_secs(120);

pub(super) async fn start(
    state: Arc<State>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let metrics = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready));
    let report = Router::new().route("/report", get(report));
    let mut handles = Vec::new();
    let same = state.opts.listen == state.opts.report_listen;
    let plan: Vec<(std::net::SocketAddr, Router<Arc<State>>)> = if same {
        vec![(state.opts.listen, metrics.merge(report))]
    } else {
        vec![
            (state.opts.listen, metrics),
            (state.opts.report_listen, report),
        ]
    };
    for (addr, router) in plan {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        let app = router
            .layer(DefaultBodyLimit::max(0))
            .with_state(state.clone());
        handles.push(tokio::spawn(super::listener::serve(
            listener,
            app,
            stop.clone(),
        )));
    }
    Ok(handles)
}

async fn metrics(Shared(state): Shared<Arc<State>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        {
            state.metrics.set_sources(&state.sources.all());
            state.metrics.encode()
        },
    )
        .into_response()
}

/// Ready once a scan has finished that read everything its verdicts need: an agent that
/// cannot read (missing capabilities, a wrong --proc-root) must not look healthy.
async fn ready(Shared(state): Shared<Arc<State>>) -> Response {
    if state.last.lock().unwrap().is_none() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no scan has finished yet\n",
        )
            .into_response();
    }
    let incomplete = state.incomplete.lock().unwrap().clone();
    if incomplete.is_empty() {
        // Ready: a source that cannot see changes as they happen is said, not failed on
        // (its changes are still seen at the next scan).
        let mut body = String::from("ready\n");
        for d in state.sources.degraded() {
            body += &format!("degraded: {}\n", meshleak_core::sanitize::sanitize(&d));
        }
        return (StatusCode::OK, body).into_response();
    }
    let mut body = String::from("the last scan could not read what its verdicts need:\n");
    for i in incomplete {
        body += &format!("- {}\n", meshleak_core::sanitize::sanitize(&i));
    }
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

#[derive(Deserialize)]
struct ReportQuery {
    fresh: Option<String>,
    /// `json` (the default) or `policyreport`.
    format: Option<String>,
}

async fn report(Shared(state): Shared<Arc<State>>, Query(q): Query<ReportQuery>) -> Response {
    let policy = match q.format.as_deref() {
        None | Some("json") => false,
        Some("policyreport") => true,
        Some(other) => {
            return (
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown format `{}`: json or policyreport\n",
                    meshleak_core::sanitize::sanitize(other)
                ),
            )
                .into_response();
        }
    };
    let json = |text: Arc<super::Rendered>| {
        let body = if policy {
            text.policy_report.clone()
        } else {
            served(&state, &text.report)
        };
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    };
    if q.fresh.as_deref() == Some("1") {
        let wait = {
            let mut last = state.last_fresh.lock().unwrap();
            let now = Instant::now();
            match *last {
                Some(t) if now.duration_since(t) < state.opts.fresh_every => {
                    Some(state.opts.fresh_every - now.duration_since(t))
                }
                _ => {
                    *last = Some(now);
                    None
                }
            }
        };
        if let Some(wait) = wait {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, wait.as_secs().max(1).to_string())],
                "an on-demand scan ran recently; retry later or omit fresh=1\n",
            )
                .into_response();
        }
        let scan = tokio::spawn({
            let state = state.clone();
            async move { scan_now(&state).await }
        });
        return match tokio::time::timeout(FRESH_TIMEOUT, scan).await {
            Ok(Ok(Ok(text))) => json(text),
            Ok(Err(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "the scan task failed\n").into_response()
            }
            Ok(Ok(Err(e))) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("scan failed: {e}\n"),
            )
                .into_response(),
            Err(_) => {
                (StatusCode::GATEWAY_TIMEOUT, "the scan is taking too long\n").into_response()
            }
        };
    }
    let last = state.last.lock().unwrap().clone();
    match last {
        Some(text) => json(text),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no scan has finished yet\n",
        )
            .into_response(),
    }
}

/// The report as `/report` serves it: `scan -o json`'s, with the agent's status (sources,
/// dropped events, the recent events).
fn served(state: &State, report: &meshleak_core::schema::Report) -> String {
    #[derive(serde::Serialize)]
    struct Served<'a> {
        #[serde(flatten)]
        report: &'a meshleak_core::schema::Report,
        agent: meshleak_core::schema::AgentStatus,
    }
    meshleak_core::json::to_string_pretty(&Served {
        report,
        agent: meshleak_core::schema::AgentStatus {
            sources: state.sources.all(),
            overruns: state.bus.lost(),
            events: state.recent.all(),
        },
    })
    .unwrap_or_default()
}
