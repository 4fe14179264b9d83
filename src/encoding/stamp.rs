//! `Stamp`: a timestamp kept as the text it was read as. Indexes and views hold two per file (250k files: 500k
//! strings), almost all of them JS `toISOString()` output of exactly 24 bytes, so those are stored inline instead of in
//! a heap allocation each; any other text (kept verbatim, W17) goes to the heap.

use std::fmt;
use std::ops::Deref;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};

/// Length of "2026-04-24T19:45:20.123Z".
const INLINE: usize = 24;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Stamp(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    /// Exactly 24 bytes of a `str` (so valid UTF-8).
    Inline([u8; INLINE]),
    /// Any other length: never 24, so equal texts always have equal representations.
    Heap(Box<str>),
}

impl Stamp {
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // SAFETY: the only `Inline` is built in `From<&str>` from a `str`'s bytes, which are valid UTF-8. (A
            // checked conversion here would run for every timestamp a plan compares.)
            Repr::Inline(bytes) => unsafe { std::str::from_utf8_unchecked(bytes) },
            Repr::Heap(text) => text,
        }
    }
}

impl From<&str> for Stamp {
    fn from(text: &str) -> Self {
        match <[u8; INLINE]>::try_from(text.as_bytes()) {
            Ok(bytes) => Stamp(Repr::Inline(bytes)),
            Err(_) => Stamp(Repr::Heap(text.into())),
        }
    }
}

impl From<String> for Stamp {
    fn from(text: String) -> Self {
        if text.len() == INLINE {
            Stamp::from(text.as_str())
        } else {
            Stamp(Repr::Heap(text.into_boxed_str()))
        }
    }
}

impl Deref for Stamp {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for Stamp {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Stamp {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Stamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Read from any JSON string without an intermediate `String`.
impl<'de> Deserialize<'de> for Stamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = Stamp;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Stamp, E> {
                Ok(Stamp::from(text))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_text_round_trips_and_equal_texts_are_equal_stamps() {
        for text in [
            "2026-04-24T19:45:20.123Z",
            "",
            "2026-04-24T19:45:20Z",
            "ñ23456789012345678901234",
            "x".repeat(24).as_str(),
        ] {
            let (borrowed, owned) = (Stamp::from(text), Stamp::from(text.to_string()));
            assert_eq!(borrowed, owned);
            assert_eq!(borrowed.as_str(), text);
            let json = serde_json::to_string(&owned).unwrap();
            assert_eq!(json, serde_json::to_string(text).unwrap());
            assert_eq!(serde_json::from_str::<Stamp>(&json).unwrap(), borrowed);
        }
        assert_ne!(Stamp::from("2026-04-24T19:45:20.123Z"), Stamp::from("2026-04-24T19:45:20.124Z"));
        assert_eq!(std::mem::size_of::<Option<Stamp>>(), 32);
    }
}
