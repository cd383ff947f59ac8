//! `observed-bypass`: live connections of non-proxy processes that did not pass the proxy.
//!
//! A redirected connection ends in the namespace: its app socket still names the original
//! destination, but some local socket (the proxy's accepted one, `127.0.0.1:15001`) has the
//! app's address and port as its remote end, and conntrack shows the destination translated
//! to a local address. A connection with neither went straight out. This is proof from the
//! kernel's own tables, not a prediction from the rules; the rules are traced only to say
//! which one let it out (or that it would be captured now, so the rules changed since).

use std::net::IpAddr;

use super::{Context, captured, mark_capability, mark_rules, socket_flow};
use crate::eval::{self, Identity, Verdict};
use crate::explain::{self, addr_port};
use crate::meshes::Mesh;
use crate::model::IpVersion;
use crate::schema::{Finding, FindingKind, Severity};
use crate::snapshot::{NetnsFacts, SocketFacts, SocketProto, Tracked};

/// TCP states in which a connection still carries data one way or both: established,
/// half-closed by the peer (we may still send) or by us (we may still receive).
const CARRIES_DATA: &[&str] = &["established", "close-wait", "fin-wait1", "fin-wait2"];

/// 5-tuples listed per process; the rest are counted.
const SHOWN: usize = 8;

/// One connection that left without the proxy, and how we know.
struct Escape {
    proto: SocketProto,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    /// The app's socket.
    inode: u64,
    proof: &'static str,
}

pub(super) fn observed_bypass(c: &Context, out: &mut Vec<Finding>) {
    let ns = c.ns;
    let local = ns.local_addrs();
    // UDP counts only where the mesh captures UDP (DNS capture): elsewhere every UDP packet
    // leaves by design, and `protocol-uncaptured` already names the sockets.
    let udp_captured = |v: IpVersion| captured(&c.analysis.captured_on, v, "udp");
    let proxy_ports: Vec<u16> = crate::proxy::targets(&ns.rules, &local)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    for p in c.apps() {
        let (f, id) = (p.facts, &p.identity);
        let mut escapes = Vec::new();
        for s in ns.sockets.iter().filter(|s| f.holds(s.inode)) {
            match s.proto {
                SocketProto::Tcp if CARRIES_DATA.contains(&s.state.as_str()) => {
                    escapes.extend(tcp_escape(ns, &local, &proxy_ports, s));
                }
                SocketProto::Udp if udp_captured(IpVersion::of(&s.local.to_canonical())) => {
                    escapes.extend(udp_escapes(ns, &local, s));
                }
                _ => {}
            }
        }
        if escapes.is_empty() {
            continue;
        }
        let first = &escapes[0];
        // Judged by the credentials of the socket that carries it, which may not be the
        // process's own now.
        let way = f
            .sockets
            .iter()
            .find(|h| h.inode == first.inode)
            .and_then(|h| crate::ways::socket(f, ns, h));
        let socket_id = way.as_ref().map_or(id, |w| &w.identity);
        let t = trace(c, socket_id, first);
        let mut rules: Vec<_> = explain::deciding(&c.ns.rules, &t)
            .map(|s| s.at)
            .into_iter()
            .collect();
        let (note, remedy) = if t.outcome.verdict == Verdict::Unknown {
            (
                " (whether the rules let it out is unknown: a rule meshleak does not model decides)".to_string(),
                "check the unmodelled rule by hand (see the `unknown` finding), then restart the connection".to_string(),
            )
        } else if t.outcome.verdict != Verdict::Captured {
            let why = way
                .filter(|w| w.identity != *id)
                .map(|w| format!(" ({})", w.why))
                .unwrap_or_default();
            (why, "close the escape the cited rule opens (identity, exclusion or protocol), then restart the connection".to_string())
        } else if let Some(cap) = mark_capability(c, f).filter(|_| !mark_rules(c).is_empty()) {
            rules = mark_rules(c);
            (
                format!(
                    " (unmarked it would be captured: its socket carries the exempt mark, which {cap} lets it set)"
                ),
                format!(
                    "drop {} from the app container",
                    cap.trim_start_matches("CAP_")
                ),
            )
        } else {
            (
                " (the rules capture it now: it was opened before the capture rules were in place, or they changed since)".to_string(),
                "restart the workload so its connections are opened under the capture rules, and find what changed them".to_string(),
            )
        };
        let mut evidence: Vec<String> = escapes.iter().take(SHOWN).map(escape_text).collect();
        if escapes.len() > SHOWN {
            evidence.push(format!("and {} more", escapes.len() - SHOWN));
        }
        out.push(Finding {
            kind: FindingKind::ObservedBypass,
            severity: Severity::High,
            pid: Some(p.facts.pid),
            message: format!(
                "{} has {} live connection{} that did not pass the proxy{note}",
                p.facts.comm,
                escapes.len(),
                if escapes.len() == 1 { "" } else { "s" },
            ),
            rules,
            evidence,
            socket: Some(first.inode),
            remedy,
        });
    }
    unheld(c, &local, &proxy_ports, out);
}

/// Connections of the namespace's sockets that no process read holds (one of another
/// namespace or the host, which this report does not cover, or the kernel): their traffic
/// meets this namespace's rules all the same, and the kernel's tables say whether it
/// passed the proxy. Who holds them, and with which credentials, is not known here.
fn unheld(c: &Context, local: &[IpAddr], proxy_ports: &[u16], out: &mut Vec<Finding>) {
    let ns = c.ns;
    let held = |inode: u64| c.processes.iter().any(|p| p.facts.holds(inode));
    let escapes: Vec<Escape> = ns
        .sockets
        .iter()
        .filter(|s| {
            s.inode != 0
                && s.proto == SocketProto::Tcp
                && CARRIES_DATA.contains(&s.state.as_str())
                && !held(s.inode)
        })
        .filter(|s| !proxy_marked(c, s))
        .filter_map(|s| tcp_escape(ns, local, proxy_ports, s))
        .collect();
    let Some(first) = escapes.first() else {
        return;
    };
    let mut evidence: Vec<String> = escapes
        .iter()
        .take(SHOWN)
        .map(|e| format!("{} socket:[{}]", escape_text(e), e.inode))
        .collect();
    if escapes.len() > SHOWN {
        evidence.push(format!("and {} more", escapes.len() - SHOWN));
    }
    out.push(Finding {
        kind: FindingKind::ObservedBypass,
        severity: Severity::High,
        pid: None,
        message: format!(
            "{} live connection{} of this namespace that did not pass the proxy {} held by no process of it: a process of another namespace (the host's, or one this report does not cover) holds {}",
            escapes.len(),
            if escapes.len() == 1 { "" } else { "s" },
            if escapes.len() == 1 { "is" } else { "are" },
            if escapes.len() == 1 { "it" } else { "them" },
        ),
        rules: Vec::new(),
        evidence,
        socket: Some(first.inode),
        remedy: "find the holder with `meshleak scan --include-host` (or `ss -tnpe` on the node) and why it holds this pod's sockets".into(),
    });
}

/// A socket of a mark-based mesh's proxy (Istio ambient's ztunnel opens its sockets in the
/// pod from its own namespace, marked 0x539): the mark it carries is what lets it out,
/// where unmarked it would be captured.
fn proxy_marked(c: &Context, s: &SocketFacts) -> bool {
    let Some(mark) = s.mark.filter(|m| *m != 0) else {
        return false;
    };
    if !c.mesh.is_some_and(Mesh::proxy_by_mark) {
        return false;
    }
    let id = crate::ways::in_owner(c.ns, s.uid, c.analysis.reference_identity.gid, &[]);
    let mut flow = socket_flow(
        c.ns,
        &id,
        6,
        (s.local, s.local_port),
        (s.remote, s.remote_port),
    );
    let unmarked = eval::trace(&c.ns.rules, &flow).outcome.verdict;
    flow.mark = mark;
    let marked = eval::trace(&c.ns.rules, &flow).outcome.verdict;
    unmarked == Verdict::Captured && marked != Verdict::Captured && marked != Verdict::Unknown
}

/// The namespace's own addresses: connections to them stay in the pod and need no proxy.
fn is_local(local: &[IpAddr], a: IpAddr) -> bool {
    a.is_loopback() || a.is_unspecified() || local.contains(&a)
}

/// A TCP connection whose peer is outside the namespace and which went there: conntrack
/// shows its destination untranslated (or translated to a remote address), or, without a
/// conntrack entry, no socket on a proxy port accepted it. A redirected connection is told
/// by its full translated tuple: the socket the redirect delivered it to has the
/// translated address as its own end and the app's address and port as its peer; a socket
/// that merely shares the app's address and port (SO_REUSEADDR) explains nothing.
fn tcp_escape(
    ns: &NetnsFacts,
    local: &[IpAddr],
    proxy_ports: &[u16],
    s: &SocketFacts,
) -> Option<Escape> {
    let (src, dst) = (s.local.to_canonical(), s.remote.to_canonical());
    if is_local(local, dst) {
        return None;
    }
    let accepted_by_proxy = ns.sockets.iter().any(|t| {
        t.proto == SocketProto::Tcp
            && t.inode != s.inode
            && t.state != "listen"
            && proxy_ports.contains(&t.local_port)
            && is_local(local, t.local.to_canonical())
            && (t.remote.to_canonical(), t.remote_port) == (src, s.local_port)
    });
    let tracked = ns.conntrack.as_ref().and_then(|all| {
        all.iter().find(|e| {
            e.proto == SocketProto::Tcp
                && (e.src, e.sport, e.dst, e.dport) == (src, s.local_port, dst, s.remote_port)
        })
    });
    let proof = match tracked {
        Some(e) if redirected_locally(local, e) => return None,
        Some(e) if e.translated_to().is_some() => {
            "conntrack: translated to a remote address, no local socket accepted it"
        }
        Some(_) => "conntrack: destination not translated to a local proxy",
        None if accepted_by_proxy => return None,
        None => "no conntrack entry, and no socket on a proxy port accepted it",
    };
    Some(Escape {
        proto: SocketProto::Tcp,
        src,
        sport: s.local_port,
        dst,
        dport: s.remote_port,
        inode: s.inode,
        proof,
    })
}

/// Conntrack entries of datagrams a UDP socket sent (same source port, and address unless
/// the socket is unbound) to outside destinations, untranslated or sent elsewhere.
fn udp_escapes(ns: &NetnsFacts, local: &[IpAddr], s: &SocketFacts) -> Vec<Escape> {
    let Some(all) = &ns.conntrack else {
        return Vec::new();
    };
    let (bound, peer) = (s.local.to_canonical(), s.remote.to_canonical());
    all.iter()
        .filter(|e| {
            e.proto == SocketProto::Udp
                && e.sport == s.local_port
                && (bound.is_unspecified() || e.src == bound)
                && (peer.is_unspecified() || (e.dst, e.dport) == (peer, s.remote_port))
                && !is_local(local, e.dst)
                && !redirected_locally(local, e)
        })
        .map(|e| Escape {
            proto: SocketProto::Udp,
            src: e.src,
            sport: e.sport,
            dst: e.dst,
            dport: e.dport,
            inode: s.inode,
            proof: "conntrack: destination not translated to the proxy",
        })
        .collect()
}

fn redirected_locally(local: &[IpAddr], e: &Tracked) -> bool {
    e.translated_to()
        .is_some_and(|(a, _)| is_local(local, a.to_canonical()))
}

fn trace(c: &Context, id: &Identity, e: &Escape) -> eval::Trace {
    let proto = if e.proto == SocketProto::Tcp { 6 } else { 17 };
    let flow = socket_flow(c.ns, id, proto, (e.src, e.sport), (e.dst, e.dport));
    eval::trace(&c.ns.rules, &flow)
}

fn escape_text(e: &Escape) -> String {
    let proto = e.proto.name();
    format!(
        "{proto} {} -> {} ({})",
        addr_port(&e.src, e.sport),
        addr_port(&e.dst, e.dport),
        e.proof
    )
}
