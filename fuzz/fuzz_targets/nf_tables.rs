//! See `meshleak_core::fuzzing::nf_tables`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshleak_core::fuzzing::nf_tables(data));
