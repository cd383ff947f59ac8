//! The kernel facts meshleak's evaluator relies on, measured on this kernel: rules are
//! loaded into a throwaway namespace with the real tools, connections are made with chosen
//! credentials, and meshleak's verdict on the rules read back must equal what happened.

mod common;

use common::{Kernel, Lab, Loader, Probe, disagreements, is_root, probe, run};

const ISTIO: &str = include_str!("../testdata/istio-sidecar.rules");
const PEER80: &str = "169.254.77.2:80";

fn expect(lab: &Lab, probes: &[(Probe, Kernel)]) {
    let only: Vec<Probe> = probes.iter().map(|(p, _)| p.clone()).collect();
    let wrong = disagreements(lab, &only);
    assert!(
        wrong.is_empty(),
        "meshleak disagrees with the kernel:\n{}",
        wrong.join("\n")
    );
    for (p, want) in probes {
        let got = lab.connect(p.uid, p.gid, &p.groups, p.udp, p.dst);
        assert_eq!(got, *want, "the kernel fact itself changed for {p:?}");
    }
}

#[test]
fn owner_match_compares_fsgid_and_suppl_groups_need_the_flag() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    lab.load(Loader::IptablesNft, ISTIO);
    expect(
        &lab,
        &[
            (
                probe(10001, 10001, &[], false, PEER80),
                Kernel::Captured(15001),
            ),
            (probe(10001, 1337, &[], false, PEER80), Kernel::Bypass),
            (probe(1337, 10001, &[], false, PEER80), Kernel::Bypass),
            (
                probe(10001, 10001, &[1337], false, PEER80),
                Kernel::Captured(15001),
            ),
            (
                probe(10001, 10001, &[], true, "169.254.77.2:53"),
                Kernel::Bypass,
            ),
            (
                probe(10001, 10001, &[], false, "[fd77::2]:80"),
                Kernel::Bypass,
            ),
        ],
    );
    lab.reset();
    lab.load(Loader::IptablesLegacy, "*nat\n-A OUTPUT -m owner --gid-owner 1337 --suppl-groups -j RETURN\n-A OUTPUT -m owner --uid-owner 106-108 -j RETURN\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n");
    expect(
        &lab,
        &[
            (probe(10001, 10001, &[1337], false, PEER80), Kernel::Bypass),
            (
                probe(105, 10001, &[], false, PEER80),
                Kernel::Captured(15001),
            ),
            (probe(107, 10001, &[], false, PEER80), Kernel::Bypass),
            (
                probe(109, 10001, &[], false, PEER80),
                Kernel::Captured(15001),
            ),
        ],
    );
}

#[test]
fn all_nat_tables_run_and_the_first_mapping_wins() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    // RETURN and ACCEPT in the legacy nat table do not stop the nft nat table's REDIRECT.
    lab.load(
        Loader::IptablesLegacy,
        "*nat\n-A OUTPUT -m owner --gid-owner 1337 -j RETURN\n-A OUTPUT -j ACCEPT\nCOMMIT\n",
    );
    lab.load(
        Loader::IptablesNft,
        "*nat\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n",
    );
    expect(
        &lab,
        &[(
            probe(10001, 1337, &[], false, PEER80),
            Kernel::Captured(15001),
        )],
    );
    // Two mappings: the earlier chain (lower priority; nat chains must stay above -200) wins.
    lab.load(Loader::Nft, "table inet early {\n chain out {\n  type nat hook output priority -150;\n  meta l4proto tcp redirect to :15002\n }\n}\n");
    expect(
        &lab,
        &[(
            probe(10001, 10001, &[], false, PEER80),
            Kernel::Captured(15002),
        )],
    );
    // Same priority: the chain registered last runs first. Dumps do not show that order,
    // so meshleak must say unknown and name both outcomes; the kernel picks one of them.
    lab.reset();
    lab.load(
        Loader::IptablesLegacy,
        "*nat\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15006\nCOMMIT\n",
    );
    lab.load(Loader::Nft, "table inet same {\n chain out {\n  type nat hook output priority -100;\n  meta l4proto tcp redirect to :15002\n }\n}\n");
    let p = probe(10001, 10001, &[], false, PEER80);
    assert_eq!(
        lab.connect(p.uid, p.gid, &p.groups, p.udp, p.dst),
        Kernel::Captured(15002),
        "newest first"
    );
    let t = meshleak_core::eval::trace(&lab.ruleset(), &common::flow_of(&p));
    assert_eq!(t.outcome.verdict, meshleak_core::eval::Verdict::Unknown);
    let ports: Vec<_> = t.possible.iter().map(|o| o.redirect_port).collect();
    assert_eq!(ports, [Some(15002), Some(15006)]);
}

#[test]
fn filter_runs_after_nat_and_sees_the_redirected_destination() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    lab.load(Loader::IptablesNft, "*nat\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n*filter\n-A OUTPUT -p tcp --dport 8080 -j DROP\nCOMMIT\n");
    expect(
        &lab,
        &[(
            probe(10001, 10001, &[], false, "169.254.77.2:8080"),
            Kernel::Captured(15001),
        )],
    );
    lab.load(
        Loader::IptablesLegacy,
        "*filter\n-A OUTPUT -p tcp --dport 15001 -j REJECT\nCOMMIT\n",
    );
    expect(
        &lab,
        &[(
            probe(10001, 10001, &[], false, "169.254.77.2:8080"),
            Kernel::Dropped,
        )],
    );
}

#[test]
fn inet_tables_cover_both_families_and_ip6tables_only_ipv6() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    lab.load(Loader::Nft, "table inet istio-proxy-nat {\n chain output { type nat hook output priority -100; policy accept;\n  meta skuid 1337 return\n  meta skgid 1337 return\n  meta l4proto tcp redirect to :15001\n }\n}\n");
    expect(
        &lab,
        &[
            (
                probe(10001, 10001, &[], false, PEER80),
                Kernel::Captured(15001),
            ),
            (
                probe(10001, 10001, &[], false, "[fd77::2]:80"),
                Kernel::Captured(15001),
            ),
            (
                probe(10001, 1337, &[], false, "[fd77::2]:80"),
                Kernel::Bypass,
            ),
        ],
    );
    lab.reset();
    lab.load(
        Loader::Ip6tablesLegacy,
        "*nat\n-A OUTPUT -p tcp ! -d ::1/128 -j REDIRECT --to-ports 15006\nCOMMIT\n",
    );
    expect(
        &lab,
        &[
            (
                probe(10001, 10001, &[], false, "[fd77::2]:80"),
                Kernel::Captured(15006),
            ),
            (probe(10001, 10001, &[], false, PEER80), Kernel::Bypass),
        ],
    );
}

#[test]
fn marks_notrack_and_dnat() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    lab.load(
        Loader::IptablesNft,
        concat!(
            "*raw\n-A OUTPUT -p udp --dport 53 -j CT --notrack\nCOMMIT\n",
            "*mangle\n-A OUTPUT -p tcp --dport 443 -j MARK --set-xmark 0x539/0xfff\nCOMMIT\n",
            "*nat\n-A OUTPUT -m mark --mark 0x539/0xfff -j RETURN\n",
            "-A OUTPUT -p tcp --dport 81 -j DNAT --to-destination 127.0.0.1:15006\n",
            "-A OUTPUT -p udp -j REDIRECT --to-ports 15002\n",
            "-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n"
        ),
    );
    expect(
        &lab,
        &[
            (
                probe(10001, 10001, &[], false, "169.254.77.2:443"),
                Kernel::Bypass,
            ),
            (
                probe(10001, 10001, &[], false, "169.254.77.2:81"),
                Kernel::Captured(15006),
            ),
            (
                probe(10001, 10001, &[], true, "169.254.77.2:53"),
                Kernel::Bypass,
            ),
            (
                probe(10001, 10001, &[], true, "169.254.77.2:54"),
                Kernel::Captured(15002),
            ),
        ],
    );
}

#[test]
fn iptables_nft_values_are_lost_in_nft_json_but_save_output_restores_them() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    lab.load(Loader::IptablesNft, ISTIO);
    let json = lab
        .dumps()
        .into_iter()
        .find(|(tool, _)| tool.starts_with("nft"))
        .unwrap()
        .1;
    let only_json = meshleak_core::parse::combine(vec![
        meshleak_core::parse::parse_dump("nft.json", &json, Default::default()).unwrap(),
    ])
    .unwrap();
    let t = meshleak_core::eval::trace(
        &only_json,
        &meshleak_core::eval::Flow {
            version: meshleak_core::model::IpVersion::V4,
            proto: 6,
            src: None,
            dst: "169.254.77.2".parse().unwrap(),
            sport: meshleak_core::eval::SourcePort::DEFAULT_EPHEMERAL,
            dport: 80,
            oif: "eth0".into(),
            identity: meshleak_core::eval::Identity {
                uid: 10001,
                gid: 1337,
                groups: vec![],
            },
            mark: 0,
            local: vec![],
        },
    );
    assert_eq!(
        t.outcome.verdict,
        meshleak_core::eval::Verdict::Unknown,
        "xt owner values are not in nft -j"
    );
    // With iptables-nft-save output beside it, the verdict is exact again.
    expect(
        &lab,
        &[(probe(10001, 1337, &[], false, PEER80), Kernel::Bypass)],
    );
}

#[test]
fn local_destinations_loop_back_through_prerouting_and_input() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    // Istio's TPROXY mode: traffic to the pod's own address re-enters through lo, where
    // mangle PREROUTING hands it to the proxy's transparent socket.
    lab.load(Loader::IptablesNft, concat!(
        "*mangle\n:ISTIO_TPROXY - [0:0]\n",
        "-A PREROUTING -p tcp -i lo ! -d 127.0.0.1/32 -m tcp --dport 8080 -j ISTIO_TPROXY\n",
        "-A ISTIO_TPROXY -p tcp -j TPROXY --on-port 15006 --on-ip 0.0.0.0 --tproxy-mark 0x539/0xffffffff\n",
        "COMMIT\n",
        "*filter\n-A INPUT -p udp -i lo -m udp --dport 8080 -j DROP\nCOMMIT\n"
    ));
    expect(
        &lab,
        &[
            (
                probe(10001, 10001, &[], false, "169.254.77.1:8080"),
                Kernel::Captured(15006),
            ),
            (
                probe(10001, 10001, &[], false, "127.0.0.1:8080"),
                Kernel::Bypass,
            ),
            (
                probe(10001, 10001, &[], true, "169.254.77.1:8080"),
                Kernel::Dropped,
            ),
            (probe(10001, 10001, &[], false, PEER80), Kernel::Bypass),
        ],
    );
}

/// Nat chains run inside the NAT core's own hook, at -100 on OUTPUT and 100 on
/// POSTROUTING whatever their own priority, which only orders them among themselves: a
/// filter chain at 0 sees an nft nat chain of priority 100's REDIRECT, a filter chain at
/// -120 does not see one of priority -150's, and a SNAT in a nat chain of priority 300
/// (run at 100) is seen by a filter chain at 200, one of priority 0 not by a filter at 50.
#[test]
fn nat_chains_run_at_the_nat_hooks_priority() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    let capture = "meta skuid != 1337 tcp dport 80 redirect to :15001";
    for (nat, filter, want) in [
        (100, 0, Kernel::Dropped),
        (-150, -120, Kernel::Captured(15001)),
    ] {
        lab.reset();
        lab.load(
            Loader::Nft,
            &format!(
                "table ip t {{\n chain out {{ type nat hook output priority {nat}; {capture}; }}\n chain f {{ type filter hook output priority {filter}; tcp dport 15001 drop; }}\n}}\n"
            ),
        );
        expect(&lab, &[(probe(10001, 10001, &[], false, PEER80), want)]);
    }
    for (nat, filter, want) in [
        (300, 200, Kernel::Dropped),
        (0, 50, Kernel::Captured(15001)),
        (-180, 200, Kernel::Dropped),
    ] {
        lab.reset();
        lab.load(
            Loader::Nft,
            &format!(
                "table ip t {{\n chain out {{ type nat hook output priority -100; {capture}; }}\n chain post {{ type nat hook postrouting priority {nat}; oifname \"lo\" snat to 127.0.0.6; }}\n chain f {{ type filter hook postrouting priority {filter}; ip saddr 127.0.0.6 drop; }}\n}}\n"
            ),
        );
        expect(&lab, &[(probe(10001, 10001, &[], false, PEER80), want)]);
    }
    // The NAT hook at -150's place would run before mangle POSTROUTING (-150): it does not.
    lab.reset();
    lab.load(
        Loader::Nft,
        &format!("table ip t {{\n chain out {{ type nat hook output priority -100; {capture}; }}\n chain post {{ type nat hook postrouting priority -180; oifname \"lo\" snat to 127.0.0.6; }}\n}}\n"),
    );
    lab.load(
        Loader::IptablesLegacy,
        "*mangle\n-A POSTROUTING -s 127.0.0.6/32 -j DROP\nCOMMIT\n",
    );
    expect(
        &lab,
        &[(
            probe(10001, 10001, &[], false, PEER80),
            Kernel::Captured(15001),
        )],
    );
}

/// The kernel marks a connection SNAT or DNAT (`--ctstate SNAT,DNAT`) only when a mapping
/// changes its tuple: a SNAT to its own source sets nothing, one to another address does;
/// a REDIRECT to where the packet was going sets nothing (and captures nothing).
#[test]
fn nat_status_is_set_only_by_a_mapping_that_changes_something() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    let local = "127.0.0.1:8080";
    for (nat, want) in [
        (
            "-A POSTROUTING -o lo -p tcp -j SNAT --to-source 127.0.0.1",
            Kernel::Bypass,
        ),
        (
            "-A POSTROUTING -o lo -p tcp -j SNAT --to-source 127.0.0.6",
            Kernel::Dropped,
        ),
        (
            "-A OUTPUT -p tcp --dport 8080 -j REDIRECT --to-ports 8080",
            Kernel::Bypass,
        ),
        (
            "-A OUTPUT -p tcp --dport 8080 -j REDIRECT --to-ports 15001",
            Kernel::Dropped,
        ),
    ] {
        lab.reset();
        lab.load(
            Loader::IptablesNft,
            &format!("*nat\n{nat}\nCOMMIT\n*filter\n-A INPUT -m conntrack --ctstate SNAT,DNAT -j DROP\nCOMMIT\n"),
        );
        expect(&lab, &[(probe(1337, 1337, &[], false, local), want)]);
    }
}

/// NETMAP maps a network to another, keeping the host bits: in nat OUTPUT the destination
/// (10.55.0.2 becomes the peer 169.254.77.2, or 127.55.0.2, a local listener), in
/// POSTROUTING the source (127.0.0.1 becomes 169.254.77.1, the pod's own address, where
/// replies route back: an INPUT rule on it drops, one on .2 does not), with iptables'
/// NETMAP and nft's `prefix to`, from the tools' dumps and read natively.
#[test]
fn netmap_maps_the_network_and_keeps_the_host_bits() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    run(
        &[
            "ip",
            "-n",
            &lab.pod,
            "route",
            "add",
            "10.55.0.0/16",
            "dev",
            "eth0",
        ],
        None,
    );
    let cases: [(Loader, &str, &str, Kernel); 5] = [
        (
            Loader::IptablesLegacy,
            "*nat\n-A OUTPUT -d 10.55.0.0/16 -j NETMAP --to 169.254.77.0/24\nCOMMIT\n",
            "10.55.0.2:80",
            Kernel::Bypass,
        ),
        (
            Loader::IptablesNft,
            "*nat\n-A OUTPUT -d 10.55.0.0/16 -j NETMAP --to 127.0.0.0/8\nCOMMIT\n",
            "10.55.0.2:8080",
            Kernel::Captured(8080),
        ),
        (
            Loader::Nft,
            "table ip t {\n chain out {\n  type nat hook output priority -100; policy accept;\n  ip daddr 10.55.0.0/16 dnat prefix to 169.254.77.0/24\n }\n}\n",
            "10.55.0.2:80",
            Kernel::Bypass,
        ),
        (
            Loader::IptablesNft,
            "*nat\n-A POSTROUTING -o lo -j NETMAP --to 169.254.77.0/24\nCOMMIT\n*filter\n-A INPUT -s 169.254.77.1 -p tcp --dport 8080 -j DROP\nCOMMIT\n",
            "127.0.0.1:8080",
            Kernel::Dropped,
        ),
        (
            Loader::Nft,
            "table ip t {\n chain post {\n  type nat hook postrouting priority 100; policy accept;\n  oifname \"lo\" snat prefix to 169.254.77.0/24\n }\n chain in {\n  type filter hook input priority 0; policy accept;\n  ip saddr 169.254.77.2 tcp dport 8080 drop\n }\n}\n",
            "127.0.0.1:8080",
            Kernel::Bypass,
        ),
    ];
    for (loader, rules, dst, want) in cases {
        lab.reset();
        run(
            &[
                "ip",
                "-n",
                &lab.pod,
                "route",
                "replace",
                "10.55.0.0/16",
                "dev",
                "eth0",
            ],
            None,
        );
        lab.load(loader, rules);
        let p = probe(10001, 10001, &[], false, dst);
        expect(&lab, &[(p.clone(), want)]);
        let native = meshleak_collect::ruleset(&meshleak_collect::netns::Netns::Path(
            format!("/run/netns/{}", lab.pod).into(),
        ))
        .expect("reads");
        assert_eq!(
            common::predict(&native, &p),
            want,
            "read natively:\n{rules}"
        );
    }
}
