//! Conformance on real mesh rule sets (`make conformance CORPUS=DIR`): every rule set the
//! mesh projects' tests expect (Istio, Kuma, Consul, OSM, Linkerd, App Mesh, ...) is loaded
//! into a throwaway namespace with the real tools, connections are made from the proxy's and
//! apps' identities, and meshleak must give the kernel's verdict — both on the rules read
//! back from the kernel and on the file itself, parsed offline.
//!
//! Files come in several shapes (restore input, save output, `iptables -t nat ...` command
//! lists, `nft add ...` lines, several cases per file); each is normalised into load steps.
//! What cannot be loaded here (e.g. user names this machine lacks) is reported as skipped.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{Lab, Loader, Probe, disagreements, is_root, predict, probe};
use meshleak_core::model::{Action, Family, Ruleset, Test};
use meshleak_core::parse::{self, Hints};

/// One loadable case: the tool and text for each step.
struct Scenario {
    name: String,
    steps: Vec<(Loader, String)>,
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out);
        } else if !matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("md" | "json" | "xml" | "yml" | "yaml" | "conf")
        ) && p.file_name().is_none_or(|n| n != "SOURCE.txt")
        {
            out.push(p);
        }
    }
}

/// Splits a corpus file into scenarios: `#####`/`###` headings start a new case.
fn scenarios(path: &Path, text: &str) -> Vec<Scenario> {
    let name = path.display().to_string();
    let v6_file = name.contains("ip6tables");
    let mut out = Vec::new();
    let mut cur = Builder::new(v6_file);
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("##### ") || t.starts_with("### ") {
            if let Some(s) = cur.finish(&name, out.len()) {
                out.push(s);
            }
            cur = Builder::new(v6_file);
            cur.v6 = v6_file || t.contains("IPv6") && !t.contains("IPv4");
            continue;
        }
        cur.line(t);
    }
    if let Some(s) = cur.finish(&name, out.len()) {
        out.push(s);
    }
    out
}

struct Builder {
    v6: bool,
    /// Restore text being collected (between `*table` and `COMMIT`), with its family.
    block: Option<(bool, String)>,
    /// `iptables -t TABLE ...` commands, by (v6, table), kept in order.
    commands: Vec<((bool, String), Vec<String>)>,
    nft: String,
    /// Restore blocks, each led by `ip6tables-restore` when the file said so.
    blocks: Vec<String>,
    steps: Vec<(Loader, String)>,
}

impl Builder {
    fn new(v6: bool) -> Builder {
        Builder {
            v6,
            block: None,
            commands: Vec::new(),
            nft: String::new(),
            blocks: Vec::new(),
            steps: Vec::new(),
        }
    }

    fn line(&mut self, t: &str) {
        if let Some((_, text)) = &mut self.block {
            text.push_str(t);
            text.push('\n');
            if t == "COMMIT" {
                let (v6, text) = self.block.take().expect("open");
                let marker = if v6 { "ip6tables-restore\n" } else { "" };
                self.blocks.push(format!("{marker}{text}"));
            }
            return;
        }
        if t.starts_with('*') {
            self.block = Some((self.v6, format!("{t}\n")));
            return;
        }
        if t.starts_with("ip6tables-restore") {
            self.v6 = true;
        } else if t.starts_with("iptables-restore") {
            self.v6 = false;
        }
        let words: Vec<&str> = t.split_whitespace().collect();
        if matches!(words.first(), Some(&("iptables" | "ip6tables")))
            && words.get(1) == Some(&"-t")
            && words.len() > 3
        {
            let key = (words[0] == "ip6tables", words[2].to_string());
            let cmd = words[3..].join(" ");
            match self.commands.iter_mut().find(|(k, _)| *k == key) {
                Some((_, list)) => list.push(cmd),
                None => self.commands.push((key, vec![cmd])),
            }
            return;
        }
        let nft_line = t.strip_prefix("nft ").unwrap_or(t);
        if ["add ", "insert ", "flush ", "delete "]
            .iter()
            .any(|p| nft_line.starts_with(p))
        {
            self.nft.push_str(nft_line);
            self.nft.push('\n');
        }
    }

    fn finish(mut self, name: &str, idx: usize) -> Option<Scenario> {
        // Each block goes to the tool of the family meshleak's parser finds for it.
        let all = self.blocks.concat();
        if let Ok(tables) = parse::parse_dump(name, &all, Hints::default()) {
            for (block, table) in self.blocks.iter().zip(&tables) {
                let text = block.trim_start_matches("ip6tables-restore\n").to_string();
                let loader = if table.family == Family::Ipv6 {
                    Loader::Ip6tablesNft
                } else {
                    Loader::IptablesNft
                };
                self.steps.push((loader, text));
            }
        }
        for ((v6, table), cmds) in self.commands.drain(..) {
            let text = format!("*{table}\n{}\nCOMMIT\n", cmds.join("\n"));
            self.steps.push((
                if v6 {
                    Loader::Ip6tablesNft
                } else {
                    Loader::IptablesNft
                },
                text,
            ));
        }
        if !self.nft.is_empty() {
            self.steps
                .push((Loader::Nft, std::mem::take(&mut self.nft)));
        }
        (!self.steps.is_empty()).then(|| Scenario {
            name: format!("{name}#{idx}"),
            steps: self.steps,
        })
    }
}

/// Owner ids and redirect ports the rules name: identities and listeners to test with.
fn named(rules: &Ruleset) -> (BTreeSet<u32>, BTreeSet<u32>, BTreeSet<u16>) {
    let (mut uids, mut gids, mut ports) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for r in rules
        .tables
        .iter()
        .flat_map(|t| &t.chains)
        .flat_map(|c| &c.rules)
    {
        for m in &r.matches {
            match &m.test {
                Test::Uid { ranges } => uids.extend(ranges.iter().map(|r| r.start)),
                Test::Gid { ranges, .. } => gids.extend(ranges.iter().map(|r| r.start)),
                _ => {}
            }
        }
        for a in &r.actions {
            match a {
                Action::Redirect { ports: Some(p) } | Action::Dnat { ports: Some(p), .. } => {
                    ports.insert(p.start);
                }
                _ => {}
            }
        }
    }
    (uids, gids, ports)
}

fn probes_for(uids: &BTreeSet<u32>, gids: &BTreeSet<u32>) -> Vec<Probe> {
    let mut ids = vec![(10001, 10001, vec![])];
    ids.extend(uids.iter().map(|u| (*u, 10001, vec![])));
    ids.extend(gids.iter().map(|g| (10001, *g, vec![])));
    ids.extend(gids.iter().map(|g| (10001, 10001, vec![*g])));
    let dsts = [
        ("169.254.77.2:80", false),
        ("169.254.77.2:15008", false),
        ("169.254.77.2:15020", false),
        ("169.254.77.2:3306", false),
        ("169.254.77.2:53", true),
        ("169.254.77.2:53", false),
        ("127.0.0.1:8080", false),
        ("169.254.77.1:8080", false),
        ("[fd77::2]:80", false),
        ("[fd77::2]:53", true),
        ("[::1]:8080", false),
    ];
    let mut out = Vec::new();
    for (uid, gid, groups) in &ids {
        for (dst, udp) in dsts {
            out.push(probe(*uid, *gid, groups, udp, dst));
        }
    }
    out
}

/// The mesh a corpus file's rules come from, by where it lies; None for unit data.
fn expected_mesh(name: &str) -> Option<&'static str> {
    let table: [(&str, &str); 12] = [
        ("istio/tools/istio-iptables/", "istio-sidecar"),
        ("istio/cni/pkg/plugin/", "istio-sidecar"),
        ("istio/cni/pkg/iptables/", "istio-ambient"),
        ("istio/cni/pkg/nftables/", "istio-ambient"),
        (
            "istio/tools/istio-nftables/pkg/capture/",
            "istio-sidecar-nft",
        ),
        (
            "meshes/istio-nftables/capture-testdata/",
            "istio-sidecar-nft",
        ),
        ("meshes/kuma/", "kuma"),
        ("meshes/consul/", "consul"),
        ("meshes/osm/", "osm"),
        ("meshes/fsm/", "osm"),
        ("meshes/linkerd/", "linkerd"),
        ("meshes/appmesh/", "appmesh"),
    ];
    table
        .iter()
        .find(|(dir, _)| name.contains(dir))
        .map(|(_, kind)| *kind)
}

#[test]
#[ignore = "needs a corpus: make conformance CORPUS=DIR"]
fn corpus_rule_sets_match_the_kernel() {
    if !is_root() {
        return;
    }
    let dir = PathBuf::from(
        std::env::var("MESHLEAK_CORPUS").expect("MESHLEAK_CORPUS names the corpus directory"),
    );
    let mut paths = Vec::new();
    files(&dir, &mut paths);
    let (mut compared, mut connections, mut skipped, mut failures) = (0, 0, Vec::new(), Vec::new());
    for path in &paths {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for sc in scenarios(path, &text) {
            // The kernel decides what is a valid rule set: load first, skip what it refuses.
            let mut ports: BTreeSet<u16> = [15001, 15006, 8080].into();
            let mut lab = Lab::with_ports(&ports.iter().copied().collect::<Vec<_>>());
            if let Some(e) = sc.steps.iter().find_map(|(l, t)| lab.try_load(*l, t).err()) {
                skipped.push(format!(
                    "{}: {}",
                    sc.name,
                    e.lines().next().unwrap_or_default()
                ));
                continue;
            }
            let mut live = lab.ruleset();
            let (uids, gids, live_ports) = named(&live);
            // Every port the rules redirect to must answer, as the proxy would.
            if !live_ports.is_subset(&ports) {
                ports.extend(live_ports);
                lab = Lab::with_ports(&ports.iter().copied().collect::<Vec<_>>());
                for (l, t) in &sc.steps {
                    lab.load(*l, t);
                }
                live = lab.ruleset();
            }
            // Offline parse of what was loaded: meshleak must read the file's own syntax.
            let offline: Result<Vec<_>, _> = sc
                .steps
                .iter()
                .filter(|(l, _)| *l != Loader::Nft)
                .map(|(l, t)| {
                    let family = if *l == Loader::Ip6tablesNft {
                        Family::Ipv6
                    } else {
                        Family::Ipv4
                    };
                    parse::parse_dump(
                        &sc.name,
                        t,
                        Hints {
                            backend: Some(meshleak_core::model::Backend::IptablesNft),
                            family: Some(family),
                        },
                    )
                })
                .collect();
            let offline = match offline.map(parse::combine) {
                Ok(Ok(r)) => r,
                Ok(Err(e)) | Err(e) => {
                    failures.push(format!(
                        "{}: meshleak cannot parse what the kernel accepted: {e}",
                        sc.name
                    ));
                    continue;
                }
            };
            let probes = probes_for(&uids, &gids);
            let wrong = disagreements(&lab, &probes);
            // The file parsed offline must agree with the rules read back (xtables only;
            // nft lines are evaluated from the kernel's JSON).
            let mut offline_wrong = Vec::new();
            // The mesh is recognised from the rules its tools wrote (where they capture at
            // all: some files are the other backend's empty tables).
            let captures = live.tables.iter().any(|t| t.captures());
            if let (Some(want), true) = (expected_mesh(&sc.name), captures) {
                let got = meshleak_core::meshes::detect(&live, &[]).map(|m| m.kind.name());
                if got != Some(want) {
                    offline_wrong.push(format!("mesh detected as {got:?}, expected {want}"));
                }
            }
            // Read natively (no tools), the rules must give the verdicts of the tools' dumps.
            let netns =
                meshleak_collect::netns::Netns::Path(format!("/run/netns/{}", lab.pod).into());
            match meshleak_collect::ruleset(&netns) {
                Ok(native) => {
                    for p in &probes {
                        let (a, b) = (predict(&native, p), predict(&live, p));
                        if a != b {
                            offline_wrong
                                .push(format!("{p:?}: read natively {a:?}, tools' dumps {b:?}"));
                        }
                    }
                }
                Err(e) => offline_wrong.push(format!("native reading failed: {e}")),
            }
            if sc.steps.iter().all(|(l, _)| *l != Loader::Nft) {
                for p in &probes {
                    let (a, b) = (predict(&offline, p), predict(&live, p));
                    if a != b {
                        offline_wrong.push(format!("{p:?}: file {a:?}, kernel's dump {b:?}"));
                    }
                }
            }
            connections += probes.len();
            compared += 1;
            if !wrong.is_empty() || !offline_wrong.is_empty() {
                failures.push(format!(
                    "{}:\n  {}",
                    sc.name,
                    [wrong, offline_wrong].concat().join("\n  ")
                ));
            }
        }
    }
    eprintln!(
        "conformance: {compared} rule sets compared ({connections} connections), {} skipped",
        skipped.len()
    );
    for s in &skipped {
        eprintln!("  skipped {s}");
    }
    assert!(
        failures.is_empty(),
        "{} rule sets disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(compared > 0, "no rule set found under {}", dir.display());
}
