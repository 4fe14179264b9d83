//! Uploads of a two-phase push prepared in this cache and not yet committed (`.marsh-prepared.json`).
//!
//! `preparePush` uploads objects that no index entry names yet. If its `commitPush` never comes (a crash, a lost
//! manifest), the next push of the same paths would find another object than the base it knows and take it for
//! another writer's (a conflict on our own bytes). Recording each prepared upload's version token lets that push
//! replace or delete the object on condition that it still is ours, so a crash between the phases loses nothing.
//!
//! Instances on one cache update this file by read-modify-write; a lost update can only turn a later push of the path
//! into a conflict the user resolves, never lose or overwrite data (every write stays conditional).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::local::view::ViewEntry;
use crate::store::token::VersionToken;

pub use crate::path::PREPARED_NAME;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedUploads {
    version: u32,
    /// Path → version token of the object this cache uploaded there.
    uploads: BTreeMap<String, String>,
}

impl PreparedUploads {
    /// An unreadable file counts as none: a push then treats those objects as another writer's (a conflict, no loss).
    pub fn parse(bytes: Option<&[u8]>) -> PreparedUploads {
        bytes
            .and_then(|bytes| serde_json::from_slice::<PreparedUploads>(bytes).ok())
            .filter(|prepared| prepared.version == 1)
            .unwrap_or_default()
    }

    pub fn to_json(&self) -> Vec<u8> {
        let prepared = PreparedUploads { version: 1, uploads: self.uploads.clone() };
        serde_json::to_vec(&prepared).expect("the prepared uploads serialise")
    }

    pub fn is_empty(&self) -> bool {
        self.uploads.is_empty()
    }

    pub fn token(&self, rel: &str) -> Option<VersionToken> {
        self.uploads.get(rel).map(|token| VersionToken::new(token.as_str()))
    }

    /// The base a deletion of `rel` may remove: our own prepared object when there is one, else the synced version.
    pub fn as_base(&self, rel: &str, record: &ViewEntry) -> ViewEntry {
        match self.token(rel) {
            Some(token) => record.clone().with_token(Some(token)),
            None => record.clone(),
        }
    }

    pub fn insert(&mut self, rel: String, token: &VersionToken) {
        self.uploads.insert(rel, token.as_str().to_string());
    }

    /// Drop these paths; true when something was dropped.
    pub fn forget<'a>(&mut self, rels: impl IntoIterator<Item = &'a str>) -> bool {
        let before = self.uploads.len();
        for rel in rels {
            self.uploads.remove(rel);
        }
        self.uploads.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_forgets_by_path() {
        let mut prepared = PreparedUploads::default();
        prepared.insert("a.json".into(), &VersionToken::new("t1"));
        prepared.insert("d/b.json".into(), &VersionToken::new("t2"));
        let mut read = PreparedUploads::parse(Some(&prepared.to_json()));
        assert_eq!(read.token("a.json"), Some(VersionToken::new("t1")));
        assert!(read.forget(["a.json", "missing"]));
        assert!(!read.forget(["a.json"]));
        assert_eq!(read.token("a.json"), None);
        assert_eq!(read.token("d/b.json"), Some(VersionToken::new("t2")));
    }

    #[test]
    fn an_unreadable_or_foreign_file_is_none() {
        assert!(PreparedUploads::parse(Some(b"{")).is_empty());
        assert!(PreparedUploads::parse(Some(br#"{"version":9,"uploads":{"a":"t"}}"#)).is_empty());
        assert!(PreparedUploads::parse(None).is_empty());
    }
}
