//! The command line as other tools use it: exit codes, JSON field names, error messages
//! that name the input, and output that cannot carry terminal escapes.

mod common;

use std::process::Command;

const ISTIO: &str = "testdata/istio-sidecar.rules";

fn meshleak(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshleak"))
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).expect("utf-8"),
        String::from_utf8(out.stderr).expect("utf-8"),
    )
}

/// Writes `text` to a file of a per-process temporary directory (`tag` keeps tests apart).
fn rules_file(tag: &str, name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("meshleak-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("valid JSON")
}

#[test]
fn trace_seed_incident_json_contract() {
    let (code, out, _) = meshleak(&[
        "trace",
        "--rules",
        ISTIO,
        "--uid",
        "10001",
        "--gid",
        "1337",
        "--dst",
        "10.0.0.5:80",
        "--proto",
        "tcp",
        "-o",
        "json",
    ]);
    assert_eq!(code, 1, "bypass exits 1");
    let v = json(&out);
    assert_eq!(v["verdict"], "bypass");
    assert!(v["redirect_port"].is_null());
    assert_eq!(v["family"], "ipv4");
    let step = &v["path"][1];
    for field in [
        "backend", "family", "table", "chain", "position", "rule", "effect",
    ] {
        assert!(step.get(field).is_some(), "path step lacks {field}: {step}");
    }
    assert_eq!(
        step["rule"],
        "-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN"
    );
    assert_eq!(step["position"], 7);
    assert_eq!(v["deciding_rule"]["rule"], step["rule"]);
}

#[test]
fn trace_captured_exits_zero_with_port() {
    let (code, out, _) = meshleak(&[
        "trace",
        "--rules",
        ISTIO,
        "--uid",
        "10001",
        "--gid",
        "10001",
        "--dst",
        "10.0.0.5:80",
        "-o",
        "json",
    ]);
    assert_eq!(code, 0);
    let v = json(&out);
    assert_eq!(
        (v["verdict"].as_str(), v["redirect_port"].as_u64()),
        (Some("captured"), Some(15001))
    );
}

#[test]
fn trace_table_output_cites_the_rule() {
    let (code, out, _) = meshleak(&[
        "trace",
        "--rules",
        ISTIO,
        "--uid",
        "10001",
        "--gid",
        "1337",
        "--dst",
        "10.0.0.5:80",
    ]);
    assert_eq!(code, 1);
    assert!(out.starts_with("verdict   bypass"), "{out}");
    assert!(out.contains("-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN"));
}

#[test]
fn analyze_json_contract_and_exit_code() {
    let (code, out, _) = meshleak(&[
        "analyze",
        "--rules",
        ISTIO,
        "--identity",
        "10001:1337",
        "--identity",
        "10001:10001:4,5",
        "-o",
        "json",
    ]);
    assert_eq!(code, 1);
    let v = json(&out);
    assert!(v["exemptions"].as_array().unwrap().len() >= 6);
    assert!(!v["escapes"].as_array().unwrap().is_empty());
    let ids = v["identities"].as_array().unwrap();
    assert_eq!(ids[0]["verdict"], "bypass");
    assert_eq!(
        ids[0]["rules"][0]["rule"],
        "-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN"
    );
    assert_eq!(
        (ids[1]["uid"].as_u64(), ids[1]["gid"].as_u64()),
        (Some(10001), Some(10001))
    );
    assert_eq!(ids[1]["groups"], serde_json::json!([4, 5]));
    assert_eq!(ids[1]["verdict"], "captured");
    let (code, _, _) = meshleak(&["analyze", "--rules", ISTIO, "--identity", "10001:10001"]);
    assert_eq!(code, 0, "nothing bypasses");
    // Source NAT in POSTROUTING (Docker's embedded DNS) leaves the app decided, with the
    // SNAT's effect in its trace.
    let docker = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/docker-dns.rules");
    let (code, out, err) = meshleak(&["analyze", "--rules", docker, "--identity", "10001:10001"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = meshleak(&[
        "trace",
        "--rules",
        docker,
        "--dst",
        "127.0.0.11:53",
        "--src",
        "127.0.0.11",
        "--sport",
        "36613",
        "--uid",
        "10001",
        "--gid",
        "10001",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("snat to 127.0.0.11:53"), "{out}");
}

#[test]
fn combines_several_files_and_nft_json() {
    let (code, out, _) = meshleak(&[
        "trace",
        "--rules",
        "testdata/nft-redirect-15002.json",
        "--uid",
        "1",
        "--gid",
        "1",
        "--dst",
        "[fd00::1]:443",
        "-o",
        "json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(json(&out)["redirect_port"], 15002);
    let (_, out, _) = meshleak(&[
        "trace",
        "--rules",
        ISTIO,
        "--rules",
        "testdata/nft-redirect-15002.json",
        "--uid",
        "1",
        "--gid",
        "1337",
        "--dst",
        "10.0.0.1:80",
        "-o",
        "json",
    ]);
    assert_eq!(
        json(&out)["verdict"],
        "captured",
        "the inet table still redirects what ISTIO_OUTPUT returns"
    );
}

#[test]
fn errors_exit_two_and_name_the_input() {
    let (code, _, err) = meshleak(&[
        "trace",
        "--rules",
        "no/such/file",
        "--uid",
        "1",
        "--gid",
        "1",
        "--dst",
        "10.0.0.1:80",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("no/such/file"), "{err}");
    let bad = rules_file(
        "errors",
        "bad.rules",
        "*nat\n-A OUTPUT -p tcp --dport 70000 -j RETURN\nCOMMIT\n",
    );
    let dir = bad.parent().unwrap().to_path_buf();
    let (code, _, err) = meshleak(&["analyze", "--rules", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.rules:2:") && err.contains("70000"),
        "{err}"
    );
    let (code, _, err) = meshleak(&[
        "trace", "--rules", ISTIO, "--uid", "1", "--gid", "1", "--dst", "10.0.0.1",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--dst"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn output_never_carries_terminal_escapes() {
    let dir = std::env::temp_dir().join(format!("meshleak-esc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("esc.rules");
    std::fs::write(&f, "*nat\n:EVIL\u{1b}[2J - [0:0]\n-A OUTPUT -m comment --comment \"\u{1b}]0;pwned\u{7}\" -j EVIL\u{1b}[2J\n-A EVIL\u{1b}[2J -j RETURN\nCOMMIT\n").unwrap();
    for args in [
        vec!["trace", "--uid", "1", "--gid", "1", "--dst", "10.0.0.1:80"],
        vec!["analyze"],
    ] {
        let mut all = args.clone();
        all.extend(["--rules", f.to_str().unwrap()]);
        let (_, out, err) = meshleak(&all);
        assert!(
            !out.contains('\u{1b}') && !err.contains('\u{1b}'),
            "{out}{err}"
        );
        if args[0] == "trace" {
            assert!(
                out.contains("EVIL\\u{1b}[2J"),
                "escapes are shown, not dropped: {out}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Unknown has its own exit status (3) in every command, and its verdicts cite what was
/// not modelled; `nft -j` loses iptables-nft's xt values, so such a dump is unknown, never
/// unmeshed.
#[test]
fn unknown_exits_three_and_names_what_was_not_modelled() {
    let (code, out, _) = meshleak(&[
        "analyze",
        "--rules",
        "testdata/iptables-nft-as-json.json",
        "--identity",
        "10001:1337",
        "-o",
        "json",
    ]);
    assert_eq!(code, 3, "{out}");
    let a = json(&out);
    let id = &a["identities"][0];
    assert_eq!(id["verdict"], "unknown");
    assert!(
        id["rules"][0]["rule"]
            .as_str()
            .unwrap()
            .contains("REDIRECT"),
        "{id}"
    );
    assert!(
        a["unknowns"][0]["unknown"]
            .as_str()
            .unwrap()
            .contains("values lost in nft -j"),
        "{out}"
    );
    assert_eq!(a["captured_on"], serde_json::json!([]));
    assert!(!a["undecided_on"].as_array().unwrap().is_empty());
    let rules = rules_file(
        "unknown",
        "statistic.rules",
        "*nat\n-A OUTPUT -m statistic --mode random --probability 0.5 -j RETURN\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n",
    );
    let dir = rules.parent().unwrap().to_path_buf();
    let (code, out, _) = meshleak(&[
        "trace",
        "--rules",
        rules.to_str().unwrap(),
        "--uid",
        "1",
        "--gid",
        "1",
        "--dst",
        "10.0.0.5:80",
    ]);
    assert_eq!(code, 3, "{out}");
    assert!(out.starts_with("verdict   unknown"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
    let (_, help, _) = meshleak(&["trace", "--help"]);
    assert!(help.contains("3 nothing definitely bypasses but some verdict is unknown"));
    assert!(help.contains("4 nothing definitely bypasses but something could not be read"));
}

/// What `iptables-save` leaves without root (nothing, or its comments) is an error naming
/// the file and the likely cause, not "nothing captures".
#[test]
fn an_empty_rules_file_is_an_error() {
    let mut dir = std::env::temp_dir();
    for (name, text) in [
        ("empty.rules", ""),
        (
            "comments.rules",
            "# Generated by iptables-save v1.8.9\n\n# Completed\n",
        ),
    ] {
        let file = rules_file("empty", name, text);
        dir = file.parent().unwrap().to_path_buf();
        let path = file.to_str().unwrap();
        for args in [
            vec!["analyze", "--rules", path],
            vec![
                "trace",
                "--rules",
                path,
                "--uid",
                "1",
                "--gid",
                "1",
                "--dst",
                "10.0.0.5:80",
            ],
        ] {
            let (code, out, err) = meshleak(&args);
            assert_eq!(code, 2, "{args:?}: {out}");
            assert!(err.contains(path) && err.contains("without root"), "{err}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn trace_an_ipv4_mapped_destination_as_the_ipv4_it_is_on_the_wire() {
    // A dual-stack socket connecting to ::ffff:10.0.0.5 sends IPv4: Istio's IPv4 rules
    // capture it, whatever the IPv6 rules say.
    let (code, out, err) = meshleak(&[
        "trace",
        "--rules",
        ISTIO,
        "--uid",
        "10001",
        "--gid",
        "10001",
        "--dst",
        "[::ffff:10.0.0.5]:80",
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    assert_eq!(v["verdict"], "captured", "{v}");
    assert_eq!(v["dst"], "10.0.0.5:80", "{v}");
}

/// `meshleak analyze ... | head -1`: the reader goes away before the output is written;
/// meshleak ends silently (by SIGPIPE, as cat does), not with a panic and exit 101.
#[test]
fn a_closed_pipe_ends_the_output_silently() {
    use std::os::unix::process::ExitStatusExt;
    for args in [
        &["analyze", "--rules", "testdata/istio-sidecar.rules"][..],
        &[
            "analyze",
            "--rules",
            "testdata/istio-sidecar.rules",
            "-o",
            "json",
        ][..],
    ] {
        // The reader is gone before the child starts: no race with a fast child that
        // writes everything into the pipe's buffer first.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshleak"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.is_empty(), "{args:?}: {err}");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {:?}",
            out.status
        );
    }
}

/// Completion scripts that the shells take, and a man page.
#[test]
fn completions_and_man_page() {
    let bin = env!("CARGO_BIN_EXE_meshleak");
    let (code, out, err) = meshleak(&["completion", "bash"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("_meshleak") && out.contains("scan"), "{out}");
    // bash loads it and registers the function.
    let loaded = std::process::Command::new("bash")
        .args([
            "-c",
            &format!("source <('{bin}' completion bash) && complete -p meshleak"),
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&loaded.stdout).contains("-F _meshleak"),
        "{loaded:?}"
    );
    for shell in ["zsh", "fish"] {
        let (code, out, _) = meshleak(&["completion", shell]);
        assert_eq!(code, 0);
        assert!(
            out.contains("meshleak") && out.contains("trace"),
            "{shell}: {out}"
        );
    }
    let (code, man, _) = meshleak(&["man"]);
    assert_eq!(code, 0);
    assert!(
        man.contains(".TH meshleak 1") && man.contains("scan"),
        "{man}"
    );
}

/// A namespace argument that is not one says so (not a setns error, not an empty report).
#[test]
fn a_wrong_namespace_argument_says_what_it_is() {
    for (args, says) in [
        (
            &["pod", "--netns", "/etc/passwd"][..],
            "/etc/passwd is not a namespace file",
        ),
        (
            &["rules", "--netns", "/etc/passwd"][..],
            "/etc/passwd is not a namespace file",
        ),
        (
            &["pod", "--netns", "/proc/self/ns/pid"][..],
            "is a namespace, but not a network namespace",
        ),
        (
            &["pod", "--pid", "4194305"][..],
            "/proc/4194305/ns/net does not exist: the process exited",
        ),
    ] {
        let (code, out, err) = meshleak(args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
}

/// Unprivileged, a scan says once what it needs, not once per namespace.
#[test]
fn an_unprivileged_scan_says_once_what_it_needs() {
    if !common::is_root() {
        return;
    }
    let names: Vec<String> = (0..4)
        .map(|i| format!("mlnopriv{}x{i}", std::process::id()))
        .collect();
    for n in &names {
        assert!(
            std::process::Command::new("ip")
                .args(["netns", "add", n])
                .status()
                .unwrap()
                .success()
        );
    }
    // A copy anyone may run: the build directory may not be.
    let bin = std::env::temp_dir().join(format!("meshleak-nopriv-{}", std::process::id()));
    std::fs::copy(env!("CARGO_BIN_EXE_meshleak"), &bin).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["scan", "--netns-dir", "/run/netns"])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&bin);
    for n in &names {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", n])
            .status();
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("CAP_SYS_ADMIN"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("network namespaces could not be entered"),
        "{err}"
    );
    assert!(!err.contains("errors above"), "{err}");
}

/// `analyze` names the mesh it detects, as `pod` does: table and JSON.
#[test]
fn analyze_shows_the_mesh_it_detects() {
    let (_, table, err) = meshleak(&["analyze", "--rules", ISTIO]);
    assert!(
        table.lines().next().is_some_and(|l| l.starts_with("mesh")
            && l.contains("istio-sidecar, proxy ports 15001,15006, exempt uid 1337, gid 1337")),
        "{table}{err}"
    );
    let (_, out, _) = meshleak(&["analyze", "--rules", ISTIO, "-o", "json"]);
    let v = json(&out);
    assert_eq!(v["mesh"]["kind"], "istio-sidecar");
    assert_eq!(v["mesh"]["proxy_ports"], serde_json::json!([15001, 15006]));
    assert!(v["exemptions"].is_array(), "the analysis' fields stay: {v}");
    let none = rules_file(
        "nomesh",
        "plain.rules",
        "*nat\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
    );
    let (_, out, _) = meshleak(&["analyze", "--rules", none.to_str().unwrap(), "-o", "json"]);
    assert_eq!(json(&out)["mesh"], serde_json::Value::Null);
}

#[test]
fn every_command_help_has_examples_and_exit_statuses() {
    for cmd in [
        "scan", "pod", "trace", "analyze", "rules", "collect", "agent",
    ] {
        let (code, out, _) = meshleak(&[cmd, "--help"]);
        assert_eq!(code, 0);
        assert!(
            out.contains("Examples:\n  meshleak ")
                && out.contains("Exit status: 0 nothing bypasses"),
            "{cmd}: {out}"
        );
    }
    let (_, out, _) = meshleak(&["scan", "--help"]);
    for flag in [
        "--namespace",
        "--pod",
        "--bypassing",
        "--severity",
        "--fail-on",
        "--color",
    ] {
        assert!(out.contains(flag), "{flag}: {out}");
    }
}

#[test]
fn analyze_says_what_each_identity_has_captured_whatever_the_reference() {
    // Hand-edited rules that capture only uid 1000 gid 1000: the kernel captures that
    // identity's TCP, so it is not `unmeshed`; another identity is.
    let rules = rules_file(
        "optin",
        "optin.rules",
        "*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p tcp -m owner --uid-owner 1000 -m owner --gid-owner 1000 -j REDIRECT --to-ports 15001\nCOMMIT\n",
    );
    let path = rules.to_str().unwrap();
    let args = [
        "analyze",
        "--rules",
        path,
        "--identity",
        "1000:1000",
        "--identity",
        "2000:2000",
    ];
    let (_, out, _) = meshleak(&[&args[..], &["-o", "json"]].concat());
    let r = json(&out);
    assert_eq!(r["identities"][0]["verdict"], "captured", "{out}");
    assert_eq!(
        r["identities"][0]["captured"][0]["protocol"], "tcp",
        "{out}"
    );
    assert_eq!(r["identities"][1]["verdict"], "unmeshed", "{out}");
    let (_, out, _) = meshleak(&args);
    assert!(out.contains("reference uid 10001 gid 10001"), "{out}");
    assert!(out.contains("uid 1000 gid 1000        captured"), "{out}");
    assert!(
        out.contains("captured ipv4 tcp oif any dst any dport any"),
        "{out}"
    );
    assert!(!out.contains("!uid"), "{out}");
}

#[test]
fn analyze_wording_needs_no_netfilter_knowledge() {
    let (_, out, _) = meshleak(&["analyze", "--rules", "testdata/nft-features.nft"]);
    assert!(
        out.contains("dst any except "),
        "complements as exceptions: {out}"
    );
    assert!(
        out.contains("or any other") || out.contains("any other than"),
        "{out}"
    );
    assert!(!out.contains(",*"), "{out}");
    assert!(!out.contains("by no rule"), "{out}");
    // A trace with no rule of its family says why its path is empty.
    let (code, out, _) = meshleak(&[
        "trace",
        "--rules",
        ISTIO,
        "--uid",
        "1",
        "--gid",
        "1",
        "--dst",
        "[fd00::1]:80",
    ]);
    assert_eq!(code, 1);
    assert!(
        out.contains("path      none: no ipv6 rule sees this packet, so nothing captures it"),
        "{out}"
    );
}

#[test]
fn input_as_users_paste_it() {
    // `nft list ruleset` text, and a paste cut before its last COMMIT (read, with a warning).
    let (code, out, err) = meshleak(&[
        "analyze",
        "--rules",
        "testdata/meshes/istio-sidecar-nft.nft",
        "--identity",
        "10001:1337",
    ]);
    assert_eq!(code, 1, "the runAsGroup 1337 app bypasses: {err}");
    assert!(
        out.starts_with("mesh      istio-sidecar-nft, proxy ports 15001"),
        "{out}"
    );
    assert!(
        out.contains(
            "uid 10001 gid 1337       bypass    nftables inet istio-proxy-nat/istio-output #2"
        ),
        "{out}"
    );
    let cut = rules_file(
        "cut",
        "cut.rules",
        "*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -m owner --gid-owner 1337 -j RETURN\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\n",
    );
    let (code, out, err) = meshleak(&[
        "analyze",
        "--rules",
        cut.to_str().unwrap(),
        "--identity",
        "10001:1337",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("warning: ") && err.contains("cut.rules:1: table is not closed by COMMIT"),
        "{err}"
    );
    // What may be cut short is never an all-clear: nothing bypasses, yet exit 4.
    let (code, out, _) = meshleak(&[
        "analyze",
        "--rules",
        cut.to_str().unwrap(),
        "--identity",
        "10001:10001",
    ]);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.starts_with("INCOMPLETE: ") && out.contains("not closed by COMMIT"),
        "{out}"
    );
    // A rule iptables-restore refuses ("multiple -s flags not allowed") is an error
    // naming its line, as the tool's own is.
    let sources: String = (0..50_000)
        .map(|i| format!(" -s 10.{}.{}.1", i / 256 % 256, i % 256))
        .collect();
    let many = rules_file(
        "many",
        "many.rules",
        &format!("*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT{sources} -j RETURN\nCOMMIT\n"),
    );
    let (code, _, err) = meshleak(&["analyze", "--rules", many.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("many.rules:3: multiple -s flags not allowed"),
        "{err}"
    );
    // What the kernel refuses is an error naming the line.
    let bad = rules_file(
        "refused",
        "refused.rules",
        "*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -j ISTIO_OUTPUT\nCOMMIT\n",
    );
    let (code, _, err) = meshleak(&["analyze", "--rules", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("refused.rules:4: chain `ISTIO_OUTPUT` does not exist"),
        "{err}"
    );
}
