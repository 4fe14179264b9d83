//! The dirty marker (`.marsh-dirty.json`): written by `markDirty` and by nothing else.
//!
//! Every `markDirty` writes a new marker (generation + random nonce). A push captures the marker before its walk and
//! records "clean at marker M" in the sidecar only if the marker is still M when it finishes (W3). Because no other
//! operation writes this file, a push or pull rewriting the sidecar can never erase a concurrent markDirty (a
//! read-modify-write of one shared file could), and because nonces are unique, a stale "clean" can never match a newer
//! marker. The sidecar itself is never rewritten by markDirty (B8).

use serde::{Deserialize, Serialize};

use crate::encoding::time::iso_from_ms;

pub use crate::path::DIRTY_NAME;

/// What the marker file says now. `Unreadable` is never clean: only a later markDirty replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// No markDirty has ever run on this cache.
    Never,
    Marked {
        generation: u64,
        nonce: String,
    },
    Unreadable,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MarkerFile {
    version: u32,
    generation: u64,
    nonce: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    marked_at: Option<String>,
}

impl Marker {
    pub fn parse(bytes: Option<&[u8]>) -> Marker {
        let Some(bytes) = bytes else { return Marker::Never };
        match serde_json::from_slice::<MarkerFile>(bytes) {
            Ok(file) if file.version == 1 && !file.nonce.is_empty() => {
                Marker::Marked { generation: file.generation, nonce: file.nonce }
            }
            _ => Marker::Unreadable,
        }
    }

    /// The identity recorded as `cleanMarker` in the sidecar; `None` for an unreadable marker (never clean).
    pub fn id(&self) -> Option<String> {
        match self {
            Marker::Never => Some("never".to_string()),
            Marker::Marked { generation, nonce } => Some(format!("{generation}:{nonce}")),
            Marker::Unreadable => None,
        }
    }

    pub fn generation(&self) -> u64 {
        match self {
            Marker::Marked { generation, .. } => *generation,
            _ => 0,
        }
    }

    /// The marker a markDirty writes after this one.
    pub fn next(&self, nonce: String, now_ms: i64) -> (Marker, Vec<u8>) {
        let generation = self.generation() + 1;
        let file = MarkerFile { version: 1, generation, nonce: nonce.clone(), marked_at: Some(iso_from_ms(now_ms)) };
        let bytes = serde_json::to_vec(&file).expect("marker serialises");
        (Marker::Marked { generation, nonce }, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_marker_is_never_marked_and_has_an_identity() {
        assert_eq!(Marker::parse(None), Marker::Never);
        assert_eq!(Marker::parse(None).id().as_deref(), Some("never"));
    }

    #[test]
    fn corrupt_marker_has_no_identity_so_it_is_never_clean() {
        assert_eq!(Marker::parse(Some(b"{")), Marker::Unreadable);
        assert_eq!(Marker::parse(Some(b"{}")).id(), None);
    }

    #[test]
    fn next_marker_bumps_generation_and_round_trips() {
        let (next, bytes) = Marker::Never.next("abc".into(), 0);
        assert_eq!(next.generation(), 1);
        assert_eq!(Marker::parse(Some(&bytes)), next);
        let (after, _) = next.next("def".into(), 1);
        assert_eq!(after.generation(), 2);
        assert_ne!(after.id(), next.id());
    }
}
