//! `meshleak check`: Kubernetes manifests judged before deploy against the mesh's real
//! rules (see `meshleak_core::manifest`). Files, directories (their `.yaml`, `.yml` and
//! `.json` files) or `-` for stdin; each document judged on its own, so a broken one is an
//! error naming its file, document and line while the others are still judged.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::ValueEnum;
use serde::Serialize;

use super::input::RulesArgs;
use meshleak_core::manifest::check::{self, ContainerReport, Finding, Rules, Verdict};
use meshleak_core::manifest::identity::{self, ImageUser};
use meshleak_core::manifest::{MESH_DEFAULTS, doc, sarif, workload};
use meshleak_core::meshes::Mesh;
use meshleak_core::model::Ruleset;
use meshleak_core::sanitize::sanitize;
use meshleak_core::schema::Severity;
use meshleak_core::selection::FailOn;

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// Manifests: files, directories, or `-` for stdin (helm template, kustomize build,
    /// kubectl get -o yaml output; YAML or JSON, many documents each).
    #[arg(required = true, value_name = "FILE|DIR|-")]
    inputs: Vec<PathBuf>,
    #[command(flatten)]
    rules: RulesArgs,
    /// Judge against the rules of a live pod of the same mesh, from a snapshot of
    /// `meshleak collect` (with --like NS/POD).
    #[arg(long, value_name = "FILE", requires = "like", conflicts_with_all = ["files", "mesh"])]
    snapshot: Option<PathBuf>,
    /// The pod of the snapshot whose rules to judge against.
    #[arg(long, value_name = "NS/POD", requires = "snapshot")]
    like: Option<String>,
    /// A mesh's default rules shipped with meshleak: istio-1.28.
    #[arg(long, value_name = "NAME", conflicts_with = "files")]
    mesh: Option<String>,
    /// The user an image runs as where the manifest sets none: IMAGE=UID[:GID] (repeat).
    #[arg(long = "image-user", value_name = "IMAGE=UID[:GID]", value_parser = parse_image_user)]
    image_users: Vec<ImageUser>,
    /// table for people, json or yaml for tools, sarif for code scanning (SARIF 2.1.0).
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: CheckFormat,
    /// What makes the exit status 1: a container that bypasses (default), a finding of
    /// this severity or worse, or never.
    #[arg(long, value_enum, default_value_t, value_name = "WHAT")]
    fail_on: super::select::FailOnArg,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
enum CheckFormat {
    #[default]
    Table,
    Json,
    Yaml,
    Sarif,
}

fn parse_image_user(text: &str) -> Result<ImageUser, String> {
    let bad = || format!("`{text}` is not IMAGE=UID or IMAGE=UID:GID");
    let (image, ids) = text.rsplit_once('=').ok_or_else(bad)?;
    let (uid, gid) = match ids.split_once(':') {
        Some((u, g)) => (u, Some(g.parse().map_err(|_| bad())?)),
        None => (ids, None),
    };
    Ok(ImageUser {
        image: image.to_string(),
        uid: uid.parse().map_err(|_| bad())?,
        gid,
    })
}

/// The JSON (and YAML) document.
#[derive(Serialize)]
struct Output<'a> {
    rules: Option<&'a str>,
    mesh: Option<&'a Mesh>,
    containers: &'a [ContainerReport],
    findings: &'a [Finding],
    skipped: &'a [String],
    errors: &'a [String],
    /// What may be missing from the rules (a dump cut short): exit 4 at best.
    incomplete: &'a [String],
}

pub(super) fn run(args: Args) -> anyhow::Result<u8> {
    let rules = load_rules(&args)?;
    let mesh = rules
        .as_ref()
        .and_then(|(r, _, _)| meshleak_core::meshes::detect(r, &[]));
    let judged_rules = rules
        .as_ref()
        .map(|(rules, source, _)| Rules::new(rules, source.clone()));
    let mut containers = Vec::new();
    let mut findings = Vec::new();
    let mut skipped = Vec::new();
    let mut errors = Vec::new();
    let mut read = 0;
    let mut all = Vec::new();
    for (name, text) in read_inputs(&args.inputs)? {
        let (docs, error) = doc::documents(&text);
        read += docs.len() + usize::from(error.is_some());
        for d in &docs {
            let (workloads, skips) = workload::workloads(d);
            for s in skips {
                skipped.push(format!(
                    "{name}:{} (document {}): {}",
                    s.line, s.document, s.why
                ));
            }
            all.extend(workloads.into_iter().map(|w| (name.clone(), w)));
        }
        if let Some(e) = error {
            errors.push(format!(
                "{name}: document {}, line {}: {}; fix the YAML (the documents before it were judged)",
                e.document, e.line, e.message
            ));
        }
    }
    // Every identity of the stream analysed at once, then each workload judged.
    if let Some(r) = &judged_rules {
        let ids = all.iter().flat_map(|(_, w)| {
            identity::containers(w, &args.image_users)
                .into_iter()
                .flat_map(|c| check::candidate_ids(&c, mesh.as_ref()))
        });
        r.prime(ids)
            .map_err(|e| anyhow::anyhow!("cannot analyse {}: {e}", r.source))?;
    }
    for (name, w) in &all {
        let j = check::judge(
            name,
            w,
            judged_rules.as_ref(),
            mesh.as_ref(),
            &args.image_users,
        );
        containers.extend(j.containers);
        findings.extend(j.findings);
    }
    if read == 0 {
        bail!(
            "no manifest in {}: give YAML or JSON files, directories holding .yaml, .yml or .json files, or - with manifests on stdin",
            args.inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    findings.sort_by(|a, b| (a.severity, &a.file, a.line).cmp(&(b.severity, &b.file, b.line)));
    let source = rules.as_ref().map(|(_, s, _)| s.as_str());
    let cut_short: &[String] = rules.as_ref().map_or(&[], |(_, _, c)| c.as_slice());
    match args.format {
        CheckFormat::Sarif => println!(
            "{}",
            meshleak_core::json::to_string_pretty(&sarif::log(
                &findings,
                env!("CARGO_PKG_VERSION")
            ))?
        ),
        CheckFormat::Json | CheckFormat::Yaml => {
            let out = Output {
                rules: source,
                mesh: mesh.as_ref(),
                containers: &containers,
                findings: &findings,
                skipped: &skipped,
                errors: &errors,
                incomplete: cut_short,
            };
            if args.format == CheckFormat::Json {
                println!("{}", meshleak_core::json::to_string_pretty(&out)?);
            } else {
                print!("{}", meshleak_core::yaml::to_string(&out)?);
            }
        }
        CheckFormat::Table => {
            for c in cut_short {
                println!("INCOMPLETE: {}", sanitize(c));
            }
            table(source, mesh.as_ref(), &containers, &findings, &skipped)
        }
    }
    for e in &errors {
        eprintln!("meshleak: error: {e}");
    }
    if !errors.is_empty() {
        return Ok(super::status::ERROR);
    }
    let bypass = match args.fail_on.to_fail_on() {
        // Outside the mesh (hostNetwork, injection or interception off) counts too.
        FailOn::Bypass => containers.iter().any(|c| {
            matches!(
                c.verdict,
                Verdict::Bypass | Verdict::Partial | Verdict::Unmeshed
            )
        }),
        FailOn::Severity(s) => findings.iter().any(|f| f.severity <= s),
        FailOn::Never => false,
    };
    let unknown = containers.iter().any(|c| c.verdict == Verdict::Unknown);
    let unjudged = containers.iter().any(|c| c.verdict == Verdict::Unjudged);
    Ok(super::status::of(
        bypass,
        unjudged || !cut_short.is_empty(),
        unknown,
    ))
}

/// The rules to judge against, with where they come from and what says they may be cut
/// short; `None` when none was given.
fn load_rules(args: &Args) -> anyhow::Result<Option<(Ruleset, String, Vec<String>)>> {
    if !args.rules.files.is_empty() {
        let names: Vec<String> = args
            .rules
            .files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let loaded = args.rules.load()?;
        return Ok(Some((
            loaded.rules,
            format!("--rules {}", names.join(" ")),
            loaded.cut_short,
        )));
    }
    if let Some(name) = &args.mesh {
        let Some((_, text)) = MESH_DEFAULTS.iter().find(|(n, _)| n == name) else {
            let known: Vec<&str> = MESH_DEFAULTS.iter().map(|(n, _)| *n).collect();
            bail!(
                "--mesh {name}: no default rules of that name; known: {}",
                known.join(", ")
            );
        };
        let tables = meshleak_core::parse::parse_dump(name, text, Default::default())?;
        return Ok(Some((
            meshleak_core::parse::combine(vec![tables])?,
            format!("--mesh {name} (the mesh's default rules, shipped with meshleak)"),
            Vec::new(),
        )));
    }
    if let (Some(path), Some(like)) = (&args.snapshot, &args.like) {
        let snapshot = super::scan::load_snapshot(path)?;
        let report = meshleak_core::report::build(&snapshot, 0);
        let (ns, pod) = like
            .split_once('/')
            .with_context(|| format!("--like {like}: give the pod as NAMESPACE/NAME"))?;
        let inode = report
            .netns
            .iter()
            .find(|n| {
                n.pod
                    .as_ref()
                    .is_some_and(|p| p.namespace == ns && p.name == pod)
            })
            .map(|n| n.inode)
            .with_context(|| format!("--like {like}: no such pod in {}", path.display()))?;
        let rules = snapshot
            .netns
            .iter()
            .find(|n| n.inode == inode)
            .map(|n| n.rules.clone())
            .context("the snapshot lost the pod's namespace")?;
        return Ok(Some((
            rules,
            format!("--snapshot {} --like {like}", path.display()),
            Vec::new(),
        )));
    }
    Ok(None)
}

/// Each input's name and text: files, the manifests in directories (sorted), stdin.
fn read_inputs(inputs: &[PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.as_os_str() == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("cannot read manifests from stdin (not UTF-8 text?)")?;
            out.push(("stdin".to_string(), text));
        } else if input.is_dir() {
            let mut files = Vec::new();
            walk(input, &mut files, &mut Vec::new())?;
            files.sort();
            for f in files {
                out.push((f.display().to_string(), read(&f)?));
            }
        } else {
            out.push((input.display().to_string(), read(input)?));
        }
    }
    Ok(out)
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read manifest {} (a YAML or JSON text file); check the path",
            path.display()
        )
    })
}

/// The manifests under `dir`, each directory read once (`seen`: by file identity), so a
/// symlink loop ends and reads nothing twice.
fn walk(dir: &Path, out: &mut Vec<PathBuf>, seen: &mut Vec<(u64, u64)>) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if seen.contains(&(m.dev(), m.ino())) {
        return Ok(());
    }
    seen.push((m.dev(), m.ino()));
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = e?.path();
        if path.is_dir() {
            walk(&path, out, seen)?;
        } else if path
            .extension()
            .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
        {
            out.push(path);
        }
    }
    Ok(())
}

fn table(
    source: Option<&str>,
    mesh: Option<&Mesh>,
    containers: &[ContainerReport],
    findings: &[Finding],
    skipped: &[String],
) {
    let bypass = containers
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Bypass | Verdict::Partial))
        .count();
    let head = match source {
        None => format!(
            "check: {} containers; no rules given (--rules, --snapshot --like, --mesh): identities NOT judged, only what needs no rules",
            containers.len()
        ),
        Some(s) => format!(
            "check: {bypass} of {} containers bypass the mesh; rules: {s}{}",
            containers.len(),
            mesh.map(|m| format!(" ({})", m.kind)).unwrap_or_default()
        ),
    };
    println!("{}", sanitize(&head));
    let rows: Vec<[String; 5]> = containers
        .iter()
        .map(|c| {
            let id = |v: Option<u32>| v.map_or("image".to_string(), |v| v.to_string());
            let at = c
                .decided_by
                .as_ref()
                .filter(|d| d.line > 0)
                .map_or(format!("{}:{}", c.file, c.line), |d| {
                    format!("{}:{}", d.file, d.line)
                });
            [
                sanitize(&at),
                sanitize(&format!("{}/{}", c.kind, c.workload)),
                sanitize(&c.container),
                format!("{}:{}", id(c.uid), id(c.gid)),
                c.verdict.name().to_string(),
            ]
        })
        .collect();
    let heads = ["AT", "WORKLOAD", "CONTAINER", "UID:GID", "VERDICT"];
    let widths = super::text::column_widths(&heads, &rows);
    let line = |r: [&str; 5]| {
        format!(
            "  {:w0$}  {:w1$}  {:w2$}  {:w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        )
    };
    println!();
    println!("{}", line(heads));
    for r in &rows {
        println!("{}", line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    if !findings.is_empty() {
        println!();
    }
    for f in findings {
        let mark = if f.severity == Severity::High {
            "!"
        } else {
            " "
        };
        println!(
            "{mark} {:<6} {} {}:{}: {}",
            f.severity.to_string(),
            f.kind.name(),
            sanitize(&f.file),
            f.line,
            sanitize(&f.message)
        );
        if let Some(r) = f.rules.first() {
            println!("           rule: {}", sanitize(&r.rule));
        }
        println!("           fix: {}", sanitize(&f.remedy));
    }
    if !skipped.is_empty() {
        println!();
    }
    for s in skipped {
        println!("  skipped: {}", sanitize(s));
    }
}
