//! Open conflicts (`.marsh-conflicts.json`): paths changed both here and in the bucket since this cache last synced
//! them (W20). Neither side is overwritten: the local version stays in the cache, the remote one in the bucket, and the
//! path is left alone by pulls and pushes until it is resolved (`marsh resolve PATH --keep-local|--keep-remote`).
//!
//! The file is a report, not the source of truth: every pull and push decides again from the base (the local view),
//! the local file and the remote entry, and records what it found for the paths it looked at. Losing an update of it
//! to a concurrent instance can only make `status` stale until the next operation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::path::CONFLICTS_NAME;

/// How the two sides diverged from the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictKind {
    /// Edited here and in the bucket.
    BothChanged,
    /// Deleted here, edited in the bucket.
    DeletedHere,
    /// Edited here, deleted in the bucket.
    DeletedThere,
    /// Created here and in the bucket with different bytes (no common base).
    CreatedBoth,
    /// The object changed in the bucket while this push uploaded (another writer's upload, not yet in the index).
    ObjectMoved,
}

impl ConflictKind {
    pub fn describe(self) -> &'static str {
        match self {
            ConflictKind::BothChanged => "changed here and in the bucket",
            ConflictKind::DeletedHere => "deleted here, changed in the bucket",
            ConflictKind::DeletedThere => "changed here, deleted in the bucket",
            ConflictKind::CreatedBoth => "created here and in the bucket with different contents",
            ConflictKind::ObjectMoved => "the bucket's object changed while this push uploaded it",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenConflict {
    pub kind: ConflictKind,
    pub found_at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflicts {
    version: u32,
    pub conflicts: BTreeMap<String, OpenConflict>,
}

impl Conflicts {
    /// An unreadable file is an empty report (the next operation finds the conflicts again).
    pub fn parse(bytes: Option<&[u8]>) -> Conflicts {
        bytes
            .and_then(|bytes| serde_json::from_slice::<Conflicts>(bytes).ok())
            .filter(|file| file.version == 1)
            .unwrap_or_default()
    }

    pub fn to_json(&self) -> Vec<u8> {
        let file = Conflicts { version: 1, conflicts: self.conflicts.clone() };
        serde_json::to_vec_pretty(&file).expect("conflicts serialise")
    }

    /// Record what one operation found: `found` are open now; `cleared` paths were looked at and are not in conflict.
    /// Returns whether anything changed.
    pub fn update(
        &mut self,
        found: &[(String, ConflictKind)],
        cleared: impl IntoIterator<Item = String>,
        now: &str,
    ) -> bool {
        let before = self.conflicts.clone();
        for rel in cleared {
            self.conflicts.remove(&rel);
        }
        for (rel, kind) in found {
            let entry = self.conflicts.entry(rel.clone());
            entry
                .and_modify(|open| open.kind = *kind)
                .or_insert_with(|| OpenConflict { kind: *kind, found_at: now.to_string() });
        }
        self.conflicts != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_round_trips_and_keeps_when_a_conflict_was_first_found() {
        let mut report = Conflicts::default();
        assert!(report.update(&[("a".into(), ConflictKind::BothChanged)], [], "t1"));
        assert!(!report.update(&[("a".into(), ConflictKind::BothChanged)], [], "t2"));
        assert!(report.update(&[("b".into(), ConflictKind::DeletedThere)], ["a".to_string()], "t3"));
        let read = Conflicts::parse(Some(&report.to_json()));
        assert_eq!(read.conflicts.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(read.conflicts["b"].found_at, "t3");
        assert!(Conflicts::parse(Some(b"{")).conflicts.is_empty());
    }
}
