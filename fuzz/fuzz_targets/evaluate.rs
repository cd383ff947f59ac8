//! See `meshleak_core::fuzzing::evaluate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshleak_core::fuzzing::evaluate(data));
