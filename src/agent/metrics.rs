//! The agent's Prometheus metrics. Cardinality is bounded: labels are finding kinds and
//! severities, scan stages and Kubernetes namespaces; per-pod labels only when asked.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use meshleak_core::schema::Report;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Stage {
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct KindSeverity {
    pub kind: String,
    pub severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Kind {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Namespace {
    pub namespace: String,
}

impl Namespace {
    /// The label of a pod's Kubernetes namespace; [`NO_POD`] for no known pod.
    pub(super) fn of(pod: Option<&meshleak_core::attribution::PodFacts>) -> Namespace {
        Namespace {
            namespace: pod.map_or(NO_POD.to_string(), |p| p.namespace.clone()),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Cause {
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SourceMode {
    pub source: String,
    pub mode: String,
}

/// Where held sockets' owners were read from (`f-cred`, `inode`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OwnersFrom {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PodLabels {
    pub namespace: String,
    pub pod: String,
}

/// The `namespace` of processes in no known pod. Not empty: Prometheus drops an empty
/// label, and with `honor_labels` the agent's own pod namespace would take its place. No
/// Kubernetes namespace can be named so.
pub(super) const NO_POD: &str = "(none)";

/// The stages `scan_errors` counts.
const STAGES: [&str; 2] = ["scan", "netns"];
/// The kinds `unreadable` counts.
const UNREADABLE_KINDS: [&str; 3] = ["netns", "process", "gap"];

pub(super) struct Metrics {
    pub registry: Registry,
    pub scans: Counter,
    pub errors: Family<Stage, Counter>,
    pub duration: Histogram,
    namespaces: Gauge,
    processes: Gauge,
    findings: Family<KindSeverity, Gauge>,
    unreadable: Family<Kind, Gauge>,
    bypassing: Family<Namespace, Gauge>,
    pod_bypassing: Option<Family<PodLabels, Gauge>>,
    /// Connections between scans (the conntrack event follower): untranslated outbound
    /// ones of sockets not the proxy's.
    pub observed: Family<Namespace, Counter>,
    /// Untranslated outbound connections whose socket was closed before it could be looked
    /// up, or of the proxy's uid and held by no process the scan saw: whose is unknown.
    pub unattributed: Family<Namespace, Counter>,
    /// Times the kernel dropped a namespace's events (its socket's buffer overran).
    pub events_lost: Family<Namespace, Counter>,
    pub followed: Gauge,
    /// Namespaces read again because of an event, by cause.
    pub rescans: Family<Cause, Counter>,
    /// Processes seen to begin bypassing (new, or their verdict changed), by namespace.
    pub bypassing_seen: Family<Namespace, Counter>,
    /// Rule changes seen in pods, by namespace.
    pub rule_changes: Family<Namespace, Counter>,
    /// Times a source's kernel buffer overran (each answered by a whole scan).
    pub overruns: Counter,
    /// Process events (fork, exec, id changes) in pod namespaces.
    pub process_events: Counter,
    /// 1 for each source's current mode.
    sources: Family<SourceMode, Gauge>,
    /// 1 for where the last scan read socket owners from.
    owners: Family<OwnersFrom, Gauge>,
}

impl Metrics {
    /// `node`: the node's name, a label of `meshleak_build_info`.
    pub(super) fn new(pod_labels: bool, node: &str) -> Metrics {
        let mut registry = Registry::with_prefix("meshleak");
        let scans = Counter::default();
        let errors = Family::<Stage, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.01, 2.0, 12));
        let namespaces = Gauge::default();
        let processes = Gauge::default();
        let findings = Family::<KindSeverity, Gauge>::default();
        let bypassing = Family::<Namespace, Gauge>::default();
        let unreadable = Family::<Kind, Gauge>::default();
        let observed = Family::<Namespace, Counter>::default();
        let unattributed = Family::<Namespace, Counter>::default();
        let events_lost = Family::<Namespace, Counter>::default();
        let followed = Gauge::default();
        let rescans = Family::<Cause, Counter>::default();
        let bypassing_seen = Family::<Namespace, Counter>::default();
        let rule_changes = Family::<Namespace, Counter>::default();
        let overruns = Counter::default();
        let process_events = Counter::default();
        let sources = Family::<SourceMode, Gauge>::default();
        let owners = Family::<OwnersFrom, Gauge>::default();
        for cause in ["namespace", "rules", "processes", "followed"] {
            let _ = rescans.get_or_create(&Cause {
                cause: cause.into(),
            });
        }
        // Every series exists from the start, at 0: an alert on them needs no absent().
        for stage in STAGES {
            let _ = errors.get_or_create(&Stage {
                stage: stage.into(),
            });
        }
        for kind in UNREADABLE_KINDS {
            let _ = unreadable.get_or_create(&Kind { kind: kind.into() });
        }
        registry.register("scans", "Scans completed", scans.clone());
        registry.register(
            "unreadable",
            "What the last scan could not read, by kind (netns: namespaces; process: processes that may be in a reported or unseen namespace; gap: socket, route or interface tables of a read namespace). Above 0, the report may miss bypasses",
            unreadable.clone(),
        );
        registry.register(
            "scan_errors",
            "Scan errors by stage (scan: the whole scan failed; netns: a namespace could not be read)",
            errors.clone(),
        );
        registry.register(
            "scan_duration_seconds",
            "Wall time of each scan",
            duration.clone(),
        );
        registry.register(
            "namespaces",
            "Network namespaces in the last scan",
            namespaces.clone(),
        );
        registry.register("processes", "Processes in the last scan", processes.clone());
        registry.register(
            "findings",
            "Findings in the last scan by kind and severity",
            findings.clone(),
        );
        registry.register(
            "bypassing_processes",
            "Processes whose traffic bypasses the mesh, by Kubernetes namespace ((none): not in a known pod)",
            bypassing.clone(),
        );
        registry.register(
            "observed_bypass_connections",
            "Connections seen between scans (conntrack events) that left a meshed pod untranslated from a socket not the proxy's, by Kubernetes namespace",
            observed.clone(),
        );
        registry.register(
            "unattributed_connections",
            "Connections seen between scans that left a meshed pod untranslated from a socket closed before it could be looked up (or of the proxy's uid, held by no process the scan saw): bypasses or the proxy's, unknown",
            unattributed.clone(),
        );
        registry.register(
            "conntrack_events_lost",
            "Times the kernel dropped a followed namespace's conntrack events (buffer overrun): connections may have gone unseen",
            events_lost.clone(),
        );
        registry.register(
            "followed_namespaces",
            "Meshed network namespaces whose connections are followed between scans",
            followed.clone(),
        );
        registry.register(
            "rescans",
            "Namespaces read again between scans because an event concerned them, by cause (namespace: its mount came or went; rules; processes; followed: a source began following it, and what changed before is read)",
            rescans.clone(),
        );
        registry.register(
            "bypassing_processes_seen",
            "Processes seen to begin bypassing the mesh (new ones, or whose verdict changed), by Kubernetes namespace; counts also those gone before the next scan",
            bypassing_seen.clone(),
        );
        registry.register(
            "rule_changes",
            "Rule changes seen in pod network namespaces (nf_tables commits, iptables-legacy tables polled), by Kubernetes namespace",
            rule_changes.clone(),
        );
        registry.register(
            "source_overruns",
            "Times an event source's kernel buffer overran (the proc connector's, or a namespace's nf_tables notifications) and events were lost; each time the node or the namespace was read again whole",
            overruns.clone(),
        );
        registry.register(
            "process_events",
            "Process events (fork, exec, uid and gid changes) in pod network namespaces, each batch answered by a re-read of the namespace",
            process_events.clone(),
        );
        registry.register(
            "event_source",
            "1 for each event source's mode: events (seen at once), polling, failed (seen at the next scan only)",
            sources.clone(),
        );
        registry.register(
            "socket_owners",
            "1 for where the last scan read held sockets' owners from: f-cred (each socket file's credentials, what owner matches compare, through meshleak's BPF iterator) or inode (stat: BPF could not load, and fchown can hide a socket's creator)",
            owners.clone(),
        );
        let pod_bypassing = pod_labels.then(|| {
            let f = Family::<PodLabels, Gauge>::default();
            registry.register(
                "pod_bypassing_processes",
                "Processes whose traffic bypasses the mesh, by pod",
                f.clone(),
            );
            f
        });
        registry.register(
            "build",
            "meshleak's version",
            Info::new(vec![
                ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                ("node".to_string(), node.to_string()),
            ]),
        );
        Metrics {
            registry,
            scans,
            errors,
            duration,
            namespaces,
            processes,
            findings,
            unreadable,
            bypassing,
            pod_bypassing,
            observed,
            unattributed,
            events_lost,
            followed,
            rescans,
            bypassing_seen,
            rule_changes,
            overruns,
            process_events,
            sources,
            owners,
        }
    }

    /// Each source's mode, from what the sources say now.
    pub(super) fn set_sources(&self, all: &[meshleak_core::schema::SourceStatus]) {
        self.sources.clear();
        for s in all {
            self.sources
                .get_or_create(&SourceMode {
                    source: s.name.into(),
                    mode: s.mode.into(),
                })
                .set(1);
        }
    }

    /// Sets the gauges from a scan's report (series that went to zero are removed).
    pub(super) fn observe(&self, r: &Report) {
        self.namespaces.set(r.netns.len() as i64);
        self.owners.clear();
        self.owners
            .get_or_create(&OwnersFrom {
                source: r.owners.source.name().into(),
            })
            .set(1);
        for (kind, n) in [
            ("netns", r.unread_netns),
            ("process", r.unread_processes),
            ("gap", r.unread_gaps),
        ] {
            self.unreadable
                .get_or_create(&Kind { kind: kind.into() })
                .set(n as i64);
        }
        self.processes
            .set(r.netns.iter().map(|n| n.processes.len() as i64).sum());
        self.findings.clear();
        self.bypassing.clear();
        if let Some(f) = &self.pod_bypassing {
            f.clear();
        }
        for ns in &r.netns {
            for f in &ns.findings {
                self.findings
                    .get_or_create(&KindSeverity {
                        kind: f.kind.to_string(),
                        severity: f.severity.to_string(),
                    })
                    .inc();
            }
            let n = ns.processes.iter().filter(|p| p.verdict.bypasses()).count() as i64;
            let k8s = Namespace::of(ns.pod.as_ref());
            self.bypassing.get_or_create(&k8s).inc_by(n);
            if let (Some(f), Some(pod)) = (&self.pod_bypassing, &ns.pod) {
                f.get_or_create(&PodLabels {
                    namespace: k8s.namespace,
                    pod: pod.name.clone(),
                })
                .inc_by(n);
            }
        }
        self.errors
            .get_or_create(&Stage {
                stage: "netns".into(),
            })
            .inc_by(r.errors.len() as u64);
    }

    pub(super) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
