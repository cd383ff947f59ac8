//! See `meshleak::fuzzing::rtnl`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshleak::fuzzing::rtnl(data));
