//! See `meshleak::fuzzing::evaluate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshleak::fuzzing::evaluate(data));
