use super::*;
use crate::parse::{Hints, combine, parse_dump};

fn rules(text: &str) -> Ruleset {
    combine(vec![
        parse_dump("t", text, Hints::default()).expect("parses"),
    ])
    .unwrap()
}

fn id(uid: u32, gid: u32, groups: &[u32]) -> Identity {
    Identity {
        uid,
        gid,
        groups: groups.to_vec(),
    }
}

fn verdicts(r: &Ruleset, ids: &[Identity]) -> Vec<IdentityVerdict> {
    analyze(r, ids)
        .unwrap()
        .identities
        .iter()
        .map(|i| i.verdict)
        .collect()
}

const ISTIO: &str = include_str!("../../../../testdata/istio-sidecar.rules");

#[test]
fn seed_incident_identities() {
    let r = rules(ISTIO);
    let a = analyze(
        &r,
        &[
            id(10001, 1337, &[]),
            id(10001, 10001, &[]),
            id(1337, 1337, &[]),
            id(10001, 10001, &[1337]),
        ],
    )
    .unwrap();
    let v: Vec<_> = a.identities.iter().map(|i| i.verdict).collect();
    use IdentityVerdict::*;
    assert_eq!(v, [Bypass, Captured, Bypass, Captured]);
    assert_eq!(
        a.identities[0].rules[0].rule,
        "-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN"
    );
    assert_eq!(
        a.identities[2].rules[0].rule,
        "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN"
    );
    assert_eq!(
        (a.reference_identity.uid, a.reference_identity.gid),
        (10001, 10001)
    );
    let kinds: Vec<_> = a.exemptions.iter().map(|e| e.kind.name()).collect();
    assert!(kinds.contains(&"gid") && kinds.contains(&"uid") && kinds.contains(&"cidr"));
    assert!(
        a.exemptions
            .iter()
            .any(|e| e.kind == ExemptionKind::Family && e.family == Some("ipv6"))
    );
    assert!(
        a.exemptions
            .iter()
            .any(|e| e.kind == ExemptionKind::Protocol && e.conditions[0].contains("udp"))
    );
    // Everything IPv6 escapes for everyone, with no rule to cite.
    assert!(
        a.escapes
            .iter()
            .any(|e| e.family == "ipv6" && e.rule.is_none() && e.dst == ["any"])
    );
}

#[test]
fn partial_when_only_some_captured_traffic_escapes() {
    let r = rules(
        "*nat\n-A OUTPUT -p tcp -m owner --uid-owner 5 -m tcp --dport 443 -j RETURN\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n",
    );
    let a = analyze(&r, &[id(5, 5, &[])]).unwrap();
    assert_eq!(a.identities[0].verdict, IdentityVerdict::Partial);
    let esc = &a.identities[0].escapes;
    assert!(
        esc.iter()
            .all(|e| e.dport == ["443"] && e.protocol == "tcp"),
        "{esc:?}"
    );
}

#[test]
fn unmeshed_when_nothing_is_captured() {
    let r = rules("*filter\n-A OUTPUT -p tcp --dport 25 -j DROP\nCOMMIT\n");
    assert_eq!(verdicts(&r, &[id(1, 1, &[])]), [IdentityVerdict::Unmeshed]);
}

#[test]
fn suppl_groups_and_ranges() {
    let r = rules(
        "*nat\n-A OUTPUT -m owner --gid-owner 1337 --suppl-groups -j RETURN\n-A OUTPUT -m owner --uid-owner 106-108 -j RETURN\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n",
    );
    use IdentityVerdict::*;
    assert_eq!(
        verdicts(&r, &[id(1, 1, &[1337]), id(107, 1, &[]), id(109, 1, &[])]),
        [Bypass, Bypass, Captured]
    );
    // The reference identity avoids every named id.
    let a = analyze(&r, &[]).unwrap();
    assert!(!(106..=108).contains(&a.reference_identity.uid));
}

#[test]
fn unknown_when_an_unmodelled_match_decides() {
    let r = rules(
        "*nat\n-A OUTPUT -m owner --gid-owner ftp -j RETURN\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n",
    );
    // The ordinary app's capture itself depends on the unknown: nothing is definitely
    // captured, and nothing is definitely uncaptured either. Unknown, never unmeshed.
    let a = analyze(&r, &[id(1, 1, &[])]).unwrap();
    assert_eq!(a.identities[0].verdict, IdentityVerdict::Unknown);
    assert!(
        a.exemptions
            .iter()
            .any(|e| e.kind == ExemptionKind::Unknown)
    );
    assert!(a.captured_on.is_empty());
    assert_eq!(
        a.undecided_on,
        [CapturedOn {
            family: "ipv4",
            protocol: "tcp".into()
        }]
    );
    // Only TCP is in doubt: the other protocols are definitely not captured.
    assert!(
        !a.exemptions
            .iter()
            .any(|e| e.kind == ExemptionKind::Family && e.family == Some("ipv4"))
    );
    assert!(
        a.exemptions
            .iter()
            .any(|e| e.kind == ExemptionKind::Protocol && e.conditions[0].contains("udp"))
    );
    // What is not modelled is named, with its rule.
    assert_eq!(a.unknowns.len(), 1, "{:?}", a.unknowns);
    assert_eq!(a.unknowns[0].at.position, Some(1));
    assert!(a.unknowns[0].unknown.contains("gid-owner ftp"));
}

#[test]
fn an_exempt_identity_bypasses_whatever_an_unknown_rule_captures() {
    // `-m statistic` ahead of the exemptions: an ordinary app is captured or not, the
    // proxy's gid never is.
    let r = rules(
        "*nat
-A OUTPUT -m statistic --mode random --probability 0.5 -j RETURN
-A OUTPUT -m owner --gid-owner 1337 -j RETURN
-A OUTPUT -p tcp -j REDIRECT --to-ports 15001
COMMIT
",
    );
    use IdentityVerdict::*;
    assert_eq!(
        verdicts(&r, &[id(1, 1337, &[]), id(1, 1, &[])]),
        [Bypass, Unknown]
    );
}

#[test]
fn partial_stays_partial_beside_unknown_cells() {
    // Port 80 is definitely captured for everyone but gid 1337; port 443's capture turns
    // on a match meshleak does not model.
    let r = rules(
        "*nat
-A OUTPUT -p tcp -m tcp --dport 443 -m statistic --mode random --probability 0.5 -j RETURN
-A OUTPUT -m owner --gid-owner 1337 -p tcp -m tcp --dport 80 -j RETURN
-A OUTPUT -p tcp -j REDIRECT --to-ports 15001
COMMIT
",
    );
    let a = analyze(&r, &[id(1, 1337, &[])]).unwrap();
    assert_eq!(a.identities[0].verdict, IdentityVerdict::Partial);
    assert!(!a.identities[0].unknown.is_empty());
}

#[test]
fn port_and_cidr_exclusions_escape_for_everyone() {
    let r = rules(
        "*nat\n-A OUTPUT -p tcp -m tcp --dport 3306 -j RETURN\n-A OUTPUT -d 10.96.0.0/12 -j RETURN\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n",
    );
    let a = analyze(&r, &[]).unwrap();
    let tcp: Vec<_> = a
        .escapes
        .iter()
        .filter(|e| e.family == "ipv4" && e.protocol == "tcp" && e.oif != ["lo"])
        .collect();
    assert!(
        tcp.iter()
            .any(|e| e.dport == ["3306"] && e.rule.as_ref().unwrap().position == Some(1)),
        "{tcp:?}"
    );
    assert!(
        tcp.iter()
            .any(|e| e.dst == ["10.96.0.0/12"] && e.rule.as_ref().unwrap().position == Some(2)),
        "{tcp:?}"
    );
    let kinds: Vec<_> = a.exemptions.iter().map(|e| e.kind.name()).collect();
    assert!(kinds.contains(&"port") && kinds.contains(&"cidr"));
}

#[test]
fn too_many_cells_is_an_error_not_a_hang() {
    let mut text = String::from("*nat\n");
    for i in 0..200 {
        text += &format!(
            "-A OUTPUT -d 10.{i}.0.0/16 -p tcp -m tcp --dport {} -j RETURN\n",
            1000 + i
        );
    }
    text += "-A OUTPUT -s 10.1.0.0/16 -p tcp -m tcp --sport 999 -j RETURN\nCOMMIT\n";
    assert!(analyze(&rules(&text), &[]).is_err());
}

#[test]
fn source_port_exemptions_name_the_ports_they_let_out() {
    let text = "*nat\n:OUTPUT ACCEPT [0:0]\n:MESH - [0:0]\n-A OUTPUT -p tcp -j MESH\n\
                -A MESH -p tcp --sport 15000:15100 -j RETURN\n\
                -A MESH -p tcp -m tcp ! --sport 1024:65535 -j RETURN\n\
                -A MESH -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n";
    let a = analyze(&rules(text), &[]).unwrap();
    let ports: Vec<Vec<(u16, u16)>> = a
        .exemptions
        .iter()
        .filter(|e| e.kind == ExemptionKind::Source)
        .map(|e| e.source_ports.iter().map(|r| (r.start, r.end)).collect())
        .collect();
    assert_eq!(ports, [vec![(15000, 15100)], vec![(0, 1023)]]);
}

/// Istio in Docker with Docker's embedded-DNS rules (a SNAT in POSTROUTING): every
/// identity is decided, none left unknown by the source NAT.
#[test]
fn source_nat_in_postrouting_leaves_identities_decided() {
    let r = rules(include_str!("../../../../testdata/docker-dns.rules"));
    use IdentityVerdict::*;
    let v = verdicts(
        &r,
        &[
            id(10001, 10001, &[]),
            id(1337, 1337, &[]),
            id(10001, 1337, &[]),
        ],
    );
    assert_eq!(v[0], Captured);
    assert!(
        v[1..].iter().all(|v| matches!(v, Bypass | Partial)),
        "{v:?}"
    );
}
