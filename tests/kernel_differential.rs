//! Differential test against the kernel: many generated rule sets over the features
//! meshleak models, loaded with iptables-nft-restore, iptables-legacy-restore and nft -f
//! (alone and mixed in one namespace); real connections from chosen identities; meshleak's
//! verdict on the rules read back from the kernel must equal what happened, every time.
//!
//! Deterministic: the seed is fixed (override with MESHLEAK_SEED, count with
//! MESHLEAK_CASES) and printed with every failure.

mod common;

use common::rulegen::{
    PROBE_DSTS, PROBE_IDS, Rng, Syntax, gen_filter, gen_mangle, gen_nat, nft_text, probes,
    restore_text,
};
use common::{Lab, Loader, disagreements, is_root};
use meshleak_core::model::IpVersion;

/// Loads one generated scenario; returns a description of what was loaded.
fn load_case(lab: &Lab, r: &mut Rng, mode: usize) -> String {
    let mut loaded = String::new();
    let mut load = |loader: Loader, text: String| {
        loaded += &format!("--- {loader:?}\n{text}");
        lab.load(loader, &text);
    };
    let xt = Syntax::Xtables { suppl_groups: true };
    match mode {
        // One xtables backend holds the capture, the other may hold non-mapping rules.
        0 | 1 => {
            let (main, other) = if mode == 0 {
                (Loader::IptablesNft, Loader::IptablesLegacy)
            } else {
                (Loader::IptablesLegacy, Loader::IptablesNft)
            };
            load(
                main,
                restore_text("nat", &gen_nat(r, xt, IpVersion::V4, true)),
            );
            if r.chance(40) {
                load(
                    main,
                    restore_text("mangle", &gen_mangle(r, xt, IpVersion::V4)),
                );
            }
            if r.chance(30) {
                load(
                    other,
                    restore_text("nat", &gen_nat(r, xt, IpVersion::V4, false)),
                );
            }
            if r.chance(30) {
                load(
                    other,
                    restore_text("filter", &gen_filter(r, xt, IpVersion::V4)),
                );
            }
            if r.chance(40) {
                let v6 = if main == Loader::IptablesNft {
                    Loader::Ip6tablesNft
                } else {
                    Loader::Ip6tablesLegacy
                };
                load(
                    v6,
                    restore_text("nat", &gen_nat(r, xt, IpVersion::V6, true)),
                );
            }
        }
        // Native nftables (inet: both families), alone or beside iptables-nft.
        _ => {
            let nft = Syntax::Nft;
            let version = if r.chance(50) {
                IpVersion::V4
            } else {
                IpVersion::V6
            };
            let prio = r.pick(&[-150, -100, -50]);
            load(
                Loader::Nft,
                nft_text("meshnat", "nat", prio, &gen_nat(r, nft, version, true)),
            );
            if r.chance(40) {
                // Not at the nat chain's priority: same-priority order is not in any dump
                // (kernel_facts covers that case).
                load(
                    Loader::Nft,
                    nft_text("meshmangle", "route", -160, &gen_mangle(r, nft, version)),
                );
            }
            if r.chance(40) {
                load(
                    Loader::IptablesNft,
                    restore_text("nat", &gen_nat(r, xt, IpVersion::V4, false)),
                );
            }
            if r.chance(30) {
                load(
                    Loader::IptablesNft,
                    restore_text("filter", &gen_filter(r, xt, IpVersion::V4)),
                );
            }
        }
    }
    loaded
}

fn run_cases(modes: &[usize], salt: u64) {
    if !is_root() {
        return;
    }
    let seed: u64 = std::env::var("MESHLEAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1337);
    let cases: usize = std::env::var("MESHLEAK_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let lab = Lab::new();
    let mut r = Rng(seed ^ salt);
    let mut checked = 0;
    for case in 0..cases {
        lab.reset();
        let mode = r.pick(modes);
        let loaded = load_case(&lab, &mut r, mode);
        let ps = probes(&mut r);
        let wrong = disagreements(&lab, &ps);
        assert!(
            wrong.is_empty(),
            "seed {seed} case {case}: meshleak disagrees with the kernel\n{}\nrules loaded:\n{loaded}",
            wrong.join("\n")
        );
        checked += ps.len();
    }
    eprintln!(
        "{cases} rule sets, {checked} connections: meshleak agreed with the kernel every time"
    );
}

#[test]
fn xtables_rule_sets_match_the_kernel() {
    run_cases(&[0, 1], 1);
}

#[test]
fn nftables_rule_sets_match_the_kernel() {
    run_cases(&[2], 2);
}

/// Verdict maps (`KEY vmap { ELEMENT : VERDICT }`, anonymous and named, single keys and
/// intervals, accept/drop/return/jump/goto) decide as the kernel does, for every probe
/// identity and destination, read from `nft -j` and natively; none of these rules leaves a
/// verdict unknown.
#[test]
fn verdict_maps_match_the_kernel() {
    if !is_root() {
        return;
    }
    const SETS: &[&str] = &[
        // Istio's owner exemptions as a map; ports past it redirected.
        "table inet m {
          map owners { type uid : verdict; elements = { 1337 : return, 107 : accept }; }
          chain out { type nat hook output priority -100; policy accept;
            meta skuid vmap @owners
            meta skgid vmap { 1337 : return }
            ip daddr 127.0.0.0/8 return
            ip6 daddr ::1 return
            meta l4proto tcp redirect to :15001
          }
        }",
        // Port intervals, a jump into a chain that redirects, a goto past the rest.
        "table inet m {
          chain cap { meta l4proto tcp redirect to :15006; }
          chain skip { return; }
          chain out { type nat hook output priority -100; policy accept;
            th dport vmap { 53 : goto skip, 8000-8999 : jump cap, 15000-15100 : accept }
            meta l4proto tcp redirect to :15001
          }
        }",
        // Destinations by address; a drop element in a filter chain.
        "table inet m {
          chain out { type nat hook output priority -100; policy accept;
            ip daddr vmap { 169.254.77.0/24 : return, 127.0.0.1 : accept }
            ip6 daddr vmap { fd77::/64 : accept }
            meta l4proto tcp redirect to :15002
          }
          chain filt { type filter hook output priority 0; policy accept;
            meta skuid vmap { 107 : drop, 10001 : accept }
          }
        }",
    ];
    let lab = Lab::new();
    let mut checked = 0;
    for (i, set) in SETS.iter().enumerate() {
        lab.reset();
        lab.load(Loader::Nft, set);
        let ps: Vec<_> = PROBE_IDS
            .iter()
            .flat_map(|(u, g, s)| {
                PROBE_DSTS
                    .iter()
                    .map(|d| common::probe(*u, *g, s, false, d))
            })
            .collect();
        let (json, native) = (
            lab.ruleset(),
            meshleak_collect::ruleset(&meshleak_collect::netns::Netns::Path(
                format!("/run/netns/{}", lab.pod).into(),
            ))
            .expect("reads the pod's rules"),
        );
        for p in &ps {
            let kernel = lab.connect(p.uid, p.gid, &p.groups, p.udp, p.dst);
            let (a, b) = (common::predict(&json, p), common::predict(&native, p));
            assert_eq!(
                (a, b),
                (kernel, kernel),
                "rule set {i}, {p:?}: (nft -j, native) against the kernel\n{set}"
            );
        }
        checked += ps.len();
    }
    eprintln!("{checked} connections through verdict maps: meshleak agreed with the kernel");
}

/// Source NAT in POSTROUTING (Istio in Docker, with Docker's embedded-DNS rules: DNAT of
/// 127.0.0.11:53 to its resolver, SNAT of the replies' source back to :53), loaded with
/// each backend: every connection is decided as the kernel decides it, and `analyze`
/// decides every identity (none unknown), each as its connections went. Then rules after
/// a SNAT that test the new source: INPUT sees a looped-back packet's mapped source.
#[test]
fn source_nat_matches_the_kernel() {
    if !is_root() {
        return;
    }
    const DOCKER_DNS: &str = include_str!("../testdata/docker-dns.rules");
    let lab = Lab::with_ports(&[15001, 15006, 8080, 36613, 52011]);
    let dsts = [
        "127.0.0.11:53",
        "169.254.77.2:80",
        "169.254.77.2:53",
        "127.0.0.1:8080",
    ];
    let probes: Vec<_> = PROBE_IDS
        .iter()
        .flat_map(|(u, g, s)| {
            dsts.iter()
                .flat_map(move |d| [false, true].map(|udp| common::probe(*u, *g, s, udp, d)))
        })
        .collect();
    for loader in [Loader::IptablesNft, Loader::IptablesLegacy] {
        lab.reset();
        lab.load(loader, DOCKER_DNS);
        let rules = lab.ruleset();
        let kernel: Vec<_> = probes
            .iter()
            .map(|p| {
                let k = lab.connect(p.uid, p.gid, &p.groups, p.udp, p.dst);
                assert_eq!(common::predict(&rules, p), k, "{loader:?} {p:?}");
                k
            })
            .collect();
        let ids: Vec<_> = PROBE_IDS
            .iter()
            .map(|(u, g, s)| meshleak_core::eval::Identity {
                uid: *u,
                gid: *g,
                groups: s.to_vec(),
            })
            .collect();
        let report = meshleak_core::analyze::analyze(&rules, &ids).expect("analyzes");
        // What the kernel did with the reference app's connection of the same kind.
        let reference = |q: &common::Probe| {
            let i = probes.iter().position(|p| {
                (p.uid, p.gid, p.groups.is_empty(), p.udp, p.dst)
                    == (10001, 10001, true, q.udp, q.dst)
            });
            kernel[i.expect("the reference is probed")]
        };
        for (id, judged) in ids.iter().zip(&report.identities) {
            // A TCP connection the mesh captured for the reference but not for this one.
            let escaped = probes.iter().zip(&kernel).any(|(p, k)| {
                (p.uid, p.gid, &p.groups) == (id.uid, id.gid, &id.groups)
                    && !p.udp
                    && *k == common::Kernel::Bypass
                    && reference(p) == common::Kernel::Captured(15001)
            });
            use meshleak_core::analyze::IdentityVerdict::*;
            let expected: &[_] = if escaped {
                &[Bypass, Partial]
            } else {
                &[Captured]
            };
            assert!(
                expected.contains(&judged.verdict),
                "{loader:?} {id:?}: analyze says {:?}; on the kernel it escaped: {escaped}",
                judged.verdict
            );
        }
    }
    // What runs after a SNAT sees the mapped source: dropped on it, kept on the old.
    for (input, kernel) in [
        ("-s 127.0.0.6 -j DROP", common::Kernel::Dropped),
        ("-s 169.254.77.1 -j DROP", common::Kernel::Captured(15001)),
        ("-p tcp --sport 7 -j DROP", common::Kernel::Dropped),
    ] {
        lab.reset();
        let text = format!(
            "*nat\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A OUTPUT -p tcp -d 169.254.77.2 -j REDIRECT --to-ports 15001\n-A POSTROUTING -o lo -p tcp -j SNAT --to-source 127.0.0.6:7\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT {input}\nCOMMIT\n"
        );
        lab.load(Loader::IptablesNft, &text);
        let p = common::probe(10001, 10001, &[], false, "169.254.77.2:80");
        let got = lab.connect(p.uid, p.gid, &p.groups, false, p.dst);
        assert_eq!(got, kernel, "the kernel, INPUT {input}");
        assert_eq!(
            common::predict(&lab.ruleset(), &p),
            kernel,
            "meshleak, INPUT {input}"
        );
    }
}
