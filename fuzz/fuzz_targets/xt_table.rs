//! See `meshleak::fuzzing::xt_table_target`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshleak::fuzzing::xt_table_target(data));
