//! The sidecar (`.datastore-sync-state.json`): what this cache has verified about the remote, re-read from disk by
//! every operation (W11) because several service instances and processes share one cache directory.
//!
//! Two separate facts (W2):
//! - `verifiedToken`: the remote index token whose every entry was found (or made) present locally with matching size
//!   and hash. Written by pull and push, only with the token of the response whose bytes were compared, or of our own
//!   successful index PUT (B5, the seed rule: never a token from a later HEAD/GET).
//! - `cleanMarker`: the dirty marker (see `marker`) that was current when a complete push found nothing left to upload.
//!   The cache is locally clean only while the marker file still has that identity. Pulls never write it.
//!
//! We write version 2. Official version 1 files are read (and shown by `status`) but not trusted: their token may
//! have been recorded by the seed race, so they mean "slow path once". Anything unreadable means "no sidecar" (B17).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::local::marker::Marker;
use crate::store::token::VersionToken;

pub const SIDECAR_VERSION: u64 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SidecarOrigin {
    #[default]
    Missing,
    Unusable(String),
    OfficialV1 {
        token: Option<VersionToken>,
        local_dirty: bool,
    },
    Marsh,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncState {
    pub verified_token: Option<VersionToken>,
    pub verified_at: Option<String>,
    pub clean_marker: Option<String>,
    pub origin: SidecarOrigin,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SidecarV2 {
    version: u64,
    verified_token: Option<String>,
    verified_at: Option<String>,
    clean_marker: Option<String>,
}

impl SyncState {
    /// Never fails (B17): a missing, corrupt, unknown-version or wrongly typed file gives the default state.
    pub fn parse(bytes: Option<&[u8]>) -> SyncState {
        let Some(bytes) = bytes else { return SyncState::default() };
        let unusable = |why: &str| SyncState { origin: SidecarOrigin::Unusable(why.to_string()), ..Default::default() };
        let Ok(value) = serde_json::from_slice::<Value>(bytes) else { return unusable("not JSON") };
        match value.get("version").and_then(Value::as_u64) {
            Some(1) => SyncState { origin: read_official_v1(&value), ..Default::default() },
            Some(SIDECAR_VERSION) => match serde_json::from_value::<SidecarV2>(value) {
                Ok(file) => SyncState {
                    // A token that is not a fingerprint is never recorded, and is ignored if found (B17).
                    verified_token: file.verified_token.map(VersionToken::new).filter(VersionToken::is_fingerprint),
                    verified_at: file.verified_at,
                    clean_marker: file.clean_marker,
                    origin: SidecarOrigin::Marsh,
                },
                Err(_) => unusable("wrongly typed fields"),
            },
            _ => unusable("unknown version"),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        let file = SidecarV2 {
            version: SIDECAR_VERSION,
            verified_token: self.verified_token.as_ref().map(|t| t.as_str().to_string()),
            verified_at: self.verified_at.clone(),
            clean_marker: self.clean_marker.clone(),
        };
        serde_json::to_vec_pretty(&file).expect("sidecar serialises")
    }

    /// The local cache holds nothing unpushed, as far as the marker `current` tells.
    pub fn is_clean_at(&self, current: Option<&str>) -> bool {
        matches!((&self.clean_marker, current), (Some(clean), Some(now)) if clean == now)
    }

    /// A bare markDirty is known to have happened since the last clean push: the evidence a push needs before it
    /// takes a file gone here for a deletion (W23). A missing or foreign sidecar is no such evidence (a wiped cache
    /// must not delete the bucket's files: W21), though it still makes a push look at the whole cache.
    pub fn bare_mark_since_clean(&self, marker: &Marker) -> bool {
        let marked = matches!(marker, Marker::Marked { .. } | Marker::Unreadable);
        self.origin == SidecarOrigin::Marsh && marked && !self.is_clean_at(marker.id().as_deref())
    }
}

fn read_official_v1(value: &Value) -> SidecarOrigin {
    let token = ["remoteIndexETag", "remoteIndexGeneration"]
        .iter()
        .find_map(|field| value.get(*field).and_then(Value::as_str))
        .map(|raw| if raw.starts_with('"') { VersionToken::from_etag(raw) } else { VersionToken::new(raw) });
    let local_dirty = value.get("localDirty").and_then(Value::as_bool).unwrap_or(true);
    SidecarOrigin::OfficialV1 { token, local_dirty }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(token: &str, marker: Option<&str>) -> SyncState {
        SyncState {
            verified_token: Some(VersionToken::new(token)),
            verified_at: Some("2026-11-24T10:00:00.000Z".into()),
            clean_marker: marker.map(str::to_string),
            origin: SidecarOrigin::Marsh,
        }
    }

    #[test]
    fn our_sidecar_round_trips() {
        let state = ours("abc123", Some("3:ff"));
        assert_eq!(SyncState::parse(Some(&state.to_json())), state);
    }

    #[test]
    fn missing_sidecar_is_the_default_state() {
        let state = SyncState::parse(None);
        assert_eq!(state.origin, SidecarOrigin::Missing);
        assert!(state.verified_token.is_none());
        assert!(!state.is_clean_at(Some("never")));
    }

    #[test]
    fn corrupt_unknown_version_and_wrong_types_never_error() {
        for bytes in [
            &b"{oops"[..],
            br#"{"version":3}"#,
            br#"{"version":2,"verifiedToken":5,"verifiedAt":null,"cleanMarker":null}"#,
        ] {
            let state = SyncState::parse(Some(bytes));
            assert!(matches!(state.origin, SidecarOrigin::Unusable(_)), "{state:?}");
            assert!(state.verified_token.is_none());
            assert!(state.clean_marker.is_none());
        }
    }

    #[test]
    fn multipart_or_zero_token_is_dropped_on_read() {
        for token in ["d41d8cd98f00b204e9800998ecf8427e-2", "0", ""] {
            let state = SyncState::parse(Some(&ours(token, None).to_json()));
            assert!(state.verified_token.is_none(), "{token}");
        }
    }

    #[test]
    fn official_v1_is_read_but_not_trusted() {
        let v1 = br#"{"version":1,"remoteIndexETag":"\"9bb58f26\"","lastVerifiedAt":"2026-04-24T00:00:00.000Z","localDirty":false}"#;
        let state = SyncState::parse(Some(v1));
        assert_eq!(
            state.origin,
            SidecarOrigin::OfficialV1 { token: Some(VersionToken::new("9bb58f26")), local_dirty: false }
        );
        assert!(state.verified_token.is_none());
        let gcs = br#"{"version":1,"remoteIndexGeneration":"1714","lastVerifiedAt":"x","localDirty":true}"#;
        assert_eq!(
            SyncState::parse(Some(gcs)).origin,
            SidecarOrigin::OfficialV1 { token: Some(VersionToken::new("1714")), local_dirty: true }
        );
    }

    #[test]
    fn clean_needs_the_same_marker_identity() {
        let state = ours("t", Some("2:aa"));
        assert!(state.is_clean_at(Some("2:aa")));
        assert!(!state.is_clean_at(Some("3:bb")));
        assert!(!state.is_clean_at(None));
    }
}
