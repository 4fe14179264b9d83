//! marsh: the sync engine of swamp's S3 and GCS datastores.
//!
//! Swamp keeps a repo's data in a local cache directory and mirrors it to a bucket described by an index. This crate
//! decides what to pull, what to push and what may be recorded as verified, and sequences every request through small
//! traits (`store::ObjectStore`, `store::LocalCache`, `store::Env`), so the same core runs natively under a
//! deterministic simulator and in WebAssembly behind Deno adapters for S3 and GCS. Only index objects, the sidecar
//! and small internal files cross the boundary; file bodies stay in the host.
//!
//! Layout by concern:
//! - `store`: the traits the core talks through, version tokens, the retry policy;
//! - `path`: which cache paths are safe and which are internal;
//! - `index`: the remote index (entries, the JSON formats, reading and compare-and-swap writing);
//! - `local`: what the cache directory remembers (sidecar, dirty marker, local view);
//! - `engine`: pull, push and markDirty, and the pure per-file decisions they make;
//! - `lock`: the distributed lock protocol;
//! - `control`: swamp's control-plane records under `_control/`, read and written past the cache;
//! - `encoding`: the byte-level helpers underneath (JSON scanner, word masks, timestamps, fingerprints);
//! - `wasm` (wasm32 only): the boundary, the one module that knows about JavaScript;
//! - `testing` (feature `testing`): in-memory doubles, fault injection and the simulator.

pub mod control;
pub mod encoding;
pub mod engine;
pub mod index;
pub mod local;
pub mod lock;
pub mod namespace;
pub mod path;
mod sorted;
pub mod store;

#[cfg(feature = "testing")]
pub mod testing;

#[cfg(target_arch = "wasm32")]
pub mod wasm;

/// The crate version, shown by the CLI and the smoke test.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
