//! What meshleak knows of each service mesh, one profile per mesh: how its tools name the
//! chains and tables they write (detection and layout), the comment they mark rules with,
//! its proxy's admin port and container names, and the pod annotations that exclude
//! traffic from capture. Adding a mesh is adding a [`MeshKind`] and its [`Profile`].
//!
//! A profile never says what a mesh captures or whom it exempts: proxy ports and proxy
//! identities are read from the live rules ([`detect`]), since a user may configure both.

use crate::named::named_enum;
use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

use crate::model::{Action, MarkReg, Ruleset, Test};
use crate::range::IdRange;

named_enum! {
    /// Which mesh's tools wrote a namespace's capture rules. The serde names are the report's
    /// `mesh.kind` (docs/report-schema.md).
    pub enum MeshKind {
        IstioSidecar = "istio-sidecar",
        /// Istio's sidecar capture written by its nftables backend.
        IstioSidecarNft = "istio-sidecar-nft",
        /// Istio ambient's in-pod rules: ztunnel outside the pod, told apart by a packet mark.
        IstioAmbient = "istio-ambient",
        Linkerd = "linkerd",
        Kuma = "kuma",
        Consul = "consul",
        /// OSM, also its older `PROXY_*` chains and its fork FSM.
        Osm = "osm",
        Appmesh = "appmesh",
        /// Something redirects to a local port, in chains no known mesh names.
        UnknownRedirect = "unknown-redirect",
    }
}

/// One mesh's layout and conventions.
#[derive(Debug)]
pub struct Profile {
    pub kind: MeshKind,
    /// Chain or table name prefixes that only this mesh's tools write.
    detect: &'static [&'static str],
    /// Prefixes that mean this mesh when its proxy is exempted by a packet mark and no
    /// owner match exempts anyone (ambient's rules share Istio's `ISTIO_` names).
    detect_by_mark: &'static [&'static str],
    /// Prefixes of all its own chains and tables: a rule elsewhere is foreign.
    pub layout: &'static [&'static str],
    /// The start of the comment its tools put on rules they write into hook chains.
    pub comment: Option<&'static str>,
    /// Whether its proxy lives outside the pod and is told apart by a packet mark, not by
    /// owner (ztunnel's sockets in the pod carry the mark).
    pub proxy_by_mark: bool,
    /// Addresses its own layout exempts as part of the design, like loopback (ambient's
    /// 169.254.7.127, where istio-cni SNATs the kubelet's health probes).
    pub own_addresses: &'static [IpAddr],
    /// uids its injector exempts by default besides the running proxy's (consul-k8s
    /// always excludes its connect-init container's 5996): an exemption of one of these in
    /// its own chains is its own, not a foreign rule.
    pub own_uids: &'static [u32],
    /// Envoy's admin port in the pod, where `POST /quitquitquit` stops the proxy.
    pub admin_port: Option<u16>,
    /// Container names its injector gives the proxy.
    proxy_containers: &'static [&'static str],
    /// Parts of the image references its injector gives the proxy (`istio/proxyv2`).
    proxy_images: &'static [&'static str],
    /// The pod annotations excluding outbound destination ports, networks and interfaces.
    exclude_ports: Option<&'static str>,
    exclude_cidrs: Option<&'static str>,
    exclude_interfaces: Option<&'static str>,
}

const NONE: Profile = Profile {
    kind: MeshKind::UnknownRedirect,
    detect: &[],
    detect_by_mark: &[],
    layout: &[],
    comment: None,
    proxy_by_mark: false,
    own_addresses: &[],
    own_uids: &[],
    admin_port: None,
    proxy_containers: &[],
    proxy_images: &[],
    exclude_ports: None,
    exclude_cidrs: None,
    exclude_interfaces: None,
};

const ISTIO_SIDECAR: Profile = Profile {
    kind: MeshKind::IstioSidecar,
    detect: &["ISTIO_"],
    layout: &["ISTIO_", "istio-"],
    comment: Some("istio"),
    admin_port: Some(15000),
    proxy_containers: &["istio-proxy"],
    proxy_images: &["/proxyv2:", "/proxyv2@", "istio/proxyv2"],
    exclude_ports: Some("traffic.sidecar.istio.io/excludeOutboundPorts"),
    exclude_cidrs: Some("traffic.sidecar.istio.io/excludeOutboundIPRanges"),
    exclude_interfaces: Some("traffic.sidecar.istio.io/excludeInterfaces"),
    ..NONE
};

/// In detection order: the first whose names a rule set holds is its mesh. Istio's
/// nftables and ambient layouts come before the sidecar's, whose `ISTIO_` names ambient
/// shares.
pub(crate) const PROFILES: &[Profile] = &[
    Profile {
        kind: MeshKind::IstioSidecarNft,
        detect: &["istio-proxy-"],
        layout: &["istio-"],
        ..ISTIO_SIDECAR
    },
    Profile {
        kind: MeshKind::IstioAmbient,
        detect: &["istio-ambient-", "ISTIO_PRERT"],
        detect_by_mark: &["ISTIO_"],
        layout: &["ISTIO_", "istio-"],
        comment: Some("istio"),
        proxy_by_mark: true,
        own_addresses: &[IpAddr::V4(Ipv4Addr::new(169, 254, 7, 127))],
        proxy_containers: &["istio-proxy"],
        proxy_images: &["/proxyv2:", "/proxyv2@", "istio/proxyv2"],
        ..NONE
    },
    ISTIO_SIDECAR,
    Profile {
        kind: MeshKind::Linkerd,
        detect: &["PROXY_INIT_"],
        layout: &["PROXY_INIT_"],
        comment: Some("proxy-init"),
        proxy_containers: &["linkerd-proxy"],
        proxy_images: &["linkerd/proxy"],
        exclude_ports: Some("config.linkerd.io/skip-outbound-ports"),
        ..NONE
    },
    Profile {
        kind: MeshKind::Kuma,
        detect: &["KUMA_"],
        layout: &["KUMA_"],
        comment: Some("kuma/"),
        admin_port: Some(9901),
        proxy_containers: &["kuma-sidecar"],
        proxy_images: &["kuma-dp"],
        exclude_ports: Some("traffic.kuma.io/exclude-outbound-ports"),
        exclude_cidrs: Some("traffic.kuma.io/exclude-outbound-ips"),
        ..NONE
    },
    Profile {
        kind: MeshKind::Consul,
        detect: &["CONSUL_", "consul_tproxy"],
        layout: &["CONSUL_", "consul_"],
        comment: Some("consul"),
        own_uids: &[5996],
        admin_port: Some(19000),
        proxy_containers: &["consul-dataplane", "consul-connect-envoy-sidecar"],
        proxy_images: &["consul-dataplane", "envoyproxy/envoy"],
        exclude_ports: Some("consul.hashicorp.com/transparent-proxy-exclude-outbound-ports"),
        exclude_cidrs: Some("consul.hashicorp.com/transparent-proxy-exclude-outbound-cidrs"),
        ..NONE
    },
    Profile {
        kind: MeshKind::Osm,
        // OSM before v1.1 (and its fork FSM) named chains PROXY_*.
        detect: &["OSM_PROXY_", "FSM_PROXY_", "PROXY_REDIRECT", "PROXY_OUTPUT"],
        layout: &["OSM_", "FSM_", "PROXY_"],
        admin_port: Some(15000),
        proxy_containers: &["osm-envoy", "fsm-pipy-sidecar"],
        proxy_images: &["envoyproxy/envoy", "flomesh/pipy"],
        exclude_ports: Some("openservicemesh.io/outbound-port-exclusion-list"),
        exclude_cidrs: Some("openservicemesh.io/outbound-ip-range-exclusion-list"),
        ..NONE
    },
    Profile {
        kind: MeshKind::Appmesh,
        detect: &["APPMESH_"],
        layout: &["APPMESH_"],
        admin_port: Some(9901),
        proxy_containers: &["envoy", "envoy-sidecar"],
        proxy_images: &["aws-appmesh-envoy"],
        ..NONE
    },
];

impl MeshKind {
    /// Its profile; an unknown redirect's knows nothing.
    pub fn profile(self) -> &'static Profile {
        PROFILES.iter().find(|p| p.kind == self).unwrap_or(&NONE)
    }
}

/// The kinds of exclusion a mesh's users set by pod annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Excluded {
    Ports,
    Cidrs,
    Interfaces,
}

impl Profile {
    /// The pod annotation that sets an exclusion of this kind, if the mesh has one.
    pub fn annotation(&self, what: Excluded) -> Option<&'static str> {
        match what {
            Excluded::Ports => self.exclude_ports,
            Excluded::Cidrs => self.exclude_cidrs,
            Excluded::Interfaces => self.exclude_interfaces,
        }
    }

    /// Whether a container of a manifest is this mesh's injected proxy: named as its
    /// injector names it and running its proxy's image. A container that only takes the
    /// name is an app (Istio merges a user's `istio-proxy` over the injected one).
    pub fn is_injected_proxy(&self, name: &str, image: Option<&str>) -> bool {
        self.proxy_containers.contains(&name)
            && image.is_some_and(|i| self.proxy_images.iter().any(|p| i.contains(p)))
    }

    /// Whether a chain or table of this name is the mesh's own.
    pub fn owns(&self, name: &str) -> bool {
        self.layout.iter().any(|p| name.starts_with(p))
    }
}

/// Whether a container of this name is some mesh's proxy, by the names injectors give.
pub(crate) fn is_proxy_container(name: &str) -> bool {
    PROFILES.iter().any(|p| p.proxy_containers.contains(&name))
}

/// The mesh that captures a namespace, as the report gives it.
#[derive(Clone, Debug, Serialize)]
pub struct Mesh {
    pub kind: MeshKind,
    /// Local ports traffic is redirected (or TPROXYed) to.
    pub proxy_ports: Vec<u16>,
    /// The uids and gids whose traffic the capture rules exempt: the proxy's, by design.
    pub proxy_uids: Vec<IdRange>,
    pub proxy_gids: Vec<IdRange>,
}

impl Mesh {
    pub fn profile(&self) -> &'static Profile {
        self.kind.profile()
    }

    /// Whether its proxy is told apart by a packet mark, not by owner, and lives outside
    /// the pod (see [`Profile::proxy_by_mark`]).
    pub(crate) fn proxy_by_mark(&self) -> bool {
        self.profile().proxy_by_mark
    }
}

/// The mesh whose capture rules these are, from the names its tools give chains and tables;
/// its proxy ports and proxy identities come from the live rules, never assumed. `local`:
/// the namespace's addresses, which tell a DNAT that captures from one that sends elsewhere.
pub fn detect(rules: &Ruleset, local: &[IpAddr]) -> Option<Mesh> {
    let mut ports: Vec<u16> = Vec::new();
    let mut uids: Vec<IdRange> = Vec::new();
    let mut gids: Vec<IdRange> = Vec::new();
    for t in &rules.tables {
        let captures = t.captures();
        for r in t.chains.iter().flat_map(|c| &c.rules) {
            for a in &r.actions {
                if let Some(p) = a.capture_port(local).filter(|p| !ports.contains(p)) {
                    ports.push(p);
                }
            }
            // The proxy's identity: owner matches that let its traffic out uncaptured.
            let exempts = r
                .actions
                .iter()
                .any(|a| matches!(a, Action::Return | Action::Accept));
            if captures && exempts {
                for m in r.matches.iter().filter(|m| !m.negated) {
                    let (list, ranges) = match &m.test {
                        Test::Uid { ranges } => (&mut uids, ranges),
                        Test::Gid { ranges, .. } => (&mut gids, ranges),
                        _ => continue,
                    };
                    for r in ranges {
                        if !list.contains(r) {
                            list.push(*r);
                        }
                    }
                }
            }
        }
    }
    if ports.is_empty() {
        return None;
    }
    ports.sort_unstable();
    uids.sort();
    gids.sort();
    let names: Vec<&str> = rules
        .tables
        .iter()
        .flat_map(|t| {
            t.chains
                .iter()
                .map(|c| c.name.as_str())
                .chain([t.name.as_str()])
        })
        .collect();
    let has = |prefixes: &[&str]| {
        prefixes
            .iter()
            .any(|prefix| names.iter().any(|n| n.starts_with(prefix)))
    };
    let by_mark = || uids.is_empty() && gids.is_empty() && mark_captured(rules);
    let kind = PROFILES
        .iter()
        .find(|p| has(p.detect) || (has(p.detect_by_mark) && by_mark()))
        .map_or(MeshKind::UnknownRedirect, |p| p.kind);
    Some(Mesh {
        kind,
        proxy_ports: ports,
        proxy_uids: uids,
        proxy_gids: gids,
    })
}

/// Whether some redirect is conditioned on a packet mark not being set: the proxy is
/// told apart by the mark its sockets carry (SO_MARK), as Istio ambient's ztunnel is.
fn mark_captured(rules: &Ruleset) -> bool {
    rules
        .tables
        .iter()
        .flat_map(|t| &t.chains)
        .flat_map(|c| &c.rules)
        .any(|r| {
            r.actions
                .iter()
                .any(|a| matches!(a, Action::Redirect { .. } | Action::Tproxy { .. }))
                && r.matches.iter().any(|m| {
                    m.negated
                        && matches!(
                            &m.test,
                            Test::Mark {
                                reg: MarkReg::Mark,
                                ..
                            }
                        )
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Hints, combine, parse_dump};

    #[test]
    fn names_are_the_serde_names_and_every_kind_has_one_profile() {
        for &k in MeshKind::ALL {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
            let profiles = PROFILES.iter().filter(|p| p.kind == k).count();
            let want = usize::from(k != MeshKind::UnknownRedirect);
            assert_eq!(
                profiles, want,
                "{k}: every mesh but an unknown redirect has one"
            );
            assert_eq!(k.profile().kind, k);
        }
        assert!(MeshKind::UnknownRedirect.profile().layout.is_empty());
    }

    fn rules(text: &str) -> Ruleset {
        combine(vec![
            parse_dump("fixture", text, Hints::default()).expect("parses"),
        ])
        .unwrap()
    }

    fn ids(list: &[IdRange]) -> Vec<String> {
        list.iter().map(IdRange::to_string).collect()
    }

    #[test]
    fn detects_each_mesh_with_its_proxy_ports_and_identities() {
        // (fixture, kind, proxy ports, proxy uids, proxy gids)
        type Case<'a> = (&'a str, &'a str, &'a [u16], &'a [&'a str], &'a [&'a str]);
        let cases: [Case; 10] = [
            (
                include_str!("../../../testdata/istio-sidecar.rules"),
                "istio-sidecar",
                &[15001, 15006],
                &["1337"],
                &["1337"],
            ),
            (
                include_str!("../../../testdata/meshes/istio-sidecar-nft.json"),
                "istio-sidecar-nft",
                &[15001],
                &["1337"],
                &["1337"],
            ),
            (
                include_str!("../../../testdata/meshes/istio-ambient.rules"),
                "istio-ambient",
                &[15001, 15008, 15053],
                &[],
                &[],
            ),
            (
                include_str!("../../../testdata/meshes/istio-ambient-output.rules"),
                "istio-ambient",
                &[15001, 15053],
                &[],
                &[],
            ),
            (
                include_str!("../../../testdata/meshes/linkerd.rules"),
                "linkerd",
                &[4140, 4143],
                &["2102"],
                &[],
            ),
            (
                include_str!("../../../testdata/meshes/kuma.rules"),
                "kuma",
                &[15001, 15053],
                &["5678"],
                &[],
            ),
            (
                include_str!("../../../testdata/meshes/consul.rules"),
                "consul",
                &[15001],
                &["5995", "5996"],
                &[],
            ),
            (
                include_str!("../../../testdata/meshes/osm.rules"),
                "osm",
                &[15001],
                &["1500"],
                &[],
            ),
            (
                include_str!("../../../testdata/meshes/appmesh.rules"),
                "appmesh",
                &[15001],
                &["1337"],
                &[],
            ),
            (
                include_str!("../../../testdata/meshes/custom.rules"),
                "unknown-redirect",
                &[9000],
                &["1000-1999"],
                &[],
            ),
        ];
        for (text, kind, ports, uids, gids) in cases {
            let m = detect(&rules(text), &[]).unwrap_or_else(|| panic!("{kind}: no mesh detected"));
            assert_eq!((m.kind.name(), m.proxy_ports.as_slice()), (kind, ports));
            assert_eq!(
                (ids(&m.proxy_uids), ids(&m.proxy_gids)),
                (
                    uids.iter().map(|s| s.to_string()).collect(),
                    gids.iter().map(|s| s.to_string()).collect()
                ),
                "{kind}"
            );
        }
        assert!(
            detect(
                &rules("*filter\n-A OUTPUT -p tcp --dport 25 -j DROP\nCOMMIT\n"),
                &[]
            )
            .is_none()
        );
    }

    #[test]
    fn only_a_dnat_to_this_host_is_a_capture_port() {
        let text = "*nat\n-A OUTPUT -p tcp --dport 5432 -j DNAT --to-destination 169.254.9.9:6432\n\
                    -A OUTPUT -p tcp --dport 80 -j DNAT --to-destination 10.1.0.5:15001\nCOMMIT\n";
        let elsewhere = detect(&rules(text), &[]);
        assert!(elsewhere.is_none(), "{elsewhere:?}");
        let pod_ip = ["10.1.0.5".parse().unwrap()];
        let m = detect(&rules(text), &pod_ip).expect("the DNAT to the pod's address");
        assert_eq!(m.proxy_ports, [15001]);
    }
}
