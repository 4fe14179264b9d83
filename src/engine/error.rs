//! Errors of a sync operation. Per-file failures are collected and reported together (B13, W17).

use std::fmt;

use crate::lock::LockError;
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFailure {
    pub rel: String,
    pub error: StoreError,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("sync aborted")]
    Aborted,
    /// W13: a lock of this scope held by this process was taken over (always [`LockError::Lost`]); nothing more was
    /// written.
    #[error("{0}")]
    LockLost(LockError),
    /// B12: anything but "not found" when reading the index stops a push before any upload or write-back.
    #[error("cannot read the remote index: {0}")]
    IndexUnreadable(StoreError),
    #[error("the remote index is not valid: {0}")]
    IndexCorrupt(String),
    /// The bucket's format marker asks for a newer reader, or is not a marker: nothing was read further or written.
    #[error("the bucket's format is not supported: {0}")]
    FormatUnsupported(String),
    /// W1: the compare-and-swap kept failing because other writers kept changing the index.
    #[error("the remote index kept changing: gave up after {attempts} compare-and-swap attempts (nothing was lost; run the push again)")]
    IndexContended { attempts: u32 },
    #[error("index write-back failed: {0}")]
    IndexWrite(StoreError),
    #[error("local cache error: {0}")]
    Local(StoreError),
    #[error("{}", describe_failures(operation, *transferred, failures))]
    Files { operation: &'static str, transferred: u64, failures: Vec<FileFailure> },
}

impl SyncError {
    pub fn from_store(error: StoreError) -> SyncError {
        match error {
            StoreError::Aborted => SyncError::Aborted,
            other => SyncError::Local(other),
        }
    }
}

/// "push: 2 files failed (a.json, b.json); first errors: a.json: access denied (HTTP 403) …"
fn describe_failures(operation: &str, transferred: u64, failures: &[FileFailure]) -> String {
    let names: Vec<&str> = failures.iter().map(|f| f.rel.as_str()).collect();
    let first: Vec<String> = failures.iter().take(3).map(|f| format!("{}: {}", f.rel, f.error)).collect();
    let plural = if failures.len() == 1 { "" } else { "s" };
    format!(
        "{operation}: {} file{plural} failed ({}); {transferred} transferred; first errors: {}",
        failures.len(),
        names.join(", "),
        first.join("; ")
    )
}

impl fmt::Display for FileFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rel, self.error)
    }
}
