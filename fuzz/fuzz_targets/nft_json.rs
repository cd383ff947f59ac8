//! See `meshleak::fuzzing::nft_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshleak::fuzzing::nft_json(data));
