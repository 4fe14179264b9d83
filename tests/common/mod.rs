//! Shared arrangement for native engine tests: "machines" (a cache directory, a service instance, a host env) sharing
//! one in-memory bucket. Operations run to completion with `block_on`; interleavings use the simulator instead.
#![allow(dead_code)] // each test file uses its own subset

pub mod reader;

use marsh::engine::{Engine, EngineConfig, Instance, PullReport, PushReport, SyncError};
use marsh::index::RemoteIndex;
use marsh::local::sidecar::SyncState;
use marsh::path::{INDEX_KEY, SIDECAR_NAME};
use marsh::testing::memory::{MemoryCache, MemoryStore, TestEnv, TokenStyle, VirtualClock};
use marsh::testing::sim::block_on;

pub struct Machine {
    pub store: MemoryStore,
    pub cache: MemoryCache,
    pub env: TestEnv,
    pub instance: Instance,
    pub config: EngineConfig,
}

impl Machine {
    /// A machine with its own cache directory and clock, talking to `bucket` through its own client.
    pub fn new(bucket: &MemoryStore, seed: u64) -> Machine {
        let clock = VirtualClock::new(1_780_000_000_000 + seed as i64 * 1_000_000);
        Machine {
            store: bucket.client(),
            cache: MemoryCache::with_clock(clock.clone()),
            env: TestEnv::with_clock(clock, seed),
            instance: Instance::new(),
            config: EngineConfig::default(),
        }
    }

    /// A second service instance on the same cache directory (another swamp process on this machine).
    pub fn second_instance(&self) -> Machine {
        Machine {
            store: self.store.client(),
            cache: self.cache.instance(),
            env: self.env.clone(),
            instance: Instance::new(),
            config: self.config.clone(),
        }
    }

    pub fn engine(&self) -> Engine<'_, MemoryStore, MemoryCache, TestEnv> {
        Engine::new(&self.store, &self.cache, &self.env, &self.config, &self.instance)
    }

    pub fn pull(&self) -> Result<PullReport, SyncError> {
        block_on(self.engine().pull_changed())
    }

    pub fn push(&self) -> Result<PushReport, SyncError> {
        block_on(self.engine().push_changed())
    }

    /// A bare `markDirty()` (swamp before per-path marks): anything may change.
    pub fn mark_dirty(&self) {
        block_on(self.engine().mark_dirty(None)).expect("markDirty");
    }

    /// `markDirty({ relPath })`.
    pub fn mark_path(&self, rel: &str) {
        block_on(self.engine().mark_dirty(Some(rel))).expect("markDirty");
    }

    /// What today's swamp does for a write: markDirty with the path, then the write.
    pub fn write(&self, rel: &str, bytes: &[u8]) {
        self.mark_path(rel);
        self.cache.write_file(rel, bytes.to_vec());
    }

    /// A write under a bare markDirty (swamp before per-path marks).
    pub fn write_bare(&self, rel: &str, bytes: &[u8]) {
        self.mark_dirty();
        self.cache.write_file(rel, bytes.to_vec());
    }

    /// What today's swamp does for a removal: markDirty with the path, then the removal.
    pub fn delete(&self, rel: &str) {
        self.mark_path(rel);
        self.cache.remove_file(rel);
    }

    pub fn state(&self) -> SyncState {
        SyncState::parse(self.cache.file(SIDECAR_NAME).as_deref())
    }

    /// Data files only (what swamp sees).
    pub fn data_files(&self) -> Vec<String> {
        self.cache.files().into_keys().filter(|rel| !marsh::path::is_internal(rel)).collect()
    }
}

pub fn s3_bucket() -> MemoryStore {
    MemoryStore::new(TokenStyle::S3)
}

pub fn gcs_bucket() -> MemoryStore {
    MemoryStore::new(TokenStyle::Gcs)
}

/// The index any reader of the bucket sees (either layout), as marsh's document type.
pub fn remote_index(bucket: &MemoryStore) -> RemoteIndex {
    let entries = reader::read(bucket).entries;
    let document = serde_json::json!({ "version": 1, "entries": entries });
    RemoteIndex::parse(&serde_json::to_vec(&document).unwrap()).expect("remote index parses")
}

pub fn remote_keys(bucket: &MemoryStore) -> Vec<String> {
    reader::read(bucket).entries.into_keys().collect()
}

/// The commit object's current token: `_index/_meta.json` on format 2, the monolith on format 1.
pub fn commit_token(bucket: &MemoryStore) -> Option<marsh::store::token::VersionToken> {
    bucket.token(reader::META).or_else(|| bucket.token(INDEX_KEY))
}

/// A format-1 bucket (one monolith, as the official extensions wrote them before format 2) holding `files`.
pub fn format1_bucket(bucket: MemoryStore, files: &[(&str, &[u8])]) -> MemoryStore {
    let mut entries = serde_json::Map::new();
    for (rel, bytes) in files {
        bucket.put_raw(rel, bytes.to_vec());
        let entry = serde_json::json!({
            "key": rel,
            "size": bytes.len(),
            "lastModified": "2026-04-24T10:00:00.000Z",
            "sha256": marsh::index::sha256_hex(&marsh::index::sha256_of(bytes)),
        });
        entries.insert(rel.to_string(), entry);
    }
    let monolith = serde_json::json!({ "version": 1, "lastPulled": "2026-04-24T10:00:00.000Z", "entries": entries });
    bucket.put_raw(INDEX_KEY, serde_json::to_vec_pretty(&monolith).unwrap());
    bucket
}
