//! Each kernel fact meshleak relies on, on plain data. The same facts are checked against
//! the real kernel in `tests/kernel_facts.rs`.

use super::*;
use crate::model::{Action, Backend};
use crate::parse::{Hints, combine, parse_dump};

fn rules(dumps: &[(&str, Backend)]) -> Ruleset {
    let parsed = dumps
        .iter()
        .map(|(text, backend)| {
            let hints = Hints {
                backend: Some(*backend),
                family: None,
            };
            parse_dump("t", text, hints).expect("parses")
        })
        .collect();
    combine(parsed).expect("combines")
}

fn nft(text: &str) -> Ruleset {
    combine(vec![
        parse_dump("t.json", text, Hints::default()).expect("parses"),
    ])
    .unwrap()
}

fn flow(dst: &str, uid: u32, gid: u32, groups: &[u32]) -> Flow {
    let dst: std::net::SocketAddr = dst.parse().unwrap();
    Flow {
        version: IpVersion::of(&dst.ip()),
        proto: 6,
        src: None,
        dst: dst.ip(),
        sport: SourcePort::DEFAULT_EPHEMERAL,
        dport: dst.port(),
        oif: if dst.ip().is_loopback() { "lo" } else { "eth0" }.into(),
        identity: Identity {
            uid,
            gid,
            groups: groups.to_vec(),
        },
        mark: 0,
        local: Vec::new(),
    }
}

const LEGACY: Backend = Backend::IptablesLegacy;
const NFT: Backend = Backend::IptablesNft;

const ISTIO: &str = include_str!("../../../../testdata/istio-sidecar.rules");

fn outcome(r: &Ruleset, f: &Flow) -> (Verdict, Option<u16>) {
    let t = trace(r, f);
    (t.outcome.verdict, t.outcome.redirect_port)
}

#[test]
fn owner_match_uses_fsgid_the_seed_incident() {
    let r = rules(&[(ISTIO, NFT)]);
    assert_eq!(
        outcome(&r, &flow("10.0.0.5:80", 10001, 10001, &[])),
        (Verdict::Captured, Some(15001))
    );
    let t = trace(&r, &flow("10.0.0.5:80", 10001, 1337, &[]));
    assert_eq!(t.outcome.verdict, Verdict::Bypass);
    let decided = crate::explain::deciding(&r, &t).unwrap();
    assert_eq!(
        decided.at.rule,
        "-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN"
    );
    assert_eq!(
        (decided.at.chain.as_str(), decided.at.position),
        ("ISTIO_OUTPUT", Some(7))
    );
}

#[test]
fn supplementary_groups_count_only_with_suppl_groups() {
    let plain = rules(&[(
        "*nat\n-A OUTPUT -m owner --gid-owner 1337 -j RETURN\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n",
        NFT,
    )]);
    assert_eq!(
        outcome(&plain, &flow("10.0.0.5:80", 1, 1, &[1337])).0,
        Verdict::Captured
    );
    let suppl = rules(&[(
        "*nat\n-A OUTPUT -m owner --gid-owner 1337 --suppl-groups -j RETURN\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n",
        NFT,
    )]);
    assert_eq!(
        outcome(&suppl, &flow("10.0.0.5:80", 1, 1, &[1337])).0,
        Verdict::Bypass
    );
}

#[test]
fn uid_ranges() {
    let r = rules(&[(
        "*nat\n-A OUTPUT -m owner --uid-owner 106-108 -j RETURN\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n",
        LEGACY,
    )]);
    for (uid, v) in [
        (105, Verdict::Captured),
        (106, Verdict::Bypass),
        (108, Verdict::Bypass),
        (109, Verdict::Captured),
    ] {
        assert_eq!(
            outcome(&r, &flow("10.0.0.5:80", uid, 1, &[])).0,
            v,
            "uid {uid}"
        );
    }
}

#[test]
fn return_in_one_nat_table_does_not_stop_redirect_in_another() {
    let legacy =
        "*nat\n-A OUTPUT -m owner --gid-owner 1337 -j RETURN\n-A OUTPUT -j ACCEPT\nCOMMIT\n";
    let nft_nat = "*nat\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n";
    let r = rules(&[(legacy, LEGACY), (nft_nat, NFT)]);
    let t = trace(&r, &flow("10.0.0.5:80", 1, 1337, &[]));
    assert_eq!(
        (t.outcome.verdict, t.outcome.redirect_port),
        (Verdict::Captured, Some(15001))
    );
    assert_eq!(crate::explain::deciding(&r, &t).unwrap().at.backend, NFT);
}

#[test]
fn first_nat_mapping_wins() {
    let first = "*nat\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n";
    let second = include_str!("../../../../testdata/nft-redirect-15002.json");
    let mut r = rules(&[(first, LEGACY)]);
    r.tables.extend(nft(second).tables);
    // Both at priority -100: registration order decides, which dumps do not show.
    let t = trace(&r, &flow("10.0.0.5:80", 1, 1, &[]));
    assert_eq!(t.outcome.verdict, Verdict::Unknown);
    let ports: Vec<_> = t.possible.iter().map(|o| o.redirect_port).collect();
    assert_eq!(ports, [Some(15001), Some(15002)]);
    assert!(t.unknowns[0].what.contains("registration order"));
    // With the nft chain earlier (priority -150), the nft mapping wins.
    for t in &mut r.tables {
        for c in &mut t.chains {
            if let (Backend::Nftables, Some(b)) = (t.backend, c.base.as_mut()) {
                b.priority = -150;
            }
        }
    }
    assert_eq!(
        outcome(&r, &flow("10.0.0.5:80", 1, 1, &[])),
        (Verdict::Captured, Some(15002))
    );
}

#[test]
fn same_priority_chains_that_agree_in_any_order_decide() {
    let legacy = "*nat\n-A OUTPUT -m owner --uid-owner 1337 -j RETURN\nCOMMIT\n";
    let r = {
        let mut r = rules(&[(legacy, LEGACY)]);
        r.tables
            .extend(nft(include_str!("../../../../testdata/nft-redirect-15002.json")).tables);
        r
    };
    assert_eq!(
        outcome(&r, &flow("10.0.0.5:80", 1, 1, &[])),
        (Verdict::Captured, Some(15002))
    );
}

#[test]
fn filter_sees_the_destination_after_nat() {
    let nat = "*nat\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n";
    let drop_8080 = "*filter\n-A OUTPUT -p tcp --dport 8080 -j DROP\nCOMMIT\n";
    let drop_15001 = "*filter\n-A OUTPUT -p tcp -d 127.0.0.1 --dport 15001 -o lo -j DROP\nCOMMIT\n";
    let r = rules(&[(&format!("{nat}{drop_8080}"), NFT)]);
    assert_eq!(
        outcome(&r, &flow("10.0.0.5:8080", 1, 1, &[])).0,
        Verdict::Captured
    );
    let r = rules(&[(&format!("{nat}{drop_15001}"), NFT)]);
    assert_eq!(
        outcome(&r, &flow("10.0.0.5:8080", 1, 1, &[])).0,
        Verdict::Dropped
    );
}

#[test]
fn inet_tables_cover_ipv6_and_ipv4_only_rules_do_not() {
    let r = rules(&[(ISTIO, NFT)]);
    assert_eq!(
        outcome(&r, &flow("[fd00::5]:80", 10001, 10001, &[])).0,
        Verdict::Bypass
    );
    let r = nft(include_str!("../../../../testdata/nft-redirect-15002.json"));
    assert_eq!(
        outcome(&r, &flow("[fd00::5]:80", 1, 1, &[])),
        (Verdict::Captured, Some(15002))
    );
}

#[test]
fn unknown_matches_fork_and_agreeing_branches_decide() {
    let text = "*nat\n-A OUTPUT -m socket --transparent -j RETURN\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n";
    let t = trace(&rules(&[(text, NFT)]), &flow("10.0.0.5:80", 1, 1, &[]));
    assert_eq!(t.outcome.verdict, Verdict::Unknown);
    assert_eq!(t.possible.len(), 2);
    assert!(t.unknowns[0].what.contains("socket"));
    // Both branches end the same way: the unknown match does not matter.
    let text = "*nat\n-A OUTPUT -m socket --transparent -j LOG\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n";
    let t = trace(&rules(&[(text, NFT)]), &flow("10.0.0.5:80", 1, 1, &[]));
    assert_eq!(t.outcome.verdict, Verdict::Captured);
    assert!(t.unknowns.is_empty());
}

#[test]
fn unknown_source_address_matters_only_when_a_rule_tests_it() {
    let text = "*nat\n-A OUTPUT -s 10.1.0.0/16 -j RETURN\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n";
    let r = rules(&[(text, NFT)]);
    assert_eq!(
        outcome(&r, &flow("10.0.0.5:80", 1, 1, &[])).0,
        Verdict::Unknown
    );
    let mut f = flow("10.0.0.5:80", 1, 1, &[]);
    f.src = Some("10.1.2.3".parse().unwrap());
    assert_eq!(outcome(&r, &f).0, Verdict::Bypass);
}

#[test]
fn notrack_skips_nat() {
    let text = "*raw\n-A OUTPUT -m owner --uid-owner 7 -j CT --notrack\nCOMMIT\n*nat\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n";
    let r = rules(&[(text, LEGACY)]);
    assert_eq!(
        outcome(&r, &flow("10.0.0.5:80", 7, 1, &[])).0,
        Verdict::Bypass
    );
    assert_eq!(
        outcome(&r, &flow("10.0.0.5:80", 8, 1, &[])).0,
        Verdict::Captured
    );
}

#[test]
fn marks_set_in_mangle_are_seen_by_nat() {
    let text = concat!(
        "*mangle\n-A OUTPUT -p tcp --dport 443 -j MARK --set-xmark 0x539/0xfff\nCOMMIT\n",
        "*nat\n-A OUTPUT -m mark --mark 0x539/0xfff -j RETURN\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n"
    );
    let r = rules(&[(text, NFT)]);
    assert_eq!(
        outcome(&r, &flow("10.0.0.5:443", 1, 1, &[])).0,
        Verdict::Bypass
    );
    assert_eq!(
        outcome(&r, &flow("10.0.0.5:80", 1, 1, &[])).0,
        Verdict::Captured
    );
    let mut marked = flow("10.0.0.5:80", 1, 1, &[]);
    marked.mark = 0x1539;
    assert_eq!(
        outcome(&r, &marked).0,
        Verdict::Bypass,
        "SO_MARK is the initial mark"
    );
}

#[test]
fn goto_does_not_return_to_its_caller() {
    let text = "*nat\n-N G\n-N J\n-A OUTPUT -p tcp --dport 1 -g G\n-A OUTPUT -p tcp --dport 2 -j J\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\n-A G -j RETURN\n-A J -j RETURN\nCOMMIT\n";
    let r = rules(&[(text, NFT)]);
    assert_eq!(
        outcome(&r, &flow("10.0.0.5:1", 1, 1, &[])).0,
        Verdict::Bypass
    );
    assert_eq!(
        outcome(&r, &flow("10.0.0.5:2", 1, 1, &[])).0,
        Verdict::Captured
    );
}

#[test]
fn dnat_to_a_local_port_is_capture_elsewhere_is_bypass() {
    let text = "*nat\n-A OUTPUT -p tcp --dport 53 -j DNAT --to-destination 127.0.0.1:15053\n-A OUTPUT -p tcp --dport 54 -j DNAT --to-destination 10.9.9.9:53\nCOMMIT\n";
    let r = rules(&[(text, NFT)]);
    assert_eq!(
        outcome(&r, &flow("10.0.0.5:53", 1, 1, &[])),
        (Verdict::Captured, Some(15053))
    );
    assert_eq!(
        outcome(&r, &flow("10.0.0.5:54", 1, 1, &[])).0,
        Verdict::Bypass
    );
}

#[test]
fn policy_drop_and_reject() {
    let text = "*filter\n:OUTPUT DROP [0:0]\n-A OUTPUT -p tcp --dport 80 -j ACCEPT\n-A OUTPUT -p tcp --dport 81 -j REJECT\nCOMMIT\n";
    let r = rules(&[(text, LEGACY)]);
    assert_eq!(
        outcome(&r, &flow("10.0.0.5:80", 1, 1, &[])).0,
        Verdict::Bypass
    );
    assert_eq!(
        outcome(&r, &flow("10.0.0.5:81", 1, 1, &[])).0,
        Verdict::Dropped
    );
    assert_eq!(
        outcome(&r, &flow("10.0.0.5:82", 1, 1, &[])).0,
        Verdict::Dropped
    );
}

#[test]
fn jump_loops_in_offline_dumps_end_unknown_not_hang() {
    // No parser lets a loop through (the kernel refuses them); a hand-made snapshot may.
    let text = "*nat\n-N A\n-N B\n-A OUTPUT -j A\n-A A -j B\n-A B -j RETURN\nCOMMIT\n";
    let mut r = rules(&[(text, NFT)]);
    let b = r.tables[0]
        .chains
        .iter_mut()
        .find(|c| c.name == "B")
        .unwrap();
    b.rules[0].actions = vec![Action::Jump { chain: "A".into() }];
    let t = trace(&r, &flow("10.0.0.5:80", 1, 1, &[]));
    assert_eq!(t.outcome.verdict, Verdict::Unknown);
}

#[test]
fn udp_is_not_captured_by_tcp_rules_and_tcp_port_tests_skip_udp() {
    let text = "*nat\n-A OUTPUT -p tcp ! --dport 15008 -j REDIRECT --to-ports 15001\nCOMMIT\n";
    let r = rules(&[(text, NFT)]);
    let mut f = flow("10.0.0.5:53", 1, 1, &[]);
    f.proto = 17;
    assert_eq!(outcome(&r, &f).0, Verdict::Bypass);
}

#[test]
fn inet_dnat_of_the_other_family_is_a_no_op() {
    let r = nft(include_str!("../../../../testdata/nft-features.json"));
    // t6's rules are postrouting/prerouting; build one: dnat ip in an inet output chain.
    let mut r2 = r.clone();
    r2.tables.retain(|t| t.name == "t6");
    let chain = &mut r2.tables[0].chains[0];
    let base = chain.base.as_mut().unwrap();
    base.hook = crate::model::Hook::Output;
    base.priority = -100;
    chain.rules = vec![crate::model::Rule {
        comment: None,
        position: 1,
        text: "dnat ip to 127.0.0.1:15006".into(),
        matches: vec![],
        actions: vec![Action::Dnat {
            addr: Some("127.0.0.1".parse().unwrap()),
            ports: Some(crate::range::PortRange::single(15006)),
        }],
    }];
    assert_eq!(
        outcome(&r2, &flow("10.0.0.5:80", 1, 1, &[])),
        (Verdict::Captured, Some(15006))
    );
    assert_eq!(
        outcome(&r2, &flow("[fd00::5]:80", 1, 1, &[])).0,
        Verdict::Bypass
    );
}

#[test]
fn ephemeral_source_ports_decide_rules_on_other_ports() {
    let text = "*nat\n-A OUTPUT -p tcp --sport 1000:2000 -j RETURN\n-A OUTPUT -p tcp --sport 40000 -j ACCEPT\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n";
    let r = rules(&[(text, NFT)]);
    let t = trace(&r, &flow("10.0.0.5:80", 1, 1, &[]));
    assert_eq!(t.outcome.verdict, Verdict::Unknown, "40000 may be picked");
    let mut bound = flow("10.0.0.5:80", 1, 1, &[]);
    bound.sport = SourcePort::Bound(1500);
    assert_eq!(outcome(&r, &bound).0, Verdict::Bypass);
    bound.sport = SourcePort::Bound(50000);
    assert_eq!(outcome(&r, &bound).0, Verdict::Captured);
}

const DOCKER_DNS: &str = include_str!("../../../../testdata/docker-dns.rules");

/// Source NAT in POSTROUTING runs after capture is decided: Docker's embedded-DNS SNAT
/// leaves every connection decided, the DNS ones sent to its resolver.
#[test]
fn source_nat_after_capture_decides() {
    let r = rules(&[(DOCKER_DNS, NFT)]);
    for (uid, gid) in [(10001, 10001), (1337, 1337)] {
        let mut f = flow("127.0.0.11:53", uid, gid, &[]);
        assert_eq!(outcome(&r, &f), (Verdict::Captured, Some(36613)));
        f.src = Some("127.0.0.11".parse().unwrap());
        f.sport = SourcePort::Bound(36613);
        assert_eq!(outcome(&r, &f), (Verdict::Captured, Some(36613)));
    }
    let f = flow("169.254.77.2:80", 1337, 1337, &[]);
    assert_eq!(outcome(&r, &f).0, Verdict::Bypass);
    let f = flow("169.254.77.2:80", 10001, 10001, &[]);
    assert_eq!(outcome(&r, &f), (Verdict::Captured, Some(15001)));
}

/// Rules after a source NAT see the new source: a looped-back packet SNATed to
/// 127.0.0.6:7 is dropped by an INPUT rule on that source, and kept by one on the old;
/// MASQUERADE's address is routing's, so a test on it is unknown, and one on its port
/// range decided.
#[test]
fn rules_after_source_nat_see_the_new_source() {
    let with = |postrouting: &str, input: &str| {
        let text = format!(
            "*nat\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A OUTPUT -p tcp -d 169.254.77.2 -j REDIRECT --to-ports 15001\n-A POSTROUTING {postrouting}\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT {input}\nCOMMIT\n"
        );
        let r = rules(&[(&text, NFT)]);
        let mut f = flow("169.254.77.2:80", 10001, 10001, &[]);
        f.src = Some("169.254.77.1".parse().unwrap());
        outcome(&r, &f).0
    };
    let snat = "-o lo -p tcp -j SNAT --to-source 127.0.0.6:7";
    assert_eq!(with(snat, "-s 127.0.0.6 -j DROP"), Verdict::Dropped);
    assert_eq!(with(snat, "-p tcp --sport 7 -j DROP"), Verdict::Dropped);
    assert_eq!(with(snat, "-s 169.254.77.1 -j DROP"), Verdict::Captured);
    let keep_addr = "-o lo -p tcp -j SNAT --to-source :8-9";
    assert_eq!(with(keep_addr, "-s 169.254.77.1 -j DROP"), Verdict::Dropped);
    assert_eq!(
        with(keep_addr, "-p tcp --sport 8:9 -j DROP"),
        Verdict::Dropped
    );
    assert_eq!(
        with(keep_addr, "-p tcp --sport 9 -j DROP"),
        Verdict::Unknown
    );
    let masq = "-o lo -p tcp -j MASQUERADE --to-ports 100-200";
    assert_eq!(with(masq, "-s 169.254.77.1 -j DROP"), Verdict::Unknown);
    assert_eq!(with(masq, "-p tcp --sport 300 -j DROP"), Verdict::Captured);
    // Without a port, SNAT keeps it; with --random, any may be picked.
    let random = "-o lo -p tcp -j SNAT --to-source 127.0.0.6 --random";
    assert_eq!(
        with(random, "-p tcp --sport 32768:60999 -j DROP"),
        Verdict::Unknown
    );
    let kept = "-o lo -p tcp -j SNAT --to-source 127.0.0.6";
    assert_eq!(
        with(kept, "-p tcp --sport 32768:60999 -j DROP"),
        Verdict::Dropped
    );
}

/// The kernel marks a connection SNAT or DNAT only when a mapping changes its tuple: a SNAT
/// to its own source, or a REDIRECT to where it was going, sets neither (and the latter
/// captures nothing).
#[test]
fn nat_status_only_when_the_mapping_changes_something() {
    let with = |nat: &str, dst: &str| {
        let text = format!(
            "*nat\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n{nat}\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m conntrack --ctstate SNAT,DNAT -j DROP\nCOMMIT\n"
        );
        let r = rules(&[(&text, NFT)]);
        let mut f = flow(dst, 1337, 1337, &[]);
        f.src = Some("127.0.0.1".parse().unwrap());
        outcome(&r, &f)
    };
    let same = "-A POSTROUTING -o lo -p tcp -j SNAT --to-source 127.0.0.1";
    assert_eq!(with(same, "127.0.0.1:9000").0, Verdict::Bypass);
    let other = "-A POSTROUTING -o lo -p tcp -j SNAT --to-source 127.0.0.6";
    assert_eq!(with(other, "127.0.0.1:9000").0, Verdict::Dropped);
    let port = "-A POSTROUTING -o lo -p tcp -j SNAT --to-source :7";
    assert_eq!(with(port, "127.0.0.1:9000").0, Verdict::Dropped);
    let random = "-A POSTROUTING -o lo -p tcp -j SNAT --to-source 127.0.0.1 --random";
    assert_eq!(with(random, "127.0.0.1:9000").0, Verdict::Unknown);
    let itself = "-A OUTPUT -p tcp --dport 9000 -j REDIRECT --to-ports 9000";
    assert_eq!(with(itself, "127.0.0.1:9000"), (Verdict::Bypass, None));
    let elsewhere = "-A OUTPUT -p tcp --dport 9000 -j REDIRECT --to-ports 15001";
    assert_eq!(with(elsewhere, "127.0.0.1:9000").0, Verdict::Dropped);
}
