//! Writes seed inputs for the fuzz targets in `fuzz/` (`make fuzz`): rule dumps from
//! testdata/ and, when present, ../shared/corpus (copied into the git-ignored
//! fuzz/corpus only), and the kernel's own binary answers captured in testdata/native/
//! (nf_tables netlink replies, x_tables table blobs and every match and target payload in
//! them), and the hand-made rtnetlink replies kept under fuzz/regressions/rtnl. Usage:
//! fuzz_seeds [OUT_DIR] (default fuzz/corpus).

use std::fs;
use std::path::{Path, PathBuf};

use meshleak_core::fuzzing::{XtExt, xt_ext_input, xt_table_input};
use meshleak_core::model::IpVersion;
use meshleak_core::xt::table::TableInfo;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or("fuzz/corpus".into()));
    let mut n = 0;
    let mut write = |target: &str, name: String, data: &[u8]| -> std::io::Result<()> {
        let dir = out.join(target);
        fs::create_dir_all(&dir)?;
        n += 1;
        fs::write(dir.join(name), data)
    };

    // Text dumps: restore syntax for `xtables` and `evaluate`, `nft -j` JSON for `nft_json`.
    let mut dumps = Vec::new();
    for root in ["testdata", "../shared/corpus"] {
        collect(Path::new(root), &mut dumps);
    }
    for (i, path) in dumps.iter().enumerate() {
        let text = fs::read(path)?;
        let name = format!("{i}-{}", path.file_name().unwrap().to_string_lossy());
        if text.trim_ascii_start().starts_with(b"{") {
            write("nft_json", name, &text)?;
        } else if text
            .windows(7)
            .any(|w| w == b"COMMIT\n" || w == b"\nCOMMIT")
        {
            write("xtables", name.clone(), &text)?;
            write("evaluate", name, &text)?;
        }
    }

    // nf_tables: the whole captured dump, and each message alone.
    let hex = fs::read_to_string("testdata/native/nft-messages.txt")?;
    let messages: Vec<Vec<u8>> = hex.lines().filter_map(unhex).collect();
    write("nf_tables", "dump".into(), &messages.concat())?;
    for (i, m) in messages.iter().enumerate() {
        write("nf_tables", format!("message-{i}"), m)?;
    }

    // x_tables: each captured table, and each extension payload in it.
    let blobs = fs::read_to_string("testdata/native/legacy-blobs.txt")?;
    for (i, line) in blobs.lines().enumerate() {
        let mut parts = line.splitn(3, ' ');
        let (Some(v), Some(info), Some(hex)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let version = if v == "V6" {
            IpVersion::V6
        } else {
            IpVersion::V4
        };
        let (Ok(info), Some(blob)) = (serde_json::from_str::<TableInfo>(info), unhex(hex)) else {
            continue;
        };
        write(
            "xt_table",
            format!("table-{i}"),
            &xt_table_input(&info, version, &blob),
        )?;
        for (j, ext) in extensions(&blob, version).iter().enumerate() {
            write("xt_ext", format!("ext-{i}-{j}"), &xt_ext_input(ext))?;
        }
    }
    // rtnl: the kept hand-made replies (a goto back, an attribute past its message).
    for entry in fs::read_dir("fuzz/regressions/rtnl")?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        write("rtnl", name, &fs::read(entry.path())?)?;
    }
    eprintln!("fuzz_seeds: wrote {n} seeds under {}", out.display());
    Ok(())
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("rules" | "json" | "txt" | "save")
        ) && !p.starts_with("testdata/native")
        {
            out.push(p);
        }
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// Every `xt_entry_match` / `xt_entry_target` in a blob, found by its header shape (u16
/// size, a printable NUL-terminated name, revision): seeds need real payloads, not a
/// second entry walker.
fn extensions(blob: &[u8], version: IpVersion) -> Vec<XtExt<'_>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 32 <= blob.len() {
        let size = u16::from_ne_bytes([blob[at], blob[at + 1]]) as usize;
        let name = &blob[at + 2..at + 31];
        let len = name.iter().position(|b| *b == 0).unwrap_or(0);
        let printable = len > 1
            && name[..len]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-');
        if printable && size >= 32 && at + size <= blob.len() && size.is_multiple_of(8) {
            let name = std::str::from_utf8(&name[..len]).expect("ascii");
            out.push(XtExt {
                target: name.chars().all(|c| !c.is_ascii_lowercase()),
                version,
                name,
                revision: blob[at + 31],
                protos: &[6, 17],
                data: &blob[at + 32..at + size],
            });
            at += size;
        } else {
            at += 8;
        }
    }
    out
}
