//! What the cache directory remembers between operations, each in its own internal file at the cache root: the
//! sidecar (what was verified against the remote), the dirty marker (written only by markDirty), the local view
//! (what each file looked like when it last matched an index entry), the commit journal (format-2 commits that may
//! have stopped half-way) and the uploads of two-phase pushes not yet committed. Every operation re-reads them from disk (W11).

pub mod conflicts;
pub mod journal;
pub mod marker;
pub mod marks;
pub mod prepared;
pub mod sidecar;
pub mod view;
