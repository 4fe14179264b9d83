//! The remote index: the objects that say which files the bucket holds, read with the verified-token rule and written
//! back by compare-and-swap. The engine asks this layer for "the index" and hands it "these changes"; it never names
//! an index object.
//!
//! - [`document`]: one index object's JSON (a version-1 document of entries), with every field we do not understand
//!   kept for the rewrite.
//! - [`shard`] and [`meta`]: format 2's shard assignment, commit record and format marker.
//! - [`IndexLayer`]: reading a [`Snapshot`] (conditionally on the token a fast path compares), committing [`Changes`]
//!   on top of the index as it is now, and migrating a format-1 bucket to format 2.

mod document;
mod layer;
pub mod meta;
pub mod shard;

pub use document::{parse_sha256_hex, sha256_hex, sha256_of, IndexEntry, IndexError, InvalidEntry, RemoteIndex};
pub use layer::{Change, Changes, Committed, Expected, IndexLayer, LocalCopy, Migrated, Read, Snapshot};
