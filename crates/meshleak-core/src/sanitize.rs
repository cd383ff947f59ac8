//! Making untrusted text safe to print: rule comments, interface and process names can hold
//! terminal escape sequences and newlines.

/// Replaces control characters (C0, DEL, C1) with visible escapes; leaves other text as is.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn escapes_terminal_sequences() {
        assert_eq!(sanitize("a\u{1b}[31mb\nc"), "a\\u{1b}[31mb\\nc");
        assert_eq!(sanitize("\u{9b}x"), "\\u{9b}x");
        assert_eq!(sanitize("plain ünïcode"), "plain ünïcode");
    }
}
