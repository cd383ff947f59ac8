//! `nft list ruleset` text read offline must mean what `nft -j list ruleset` of the same
//! kernel rules means: rules loaded with `nft -f` into a throwaway namespace, both listings
//! taken from the kernel, and the two rule models compared (texts aside: the listing keeps
//! each rule as pasted). Statements the reader does not know stay unknown.

mod common;

use common::rulegen::{Rng, Syntax, gen_filter, gen_mangle, gen_nat, nft_text};
use common::{Lab, Loader, is_root, run};
use meshleak_core::model::{Action, Dir, IpVersion, Table, Test};
use meshleak_core::parse::{self, Hints};
use meshleak_core::range::PortRange;
use serde_json::Value;

fn listings(lab: &Lab) -> (String, String) {
    let list = |json: bool| {
        let mut args = vec!["ip", "netns", "exec", &lab.pod, "nft"];
        if json {
            args.push("-j");
        }
        args.extend(["list", "ruleset"]);
        run(&args, None)
    };
    (list(false), list(true))
}

/// A table's meaning: its model as JSON without rule and statement texts, and unknown
/// names reduced to "unknown" (each form names what it could not read its own way).
fn meaning(tables: &[Table]) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("text");
                m.remove("origin");
                if m.get("kind").and_then(Value::as_str) == Some("unknown") {
                    m.remove("name");
                }
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(tables).unwrap();
    strip(&mut v);
    v
}

fn assert_same(lab: &Lab, what: &str) {
    let (text, json) = listings(lab);
    let from_text = parse::parse_dump("listing", &text, Hints::default())
        .unwrap_or_else(|e| panic!("{what}: {e}\n{text}"));
    let from_json = parse::parse_dump("json", &json, Hints::default()).unwrap();
    let (a, b) = (meaning(&from_text), meaning(&from_json));
    if a != b {
        let dir = std::env::temp_dir();
        std::fs::write(dir.join("listing-text.json"), format!("{a:#}")).unwrap();
        std::fs::write(dir.join("listing-json.json"), format!("{b:#}")).unwrap();
        panic!("{what}: the listing and nft -j differ (see listing-*.json in /tmp)\n{text}");
    }
}

#[test]
fn the_listing_means_what_nft_json_means() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    for (name, text) in [
        ("nft-features", include_str!("../testdata/nft-features.nft")),
        (
            "nft-redirect",
            include_str!("../testdata/nft-redirect-15002.nft"),
        ),
        (
            "istio-nft",
            include_str!("../testdata/meshes/istio-sidecar-nft.nft"),
        ),
        ("extras", include_str!("../testdata/nft-listing-extras.nft")),
    ] {
        lab.reset();
        lab.load(Loader::Nft, text);
        assert_same(&lab, name);
    }
    // Source NAT, read natively too: the same addresses, ports and randomness (the
    // statements; matches may be split differently, `tcp sport` as one test or two).
    let native = meshleak_collect::ruleset(&meshleak_collect::netns::Netns::Path(
        format!("/run/netns/{}", lab.pod).into(),
    ))
    .expect("reads");
    let json = parse::parse_dump("json", &listings(&lab).1, Hints::default()).unwrap();
    let snats = |tables: &[Table]| -> Vec<Vec<Action>> {
        let t = tables
            .iter()
            .find(|t| t.name == "snats")
            .expect("the table");
        t.chains[0]
            .rules
            .iter()
            .map(|r| r.actions.clone())
            .collect()
    };
    assert_eq!(snats(&native.tables), snats(&json));
    // iptables-nft's own tables, as nft lists them: nft prints its xt statements in
    // iptables' own translation where one exists, which `nft -j` does not; so each rule
    // must mean what nft -j's means, or be known where nft -j's is unknown.
    lab.reset();
    lab.load(
        Loader::IptablesNft,
        &(include_str!("../testdata/istio-sidecar.rules").to_string()
            + "*filter\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -m owner --gid-owner 1337 --suppl-groups -j ACCEPT\n-A OUTPUT -m addrtype --dst-type LOCAL --limit-iface-out -j ACCEPT\nCOMMIT\n"),
    );
    let (text, json) = listings(&lab);
    let from_text = parse::parse_dump("listing", &text, Hints::default()).unwrap();
    let from_json = parse::parse_dump("json", &json, Hints::default()).unwrap();
    let rules = |tables: &[Table]| -> Vec<Value> {
        let v = meaning(tables);
        let mut out = Vec::new();
        for t in v.as_array().unwrap() {
            for c in t["chains"].as_array().unwrap() {
                out.extend(c["rules"].as_array().unwrap().iter().cloned());
            }
        }
        out
    };
    let (a, b) = (rules(&from_text), rules(&from_json));
    assert_eq!(a.len(), b.len(), "{text}");
    let mut known = 0;
    for (x, y) in a.iter().zip(&b) {
        if y.to_string().contains(r#""kind":"unknown""#) {
            known += usize::from(!x.to_string().contains(r#""kind":"unknown""#));
        } else {
            assert_eq!(x, y, "{text}");
        }
    }
    assert!(known >= 9, "the listing's translations are read: {known}");
    assert!(text.contains("xt match owner"), "{text}");
    let mut r = Rng(19);
    for i in 0..30 {
        lab.reset();
        let version = if i % 2 == 0 {
            IpVersion::V4
        } else {
            IpVersion::V6
        };
        let text = nft_text(
            "gnat",
            "nat",
            -100,
            &gen_nat(&mut r, Syntax::Nft, version, true),
        ) + &nft_text(
            "gmangle",
            "route",
            -150,
            &gen_mangle(&mut r, Syntax::Nft, version),
        ) + &nft_text(
            "gfilter",
            "filter",
            0,
            &gen_filter(&mut r, Syntax::Nft, version),
        );
        lab.load(Loader::Nft, &text);
        assert_same(&lab, &format!("generated #{i}"));
    }
}

#[test]
fn what_the_listing_reader_does_not_know_is_unknown() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    lab.load(
        Loader::Nft,
        include_str!("../testdata/nft-listing-extras.nft"),
    );
    let (text, _) = listings(&lab);
    let tables = parse::parse_dump("listing", &text, Hints::default()).unwrap();
    let out = tables.iter().find(|t| t.name == "extras").unwrap();
    let chain = out.chains.iter().find(|c| c.name == "out").unwrap();
    let rule = |needle: &str| {
        chain
            .rules
            .iter()
            .find(|r| r.text.contains(needle))
            .unwrap_or_else(|| panic!("no rule with {needle}"))
    };
    // Pasted text kept; a concatenation and a limit are unknown; a verdict map is one rule
    // per element at one position.
    assert_eq!(
        rule("@dests").text,
        "ip daddr @dests return comment \"excluded ranges\""
    );
    let vmap: Vec<_> = chain
        .rules
        .iter()
        .filter(|r| r.text.contains("vmap"))
        .collect();
    assert_eq!(vmap.len(), 2, "{vmap:?}");
    assert_eq!(vmap[0].position, vmap[1].position);
    for (r, port, action) in [(vmap[0], 22, Action::Accept), (vmap[1], 23, Action::Drop)] {
        assert!(
            r.matches.iter().any(|m| matches!(&m.test,
                Test::Port { dir: Dir::Dst, ranges, .. } if ranges == &[PortRange::single(port)])),
            "{r:?}"
        );
        assert_eq!(r.actions.last(), Some(&action));
    }
    for needle in ["ip saddr . ip daddr", "limit rate"] {
        let json = serde_json::to_string(rule(needle)).unwrap();
        assert!(json.contains(r#""kind":"unknown""#), "{needle}: {json}");
    }
}
