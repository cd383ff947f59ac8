//! iptables-save / restore input: any bytes give tables or a ParseError, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshleak::parse::{parse_dump, Hints};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if !text.trim_start().starts_with('{') {
            let _ = parse_dump("fuzz.rules", text, Hints::default());
        }
    }
});
