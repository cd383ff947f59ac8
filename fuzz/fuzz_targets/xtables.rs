//! See `meshleak::fuzzing::xtables`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshleak::fuzzing::xtables(data));
