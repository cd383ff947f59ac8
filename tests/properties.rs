//! Property tests: parse/print round trips, parsers that never panic, evaluator invariants.

use proptest::prelude::*;

use meshleak_core::analyze::{IdentityVerdict, analyze};
use meshleak_core::eval::{Flow, Identity, SourcePort, Verdict, trace};
use meshleak_core::model::{
    Action, AddrType, CtState, Dir, IfacePattern, IpVersion, MarkReg, MarkSet, Match, Ruleset, Test,
};
use meshleak_core::parse::{Hints, combine, parse_dump};
use meshleak_core::range::{AddrRange, IdRange, PortRange};
use meshleak_core::render::xtables_rule;

fn m(negated: bool, test: Test) -> Match {
    Match {
        negated,
        test,
        text: String::new(),
    }
}

fn id_range() -> impl Strategy<Value = IdRange> {
    (0u32..3000, 0u32..50).prop_map(|(a, w)| IdRange {
        start: a,
        end: a + w,
    })
}

fn port_range() -> impl Strategy<Value = PortRange> {
    (1u16..60000, 0u16..500).prop_map(|(a, w)| PortRange {
        start: a,
        end: a + w,
    })
}

fn net4() -> impl Strategy<Value = AddrRange> {
    (any::<u32>(), 8u8..=32).prop_map(|(a, len)| {
        AddrRange::parse(&format!("{}/{len}", std::net::Ipv4Addr::from(a))).expect("valid")
    })
}

/// A test other than protocol, in a form iptables-save prints back the same way.
fn other_test(proto: Option<u8>) -> impl Strategy<Value = Test> {
    let port = match proto {
        Some(p) => prop_oneof![
            (any::<bool>(), port_range()).prop_map(move |(src, r)| Test::Port {
                dir: if src { Dir::Src } else { Dir::Dst },
                protos: vec![p],
                ranges: vec![r],
            }),
            proptest::collection::vec(port_range(), 2..4).prop_map(move |ranges| Test::Port {
                dir: Dir::Dst,
                protos: vec![p],
                ranges,
            }),
        ]
        .boxed(),
        None => Just(Test::SocketExists).boxed(),
    };
    prop_oneof![
        port,
        (any::<bool>(), net4()).prop_map(|(src, r)| Test::Addr {
            dir: if src { Dir::Src } else { Dir::Dst },
            version: IpVersion::V4,
            ranges: vec![r],
        }),
        prop_oneof![Just("lo"), Just("eth0"), Just("eth+"), Just("veth12+")].prop_map(|name| {
            Test::Iface {
                dir: Dir::Dst,
                patterns: vec![IfacePattern::parse(name)],
            }
        }),
        id_range().prop_map(|r| Test::Uid { ranges: vec![r] }),
        (id_range(), any::<bool>()).prop_map(|(r, suppl)| Test::Gid {
            ranges: vec![r],
            suppl_groups: suppl
        }),
        (any::<u32>(), any::<u32>(), any::<bool>()).prop_map(|(v, mask, ct)| Test::Mark {
            reg: if ct { MarkReg::CtMark } else { MarkReg::Mark },
            mask,
            values: vec![(v & mask, v & mask)],
        }),
        proptest::sample::subsequence(
            vec![CtState::New, CtState::Established, CtState::Related],
            1..3
        )
        .prop_map(|states| Test::CtState { states }),
        proptest::sample::subsequence(
            vec![AddrType::Local, AddrType::Unicast, AddrType::Multicast],
            1..3
        )
        .prop_map(|types| Test::AddrType {
            dir: Dir::Dst,
            types,
            limit_iface_out: false
        }),
    ]
}

fn rule() -> impl Strategy<Value = (Vec<Match>, Action)> {
    let proto = prop_oneof![Just(None), Just(Some(6u8)), Just(Some(17u8))];
    let action = prop_oneof![
        Just(Action::Return),
        Just(Action::Accept),
        Just(Action::Jump { chain: "C1".into() }),
        Just(Action::Goto { chain: "C1".into() }),
        port_range().prop_map(|p| Action::Redirect { ports: Some(p) }),
        (any::<u32>(), any::<u32>()).prop_map(|(v, mask)| Action::SetMark(MarkSet {
            reg: MarkReg::Mark,
            keep: !mask,
            or: 0,
            xor: v,
            copy: None,
        })),
        Just(Action::Notrack),
    ];
    (proto, any::<bool>()).prop_flat_map(move |(proto, neg_proto)| {
        let tests = proptest::collection::vec((any::<bool>(), other_test(proto)), 0..4);
        (tests, action.clone()).prop_map(move |(tests, action)| {
            let mut ms: Vec<Match> = proto
                .map(|p| m(neg_proto, Test::Protocol { protos: vec![p] }))
                .into_iter()
                .collect();
            let mut seen_generic = Vec::new();
            for (neg, t) in tests {
                // iptables takes each generic option once per rule.
                let generic = match &t {
                    Test::Addr { dir, .. } => Some((0, *dir)),
                    Test::Iface { dir, .. } => Some((1, *dir)),
                    _ => None,
                };
                if let Some(g) = generic {
                    if seen_generic.contains(&g) {
                        continue;
                    }
                    seen_generic.push(g);
                }
                ms.push(m(neg, t));
            }
            (ms, action)
        })
    })
}

fn parse(text: &str) -> Ruleset {
    combine(vec![
        parse_dump("p", text, Hints::default()).expect("parses"),
    ])
    .expect("combines")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn xtables_render_then_parse_is_identity((matches, action) in rule()) {
        let body = xtables_rule(&matches, std::slice::from_ref(&action)).expect("renderable");
        let text = format!("*mangle\n:C1 - [0:0]\n-A OUTPUT {body}\nCOMMIT\n");
        let r = parse(&text);
        let got = &r.tables[0].chains.iter().find(|c| c.name == "OUTPUT").unwrap().rules[0];
        let strip = |ms: &[Match]| ms.iter().map(|m| (m.negated, m.test.clone())).collect::<Vec<_>>();
        prop_assert_eq!(strip(&got.matches), strip(&matches), "rule text: {}", body);
        prop_assert_eq!(&got.actions, &vec![action]);
        prop_assert_eq!(&got.text, &format!("-A OUTPUT {body}"));
    }

    #[test]
    fn xtables_parser_never_panics(lines in proptest::collection::vec(
        proptest::collection::vec(prop_oneof![
            Just("-A"), Just("OUTPUT"), Just("-p"), Just("tcp"), Just("!"), Just("-m"), Just("owner"),
            Just("--uid-owner"), Just("1337"), Just("-j"), Just("RETURN"), Just("*nat"), Just("COMMIT"),
            Just(":X -"), Just("-N"), Just("X"), Just("--dport"), Just("1:2"), Just("\""), Just("-I"),
            Just("[0:0]"), Just("-d"), Just("::1/129"), Just("multiport"), Just("--dports"), Just("REDIRECT"),
            Just("--to-ports"), Just("\u{1b}[31m"), Just("-g"), Just("mark"), Just("--mark"), Just("0x1/0xz"),
        ], 0..8).prop_map(|w| w.join(" ")), 0..8)) {
        let _ = parse_dump("fuzz", &lines.join("\n"), Hints::default());
    }

    #[test]
    fn json_parser_never_panics(text in "\\PC{0,200}") {
        let _ = parse_dump("fuzz.json", &format!("{{\"nftables\": [{text}]}}"), Hints::default());
        let _ = parse_dump("fuzz.json", &format!("{{{text}"), Hints::default());
    }

    /// Invariants of any evaluation: a ruleset that never maps never captures; captured
    /// always names a port; an extra table that only accepts changes nothing; tracing is
    /// deterministic.
    #[test]
    fn evaluator_invariants(
        rules in proptest::collection::vec(rule(), 0..6),
        uid in 0u32..2000, gid in 0u32..2000, dport in 1u16..20000, udp in any::<bool>(), dst in any::<u32>(),
    ) {
        let mut text = String::from("*nat\n:C1 - [0:0]\n");
        for (ms, a) in &rules {
            text += &format!("-A OUTPUT {}\n", xtables_rule(ms, std::slice::from_ref(a)).expect("renderable"));
            text += &format!("-A C1 {}\n", xtables_rule(ms, &[Action::Return]).expect("renderable"));
        }
        text += "COMMIT\n";
        let r = parse(&text);
        let flow = Flow {
            version: IpVersion::V4,
            proto: if udp { 17 } else { 6 },
            src: Some("10.0.0.9".parse().unwrap()),
            dst: std::net::Ipv4Addr::from(dst).into(),
            sport: SourcePort::DEFAULT_EPHEMERAL,
            dport,
            oif: "eth0".into(),
            identity: Identity { uid, gid, groups: vec![] },
            mark: 0,
            local: vec![],
        };
        let t = trace(&r, &flow);
        prop_assert_eq!(t.outcome.verdict == Verdict::Captured, t.outcome.redirect_port.is_some());
        let maps = rules.iter().any(|(_, a)| matches!(a, Action::Redirect { .. }));
        if !maps {
            prop_assert_ne!(t.outcome.verdict, Verdict::Captured);
        }
        let again = trace(&r, &flow);
        prop_assert_eq!(again.outcome, t.outcome);
        let mut with_filter = r.clone();
        with_filter.tables.extend(parse("*filter\n-A OUTPUT -j ACCEPT\nCOMMIT\n*raw\nCOMMIT\n").tables);
        prop_assert_eq!(trace(&with_filter, &flow).outcome, t.outcome);
    }

    /// The reference identity is, by definition, never worse off than itself.
    #[test]
    fn reference_identity_is_captured_when_meshed(rules in proptest::collection::vec(rule(), 0..4)) {
        let mut text = String::from("*nat\n:C1 - [0:0]\n");
        for (ms, a) in &rules {
            text += &format!("-A OUTPUT {}\n", xtables_rule(ms, std::slice::from_ref(a)).expect("renderable"));
        }
        text += "-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n";
        let r = parse(&text);
        let reference = analyze(&r, &[]).expect("small").reference_identity;
        let a = analyze(&r, &[reference]).expect("small");
        prop_assert!(matches!(a.identities[0].verdict, IdentityVerdict::Captured | IdentityVerdict::Unmeshed));
    }
}
