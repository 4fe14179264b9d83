//! A strict one-pass reader over JSON text (the index, the local view): the common shapes are read straight from the
//! text, anything else is handed to serde_json one value at a time. Nothing validates the text beforehand, so every
//! shortcut here accepts only what JSON accepts (no control characters in strings, no leading zeros); a shortcut that
//! does not apply returns `None` and the caller re-reads the same value with serde_json, which decides (and reports
//! broken JSON).
//!
//! The scanner works on bytes and never checks the whole text for UTF-8 first (a second pass over a large index):
//! outside strings it accepts only ASCII punctuation, digits and literals, and each string is checked on its own, for
//! free when it is ASCII (the check is part of looking for its end), with `str::from_utf8` otherwise. Values handed to
//! serde_json are read from bytes, where serde_json checks UTF-8 itself.

use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::encoding::swar::{bytes_below_0x20, bytes_equal, word_at};

pub(crate) struct Scan<'a> {
    text: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Scan<'a> {
    pub(crate) fn new(text: &'a [u8]) -> Self {
        Scan { text, at: 0 }
    }

    /// The whole text, as bytes.
    pub(crate) fn text_bytes(&self) -> &'a [u8] {
        self.text
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.text.len() - self.at
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    pub(crate) fn next(&mut self) -> Result<u8, String> {
        let byte = self.peek().ok_or("the index ends early")?;
        self.at += 1;
        Ok(byte)
    }

    /// `literal` comes next (consumed), as it is written, byte for byte.
    pub(crate) fn literal(&mut self, literal: &str) -> bool {
        let found = self.text[self.at..].starts_with(literal.as_bytes());
        if found {
            self.at += literal.len();
        }
        found
    }

    pub(crate) fn expect(&mut self, wanted: u8) -> Result<(), String> {
        match self.next()? {
            found if found == wanted => Ok(()),
            other => Err(self.unexpected(other)),
        }
    }

    pub(crate) fn unexpected(&self, byte: u8) -> String {
        format!("unexpected {:?} at byte {}", byte as char, self.at.saturating_sub(1))
    }

    pub(crate) fn whitespace(&mut self) {
        let bytes = self.text;
        while matches!(bytes.get(self.at), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    /// Only whitespace is left.
    pub(crate) fn finish(&mut self) -> Result<(), String> {
        self.whitespace();
        match self.peek() {
            None => Ok(()),
            Some(other) => {
                self.at += 1;
                Err(format!("{} after the index object", self.unexpected(other)))
            }
        }
    }

    /// A string without escapes or control characters, borrowed; `None` (position unspecified) for anything else.
    pub(crate) fn plain_string(&mut self) -> Option<&'a str> {
        let bytes = self.text;
        if bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        let start = self.at + 1;
        let (length, ascii) = string_stop(&bytes[start..])?;
        let end = start + length;
        if bytes[end] != b'"' {
            return None;
        }
        let text = if ascii { ascii_str(&bytes[start..end]) } else { std::str::from_utf8(&bytes[start..end]).ok()? };
        self.at = end + 1;
        Some(text)
    }

    /// Any string: plain ones borrowed, others (escapes; broken ones are an error) decoded by serde_json.
    pub(crate) fn string(&mut self) -> Result<Cow<'a, str>, String> {
        let start = self.at;
        if let Some(plain) = self.plain_string() {
            return Ok(Cow::Borrowed(plain));
        }
        self.at = start;
        match self.peek() {
            Some(b'"') => {}
            Some(other) => {
                self.at += 1;
                return Err(self.unexpected(other));
            }
            None => return Err("the index ends early".to_string()),
        }
        let mut stream = serde_json::Deserializer::from_slice(&self.text[start..]).into_iter::<String>();
        let decoded = stream.next().ok_or("a key ends early")?.map_err(|err| err.to_string())?;
        self.at = start + stream.byte_offset();
        Ok(Cow::Owned(decoded))
    }

    /// The next JSON value, whatever it is, checked by serde_json.
    pub(crate) fn raw_value(&mut self) -> Result<&'a RawValue, String> {
        let mut stream = serde_json::Deserializer::from_slice(&self.text[self.at..]).into_iter::<&RawValue>();
        let raw = stream.next().ok_or("the index ends early")?.map_err(|err| err.to_string())?;
        self.at += stream.byte_offset();
        Ok(raw)
    }

    /// The plain string `"known"` (`known` itself plain), compared rather than scanned: an entry's `key` field is
    /// nearly always its map key again.
    pub(crate) fn plain_string_equal_to(&mut self, known: &str) -> bool {
        let rest = &self.text[self.at..];
        let length = known.len();
        let found = rest.len() >= length + 2
            && rest[0] == b'"'
            && &rest[1..=length] == known.as_bytes()
            && rest[length + 1] == b'"';
        if found {
            self.at += length + 2;
        }
        found
    }

    /// `null` or a plain string.
    pub(crate) fn optional_plain_string(&mut self) -> Option<Option<&'a str>> {
        if self.text[self.at..].starts_with(b"null") {
            self.at += 4;
            return Some(None);
        }
        self.plain_string().map(Some)
    }

    /// A non-negative integer as JSON writes it (digits only, no leading zero) that fits in a u64.
    pub(crate) fn plain_integer(&mut self) -> Option<u64> {
        let bytes = &self.text[self.at..];
        let mut value: u64 = 0;
        let mut digits = 0;
        while let Some(&byte) = bytes.get(digits).filter(|byte| byte.is_ascii_digit()) {
            value = value.checked_mul(10)?.checked_add(u64::from(byte - b'0'))?;
            digits += 1;
        }
        if digits == 0 || (digits > 1 && bytes[0] == b'0') || matches!(bytes.get(digits), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.at += digits;
        Some(value)
    }
}

/// Where a string's text stops being plain: the first `"`, `\\` or control character, eight bytes at a time (an
/// index's strings, paths and timestamps, are several words long); and whether every byte before it is ASCII.
fn string_stop(bytes: &[u8]) -> Option<(usize, bool)> {
    let mut ascii = true;
    let words = bytes.len() / 8;
    for at in (0..words * 8).step_by(8) {
        let word = word_at(bytes, at);
        let stops = bytes_equal(word, b'"') | bytes_equal(word, b'\\') | bytes_below_0x20(word);
        let high = word & HIGH_BITS;
        if stops != 0 {
            // The masks set bit 7 of a flagged byte: the bits below the first stop's are the bytes before it.
            let first = stops.trailing_zeros();
            ascii &= high & ((1u64 << first) - 1) == 0;
            return Some((at + (first / 8) as usize, ascii));
        }
        ascii &= high == 0;
    }
    for (at, &byte) in bytes.iter().enumerate().skip(words * 8) {
        if byte == b'"' || byte == b'\\' || byte < 0x20 {
            return Some((at, ascii));
        }
        ascii &= byte.is_ascii();
    }
    None
}

/// Bit 7 of each byte: set only in bytes that are not ASCII.
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Bytes that `string_stop` found to be ASCII, as a `str` without a second pass over them.
fn ascii_str(bytes: &[u8]) -> &str {
    debug_assert!(bytes.is_ascii());
    // SAFETY: every byte is below 0x80 (`string_stop` looked at each one), and ASCII text is valid UTF-8.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortcuts_take_only_what_json_allows() {
        for text in ["\"a\u{1}b\"", "\"a\\nb\"", "\"open", "x"] {
            assert_eq!(Scan::new(text.as_bytes()).plain_string(), None, "{text:?}");
        }
        assert_eq!(Scan::new("\"d/é.json\"".as_bytes()).plain_string(), Some("d/é.json"));
        for text in ["01", "00", "-1", "1.0", "1e3", "18446744073709551616", ""] {
            assert_eq!(Scan::new(text.as_bytes()).plain_integer(), None, "{text:?}");
        }
        assert_eq!(Scan::new(b"0,").plain_integer(), Some(0));
        assert_eq!(Scan::new(b"120}").plain_integer(), Some(120));
    }

    #[test]
    fn string_stop_finds_the_first_quote_backslash_or_control_at_any_offset() {
        let naive = |bytes: &[u8]| bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
        let fillers: [&[u8]; 4] =
            [b"abcdefghijklmnopqrstu", "é€😀x/y.json_-".as_bytes(), b" !#[]{}~\x7f", b"\xff\x80\xc2\x85AZaz09"];
        for filler in fillers {
            for length in 0..filler.len() {
                for stop in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                    let mut bytes = filler[..length].to_vec();
                    let ascii = bytes.is_ascii();
                    assert_eq!(string_stop(&bytes), naive(&bytes).map(|at| (at, bytes[..at].is_ascii())));
                    bytes.push(stop);
                    // Bytes after the stop (ASCII or not) do not count.
                    bytes.extend_from_slice(b"\"\\tail\xff");
                    assert_eq!(string_stop(&bytes), Some((length, ascii)), "{bytes:?}");
                }
            }
        }
    }

    #[test]
    fn a_string_is_checked_for_utf8_on_its_own_and_only_ascii_skips_the_check() {
        // Text that is not ASCII at every position of a string longer than two words, valid or not as UTF-8.
        let base = "\"abcdefghijklmnopqrstuvwx\",".to_string();
        for at in 1..25 {
            for piece in ["é", "😀", "\u{80}", "\u{7ff}"] {
                let mut text = base.clone();
                text.insert_str(at, piece);
                let expected = &text[1..text.len() - 2];
                assert_eq!(Scan::new(text.as_bytes()).plain_string(), Some(expected), "{text:?}");
            }
            for broken in [&b"\xff"[..], b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf"] {
                let mut bytes = base.clone().into_bytes();
                bytes.splice(at..at, broken.iter().copied());
                assert_eq!(Scan::new(&bytes).plain_string(), None, "{bytes:?}");
                assert!(Scan::new(&bytes).string().is_err(), "{bytes:?}");
            }
        }
    }

    #[test]
    fn strings_that_are_not_plain_are_decoded_or_refused_by_serde_json() {
        assert_eq!(Scan::new(br#""a\/b""#).string().as_deref(), Ok("a/b"));
        assert!(Scan::new("\"a\u{1}b\"".as_bytes()).string().is_err());
        assert!(Scan::new(b"\"open").string().is_err());
        assert!(Scan::new(b"[1]").string().is_err());
    }
}
