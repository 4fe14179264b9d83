//! Version tokens: the S3 ETag or GCS generation that a store returns with every body and write.
//!
//! Any token may be used as a precondition (If-Match). Only a *fingerprint* may be recorded in the sidecar and compared
//! for the fast path: an empty token, a GCS generation "0", and a multipart-shaped ETag (`<hex>-<parts>`, which is not
//! a content hash and is not reproduced by a single-part write) are never recorded and never match (B17).

use std::fmt;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VersionToken(String);

impl VersionToken {
    /// A token already in normal form (as stored in our sidecar, or from the in-memory store).
    pub fn new(value: impl Into<String>) -> Self {
        VersionToken(value.into())
    }

    /// An S3 ETag as sent on the wire: surrounding quotes and a weak `W/` marker are removed.
    pub fn from_etag(raw: &str) -> Self {
        let trimmed = raw.trim();
        let trimmed = trimmed.strip_prefix("W/").unwrap_or(trimmed);
        let unquoted = trimmed.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(trimmed);
        VersionToken(unquoted.to_string())
    }

    /// A GCS generation (decimal int64 as a string).
    pub fn from_generation(raw: &str) -> Self {
        VersionToken(raw.trim().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this token may be recorded as "verified" and compared for the fast path.
    pub fn is_fingerprint(&self) -> bool {
        let value = self.0.as_str();
        !(value.is_empty() || value == "0" || is_multipart_etag(value))
    }

    /// The token if it is a usable fingerprint.
    pub fn fingerprint(&self) -> Option<&VersionToken> {
        self.is_fingerprint().then_some(self)
    }
}

/// `<something>-<digits>`: S3 multipart uploads produce ETags of this shape.
fn is_multipart_etag(value: &str) -> bool {
    match value.rsplit_once('-') {
        Some((head, parts)) => !head.is_empty() && !parts.is_empty() && parts.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

impl fmt::Debug for VersionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for VersionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_quotes_and_weak_marker_are_stripped() {
        assert_eq!(VersionToken::from_etag("\"abc123\"").as_str(), "abc123");
        assert_eq!(VersionToken::from_etag("W/\"abc123\"").as_str(), "abc123");
        assert_eq!(VersionToken::from_etag("abc123").as_str(), "abc123");
    }

    #[test]
    fn multipart_etag_is_never_a_fingerprint() {
        let token = VersionToken::from_etag("\"d41d8cd98f00b204e9800998ecf8427e-3\"");
        assert!(!token.is_fingerprint());
        assert!(token.fingerprint().is_none());
    }

    #[test]
    fn empty_and_zero_generations_are_never_fingerprints() {
        assert!(!VersionToken::from_generation("").is_fingerprint());
        assert!(!VersionToken::from_generation("0").is_fingerprint());
        assert!(!VersionToken::from_etag("\"\"").is_fingerprint());
    }

    #[test]
    fn ordinary_tokens_are_fingerprints() {
        assert!(VersionToken::from_generation("1714000000123456").is_fingerprint());
        assert!(VersionToken::from_etag("\"9bb58f26192e4ba00f01e2e7b136bbd8\"").is_fingerprint());
    }
}
