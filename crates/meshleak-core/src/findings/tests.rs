use crate::parse::{Hints, combine, parse_dump};
use crate::report::build;
use crate::schema::{FindingKind, Severity};
use crate::snapshot::*;

fn process(pid: u32, uid: u32, gid: u32, caps: u64, sockets: &[u64]) -> ProcessFacts {
    ProcessFacts {
        pid,
        ppid: 1,
        comm: format!("p{pid}"),
        exe: None,
        fsuid: uid,
        fsgid: gid,
        groups: vec![],
        all_uids: vec![uid; 4],
        all_gids: vec![gid; 4],
        cap_eff: caps,
        cap_prm: caps,
        cap_bnd: caps,
        no_new_privs: Some(true),
        userns: 0,
        uid_map: vec![(0, 0, u32::MAX)],
        gid_map: vec![(0, 0, u32::MAX)],
        cgroup: format!("/pod/c{uid}"),
        cmdline: None,
        sockets: sockets
            .iter()
            .enumerate()
            .map(|(fd, &inode)| HeldSocket {
                fd: fd as u32 + 3,
                inode,
                uid,
                gid,
                tid: None,
                ..HeldSocket::default()
            })
            .collect(),
        rings: vec![],
        cgroup_programs: vec![],
        threads: vec![],
        pidns: 7,
        ns_pid: None,
    }
}

fn socket(
    proto: SocketProto,
    local: &str,
    lport: u16,
    remote: &str,
    rport: u16,
    state: &str,
    inode: u64,
) -> SocketFacts {
    SocketFacts {
        proto,
        local: local.parse().unwrap(),
        local_port: lport,
        remote: remote.parse().unwrap(),
        remote_port: rport,
        state: state.into(),
        uid: 0,
        inode,
        v6only: None,
        mark: None,
    }
}

fn snapshot(
    processes: Vec<ProcessFacts>,
    sockets: Vec<SocketFacts>,
    v6: bool,
    extra_rules: &str,
) -> Snapshot {
    let text = include_str!("../../../../testdata/istio-sidecar.rules").replace(
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
        &format!("{extra_rules}-A ISTIO_OUTPUT -j ISTIO_REDIRECT"),
    );
    let rules = combine(vec![parse_dump("t", &text, Hints::default()).unwrap()]).unwrap();
    let mut addrs = vec!["169.254.1.2".parse().unwrap()];
    if v6 {
        addrs.push("fd00::5".parse().unwrap());
    }
    Snapshot {
        snapshot_version: SNAPSHOT_VERSION,
        node: "n".into(),
        kernel: "6.1.0".into(),
        scanned_at: 0,
        netns: vec![NetnsFacts {
            rules_unread: None,
            ephemeral_ports: None,
            packet_sockets: vec![],
            inode: 1,
            paths: vec![],
            host: false,
            rules,
            interfaces: vec![Interface {
                name: "eth0".into(),
                addrs,
            }],
            routes: vec![],
            routing_rules: None,
            unprivileged_port_start: None,
            sockets,
            conntrack: None,
            processes,
            net_dev: Some(7),
            owner: None,
            gaps: vec![],
        }],
        containers: vec![],
        errors: vec![],
        vanished_processes: 0,
        vanished_netns: 0,
        unread_netns: 0,
        unread_processes: vec![],
        owners: Default::default(),
        programs_unread: None,
    }
}

fn kinds(s: &Snapshot) -> Vec<(String, Option<u32>)> {
    let r = build(s, 0);
    r.netns[0]
        .findings
        .iter()
        .map(|f| (f.kind.to_string(), f.pid))
        .collect()
}

/// The proxy's listeners on both Istio capture ports (socket inodes 100 and 101).
fn proxy_listeners() -> Vec<SocketFacts> {
    vec![
        socket(
            SocketProto::Tcp,
            "0.0.0.0",
            15001,
            "0.0.0.0",
            0,
            "listen",
            100,
        ),
        socket(
            SocketProto::Tcp,
            "0.0.0.0",
            15006,
            "0.0.0.0",
            0,
            "listen",
            101,
        ),
    ]
}

const NET_ADMIN: u64 = 1 << 12;
const SETUID: u64 = 1 << 7;

#[test]
fn rules_inserted_outside_the_mesh_layout_that_change_verdicts() {
    let listeners = proxy_listeners();
    let procs = || {
        vec![
            process(10, 1337, 1337, 0, &[100, 101]),
            process(11, 0, 0, 0, &[]),
            process(12, 10001, 10001, 0, &[]),
        ]
    };
    let istio = include_str!("../../../../testdata/istio-sidecar.rules");
    // A uid 0 RETURN inserted ahead of the mesh's jump: root's traffic escapes.
    let inserted = istio.replace(
        "-A OUTPUT -j ISTIO_OUTPUT",
        "-A OUTPUT -m owner --uid-owner 0 -j RETURN\n-A OUTPUT -j ISTIO_OUTPUT",
    );
    let s = with_rules(snapshot(procs(), listeners.clone(), false, ""), &inserted);
    let r = build(&s, 0);
    let f = r.netns[0]
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::ForeignRule)
        .expect("foreign-rule found");
    assert_eq!(
        f.rules[0].rule,
        "-A OUTPUT -m owner --uid-owner 0 -j RETURN"
    );
    assert_eq!(f.severity, Severity::High);
    assert!(f.message.contains("[11]"), "{}", f.message);
    // With no root process running, the exemption is still one: an exec as root uses it.
    let ordinary = vec![
        process(10, 1337, 1337, 0, &[100, 101]),
        process(12, 10001, 10001, 0, &[]),
    ];
    let s = with_rules(snapshot(ordinary, listeners.clone(), false, ""), &inserted);
    let r = build(&s, 0);
    let f = r.netns[0]
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::ForeignRule)
        .expect("a latent foreign-rule");
    assert_eq!(f.severity, Severity::Medium);
    assert!(
        f.message
            .contains("uid 0, which no running process has now"),
        "{}",
        f.message
    );
    // A foreign rule that changes nothing (a LOG, a filter ACCEPT) is not reported.
    let harmless = format!("{istio}*filter\n-A OUTPUT -p tcp -j ACCEPT\nCOMMIT\n");
    let s = with_rules(snapshot(procs(), listeners, false, ""), &harmless);
    assert!(
        !kinds(&s).iter().any(|(k, _)| k == "foreign-rule"),
        "{:?}",
        kinds(&s)
    );
}

#[test]
fn an_exemption_inside_the_mesh_chain_for_an_id_the_proxy_does_not_hold_is_foreign() {
    let procs = || {
        vec![
            process(10, 1337, 1337, 0, &[100, 101]),
            process(12, 10001, 10001, 0, &[]),
        ]
    };
    // `iptables -I ISTIO_OUTPUT 1 -m owner --uid-owner 10001 -j RETURN`: in the mesh's own
    // chain, but no proxy runs as 10001.
    let s = snapshot(
        procs(),
        proxy_listeners(),
        false,
        "-A ISTIO_OUTPUT -m owner --uid-owner 10001 -j RETURN\n",
    );
    let r = build(&s, 0);
    let f = r.netns[0]
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::ForeignRule)
        .expect("foreign-rule found");
    assert_eq!(
        f.rules[0].rule,
        "-A ISTIO_OUTPUT -m owner --uid-owner 10001 -j RETURN"
    );
    assert_eq!(f.severity, Severity::High);
    assert!(f.message.contains("[12]"), "{}", f.message);
    let exempt = r.netns[0]
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::IdentityExempt && f.pid == Some(12))
        .expect("the app escapes");
    assert!(
        !exempt.remedy.contains("is the proxy's"),
        "10001 is not the proxy's: {}",
        exempt.remedy
    );
    assert!(exempt.remedy.contains("foreign-rule"), "{}", exempt.remedy);
    // The mesh's own exemptions of the proxy's ids are not findings.
    let clean = snapshot(procs(), proxy_listeners(), false, "");
    assert!(
        !kinds(&clean).iter().any(|(k, _)| k == "foreign-rule"),
        "{:?}",
        kinds(&clean)
    );
}

#[test]
fn kernel_versions_compare() {
    assert!(super::kernel_at_least("6.1.0-18-amd64", 5, 17));
    assert!(super::kernel_at_least("5.17.0", 5, 17));
    assert!(!super::kernel_at_least("5.10.200", 5, 17));
    assert!(!super::kernel_at_least("", 5, 17));
}

#[test]
fn a_clean_pod_has_no_findings() {
    let s = snapshot(
        vec![
            process(10, 1337, 1337, 0, &[100, 101, 103]),
            process(11, 10001, 10001, 0, &[102]),
        ],
        proxy_listeners()
            .into_iter()
            .chain([
                socket(
                    SocketProto::Tcp,
                    "169.254.1.2",
                    40000,
                    "10.0.0.9",
                    443,
                    "established",
                    102,
                ),
                // The proxy accepted it: the connection was redirected.
                socket(
                    SocketProto::Tcp,
                    "127.0.0.1",
                    15001,
                    "169.254.1.2",
                    40000,
                    "established",
                    103,
                ),
            ])
            .collect(),
        false,
        "",
    );
    assert_eq!(kinds(&s), vec![]);
}

#[test]
fn every_finding_where_its_situation_is() {
    let s = snapshot(
        vec![
            process(10, 1337, 1337, 0, &[100]),
            process(11, 10001, 1337, 0, &[]),
            process(12, 10001, 10001, NET_ADMIN | SETUID, &[103, 104]),
            process(13, 10001, 10002, 0, &[105]),
        ],
        vec![
            proxy_listeners().remove(0),
            // Nothing on 15006; an app holds UDP and raw sockets, and a TCP connection
            // to an excluded port; another app listens on the proxy's port for IPv6.
            socket(
                SocketProto::Udp,
                "0.0.0.0",
                5353,
                "0.0.0.0",
                0,
                "unconnected",
                103,
            ),
            socket(
                SocketProto::Tcp,
                "169.254.1.2",
                40001,
                "10.0.0.9",
                3306,
                "established",
                104,
            ),
            socket(SocketProto::Tcp, "::", 15001, "::", 0, "listen", 105),
        ],
        true,
        "-A ISTIO_OUTPUT -p tcp -m tcp --dport 3306 -j RETURN\n-A ISTIO_OUTPUT -d 10.96.0.0/12 -j RETURN\n",
    );
    let found = kinds(&s);
    for want in [
        ("identity-exempt", Some(11)),
        ("proxy-absent", None),
        ("proxy-impostor", Some(13)),
        ("protocol-uncaptured", Some(12)),
        ("ipv6-uncaptured", None),
        ("can-modify-rules", Some(12)),
        ("can-become-exempt", Some(12)),
        ("port-excluded", None),
        ("cidr-excluded", None),
    ] {
        assert!(
            found.contains(&(want.0.to_string(), want.1)),
            "{want:?} missing from {found:?}"
        );
    }
    let r = build(&s, 0);
    let f = r.netns[0]
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::ProtocolUncaptured)
        .unwrap();
    assert_eq!(
        f.evidence.len(),
        1,
        "the UDP socket, not the TCP connection: {:?}",
        f.evidence
    );
    assert_eq!(
        r.netns[0].findings[0].severity,
        Severity::High,
        "most severe first"
    );
}

fn with_rules(mut s: Snapshot, text: &str) -> Snapshot {
    s.netns[0].rules = combine(vec![parse_dump("t", text, Hints::default()).unwrap()]).unwrap();
    s
}

#[test]
fn capture_missing_when_output_never_reaches_the_mesh_chain() {
    let listeners = proxy_listeners();
    let procs = || {
        vec![
            process(10, 1337, 1337, 0, &[100, 101]),
            process(11, 10001, 10001, 0, &[]),
        ]
    };
    let broken = include_str!("../../../../testdata/istio-sidecar.rules")
        .replace("-A OUTPUT -j ISTIO_OUTPUT\n", "");
    let s = with_rules(snapshot(procs(), listeners.clone(), false, ""), &broken);
    assert!(
        kinds(&s).contains(&("capture-missing".into(), None)),
        "{:?}",
        kinds(&s)
    );
    assert!(
        !kinds(&snapshot(procs(), listeners, false, ""))
            .iter()
            .any(|(k, _)| k == "capture-missing")
    );
}

#[test]
fn mark_exemptions_and_the_capabilities_that_set_marks() {
    const NET_RAW: u64 = 1 << 13;
    let ambient = include_str!("../../../../testdata/meshes/istio-ambient.rules");
    let s = with_rules(
        snapshot(
            vec![process(11, 10001, 10001, NET_RAW, &[])],
            vec![],
            false,
            "",
        ),
        ambient,
    );
    assert!(
        kinds(&s).contains(&("mark-exempt-capable".into(), Some(11))),
        "{:?}",
        kinds(&s)
    );
    let mut old = s.clone();
    old.kernel = "5.10.0".into();
    assert!(
        !kinds(&old).iter().any(|(k, _)| k == "mark-exempt-capable"),
        "CAP_NET_RAW sets SO_MARK only from 5.17"
    );
}

#[test]
fn apps_that_can_stop_the_proxy() {
    const KILL: u64 = 1 << 5;
    let mut sockets = proxy_listeners();
    sockets.push(socket(
        SocketProto::Tcp,
        "127.0.0.1",
        15000,
        "0.0.0.0",
        0,
        "listen",
        102,
    ));
    let s = snapshot(
        vec![
            process(10, 1337, 1337, 0, &[100, 101, 102]),
            process(11, 10001, 10001, KILL, &[]),
        ],
        sockets,
        false,
        "",
    );
    let found = kinds(&s);
    assert!(
        found.contains(&("shared-pid-namespace".into(), Some(11))),
        "{found:?}"
    );
    assert!(
        found.contains(&("proxy-admin-reachable".into(), None)),
        "{found:?}"
    );
    let mut apart = s.clone();
    apart.netns[0].processes[1].pidns = 8;
    assert!(
        !kinds(&apart)
            .iter()
            .any(|(k, _)| k == "shared-pid-namespace")
    );
}

fn tracked(proto: SocketProto, from: (&str, u16), to: (&str, u16), reply: (&str, u16)) -> Tracked {
    Tracked {
        proto,
        src: from.0.parse().unwrap(),
        sport: from.1,
        dst: to.0.parse().unwrap(),
        dport: to.1,
        reply_src: reply.0.parse().unwrap(),
        reply_sport: reply.1,
    }
}

#[test]
fn live_connections_that_did_not_pass_the_proxy() {
    use SocketProto::{Tcp, Udp};
    let est = |l: (&str, u16), r: (&str, u16), inode| {
        socket(Tcp, l.0, l.1, r.0, r.1, "established", inode)
    };
    let mut sockets = proxy_listeners();
    sockets.push(socket(
        Udp,
        "127.0.0.1",
        15053,
        "0.0.0.0",
        0,
        "unconnected",
        103,
    ));
    // The proxy accepted pid 12's connection (redirected from 10.0.0.9:443).
    sockets.push(est(("127.0.0.1", 15001), ("169.254.1.2", 40001), 102));
    sockets.push(est(("169.254.1.2", 40001), ("10.0.0.9", 443), 200));
    // pid 13 (gid 1337) went straight out; conntrack agrees.
    sockets.push(est(
        ("::ffff:169.254.1.2", 40002),
        ("::ffff:10.0.0.9", 443),
        300,
    ));
    // pid 14's identity is captured, yet its connection went out: opened before the rules.
    sockets.push(est(("169.254.1.2", 40003), ("10.0.0.9", 443), 400));
    // pid 15 talks to its own pod: no proxy needed.
    sockets.push(est(("169.254.1.2", 40004), ("169.254.1.2", 8080), 500));
    // pid 17's connection is half closed by the peer: it may still send.
    sockets.push(socket(
        Tcp,
        "169.254.1.2",
        40005,
        "10.0.0.9",
        443,
        "close-wait",
        700,
    ));
    // pid 18's went straight out too; a socket that shares its address and port but is
    // no proxy's (an app port, SO_REUSEADDR) explains nothing.
    sockets.push(est(("169.254.1.2", 40006), ("10.0.0.9", 443), 800));
    sockets.push(est(("169.254.1.2", 8080), ("169.254.1.2", 40006), 801));
    // pid 16 sends DNS through the proxy's DNS capture, and other UDP straight out.
    sockets.push(socket(
        Udp,
        "0.0.0.0",
        5000,
        "0.0.0.0",
        0,
        "unconnected",
        600,
    ));
    let procs = vec![
        process(10, 1337, 1337, 0, &[100, 101, 102, 103]),
        process(12, 10001, 10001, 0, &[200]),
        process(13, 10001, 1337, 0, &[300]),
        process(14, 10001, 10001, 0, &[400]),
        process(15, 10001, 10001, 0, &[500]),
        process(16, 10001, 10001, 0, &[600]),
        process(17, 10001, 10001, 0, &[700]),
        process(18, 10001, 10001, 0, &[800, 801]),
    ];
    let mut s = snapshot(
        procs,
        sockets,
        false,
        "-A ISTIO_OUTPUT -p udp -m udp --dport 53 -j REDIRECT --to-ports 15053\n",
    );
    s.netns[0].conntrack = Some(vec![
        tracked(
            Tcp,
            ("169.254.1.2", 40001),
            ("10.0.0.9", 443),
            ("127.0.0.1", 15001),
        ),
        tracked(
            Tcp,
            ("169.254.1.2", 40002),
            ("10.0.0.9", 443),
            ("10.0.0.9", 443),
        ),
        tracked(
            Udp,
            ("169.254.1.2", 5000),
            ("10.96.0.10", 53),
            ("127.0.0.1", 15053),
        ),
        tracked(
            Udp,
            ("169.254.1.2", 5000),
            ("192.0.2.7", 5353),
            ("192.0.2.7", 5353),
        ),
    ]);
    let r = build(&s, 0);
    let observed: Vec<&crate::findings::Finding> = r.netns[0]
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::ObservedBypass)
        .collect();
    let pids: Vec<u32> = observed.iter().filter_map(|f| f.pid).collect();
    assert_eq!(pids, vec![13, 14, 16, 17, 18], "{observed:#?}");
    // Observed, they are bypasses whatever the rules predict now, and say which socket.
    let p14 = r.netns[0].processes.iter().find(|p| p.pid == 14).unwrap();
    assert_eq!(p14.verdict, crate::schema::ProcessVerdict::Bypass);
    let by14 = p14.decided_by.as_ref().unwrap();
    assert_eq!(
        by14.source,
        crate::ways::Source::Connection { fd: 3, inode: 400 }
    );
    assert!(r.bypasses());
    let by = |pid| observed.iter().find(|f| f.pid == Some(pid)).unwrap();
    assert_eq!(
        by(13).evidence,
        vec![
            "tcp 169.254.1.2:40002 -> 10.0.0.9:443 (conntrack: destination not translated to a local proxy)"
        ]
    );
    assert!(
        by(13).rules[0].rule.contains("--gid-owner 1337"),
        "{:?}",
        by(13).rules
    );
    assert!(
        by(14).message.contains("the rules capture it now"),
        "{}",
        by(14).message
    );
    assert_eq!(
        by(14).evidence,
        vec![
            "tcp 169.254.1.2:40003 -> 10.0.0.9:443 (no conntrack entry, and no socket on a proxy port accepted it)"
        ]
    );
    assert_eq!(by(16).evidence.len(), 1, "{:?}", by(16).evidence);
    assert!(by(16).evidence[0].starts_with("udp 169.254.1.2:5000 -> 192.0.2.7:5353"));

    // Without conntrack (an older snapshot), TCP is still decided from the sockets alone.
    s.netns[0].conntrack = None;
    let pids: Vec<u32> = build(&s, 0).netns[0]
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::ObservedBypass)
        .filter_map(|f| f.pid)
        .collect();
    assert_eq!(pids, vec![13, 14, 17, 18]);
}

/// Unread processes: in a reported namespace or an unseen one they make the report
/// incomplete; known to be elsewhere (the host's, by /proc/PID/net/dev) they do not, and
/// one closed even to a meshleak holding the capabilities is named once with that cause.
#[test]
fn unread_processes_make_a_report_incomplete_only_where_they_may_matter() {
    let unread = |pid, cause, netns, elsewhere| UnreadProcess {
        pid,
        comm: format!("p{pid}"),
        cause,
        netns,
        elsewhere,
    };
    let mut s = snapshot(vec![process(10, 10001, 10001, 0, &[])], vec![], false, "");
    s.unread_processes = vec![unread(1, UnreadCause::Forbidden, None, true)];
    let r = build(&s, 0);
    assert!(r.incomplete.is_empty(), "{:?}", r.incomplete);
    assert_eq!(r.unread_processes, 0);
    assert_eq!(r.errors.len(), 1);
    assert!(r.errors[0].contains("pid 1 (p1)") && r.errors[0].contains("although meshleak holds"));
    assert!(!r.errors[0].contains("needs CAP_SYS_PTRACE"));

    s.unread_processes
        .push(unread(20, UnreadCause::MissingCapability, Some(1), false));
    s.unread_processes
        .push(unread(30, UnreadCause::MissingCapability, None, false));
    s.unread_processes
        .push(unread(40, UnreadCause::MissingCapability, None, true));
    s.netns[0].gaps = vec!["raw sockets (/proc/thread-self/net/raw: EACCES)".into()];
    let r = build(&s, 0);
    assert_eq!(r.unread_processes, 2);
    assert_eq!(r.unread_gaps, 1);
    assert_eq!(r.incomplete.len(), 3, "{:?}", r.incomplete);
    assert!(
        r.incomplete[0].contains("pid 20 (p20)")
            && r.incomplete[0].contains("needs CAP_SYS_PTRACE")
    );
    assert!(r.incomplete[1].contains("raw sockets"));
    assert!(r.incomplete[2].contains("pid 30") && r.incomplete[2].contains("could not tell"));
    assert_eq!(r.netns[0].incomplete.len(), 2);
    // A capability problem elsewhere is not named: no verdict depends on it.
    assert!(!r.errors.iter().any(|e| e.contains("pid 40")));
}

/// Loopback exclusions are every mesh's by design and are not reported; the decision is
/// made on the rule's typed tests. An exclusion whose text merely holds `127.0.0.` (a
/// negated loopback test: everything but loopback escapes) is reported; it was silenced
/// when the text was searched instead.
#[test]
fn only_real_loopback_exclusions_are_left_out() {
    let excluded = |rule: &str| {
        let s = snapshot(
            vec![process(10, 1337, 1337, 0, &[100, 101])],
            proxy_listeners(),
            false,
            rule,
        );
        kinds(&s)
            .into_iter()
            .filter(|(k, _)| k.ends_with("-excluded"))
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
    };
    for loopback in [
        "-A ISTIO_OUTPUT -d 127.0.0.53/32 -j RETURN\n",
        "-A ISTIO_OUTPUT -o lo -d 10.1.0.0/16 -j RETURN\n",
    ] {
        assert_eq!(excluded(loopback), Vec::<String>::new(), "{loopback}");
    }
    for escape in [
        "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o eth0 -j RETURN\n",
        "-A ISTIO_OUTPUT -d 169.254.0.1/32 -j RETURN\n",
    ] {
        assert_ne!(excluded(escape), Vec::<String>::new(), "{escape}");
    }
}

#[test]
fn a_partial_scan_replaces_only_its_namespaces() {
    let id = "a".repeat(64);
    let two = |inode: u64, pid: u32| {
        let mut p = process(pid, 10001, 10001, 0, &[]);
        if pid == 10 {
            p.cgroup = format!("0::/cri-containerd-{id}.scope");
        }
        let mut s = snapshot(vec![p], vec![], false, "");
        s.netns[0].inode = inode;
        s
    };
    let mut whole = two(1, 10);
    whole.netns.extend(two(2, 20).netns);
    whole.errors.push("network namespace 2: slow".into());
    // Namespace 2 re-read: its process changed; namespace 3 is new; 1 is untouched.
    let mut part = two(2, 21);
    part.netns.extend(two(3, 30).netns);
    part.scanned_at = 9;
    whole.merge(part, &[2, 3]);
    let pids: Vec<(u64, u32)> = whole
        .netns
        .iter()
        .map(|n| (n.inode, n.processes[0].pid))
        .collect();
    assert_eq!(pids, vec![(1, 10), (2, 21), (3, 30)]);
    assert_eq!(whole.scanned_at, 9);
    assert_eq!(whole.errors, vec!["network namespace 2: slow".to_string()]);
    // Namespace 3 gone at the next re-read: dropped, with its containers.
    whole
        .containers
        .push(crate::attribution::ContainerFacts::unnamed(
            &id,
            "containerd",
            "",
        ));
    whole.merge(two(9, 90), &[3]);
    assert_eq!(
        whole.netns.iter().map(|n| n.inode).collect::<Vec<_>>(),
        vec![1, 2, 9]
    );
    assert_eq!(whole.containers.len(), 1, "still held by pid 10");
    // A namespace the re-read could not read stays as it was known.
    let mut failed = two(9, 92);
    failed.netns.clear();
    failed
        .errors
        .push("network namespace 9: skipped: stuck".into());
    whole.merge(failed, &[9]);
    assert_eq!(
        whole
            .netns
            .iter()
            .map(|n| (n.inode, n.processes[0].pid))
            .collect::<Vec<_>>(),
        vec![(1, 10), (2, 21), (9, 90)]
    );
    let mut gone = two(9, 91);
    gone.netns.clear();
    whole.merge(gone, &[1, 2, 9]);
    assert!(whole.netns.is_empty());
    assert!(whole.containers.is_empty(), "no process is in it any more");
}

#[test]
fn cgroup_programs_make_capture_unknown_unless_they_are_ciliums_socket_lb() {
    use crate::schema::ProcessVerdict;
    use crate::snapshot::CgroupProgram;
    let program = |name: &str| CgroupProgram {
        id: 7,
        name: name.into(),
        attach: "connect4".into(),
    };
    let mut app = process(11, 10001, 10001, 0, &[]);
    app.cgroup_programs = vec![program("rewrite")];
    let mut cilium = process(12, 10001, 10001, 0, &[]);
    cilium.cgroup_programs = vec![program("cil_sock4_connect")];
    let s = snapshot(
        vec![process(10, 1337, 1337, 0, &[100, 101]), app, cilium],
        proxy_listeners(),
        false,
        "",
    );
    let r = build(&s, 0);
    let ns = &r.netns[0];
    let p = |pid: u32| ns.processes.iter().find(|p| p.pid == pid).unwrap();
    // An unknown program: what it rewrites is not modelled, so capture is unknown.
    assert_eq!(p(11).verdict, ProcessVerdict::Unknown);
    assert!(matches!(
        p(11).decided_by.as_ref().unwrap().source,
        crate::ways::Source::CgroupProgram { id: 7, .. }
    ));
    // Cilium's socket LB keeps capture (to the backend): a finding, the verdict stays.
    assert_eq!(p(12).verdict, ProcessVerdict::Captured);
    let severity = |pid: u32| {
        ns.findings
            .iter()
            .find(|f| f.kind == FindingKind::CgroupProgram && f.pid == Some(pid))
            .map(|f| f.severity)
    };
    assert_eq!(severity(11), Some(Severity::High));
    assert_eq!(severity(12), Some(Severity::Medium));
}

/// A pod whose pod-level runAsGroup is the proxy's: the pause is the sandbox, not an app;
/// the containers that inherit the gid are one finding about the pod, whose remedy is the
/// pod's field; one that sets its own uid but inherits the gid is named with them.
#[test]
fn a_pod_level_identity_is_one_finding_about_the_pod() {
    use crate::attribution::{ConfiguredUser, ContainerFacts, PodFacts};
    use crate::schema::{Finding, ProcessVerdict};
    let uid = "0e2a4c3b-1d5f-4a6b-9c7d-8e9f0a1b2c3d";
    let id = |c: char| c.to_string().repeat(64);
    let in_container = |mut p: ProcessFacts, c: char| {
        p.cgroup = format!("0::/kubepods/besteffort/pod{uid}/{}", id(c));
        p
    };
    let mut pause = in_container(process(20, 10002, 1337, 0, &[]), 'a');
    pause.ns_pid = Some(1);
    let procs = vec![
        process(10, 1337, 1337, 0, &[100, 101]),
        pause,
        in_container(process(21, 10002, 1337, 0, &[]), 'b'),
        in_container(process(22, 10005, 1337, 0, &[]), 'c'),
    ];
    let mut s = snapshot(procs, proxy_listeners(), false, "");
    let container = |c: char, name: Option<&str>, user: (u32, u32)| {
        let mut f = ContainerFacts::unnamed(&id(c), "containerd", "f");
        f.name = name.map(str::to_string);
        f.sandbox = name.is_none();
        f.sandbox_id = Some(id('a'));
        f.pod = Some(PodFacts {
            namespace: "shop".into(),
            name: "batch-0".into(),
            uid: uid.into(),
        });
        f.user = Some(ConfiguredUser {
            uid: user.0,
            gid: user.1,
            additional_gids: vec![user.1],
        });
        f
    };
    s.containers = vec![
        container('a', None, (10002, 1337)),
        container('b', Some("worker"), (10002, 1337)),
        container('c', Some("aaa"), (10005, 1337)),
    ];
    let r = build(&s, 0);
    let ns = &r.netns[0];
    let verdict = |pid: u32| {
        ns.processes
            .iter()
            .find(|p| p.pid == pid)
            .map(|p| p.verdict)
    };
    assert_eq!(verdict(20), Some(ProcessVerdict::Sandbox));
    assert_eq!(verdict(21), Some(ProcessVerdict::Bypass));
    assert_eq!(verdict(22), Some(ProcessVerdict::Bypass));
    let exempt: Vec<&Finding> = ns
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::IdentityExempt)
        .collect();
    assert_eq!(exempt.len(), 1, "{:?}", ns.findings);
    let f = exempt[0];
    assert_eq!(f.pid, None);
    assert!(
        f.message.contains("sets runAsGroup 1337,")
            && f.message.contains("worker (p21, pid 21)")
            && f.message.contains("aaa (p22, pid 22)")
            && !f.message.contains("10005"),
        "{}",
        f.message
    );
    assert!(
        f.remedy
            .contains("the pod's spec.securityContext.runAsGroup sets it"),
        "{}",
        f.remedy
    );
    // The pause is no app: nothing says it can become exempt.
    assert!(
        !ns.findings.iter().any(|f| f.pid == Some(20)),
        "{:?}",
        ns.findings
    );
}

/// The primary gid is listed among the supplementary groups by every runtime: it is
/// runAsGroup's, unless the rules match supplementary groups, where the pod's lists may
/// hold it too.
#[test]
fn the_primary_gid_among_supplementary_groups_is_blamed_only_where_groups_match() {
    let app = || {
        let mut p = process(12, 10001, 1337, 0, &[]);
        p.groups = vec![1337];
        p
    };
    let remedy = |extra: &str| {
        let s = snapshot(
            vec![process(10, 1337, 1337, 0, &[100, 101]), app()],
            proxy_listeners(),
            false,
            extra,
        );
        let r = build(&s, 0);
        r.netns[0]
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::IdentityExempt && f.pid == Some(12))
            .map(|f| f.remedy.clone())
            .expect("the app escapes")
    };
    let plain = remedy("");
    assert!(plain.contains("securityContext.runAsGroup"), "{plain}");
    assert!(!plain.contains("supplementalGroups"), "{plain}");
    let suppl = remedy("-A ISTIO_OUTPUT -m owner --gid-owner 1337 --suppl-groups -j RETURN\n");
    assert!(
        suppl.contains("--suppl-groups") && suppl.contains("supplementalGroups"),
        "{suppl}"
    );
}
