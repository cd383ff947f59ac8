//! Making untrusted text safe to print: rule comments, interface and process names can hold
//! terminal escape sequences and newlines.

/// Replaces control characters (C0, DEL, C1) and the bidirectional controls that reorder
/// what a terminal shows (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C) with
/// visible escapes; leaves other text as is.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || bidi(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn bidi(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{61c}')
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn escapes_terminal_sequences() {
        assert_eq!(sanitize("a\u{1b}[31mb\nc"), "a\\u{1b}[31mb\\nc");
        assert_eq!(sanitize("\u{9b}x"), "\\u{9b}x");
        assert_eq!(sanitize("plain ünïcode"), "plain ünïcode");
        assert_eq!(sanitize("app\u{202e}lmth.exe"), "app\\u{202e}lmth.exe");
    }
}
