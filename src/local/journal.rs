//! The commit journal (`.marsh-commit.json`): format-2 commits of this cache that may have stopped half-way.
//!
//! A format-2 commit writes shards, then `_index/_meta.json`. A process killed in between leaves shard entries that
//! readers who verified the current commit record never look at: the record did not move. Its next push would find
//! those files already in the index and commit nothing, hiding them for good. So a push notes its commit here before
//! the first shard write and removes the note once the record is written; a push that finds a note it did not write
//! commits the record even with nothing else to write, then removes the notes it saw.
//!
//! Instances on one cache update this file by read-modify-write; two pushes on one cache at once (swamp runs pushes
//! under its global lock) could lose a note, and with it only the repair of a commit that also stopped half-way.

use serde::{Deserialize, Serialize};

pub use crate::path::COMMIT_JOURNAL_NAME;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    version: u32,
    /// Nonces of commits started and not known to have finished.
    pub started: Vec<String>,
}

impl Journal {
    /// An unreadable journal counts as one unfinished commit: the repair it asks for is one more commit record.
    pub fn parse(bytes: Option<&[u8]>) -> Journal {
        match bytes {
            None => Journal::default(),
            Some(bytes) => serde_json::from_slice::<Journal>(bytes)
                .ok()
                .filter(|journal| journal.version == 1)
                .unwrap_or_else(|| Journal { version: 1, started: vec!["unreadable".to_string()] }),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&Journal { version: 1, started: self.started.clone() }).expect("the journal serialises")
    }

    pub fn is_empty(&self) -> bool {
        self.started.is_empty()
    }

    pub fn with(mut self, nonce: &str) -> Journal {
        self.started.push(nonce.to_string());
        self
    }

    pub fn without(mut self, done: &[String]) -> Journal {
        self.started.retain(|nonce| !done.contains(nonce));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_and_are_removed_by_nonce() {
        let journal = Journal::default().with("a").with("b");
        let read = Journal::parse(Some(&journal.to_json()));
        assert_eq!(read.started, ["a", "b"]);
        assert_eq!(read.without(&["a".to_string()]).started, ["b"]);
        assert!(Journal::parse(None).is_empty());
    }

    #[test]
    fn an_unreadable_journal_asks_for_a_repair() {
        for bytes in [&b"{"[..], br#"{"version":2,"started":[]}"#, br#"{"version":1,"started":"x"}"#] {
            assert!(!Journal::parse(Some(bytes)).is_empty(), "{}", String::from_utf8_lossy(bytes));
        }
    }
}
