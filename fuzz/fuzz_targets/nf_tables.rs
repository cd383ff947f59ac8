//! See `meshleak::fuzzing::nf_tables`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshleak::fuzzing::nf_tables(data));
