//! The node report as a person reads it, on a snapshot of real pods: the summary first,
//! pods worst first, each finding once with its fix in Kubernetes terms, selection
//! (`-n`, `--pod`, `--bypassing`, `--severity`), `--fail-on`, `-o wide|yaml`, and the
//! terminal behaviour (width, colour, NO_COLOR) through a real pseudo-terminal.
//!
//! Pod names come from the container runtime's files on a node; here the snapshot of a real
//! scan is given containers (cgroup paths and pod names) as `collect` would have read them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::pod::{Pod, json};
use serde_json::{Value, json as j};

/// Three pods: shop/web-0 where two processes run with the proxy's gid (they bypass),
/// shop/db-0 with port 3306 excluded, ops/tool-1 all captured. Returns the snapshot file.
fn snapshot(dir: &Path) -> (Vec<Pod>, PathBuf, Vec<u32>) {
    let mut web = Pod::istio_with_proxy();
    let leak = vec![
        web.spawn(10001, 1337, &["sleep", "300"]),
        web.spawn(10001, 1337, &["sleep", "300"]),
    ];
    web.spawn(10001, 10001, &["sleep", "300"]);
    let mut db = Pod::istio_with_proxy();
    db.add_rules("*nat\n-I ISTIO_OUTPUT 1 -p tcp -m tcp --dport 3306 -j RETURN\nCOMMIT\n");
    db.spawn(10002, 10002, &["sleep", "300"]);
    let mut tool = Pod::istio_with_proxy();
    tool.spawn(10003, 10003, &["sleep", "300"]);
    common::pod::settle();
    let raw = dir.join("raw.json");
    let (code, _, err) = common::meshleak(&["collect", "-f", raw.to_str().unwrap()]);
    assert!(code == 0 || code == 4, "{err}");
    let mut snap: Value = json(&std::fs::read_to_string(&raw).unwrap());
    let pods = [
        (&web, "shop", "web-0", 1),
        (&db, "shop", "db-0", 2),
        (&tool, "ops", "tool-1", 3),
    ];
    let mut containers = Vec::new();
    snap["netns"].as_array_mut().unwrap().retain(|ns| {
        pods.iter()
            .any(|(p, ..)| ns["paths"].as_array().unwrap().contains(&j!(p.path())))
    });
    assert_eq!(snap["netns"].as_array().unwrap().len(), 3);
    for ns in snap["netns"].as_array_mut().unwrap() {
        let (_, namespace, name, n) = pods
            .iter()
            .find(|(p, ..)| ns["paths"].as_array().unwrap().contains(&j!(p.path())))
            .unwrap();
        let uid = format!("0000000{n}-0000-4000-8000-000000000000");
        // One container for the proxy, one for the apps.
        for p in ns["processes"].as_array_mut().unwrap() {
            let proxy = p["uid"] == 1337;
            let id = format!("{n}{}{}", if proxy { 1 } else { 2 }, "0".repeat(62));
            p["cgroup"] = j!(format!(
                "0::/kubepods.slice/kubepods-pod{}.slice/cri-containerd-{id}.scope",
                uid.replace('-', "_")
            ));
            containers.push(j!({
                "id": id, "runtime": "containerd",
                "pod": {"namespace": namespace, "name": name, "uid": uid},
                "name": if proxy { "istio-proxy" } else { "app" },
                "sandbox": false, "user": null, "source": "test",
            }));
        }
    }
    containers.sort_by_key(|c| c["id"].to_string());
    containers.dedup_by_key(|c| c["id"].to_string());
    snap["containers"] = Value::Array(containers);
    snap["errors"] = j!([]);
    snap["unread_processes"] = j!([]);
    snap["unread_netns"] = j!(0);
    let file = dir.join("snap.json");
    std::fs::write(&file, snap.to_string()).unwrap();
    (vec![web, db, tool], file, leak)
}

fn analyze(snap: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["analyze", "--snapshot", snap.to_str().unwrap()];
    args.extend_from_slice(extra);
    common::meshleak(&args)
}

/// Runs meshleak on a pseudo-terminal `cols` wide (`script`), with `env` set.
fn on_tty(cols: u16, env: &[(&str, &str)], args: &[&str]) -> String {
    let cmd = format!(
        "stty cols {cols} rows 50; {} {}",
        env!("CARGO_BIN_EXE_meshleak"),
        args.join(" ")
    );
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .env_remove("NO_COLOR")
        .env_remove("COLUMNS")
        .env("TERM", "xterm")
        .envs(env.iter().copied())
        .output()
        .expect("script (util-linux) runs");
    String::from_utf8_lossy(&out.stdout).replace('\r', "")
}

fn visible(line: &str) -> usize {
    let mut n = 0;
    let mut code = false;
    for c in line.chars() {
        match (code, c) {
            (false, '\x1b') => code = true,
            (true, 'm') => code = false,
            (false, _) => n += 1,
            _ => {}
        }
    }
    n
}

#[test]
fn the_report_answers_first_and_selects_as_kubectl_users_expect() {
    if !common::is_root() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("meshleak-table-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (_pods, snap, leak) = snapshot(&dir);

    // The summary answers: how many bypass, where, the worst finding and its fix.
    let (code, out, err) = analyze(&snap, &[]);
    assert_eq!(code, 1, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("node ") && lines[0].contains("2 processes bypass the mesh"),
        "{out}"
    );
    assert!(lines[1].contains("pod shop/web-0 (2)"), "{out}");
    assert!(
        lines[2].starts_with("  worst:   high identity-exempt"),
        "{out}"
    );
    assert!(
        lines[3]
            .contains("gid 1337 is the proxy's: set container app's securityContext.runAsGroup"),
        "{out}"
    );
    // Pods worst first: the bypassing one, then the one with an exclusion.
    let order: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("pod "))
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(order, ["shop/web-0", "shop/db-0", "ops/tool-1"], "{out}");
    // The two processes' identical findings print once, with both pids and the family.
    let pids = format!("pids {}, {}", leak[0].min(leak[1]), leak[0].max(leak[1]));
    let exempt: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("high   identity-exempt"))
        .collect();
    assert_eq!(exempt.len(), 1, "{out}");
    assert!(exempt[0].contains(&format!("({pids}, IPv4)")), "{out}");
    assert!(
        out.contains("traffic.sidecar.istio.io/excludeOutboundPorts annotation"),
        "{out}"
    );
    // Not a terminal: no colour, lines whole.
    assert!(!out.contains('\x1b'), "{out}");

    // Selection: a namespace, a name prefix, only what escapes, a severity.
    let (code, out, _) = analyze(&snap, &["-n", "shop", "-o", "json"]);
    assert_eq!(code, 1);
    // JSON keeps the report's order (by namespace inode): compare as a set.
    let mut pods: Vec<String> = json(&out)["netns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["pod"]["name"].as_str().unwrap().to_string())
        .collect();
    pods.sort();
    assert_eq!(pods, ["db-0", "web-0"]);
    let (code, out, _) = analyze(&snap, &["--pod", "db", "-o", "json"]);
    assert_eq!(code, 0, "db-0 captures its app: {out}");
    assert_eq!(json(&out)["netns"].as_array().unwrap().len(), 1);
    let (code, _, err) = analyze(&snap, &["-n", "shpo"]);
    assert_eq!(code, 2);
    assert!(
        err.contains(
            "no pod on this node matches -n shpo (pods seen: ops/tool-1, shop/db-0, shop/web-0)"
        ),
        "{err}"
    );
    let (_, out, _) = analyze(&snap, &["--bypassing", "-o", "json"]);
    let r = json(&out);
    assert_eq!(r["netns"].as_array().unwrap().len(), 1, "{out}");
    let verdicts: Vec<&str> = r["netns"][0]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["bypass", "bypass"]);
    let (_, out, _) = analyze(&snap, &["--severity", "high", "-o", "json"]);
    for ns in json(&out)["netns"].as_array().unwrap() {
        for f in ns["findings"].as_array().unwrap() {
            assert_eq!(f["severity"], "high", "{out}");
        }
    }

    // --fail-on: what makes the status 1.
    assert_eq!(analyze(&snap, &["--fail-on", "never"]).0, 0);
    assert_eq!(analyze(&snap, &["--pod", "db", "--fail-on", "low"]).0, 1);
    assert_eq!(analyze(&snap, &["--pod", "db", "--fail-on", "medium"]).0, 0);
    assert_eq!(analyze(&snap, &["--pod", "tool", "--fail-on", "low"]).0, 0);

    // -o yaml holds what -o json holds; -o wide keeps names whole and adds groups.
    let (_, yaml, _) = analyze(&snap, &["-o", "yaml"]);
    let (_, js, _) = analyze(&snap, &["-o", "json"]);
    let same = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; y = yaml.safe_load(open(sys.argv[1])); j = json.load(open(sys.argv[2])); y.pop('duration_ms'); j.pop('duration_ms'); sys.exit(0 if y == j else 1)",
        ])
        .arg(write(&dir, "r.yaml", &yaml))
        .arg(write(&dir, "r.json", &js))
        .status()
        .unwrap();
    assert!(same.success(), "YAML differs from JSON:\n{yaml}");
    let (_, wide, _) = analyze(&snap, &["-o", "wide"]);
    assert!(wide.contains("app (120000000000)"), "{wide}");

    // A terminal: wrapped to its width, coloured unless NO_COLOR or --color never.
    let snap_arg = snap.to_str().unwrap();
    let tty = on_tty(72, &[], &["analyze", "--snapshot", snap_arg]);
    assert!(tty.contains("\x1b["), "{tty}");
    let long: Vec<&str> = tty.lines().filter(|l| visible(l) > 72).collect();
    assert!(long.is_empty(), "lines wider than the terminal: {long:#?}");
    assert!(tty.lines().count() > out_lines(&snap), "wrapped: {tty}");
    let plain = on_tty(
        72,
        &[("NO_COLOR", "1")],
        &["analyze", "--snapshot", snap_arg],
    );
    assert!(!plain.contains('\x1b'), "{plain}");
    let never = on_tty(
        72,
        &[],
        &["--color", "never", "analyze", "--snapshot", snap_arg],
    );
    assert!(!never.contains('\x1b'), "{never}");
    let (_, always, _) = analyze(&snap, &["--color", "always"]);
    assert!(always.contains("\x1b[1;31mbypass\x1b[0m"), "{always}");

    std::fs::remove_dir_all(&dir).ok();
}

fn out_lines(snap: &Path) -> usize {
    analyze(snap, &[]).1.lines().count()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let f = dir.join(name);
    std::fs::write(&f, text).unwrap();
    f
}
