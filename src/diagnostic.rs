//! Errors that point into a file: `FILE:LINE:COL: field `x`: what is wrong`.
//!
//! Used by the config and the rules loaders so that every bad input names the file, the line
//! and the field, the way compilers do.
//!
//! Architecture Invariant: this module only formats; it never reads files.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem at one place in a text file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
    /// Dotted key of the offending field when it can be told (`api.principals.token_env`).
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.path.display(), self.line, self.col)?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for FileError {}

/// A text file being validated: turns byte spans into lines, columns and field names.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl<'a> Source<'a> {
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        Source { path, text }
    }

    /// An error at a span, naming the field found at that place in the text.
    pub fn error_at(&self, span: Range<usize>, message: impl Into<String>) -> FileError {
        let (line, col) = self.line_col(span.start);
        FileError {
            path: self.path.to_owned(),
            line,
            col,
            field: self.field_at(span.start),
            message: message.into(),
        }
    }

    /// An error at a span where the caller knows the field name better than the text does.
    pub fn error_for(
        &self,
        span: Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> FileError {
        let mut e = self.error_at(span, message);
        e.field = Some(field.to_owned());
        e
    }

    /// Converts a TOML deserialisation error (syntax, unknown key, bad value) to a [`FileError`].
    pub fn from_toml(&self, err: &toml::de::Error) -> FileError {
        let span = err.span().unwrap_or(0..0);
        let mut e = self.error_at(span, err.message().trim().to_owned());
        // Unknown and missing keys already name themselves in the message.
        if err.message().contains("unknown field") || err.message().contains("missing field") {
            e.field = None;
        }
        e
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    /// Best-effort dotted key of the `key = value` line holding `offset`, prefixed by the
    /// nearest table header above it.
    fn field_at(&self, offset: usize) -> Option<String> {
        let offset = floor_char_boundary(self.text, offset.min(self.text.len()));
        let line_start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[offset..]
            .find('\n')
            .map_or(self.text.len(), |i| offset + i);
        let line = &self.text[line_start..line_end];
        let eq = line.find('=')?;
        if line_start + eq >= offset {
            return None;
        }
        let key = line[..eq].trim().trim_matches('"');
        if key.is_empty() || key.starts_with('#') || key.starts_with('[') {
            return None;
        }
        let header = self.text[..line_start].lines().rev().find_map(|l| {
            let l = l.trim();
            l.starts_with('[').then(|| {
                l.trim_start_matches('[')
                    .split(']')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            })
        });
        Some(match header {
            Some(h) if !h.is_empty() => format!("{h}.{key}"),
            _ => key.to_owned(),
        })
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_at_line_column_and_field() {
        let text = "# comment\n[api]\nlisten = \"x\"\n\n[[api.principals]]\nname = \"ci\"\ntoken_env = 5\n";
        let src = Source::new(Path::new("e.toml"), text);
        let at = text.find("5\n").expect("fixture has a 5");
        let e = src.error_at(at..at + 1, "expected a string");
        assert_eq!(
            e.to_string(),
            "e.toml:7:13: field `api.principals.token_env`: expected a string"
        );
        let at = text.find("\"x\"").expect("fixture has x");
        assert_eq!(
            src.error_at(at..at, "m").field.as_deref(),
            Some("api.listen")
        );
        assert_eq!(src.error_at(0..0, "m").field, None);
    }

    #[test]
    fn toml_errors_keep_their_position() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            a: u32,
        }
        let text = "a = 1\nb = 2\n";
        let err = toml::from_str::<T>(text).expect_err("b is unknown");
        let e = Source::new(Path::new("t.toml"), text).from_toml(&err);
        assert_eq!((e.line, e.col), (2, 1));
        assert!(e.message.contains("unknown field `b`"), "{}", e.message);
    }
}
