//! Byte-level helpers the index and the local view are read and written with: a one-pass JSON scanner, word-at-a-time
//! byte masks, compact timestamps, ISO time conversions and a streaming fingerprint of internal files.

pub mod fingerprint;
pub(crate) mod scan;
pub mod stamp;
pub(crate) mod swar;
pub mod time;
