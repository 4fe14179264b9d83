//! In-memory test doubles: an object store with exact S3 or GCS token semantics, a cache directory, and a host
//! environment with a virtual clock. All single-threaded (`Rc`/`RefCell`); handles are cheap clones of shared state,
//! so several engines can share one bucket.
//!
//! Every store and cache call first awaits [`sim::yield_now`](crate::testing::sim::yield_now): under the simulator's
//! scheduler that is where another actor may run. Then it passes through its [`Faults`] controller (pause gates, hooks,
//! injected failures), then it acts. A call is atomic once past its yield point.

mod cache;
mod clock;
mod env;
mod faults;
mod store;
#[cfg(test)]
mod tests;

pub use cache::{CacheCalls, MemoryCache};
pub use clock::VirtualClock;
pub use env::TestEnv;
pub use faults::{Faults, Gate, Kind, RuleId};
pub use store::{MemoryStore, RequestCounts, TokenStyle};

use std::rc::Rc;

use sha2::{Digest, Sha256};

use crate::store::token::VersionToken;

/// A file or object body, shared between store and cache without copying.
pub type Body = Rc<Vec<u8>>;

/// 2026-01-01T00:00:00Z: where virtual clocks start, so timestamps look like real ones.
pub const DEFAULT_START_MS: i64 = 1_767_225_600_000;
/// The first GCS generation a fresh bucket hands out (real generations are microsecond timestamps of this size).
pub const FIRST_GCS_GENERATION: u64 = 1_700_000_000_000_001;
/// Objects per `list` page unless changed (S3 and GCS both default to 1000).
pub const DEFAULT_PAGE_SIZE: usize = 1000;

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The S3-style token of a body: hex of the first 16 bytes of its SHA-256. Real single-part S3 ETags are the hex MD5
/// of the body; what matters here is the same property: content-derived, 32 hex digits, identical bytes give an
/// identical token (so an unchanged rewrite does not change the ETag).
pub fn s3_token(bytes: &[u8]) -> VersionToken {
    let digest = sha256(bytes);
    VersionToken::new(digest[..16].iter().map(|b| format!("{b:02x}")).collect::<String>())
}
