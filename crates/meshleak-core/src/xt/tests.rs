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
    // iptables-legacy-save drops `! -i +`/`! -o +` (an inverted empty interface mask, which
    // the kernel obeys: the rule never matches); meshleak prints them.
    let lossy = text.replace(" ! -i +", "").replace(" ! -o +", "");
    assert!(text.contains("-A FORWARD ! -i +"));
    assert_eq!(lossy.trim_end(), SAVE.trim_end());
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

/// The match decoders written for iptables' own extension tests, with the size of their
/// struct: a zeroed blob of that size decodes, and one cut short anywhere is printed raw
/// and unknown or decoded from what it has, never a panic; an empty one is an error.
const MATCH_STRUCTS: &[(&str, u8, usize, IpVersion)] = &[
    ("ah", 0, 16, IpVersion::V6),
    ("hbh", 0, 40, IpVersion::V6),
    ("dst", 0, 40, IpVersion::V6),
    ("frag", 0, 16, IpVersion::V6),
    ("rt", 0, 280, IpVersion::V6),
    ("mh", 0, 3, IpVersion::V6),
    ("srh", 0, 10, IpVersion::V6),
    ("srh", 1, 108, IpVersion::V6),
    ("ipv6header", 0, 3, IpVersion::V6),
    ("ipcomp", 0, 12, IpVersion::V4),
    ("osf", 0, 48, IpVersion::V4),
    ("rateest", 0, 72, IpVersion::V4),
    ("dccp", 0, 16, IpVersion::V4),
    ("hashlimit", 3, 312, IpVersion::V4),
    ("policy", 0, 312, IpVersion::V4),
];

const TARGET_STRUCTS: &[(&str, u8, usize, IpVersion)] = &[
    ("ECN", 0, 4, IpVersion::V4),
    ("RATEEST", 0, 32, IpVersion::V4),
    ("LED", 0, 40, IpVersion::V4),
    ("HMARK", 0, 60, IpVersion::V4),
    ("HMARK", 0, 60, IpVersion::V6),
    ("DNPT", 0, 36, IpVersion::V6),
    ("SNPT", 0, 36, IpVersion::V6),
    ("NETMAP", 0, 40, IpVersion::V6),
];

#[test]
fn extension_structs_decode_and_cut_ones_never_panic() {
    use super::bytes::Bytes;
    for (name, revision, size, version) in MATCH_STRUCTS {
        let blob = vec![0u8; *size];
        let m = |n: usize| {
            super::matches::decode(name, *revision, Bytes::new(&blob[..n]), *version, &[])
        };
        assert!(
            !m(*size).save.contains("revision"),
            "{name}: {}",
            m(*size).save
        );
        assert!(m(0).save.contains("needs"), "{name}: {}", m(0).save);
        (0..*size).for_each(|n| drop(m(n)));
    }
    for (name, revision, size, version) in TARGET_STRUCTS {
        let blob = vec![0u8; *size];
        let t =
            |n: usize| super::targets::decode(name, *revision, Bytes::new(&blob[..n]), *version);
        assert!(
            !t(*size).save.contains("revision"),
            "{name}: {}",
            t(*size).save
        );
        assert!(t(0).save.contains("needs"), "{name}: {}", t(0).save);
        (0..*size).for_each(|n| drop(t(n)));
    }
}

/// What iptables stores for the values its tests use, printed back as iptables 1.8.9 does.
#[test]
fn extension_values_print_as_iptables_prints_them() {
    use super::bytes::Bytes;
    // `--hashlimit-upto 4kb/s --hashlimit-burst 400kb`: the cost of 4096 bytes per second,
    // a burst of 100 times that.
    let mut hl = vec![0u8; 312];
    hl[..2].copy_from_slice(b"b1");
    hl[256..264].copy_from_slice(&(u64::from(u32::MAX) / 257).to_ne_bytes());
    hl[264..272].copy_from_slice(&100u64.to_ne_bytes());
    hl[272..276].copy_from_slice(&0x20u32.to_ne_bytes());
    hl[284..288].copy_from_slice(&1000u32.to_ne_bytes());
    hl[288..292].copy_from_slice(&60_000u32.to_ne_bytes());
    hl[292..296].copy_from_slice(&1u32.to_ne_bytes());
    hl[296] = 32;
    hl[297] = 32;
    let d = super::matches::decode("hashlimit", 3, Bytes::new(&hl), IpVersion::V4, &[]);
    assert_eq!(
        d.save,
        " --hashlimit-upto 4kb/s --hashlimit-burst 400kb --hashlimit-name b1"
    );
    // RATEEST: an interval of 2^-2 s (250 ms), averaged over 2^2 of them.
    let mut re = vec![0u8; 32];
    re[..3].copy_from_slice(b"re1");
    re[16] = (-2i8) as u8;
    re[17] = 2;
    let t = super::targets::decode("RATEEST", 0, Bytes::new(&re), IpVersion::V4);
    assert_eq!(
        t.save,
        " --rateest-name re1 --rateest-interval 250.0ms --rateest-ewmalog 1.0s"
    );
    // An IPv6 routing header match with two addresses, not strict, any segments left.
    let mut rt = vec![0u8; 280];
    rt[8..12].copy_from_slice(&u32::MAX.to_ne_bytes());
    rt[16] = 0x10 | 0x20;
    rt[20..36].copy_from_slice(&"fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    rt[36..52].copy_from_slice(&"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
    rt[276] = 2;
    let d = super::matches::decode("rt", 0, Bytes::new(&rt), IpVersion::V6, &[]);
    assert_eq!(d.save, " --rt-0-addrs fd00::1,fd00::2 --rt-0-not-strict");
    assert!(matches!(
        d.tests[..],
        [(false, crate::model::Test::Unknown { .. })]
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Any bytes in any of those structs, at its size: printed or an error, never a panic
    /// (counts, shifts and lengths in them are untrusted).
    #[test]
    fn extension_structs_of_any_bytes_never_panic(which in any::<prop::sample::Index>(), bytes in proptest::collection::vec(any::<u8>(), 312)) {
        use super::bytes::Bytes;
        let all: Vec<_> = MATCH_STRUCTS.iter().map(|s| (false, s)).chain(TARGET_STRUCTS.iter().map(|s| (true, s))).collect();
        let (target, (name, revision, size, version)) = all[which.index(all.len())];
        let blob = Bytes::new(&bytes[..*size]);
        if target {
            let _ = super::targets::decode(name, *revision, blob, *version);
        } else {
            let _ = super::matches::decode(name, *revision, blob, *version, &[6]);
        }
    }
}
