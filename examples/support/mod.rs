//! What the profiling examples share: an in-memory world made from an official-format index file.
use marsh::encoding::time::ms_from_iso;
use marsh::index::RemoteIndex;
use marsh::path::INDEX_KEY;
use marsh::testing::memory::{Faults, MemoryCache, MemoryStore, TokenStyle};

/// The store holding `bytes` as its monolith, and a cache holding every file of it at its entry's size and recorded
/// mtime (so a sync finds nothing to transfer); with the number of entries. Neither yields.
pub fn world_of(bytes: Vec<u8>) -> (MemoryStore, MemoryCache, usize) {
    let index = RemoteIndex::parse(&bytes).expect("index parses");
    let store = MemoryStore::new(TokenStyle::S3).with_faults(Faults::without_yields());
    store.put_raw(INDEX_KEY, bytes);
    let cache = MemoryCache::new().with_faults(Faults::without_yields());
    for (rel, entry) in index.entries() {
        let mtime_ms = entry.local_mtime.as_deref().and_then(ms_from_iso).unwrap_or(0);
        cache.write_file_with_mtime(rel, vec![b' '; entry.size as usize], mtime_ms);
    }
    (store, cache, index.len())
}
