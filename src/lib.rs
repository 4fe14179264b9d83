//! marsh: the sync engine of swamp's S3 and GCS datastores.
//!
//! Swamp keeps a repo's data in a local cache directory and mirrors it to a bucket through an index object
//! (`.datastore-index.json`). This crate decides what to pull, what to push and what may be recorded as verified, and
//! sequences every request through two small traits (`store::ObjectStore`, `store::LocalCache`) so that the same core
//! runs natively under a deterministic simulator and in WebAssembly behind Deno adapters for S3 and GCS. Only the
//! index, the sidecar and small internal files cross the boundary; file bodies stay in the host.

pub mod dirty;
pub mod engine;
pub mod fingerprint;
pub mod index;
pub mod lock;
pub mod memory;
pub mod path;
pub mod plan;
pub mod retry;
mod scan;
pub mod sidecar;
pub mod sim;
mod sorted;
pub mod stamp;
pub mod store;
mod swar;
pub mod time;
pub mod token;
pub mod view;

#[cfg(target_arch = "wasm32")]
pub mod wasm;

/// The crate version, shown by the CLI and the smoke test.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
