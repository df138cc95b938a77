//! Text from outside (tags, labels, AWS error messages) made safe for a terminal or a mail
//! client: control characters and the Unicode bidirectional overrides, which can recolour a
//! terminal, move its cursor or make `evil.exe` read as `exe.live`, are shown as escapes.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a reader as is: C0 and C1 controls, DEL, and the bidi marks,
/// embeddings, overrides and isolates.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every unsafe character escaped (`\n`, `\t`, `\r`, else `\u{…}`): for one value,
/// a table cell or a field.
pub fn printable(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// Like [`printable`], but newlines stay: for text that is several lines by design.
pub fn printable_lines(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

fn escape(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    let bad = |c: char| unsafe_char(c) && !(keep_newlines && c == '\n');
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if !bad(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_could_fool_a_reader() {
        for (input, want) in [
            ("plain text, ünïcödé ✓", "plain text, ünïcödé ✓"),
            ("\u{1b}[31mred\u{1b}[0m", "\\u{1b}[31mred\\u{1b}[0m"),
            ("invoice\u{202E}fdp.exe", "invoice\\u{202e}fdp.exe"),
            ("a\u{2066}b\u{2069}", "a\\u{2066}b\\u{2069}"),
            ("two\nlines\tand\r", "two\\nlines\\tand\\r"),
            (
                "bell\u{7}del\u{7f}c1\u{9b}",
                "bell\\u{7}del\\u{7f}c1\\u{9b}",
            ),
            ("rlm\u{200F}", "rlm\\u{200f}"),
        ] {
            assert_eq!(printable(input), want, "{input:?}");
        }
        assert_eq!(printable_lines("one\ntwo\u{1b}"), "one\ntwo\\u{1b}");
        assert!(matches!(printable("clean"), Cow::Borrowed(_)));
    }
}
