//! Untrusted bytes made safe for a log line or a terminal.
//!
//! A peer's message, a Unix socket's path or a server's stamp can hold
//! anything: an `ESC [ 2 J` that clears the operator's screen, an OSC
//! sequence that sets the window title or writes the clipboard, a BEL, a
//! CR that overwrites the line, an LF that forges a whole log line,
//! invalid UTF-8. [`escape`] shows such bytes as text, one event stays one
//! line, and [`Escaped::max_len`] cuts long ones with their length shown:
//!
//! ```
//! use stamp_echo::escape::escape;
//!
//! let hostile = b"hi\x1b]0;pwned\x07\r\n...connected from: 10.0.0.1:1\xff";
//! assert_eq!(
//!     escape(hostile).to_string(),
//!     r"hi\x1b]0;pwned\x07\r\n...connected from: 10.0.0.1:1\xff"
//! );
//! assert_eq!(escape(b"0123456789").max_len(4).to_string(), "0123... (10 bytes)");
//! ```
//!
//! The escapes are journald's and nginx's `\xNN`, plus `\t`, `\r`, `\n` and
//! `\\` (a backslash is doubled, so the text reads back unambiguously):
//!
//! | bytes | shown as |
//! |---|---|
//! | printable UTF-8 | itself |
//! | `\t`, `\r`, `\n`, `\` | `\t`, `\r`, `\n`, `\\` |
//! | other C0 controls, DEL (`0x00`-`0x1f`, `0x7f`) | `\xNN` |
//! | C1 controls (U+0080-U+009F), bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069), line and paragraph separators (U+2028, U+2029) | `\u{NNNN}` |
//! | bytes that are not UTF-8 | `\xNN` each |
//!
//! Formatting allocates nothing: [`Escaped`] writes straight to the
//! formatter.

use std::fmt::{self, Write};

/// Shows `bytes` as one line of safe text (see the [module docs](self)).
pub fn escape(bytes: &[u8]) -> Escaped<'_> {
    Escaped { bytes, max_len: usize::MAX }
}

/// Shows a path as one line of safe text, whatever bytes it holds.
pub fn escape_path(path: &std::path::Path) -> Escaped<'_> {
    escape(path.as_os_str().as_encoded_bytes())
}

/// Bytes shown escaped; see [`escape`]. Implements [`fmt::Display`].
#[derive(Clone, Copy, Debug)]
#[must_use]
pub struct Escaped<'a> {
    bytes: &'a [u8],
    max_len: usize,
}

impl Escaped<'_> {
    /// Shows at most the first `max_len` bytes (cut where a character
    /// begins), followed by `... (N bytes)` with the whole length, when
    /// there are more.
    pub fn max_len(self, max_len: usize) -> Self {
        Escaped { max_len, ..self }
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cut = self.bytes.len() > self.max_len;
        let shown = if cut {
            let mut end = self.max_len;
            // Back up to the start of a character (at most 3 bytes).
            while end > 0 && self.max_len - end < 3 && self.bytes[end] & 0xC0 == 0x80 {
                end -= 1;
            }
            if self.bytes[end] & 0xC0 == 0x80 {
                end = self.max_len; // not UTF-8 there anyway
            }
            &self.bytes[..end]
        } else {
            self.bytes
        };
        for chunk in shown.utf8_chunks() {
            write_valid(chunk.valid(), f)?;
            for byte in chunk.invalid() {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        if cut {
            write!(f, "... ({} bytes)", self.bytes.len())?;
        }
        Ok(())
    }
}

/// Writes valid UTF-8, runs of ordinary characters as they are.
fn write_valid(text: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut run = 0;
    for (at, c) in text.char_indices() {
        if !needs_escape(c) {
            continue;
        }
        f.write_str(&text[run..at])?;
        run = at + c.len_utf8();
        match c {
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            '\n' => f.write_str("\\n")?,
            '\\' => f.write_str("\\\\")?,
            c if u32::from(c) < 0x80 => write!(f, "\\x{:02x}", u32::from(c))?,
            c => write!(f, "\\u{{{:04x}}}", u32::from(c))?,
        }
    }
    f.write_str(&text[run..])
}

fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

/// Appends `bytes` escaped to `out` (see [`escape`]), cut at `max_len`.
pub fn escape_into(bytes: &[u8], max_len: usize, out: &mut String) {
    // Writing to a String cannot fail.
    let _ = write!(out, "{}", escape(bytes).max_len(max_len));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(bytes: &[u8]) -> String {
        escape(bytes).to_string()
    }

    #[test]
    fn printable_text_is_unchanged() {
        assert_eq!(esc("hi,server 你好 [x] ~".as_bytes()), "hi,server 你好 [x] ~");
        assert_eq!(esc(b""), "");
    }

    #[test]
    fn every_control_byte_is_escaped() {
        for byte in (0u8..0x20).chain([0x7f]) {
            let shown = esc(&[byte]);
            assert!(shown.starts_with('\\'), "{byte:#x}: {shown}");
            assert!(shown.chars().all(|c| c.is_ascii_graphic()), "{byte:#x}: {shown}");
        }
        assert_eq!(esc(b"\x1b[2J\x07\x00"), r"\x1b[2J\x07\x00");
        assert_eq!(esc(b"a\\n"), r"a\\n");
    }

    #[test]
    fn c1_controls_bidi_overrides_and_separators_are_escaped() {
        assert_eq!(esc("\u{85}\u{9b}".as_bytes()), r"\u{0085}\u{009b}");
        assert_eq!(esc("a\u{202e}b\u{2066}c\u{2028}".as_bytes()), r"a\u{202e}b\u{2066}c\u{2028}");
    }

    #[test]
    fn invalid_utf8_is_shown_byte_by_byte() {
        assert_eq!(esc(b"ok\xff\xc3("), r"ok\xff\xc3(");
        assert_eq!(esc(b"\xe4\xbd"), r"\xe4\xbd");
    }

    #[test]
    fn one_event_is_one_line_whatever_the_bytes() {
        let all: Vec<u8> = (0..=255).collect();
        let shown = esc(&all);
        assert!(!shown.contains(['\n', '\r', '\x1b', '\x07']));
        assert!(shown.chars().all(|c| !c.is_control()));
    }

    #[test]
    fn long_text_is_cut_at_a_character_with_its_length() {
        assert_eq!(escape(b"abcdef").max_len(6).to_string(), "abcdef");
        assert_eq!(escape(b"abcdefg").max_len(6).to_string(), "abcdef... (7 bytes)");
        // 你 is three bytes: a cut inside it backs up to its start.
        assert_eq!(escape("a你好".as_bytes()).max_len(5).to_string(), "a你... (7 bytes)");
        assert_eq!(escape("你".as_bytes()).max_len(1).to_string(), "... (3 bytes)");
        assert_eq!(escape(b"\x80\x80\x80\x80\x80").max_len(4).to_string(), r"\x80\x80\x80\x80... (5 bytes)");
        let mut out = String::new();
        escape_into(b"x\ny", 2, &mut out);
        assert_eq!(out, r"x\n... (3 bytes)");
    }

    #[test]
    fn paths_are_escaped() {
        let path = std::path::Path::new("/tmp/a\x1b]0;x\x07\nb.sock");
        assert_eq!(escape_path(path).to_string(), r"/tmp/a\x1b]0;x\x07\nb.sock");
    }
}
