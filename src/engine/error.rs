//! Errors of a sync operation. Per-file failures are collected and reported together (B13, W17).

use std::fmt;

use crate::local::conflicts::ConflictKind;
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
    /// W20: paths changed here and in the bucket since this cache last synced them. Everything else was pushed;
    /// these were left as they are on both sides until resolved.
    #[error("{}", describe_conflicts(*transferred, conflicts))]
    Conflicts { transferred: u64, conflicts: Vec<(String, ConflictKind)> },
    /// W23: a push after a bare markDirty found more files gone than a wiped or half-restored cache should be allowed
    /// to delete from the bucket. Nothing was written.
    #[error(
        "push: {count} files are gone from the cache since they were last synced ({}), more than the {limit} a push may \
         delete without a markDirty naming them; nothing was written. If they were deleted on purpose, mark them \
         (markDirty with their paths, or `marsh mark-dirty --path P`) or raise the limit; to get them back, `marsh \
         pull --restore`",
        first.join(", ")
    )]
    MassDeletion { count: usize, limit: usize, first: Vec<String> },
    /// `resolve` was asked about a path with no open conflict (or not a cache path): nothing was changed.
    #[error("resolve {rel}: {why}; nothing was changed")]
    NoConflict { rel: String, why: String },
    /// An option or path the host passed cannot be used; the message names it. Nothing was read or written.
    #[error("{0}")]
    InvalidArgument(String),
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

/// "push: 2 conflicts (a.json: changed here and in the bucket; …); 3 transferred; resolve with `marsh resolve`"
fn describe_conflicts(transferred: u64, conflicts: &[(String, ConflictKind)]) -> String {
    let plural = if conflicts.len() == 1 { "" } else { "s" };
    let listed: Vec<String> = conflicts.iter().map(|(rel, kind)| format!("{rel}: {}", kind.describe())).collect();
    format!(
        "push: {} conflict{plural}, left as they are here and in the bucket ({}); {transferred} transferred; resolve \
         each with `marsh resolve PATH --keep-local` or `--keep-remote`",
        conflicts.len(),
        listed.join("; ")
    )
}

impl fmt::Display for FileFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rel, self.error)
    }
}
