//! Profiling aid (not a benchmark): where a format-2 slow-path sync's memory goes, by phase. The official-format index
//! is put on the in-memory store and migrated to shards; the in-memory cache holds every file. Then the index read
//! alone, and two slow-path syncs (sidecar deleted; the first without a local view, the second with the one the first
//! wrote), each phase printed with the heap's peak and current size as the engine's trace line for it is written.
//! Native sizes (64-bit pointers): a wasm32 build holds the same structures in less. Run with
//! `cargo run --release --features testing --example peak_memory -- bench/tmp/data-250000/index.json`.
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use marsh::engine::{Engine, EngineConfig, Instance};
use marsh::index::IndexLayer;
use marsh::path::SIDECAR_NAME;
use marsh::store::retry::RetryPolicy;
use marsh::store::{Env, StoreResult};
use marsh::testing::memory::TestEnv;
use marsh::testing::sim::block_on;

/// The system allocator, counting the bytes live and their high-water mark since the last `phase`.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    PEAK.fetch_max(LIVE.fetch_add(bytes, Relaxed) + bytes, Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Counted as a new block beside the old one: a moving realloc holds both for a moment.
        grew(new_size);
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        LIVE.fetch_sub(layout.size(), Relaxed);
        moved
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn mb(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Print the peak and live bytes above `base` since the last phase, and start a new phase.
fn phase(what: &str, base: usize) {
    let live = LIVE.load(Relaxed);
    println!("  {what}: peak +{}, live +{}", mb(PEAK.load(Relaxed) - base), mb(live.saturating_sub(base)));
    PEAK.store(live, Relaxed);
}

/// The test environment, printing a phase at each of the engine's trace lines.
struct Phases {
    env: TestEnv,
    base: usize,
}

impl Env for Phases {
    fn now_ms(&self) -> i64 {
        self.env.now_ms()
    }
    fn random(&self) -> f64 {
        self.env.random()
    }
    async fn sleep(&self, ms: u64) -> StoreResult<()> {
        self.env.sleep(ms).await
    }
    fn is_aborted(&self) -> bool {
        self.env.is_aborted()
    }
    fn trace(&self, line: &str) {
        phase(line.trim_end_matches(" 0 ms"), self.base);
    }
}

fn main() {
    let path = std::env::args().nth(1).expect("an index.json path");
    let bytes = std::fs::read(&path).expect("index readable");
    let (store, cache, entries) = support::world_of(bytes);
    println!("{entries} entries");
    let env = TestEnv::new(1);
    let config = EngineConfig::default();
    let instance = Instance::new();
    block_on(Engine::new(&store, &cache, &env, &config, &instance).migrate_index()).expect("migration");

    let retry = RetryPolicy::default();
    let layer = IndexLayer::new(&store, &env, &retry, 3);
    let base = LIVE.load(Relaxed);
    phase("start", base);
    let read = block_on(layer.read(None)).expect("index read");
    phase("the index read alone", base);
    drop(read);

    for (sync, view) in [(1, "no local view"), (2, "the view the first wrote")] {
        cache.remove_file(SIDECAR_NAME);
        let phases = Phases { env: TestEnv::new(1), base: LIVE.load(Relaxed) };
        println!("slow-path sync {sync} ({view}), above {}:", mb(phases.base));
        phase("start", phases.base);
        let instance = Instance::new();
        let engine = Engine::new(&store, &cache, &phases, &config, &instance);
        block_on(engine.pull_changed()).expect("pull");
        block_on(engine.push_changed()).expect("push");
    }
}
