//! See `meshleak_core::fuzzing::nft_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshleak_core::fuzzing::nft_json(data));
