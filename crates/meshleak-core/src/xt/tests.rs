//! Decoding captured kernel bytes (testdata/native/legacy-blobs.txt, written by the
//! `capture_kernel_blobs` test from the fixtures) without root: the text must equal what
//! iptables-legacy-save printed for the same tables, and damaged blobs must give errors.

use proptest::prelude::*;

use super::save::render;
use super::table::{TableInfo, decode};
use crate::model::IpVersion;

const BLOBS: &str = include_str!("../../../../testdata/native/legacy-blobs.txt");
const SAVE: &str = include_str!("../../../../testdata/native/legacy-save.txt");

fn blobs() -> Vec<(IpVersion, TableInfo, Vec<u8>)> {
    BLOBS
        .lines()
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let version = match parts.next() {
                Some("V4") => IpVersion::V4,
                _ => IpVersion::V6,
            };
            let info: TableInfo = serde_json::from_str(parts.next().unwrap()).unwrap();
            let hex = parts.next().unwrap();
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (version, info, bytes)
        })
        .collect()
}

#[test]
fn captured_tables_print_as_iptables_legacy_save() {
    let mut text = String::new();
    for (version, info, blob) in blobs() {
        let table = decode(&info, &blob, version, "captured").expect("decodes");
        text += &render(&table);
    }
    assert_eq!(text.trim_end(), SAVE.trim_end());
}

#[test]
fn truncated_blobs_are_errors() {
    for (version, info, blob) in blobs() {
        for cut in [1, 50, 111, blob.len() / 2, blob.len() - 1] {
            assert!(
                decode(&info, &blob[..cut], version, "cut").is_err(),
                "{} cut at {cut}",
                info.name
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Lying lengths and flipped bits anywhere: an error or a table, never a panic or a hang.
    #[test]
    fn damaged_blobs_never_panic(which in 0usize..16, at in any::<prop::sample::Index>(), byte in any::<u8>(), more in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4)) {
        let all = blobs();
        let (version, info, mut blob) = all[which % all.len()].clone();
        let n = blob.len();
        blob[at.index(n)] = byte;
        for (i, b) in more {
            blob[i.index(n)] = b;
        }
        let _ = decode(&info, &blob, version, "damaged");
    }
}
