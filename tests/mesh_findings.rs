//! Every mesh, every backend it is written for, in a real pod (root): the rules are loaded
//! with the real tool and read natively, a proxy listens on the mesh's ports, an ordinary
//! app holds a live connection through it. The scan must name the mesh and find nothing;
//! then an app the rules exempt opens a connection (`identity-exempt` or, for mark-based
//! meshes, `mark-exempt-capable`, and `observed-bypass` with its 5-tuple); then the proxy
//! goes away (`proxy-absent`).

mod common;

use std::net::TcpListener;
use std::os::fd::AsRawFd;

use common::pod::{Pod, finding, settle};
use common::{Loader, is_root, run};

/// How an app escapes a mesh's capture.
#[derive(Clone, Copy)]
enum Escape {
    /// The proxy's uid (the app keeps its own gid, so it is not the proxy itself).
    Uid(u32),
    Gid(u32),
    /// The exempt packet mark, set with SO_MARK (needs CAP_NET_ADMIN).
    Mark(u32),
}

struct Mesh {
    kind: &'static str,
    rules: &'static str,
    loaders: &'static [Loader],
    /// The proxy's uid; `None` when the proxy lives outside the pod (ambient's ztunnel
    /// opens its sockets in the pod from the node's namespace).
    proxy: Option<u32>,
    ports: &'static [u16],
    escape: Escape,
}

const BOTH: &[Loader] = &[Loader::IptablesNft, Loader::IptablesLegacy];

fn meshes() -> Vec<Mesh> {
    vec![
        Mesh {
            kind: "istio-sidecar",
            rules: include_str!("../testdata/istio-sidecar.rules"),
            loaders: BOTH,
            proxy: Some(1337),
            ports: &[15001, 15006],
            escape: Escape::Gid(1337),
        },
        Mesh {
            kind: "istio-sidecar-nft",
            rules: include_str!("../testdata/meshes/istio-sidecar-nft.nft"),
            loaders: &[Loader::Nft],
            proxy: Some(1337),
            ports: &[15001],
            escape: Escape::Gid(1337),
        },
        Mesh {
            kind: "istio-ambient",
            rules: include_str!("../testdata/meshes/istio-ambient.rules"),
            loaders: BOTH,
            proxy: None,
            ports: &[15001, 15008, 15053],
            escape: Escape::Mark(0x539),
        },
        Mesh {
            kind: "istio-ambient",
            rules: include_str!("../testdata/meshes/istio-ambient-output.rules"),
            loaders: BOTH,
            proxy: None,
            ports: &[15001, 15053],
            escape: Escape::Mark(0x539),
        },
        Mesh {
            kind: "linkerd",
            rules: include_str!("../testdata/meshes/linkerd.rules"),
            loaders: BOTH,
            proxy: Some(2102),
            ports: &[4140, 4143],
            escape: Escape::Uid(2102),
        },
        Mesh {
            kind: "kuma",
            rules: include_str!("../testdata/meshes/kuma.rules"),
            loaders: BOTH,
            proxy: Some(5678),
            ports: &[15001, 15053],
            escape: Escape::Uid(5678),
        },
        Mesh {
            kind: "consul",
            rules: include_str!("../testdata/meshes/consul.rules"),
            loaders: BOTH,
            proxy: Some(5995),
            ports: &[15001],
            escape: Escape::Uid(5995),
        },
        Mesh {
            kind: "osm",
            rules: include_str!("../testdata/meshes/osm.rules"),
            loaders: BOTH,
            proxy: Some(1500),
            ports: &[15001],
            escape: Escape::Uid(1500),
        },
        Mesh {
            kind: "appmesh",
            rules: include_str!("../testdata/meshes/appmesh.rules"),
            loaders: BOTH,
            proxy: Some(1337),
            ports: &[15001],
            escape: Escape::Uid(1337),
        },
        Mesh {
            kind: "unknown-redirect",
            rules: include_str!("../testdata/meshes/custom.rules"),
            loaders: BOTH,
            proxy: Some(1000),
            ports: &[9000],
            escape: Escape::Uid(1500),
        },
    ]
}

const CONNECT: &[&str] = &["socat", "-u", "TCP:169.254.78.2:80", "/dev/null"];

/// Listeners opened inside the pod by this (host-namespace) process, as ztunnel does: the
/// sockets are the pod's, no process of the pod owns them.
fn listen_from_outside(pod: &Pod, ports: &[u16]) -> Vec<TcpListener> {
    let path = pod.path();
    let ports = ports.to_vec();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("pod namespace");
        // SAFETY: setns on a valid namespace fd changes only this short-lived thread.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        ports
            .iter()
            .map(|p| TcpListener::bind(("0.0.0.0", *p)).expect("bind in pod"))
            .collect()
    })
    .join()
    .unwrap()
}

fn kinds(r: &serde_json::Value) -> Vec<String> {
    r["netns"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{} {}", f["kind"].as_str().unwrap(), f["pid"]))
        .collect()
}

fn check(mesh: &Mesh, loader: Loader) {
    let what = format!("{} loaded with {loader:?}", mesh.kind);
    let mut pod = Pod::new();
    pod.with_peer(&[&["socat", "TCP-LISTEN:80,reuseaddr,fork", "EXEC:sleep 60"]]);
    let args: &[&str] = match loader {
        Loader::Nft => &["nft", "-f", "-"],
        Loader::IptablesNft => &["iptables-nft-restore"],
        _ => &["iptables-legacy-restore"],
    };
    let mut cmd = vec!["ip", "netns", "exec", &pod.ns];
    cmd.extend(args);
    run(&cmd, Some(mesh.rules));

    let mut proxies = Vec::new();
    let _outside = match mesh.proxy {
        Some(uid) => {
            for port in mesh.ports {
                proxies.push(pod.spawn(
                    uid,
                    uid,
                    &[
                        "socat",
                        &format!("TCP-LISTEN:{port},reuseaddr,fork"),
                        "EXEC:sleep 60",
                    ],
                ));
            }
            Vec::new()
        }
        None => listen_from_outside(&pod, mesh.ports),
    };
    settle();
    let app = pod.spawn(10001, 10001, CONNECT);
    settle();
    let r = pod.report();
    let netns = &r["netns"][0];
    assert_eq!(netns["mesh"]["kind"], mesh.kind, "{what}: {netns}");
    // Exclusions the fixture configures (e.g. linkerd's ignored ports) stay as `low`.
    let serious: Vec<&serde_json::Value> = r["netns"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] != "low")
        .collect();
    assert!(serious.is_empty(), "{what}: a clean pod: {serious:?}");
    if mesh.kind == "istio-ambient" {
        // Its probe address (169.254.7.127) is its own exemption, not a configured one.
        assert!(
            !kinds(&r).iter().any(|k| k.starts_with("cidr-excluded")),
            "{what}: {:?}",
            kinds(&r)
        );
    }
    let p = netns["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == app)
        .unwrap();
    assert_eq!(p["verdict"], "captured", "{what}: {p}");

    let leaky = match mesh.escape {
        Escape::Uid(uid) => pod.spawn(uid, 10001, CONNECT),
        Escape::Gid(gid) => pod.spawn(10001, gid, CONNECT),
        Escape::Mark(mark) => {
            // SOL_SOCKET SO_MARK before connect (socat's `setsockopt-int` applies after
            // it, too late for the SYN); the value as native-endian bytes.
            let opt = format!(
                "TCP:169.254.78.2:80,setsockopt-listen=1:36:x{:08x}",
                mark.to_be()
            );
            pod.spawn_with_caps(
                10001,
                10001,
                "+net_admin",
                &["socat", "-u", &opt, "/dev/null"],
            )
        }
    };
    settle();
    let r = pod.report();
    let escape = match mesh.escape {
        Escape::Mark(_) => "mark-exempt-capable",
        _ => "identity-exempt",
    };
    assert!(
        finding(&r, escape, leaky).is_some(),
        "{what}: {:?}",
        kinds(&r)
    );
    let seen = finding(&r, "observed-bypass", leaky)
        .unwrap_or_else(|| panic!("{what}: no observed-bypass: {:?}", kinds(&r)));
    let evidence = seen["evidence"][0].as_str().unwrap();
    assert!(
        evidence.starts_with("tcp 169.254.78.1:")
            && evidence.contains("-> 169.254.78.2:80 (conntrack: destination not translated"),
        "{what}: {evidence}"
    );
    assert!(
        seen["rules"].as_array().is_some_and(|r| !r.is_empty()),
        "{what}: cites a rule: {seen}"
    );
    assert!(
        finding(&r, "observed-bypass", app).is_none(),
        "{what}: the captured app"
    );

    if mesh.proxy.is_some() {
        for pid in proxies {
            pod.stop(pid);
        }
        settle();
        let r = pod.report();
        let absent = kinds(&r)
            .iter()
            .filter(|k| k.starts_with("proxy-absent"))
            .count();
        assert_eq!(absent, mesh.ports.len(), "{what}: {:?}", kinds(&r));
    }
}

#[test]
fn every_mesh_on_every_backend_clean_then_escaping_then_without_proxy() {
    if !is_root() {
        return;
    }
    let mut checked = 0;
    for mesh in meshes() {
        for &loader in mesh.loaders {
            check(&mesh, loader);
            checked += 1;
        }
    }
    assert_eq!(checked, 19);
}
