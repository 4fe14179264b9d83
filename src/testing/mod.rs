//! Test machinery, compiled only with the `testing` feature (never into the wasm product): in-memory doubles of the
//! store, the cache and the host environment with fault injection (`memory`), and the deterministic scheduler that
//! explores interleavings of engine operations (`sim`).

pub mod memory;
pub mod sim;
