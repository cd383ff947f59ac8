//! JSON as meshleak writes it: serde_json escapes only the C0 controls, quotes and
//! backslashes, so a process name holding DEL or a C1 control (U+0080-U+009F, e.g. the
//! one-character CSI U+009B) would reach a terminal that pipes the JSON raw. These are
//! written as `\u00XX` escapes as well (and U+2028/U+2029, which break JavaScript readers);
//! the JSON means the same.

use std::io;

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter, PrettyFormatter};

/// Compact JSON.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    write(value, Safe(CompactFormatter))
}

/// Indented JSON.
pub fn to_string_pretty<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    write(value, Safe(PrettyFormatter::new()))
}

fn write<T: Serialize + ?Sized, F: Formatter>(value: &T, f: Safe<F>) -> serde_json::Result<String> {
    let mut out = Vec::new();
    value.serialize(&mut serde_json::Serializer::with_formatter(&mut out, f))?;
    // Only valid UTF-8 was written: serde_json writes str fragments and ASCII.
    Ok(String::from_utf8(out).expect("JSON is UTF-8"))
}

struct Safe<F>(F);

fn escaped(c: char) -> bool {
    matches!(c, '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}')
}

impl<F: Formatter> Formatter for Safe<F> {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some(i) = rest.find(escaped) {
            writer.write_all(&rest.as_bytes()[..i])?;
            let c = rest[i..].chars().next().expect("found");
            write!(writer, "\\u{:04x}", c as u32)?;
            rest = &rest[i + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }

    // Everything else as the wrapped formatter does it.
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn end_object_key<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_key(w)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_c1_and_del_and_still_means_the_same() {
        let name = "a\u{1b}[31m\u{9b}31m\u{7f}\u{2028}é";
        let text = super::to_string(&name).unwrap();
        assert_eq!(text, "\"a\\u001b[31m\\u009b31m\\u007f\\u2028é\"");
        let back: String = serde_json::from_str(&text).unwrap();
        assert_eq!(back, name);
        let pretty = super::to_string_pretty(&serde_json::json!({"k": [name]})).unwrap();
        assert!(pretty.contains("\\u009b") && pretty.contains('\n'));
    }
}
