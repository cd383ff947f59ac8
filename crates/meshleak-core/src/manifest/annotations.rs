//! Pod annotations (and labels) by which the meshes exclude traffic from their capture or
//! turn the sidecar off: Istio's `traffic.sidecar.istio.io/*` and `sidecar.istio.io/inject`,
//! Linkerd's `config.linkerd.io/skip-*` and `linkerd.io/inject`, Kuma's
//! `traffic.kuma.io/exclude-*` and `kuma.io/sidecar-injection`, Consul's
//! `consul.hashicorp.com/transparent-proxy-exclude-*`, `connect-inject` and
//! `transparent-proxy`. Outbound exclusions let traffic out; inbound ones let it in
//! without the proxy's policy.

use super::doc::Node;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exclusion {
    /// The sidecar is turned off.
    InjectionOff {
        key: String,
        value: String,
        line: usize,
    },
    /// Some traffic is excluded: `what` says which.
    Traffic {
        key: String,
        value: String,
        line: usize,
        what: String,
    },
}

/// (key, what its value excludes) of every exclusion annotation.
const TRAFFIC: &[(&str, &str)] = &[
    (
        "traffic.sidecar.istio.io/excludeOutboundPorts",
        "connections to ports",
    ),
    (
        "traffic.sidecar.istio.io/excludeOutboundIPRanges",
        "connections to addresses in",
    ),
    (
        "traffic.sidecar.istio.io/excludeInterfaces",
        "packets out of interfaces",
    ),
    (
        "traffic.sidecar.istio.io/excludeInboundPorts",
        "connections in to ports",
    ),
    (
        "config.linkerd.io/skip-outbound-ports",
        "connections to ports",
    ),
    (
        "config.linkerd.io/skip-subnets",
        "connections to addresses in",
    ),
    (
        "config.linkerd.io/skip-inbound-ports",
        "connections in to ports",
    ),
    (
        "traffic.kuma.io/exclude-outbound-ports",
        "connections to ports",
    ),
    (
        "traffic.kuma.io/exclude-outbound-ips",
        "connections to addresses in",
    ),
    (
        "traffic.kuma.io/exclude-outbound-ports-for-uids",
        "connections of uids (and ports)",
    ),
    (
        "traffic.kuma.io/exclude-inbound-ports",
        "connections in to ports",
    ),
    (
        "traffic.kuma.io/exclude-inbound-ips",
        "connections in from addresses in",
    ),
    (
        "consul.hashicorp.com/transparent-proxy-exclude-outbound-ports",
        "connections to ports",
    ),
    (
        "consul.hashicorp.com/transparent-proxy-exclude-outbound-cidrs",
        "connections to addresses in",
    ),
    (
        "consul.hashicorp.com/transparent-proxy-exclude-uids",
        "all connections of uids",
    ),
    (
        "consul.hashicorp.com/transparent-proxy-exclude-inbound-ports",
        "connections in to ports",
    ),
];

/// (key, the values that turn the sidecar or its redirection off).
const OFF: &[(&str, &[&str])] = &[
    ("sidecar.istio.io/inject", &["false"]),
    ("linkerd.io/inject", &["disabled"]),
    ("kuma.io/sidecar-injection", &["disabled", "false", "no"]),
    (
        "consul.hashicorp.com/connect-inject",
        &["false", "0", "f", "F", "FALSE", "False"],
    ),
    (
        "consul.hashicorp.com/transparent-proxy",
        &["false", "0", "f", "F", "FALSE", "False"],
    ),
    // The injection template installs no capture rules at all (no istio-init) with NONE.
    ("sidecar.istio.io/interceptionMode", &["NONE"]),
];

/// The exclusions a pod template's metadata (annotations, labels) holds.
pub fn read(metadata: Option<&Node>) -> Vec<Exclusion> {
    let mut out = Vec::new();
    for section in ["labels", "annotations"] {
        let Some(map) = metadata.and_then(|m| m.get(section)) else {
            continue;
        };
        for (key, node) in map.entries() {
            let Some(value) = node.text() else { continue };
            if let Some((_, off)) = OFF.iter().find(|(k, _)| k == key) {
                if off.contains(&value.as_str()) {
                    out.push(Exclusion::InjectionOff {
                        key: key.clone(),
                        value,
                        line: node.line,
                    });
                }
                continue;
            }
            if section != "annotations" || value.trim().is_empty() {
                continue;
            }
            if let Some((_, what)) = TRAFFIC.iter().find(|(k, _)| k == key) {
                out.push(Exclusion::Traffic {
                    key: key.clone(),
                    what: format!("{what} {value}"),
                    value,
                    line: node.line,
                });
            }
        }
        // Istio's include list: anything but `*` leaves the rest out.
        if section == "annotations"
            && let Some(n) = map.get("traffic.sidecar.istio.io/includeOutboundIPRanges")
            && let Some(v) = n.text()
            && v.trim() != "*"
        {
            out.push(Exclusion::Traffic {
                key: "traffic.sidecar.istio.io/includeOutboundIPRanges".into(),
                what: if v.trim().is_empty() {
                    "all connections (an empty include list captures nothing)".into()
                } else {
                    format!("connections to addresses outside {v}")
                },
                value: v,
                line: n.line,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::doc::documents;

    #[test]
    fn exclusions_of_every_mesh() {
        let (docs, _) = documents(
            "\
metadata:
  labels:
    sidecar.istio.io/inject: \"false\"
  annotations:
    traffic.sidecar.istio.io/excludeOutboundPorts: \"5432\"
    traffic.sidecar.istio.io/includeOutboundIPRanges: 10.0.0.0/8
    config.linkerd.io/skip-outbound-ports: 3306
    consul.hashicorp.com/connect-inject: \"true\"
    unrelated: x
",
        );
        let found = read(docs[0].root.get("metadata"));
        let keys: Vec<(&str, usize)> = found
            .iter()
            .map(|e| match e {
                Exclusion::InjectionOff { key, line, .. }
                | Exclusion::Traffic { key, line, .. } => (key.as_str(), *line),
            })
            .collect();
        assert_eq!(
            keys,
            vec![
                ("sidecar.istio.io/inject", 3),
                ("traffic.sidecar.istio.io/excludeOutboundPorts", 5),
                ("config.linkerd.io/skip-outbound-ports", 7),
                ("traffic.sidecar.istio.io/includeOutboundIPRanges", 6),
            ]
        );
    }
}
