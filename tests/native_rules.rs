//! The native readers against the real tools (root): rules loaded with the tools, read back
//! by `meshleak rules` without them, and compared line by line with what the tools print;
//! what was read must mean the same as the tools' dumps parsed offline; and reading must
//! change nothing.

mod common;

use std::process::Command;

use common::rulegen::{Rng, Syntax, gen_filter, gen_mangle, gen_nat, restore_text};
use common::{Lab, Loader, is_root, run};
use meshleak::model::{IpVersion, Ruleset, Table};
use meshleak::parse::{self, Hints};

const ISTIO: &str = include_str!("../testdata/istio-sidecar.rules");
const LEGACY_V4: &str = include_str!("../testdata/native/legacy-v4.rules");
const LEGACY_V6: &str = include_str!("../testdata/native/legacy-v6.rules");

fn meshleak(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshleak"))
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("utf-8"),
        String::from_utf8(out.stderr).expect("utf-8"),
    )
}

/// The tools' output without header comments and with counters zeroed.
fn normalize(save: &str) -> String {
    save.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match (l.starts_with(':'), l.rfind(" [")) {
            (true, Some(i)) => format!("{} [0:0]", &l[..i]),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn legacy_save(lab: &Lab) -> String {
    let exec = |tool: &str| run(&["ip", "netns", "exec", &lab.pod, tool], None);
    normalize(&(exec("iptables-legacy-save") + &exec("ip6tables-legacy-save")))
}

fn ours(lab: &Lab) -> String {
    let (code, out, err) = meshleak(&["rules", "--netns", &format!("/run/netns/{}", lab.pod)]);
    assert_eq!(code, 0, "{err}");
    out
}

/// The model of each rule without its citation text: what evaluation uses.
fn meaning(t: &Table) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for c in &t.chains {
        let policy = c
            .base
            .as_ref()
            .map(|b| format!("{:?} {:?} {}", b.hook, b.policy, b.priority))
            .unwrap_or_default();
        out.push((format!("{} {}", c.name, policy), vec![]));
        for r in &c.rules {
            let ms = r
                .matches
                .iter()
                .map(|m| format!("{} {:?}", m.negated, m.test));
            let acts = r.actions.iter().map(|a| format!("{a:?}"));
            out.push((r.text.clone(), ms.chain(acts).collect()));
        }
    }
    out
}

fn assert_same_as_tools(lab: &Lab, loaded: &str) {
    let theirs = legacy_save(lab);
    let mine = ours(lab);
    let headers: Vec<&str> = mine
        .lines()
        .filter(|l| l.starts_with("# meshleak:"))
        .collect();
    for h in &headers {
        assert!(
            h.starts_with("# meshleak: backend=iptables-legacy family=ipv"),
            "{h}"
        );
    }
    assert_eq!(
        normalize(&mine),
        theirs,
        "rules differ from iptables-legacy-save\nloaded:\n{loaded}"
    );
    // Read natively, the rules mean what the tools' dumps mean.
    let native = meshleak::collect::legacy_tables(&meshleak::collect::netns::Netns::Path(
        format!("/run/netns/{}", lab.pod).into(),
    ))
    .unwrap();
    let exec = |tool: &str| run(&["ip", "netns", "exec", &lab.pod, tool], None);
    let dumped: Ruleset = parse::combine(vec![
        parse::parse_dump(
            "iptables-legacy-save",
            &exec("iptables-legacy-save"),
            Hints::default(),
        )
        .unwrap(),
        parse::parse_dump(
            "ip6tables-legacy-save",
            &exec("ip6tables-legacy-save"),
            Hints::default(),
        )
        .unwrap(),
    ])
    .unwrap();
    for t in &native {
        let twin = dumped
            .tables
            .iter()
            .find(|d| d.name == t.name && d.family == t.family)
            .expect("same tables");
        assert_eq!(meaning(t), meaning(twin), "table {} {:?}", t.name, t.family);
    }
}

#[test]
fn legacy_rules_equal_the_tools_output() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    lab.load(Loader::IptablesLegacy, ISTIO);
    lab.load(Loader::IptablesLegacy, LEGACY_V4);
    lab.load(Loader::Ip6tablesLegacy, LEGACY_V6);
    assert_same_as_tools(&lab, "fixtures");
}

#[test]
fn generated_legacy_rule_sets_equal_the_tools_output() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    let mut r = Rng(0x0dd_ba11);
    let xt = Syntax::Xtables { suppl_groups: true };
    for _ in 0..40 {
        lab.reset();
        let mut loaded = String::new();
        for (loader, version) in [
            (Loader::IptablesLegacy, IpVersion::V4),
            (Loader::Ip6tablesLegacy, IpVersion::V6),
        ] {
            let text = restore_text("nat", &gen_nat(&mut r, xt, version, true))
                + &restore_text("mangle", &gen_mangle(&mut r, xt, version))
                + &restore_text("filter", &gen_filter(&mut r, xt, version));
            lab.load(loader, &text);
            loaded += &text;
        }
        assert_same_as_tools(&lab, &loaded);
    }
}

#[test]
fn reads_the_namespace_of_a_process() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    lab.load(Loader::IptablesLegacy, ISTIO);
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.pod, "sleep", "30"])
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    // `ip netns exec` execs sleep in the same process once the namespace is set.
    let mut out = String::new();
    for _ in 0..50 {
        let (code, o, _) = meshleak(&["rules", "--pid", &pid, "--format", "json"]);
        if code == 0 && o.contains("ISTIO_OUTPUT") {
            out = o;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().ok();
    child.wait().ok();
    let v: serde_json::Value = serde_json::from_str(&out).expect("json ruleset");
    assert!(
        v["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "nat" && t["backend"] == "iptables-legacy")
    );
}

#[test]
fn reading_changes_nothing_and_creates_no_table() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    let names = |file: &str| {
        run(
            &[
                "ip",
                "netns",
                "exec",
                &lab.pod,
                "cat",
                &format!("/proc/net/{file}"),
            ],
            None,
        )
    };
    // A namespace without legacy tables: reading must not instantiate any.
    ours(&lab);
    assert_eq!(names("ip_tables_names").trim(), "");
    assert_eq!(names("ip6_tables_names").trim(), "");
    lab.load(Loader::IptablesLegacy, ISTIO);
    let before = (
        legacy_save(&lab),
        names("ip_tables_names"),
        names("ip6_tables_names"),
    );
    for _ in 0..3 {
        ours(&lab);
    }
    let after = (
        legacy_save(&lab),
        names("ip_tables_names"),
        names("ip6_tables_names"),
    );
    assert_eq!(before, after);
}

#[test]
fn missing_privileges_name_the_capability() {
    if !is_root() {
        return;
    }
    let lab = Lab::new();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_meshleak"))
        .args(["rules", "--netns", &format!("/run/netns/{}", lab.pod)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CAP_SYS_ADMIN"), "{err}");
    let (code, _, err) = meshleak(&["rules", "--pid", "999999999"]);
    assert_eq!(code, 2);
    assert!(err.contains("/proc/999999999/ns/net"), "{err}");
}

/// Writes the kernel's blobs for the fixtures to testdata/native/ (run by hand:
/// `MESHLEAK_CAPTURE=1 cargo test --test native_rules capture -- --ignored`); the unit tests
/// in src/xt decode them without root.
#[test]
#[ignore = "writes test data"]
fn capture_kernel_blobs() {
    if !is_root() || std::env::var("MESHLEAK_CAPTURE").is_err() {
        return;
    }
    let lab = Lab::new();
    lab.load(Loader::IptablesLegacy, ISTIO);
    lab.load(Loader::IptablesLegacy, LEGACY_V4);
    lab.load(Loader::Ip6tablesLegacy, LEGACY_V6);
    let ns = meshleak::collect::netns::Netns::Path(format!("/run/netns/{}", lab.pod).into());
    let mut out = String::new();
    for version in [IpVersion::V4, IpVersion::V6] {
        let raw = meshleak::collect::netns::in_netns(&ns, move || {
            meshleak::collect::legacy::read_raw_family(version)
        })
        .unwrap()
        .unwrap();
        for (info, blob) in raw {
            let hex: String = blob.iter().map(|b| format!("{b:02x}")).collect();
            out += &format!(
                "{:?} {} {hex}\n",
                version,
                serde_json::to_string(&info).unwrap()
            );
        }
    }
    std::fs::write("testdata/native/legacy-blobs.txt", out).unwrap();
    std::fs::write("testdata/native/legacy-save.txt", legacy_save(&lab) + "\n").unwrap();
}
