//! See `meshleak_core::fuzzing::xt_ext_target`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshleak_core::fuzzing::xt_ext_target(data));
