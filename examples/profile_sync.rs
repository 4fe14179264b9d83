//! Profiling aid (not a benchmark): one slow-path sync (pull + push, sidecar deleted, view present) over an
//! official-format index on the in-memory store and cache, timed by phase. Run under `perf record` with
//! `cargo run --release --example profile_sync -- bench/tmp/data-250000/index.json`. `PARSE_ONLY=1`: index parses only;
//! `VIEW_ONLY=<view file>`: view parses only; `CHECK_ONLY=1`: `check_rel` over every key; `DRY_RUN=1`: dry-run pulls
//! (the planning scenario); `SHARDED=1`: the same on format 2 (the monolith migrated to shards first).
mod support;

use std::time::Instant;

use marsh::engine::{Engine, EngineConfig, Instance};
use marsh::index::RemoteIndex;
use marsh::path::SIDECAR_NAME;
use marsh::testing::memory::TestEnv;
use marsh::testing::sim::block_on;

fn main() {
    if let Some(view) = std::env::var_os("VIEW_ONLY") {
        let bytes = std::fs::read(view).expect("view readable");
        for _ in 0..3 {
            let started = Instant::now();
            let view = marsh::local::view::LocalView::parse(Some(&bytes));
            println!("view parse: {:?} for {} records", started.elapsed(), view.len());
        }
        return;
    }
    let path = std::env::args().nth(1).expect("an index.json path");
    let bytes = std::fs::read(&path).expect("index readable");
    for _ in 0..3 {
        let started = Instant::now();
        let index = RemoteIndex::parse(&bytes).expect("index parses");
        println!("parse: {:?} for {} entries", started.elapsed(), index.len());
    }
    if std::env::var_os("CHECK_ONLY").is_some() {
        let index = RemoteIndex::parse(&bytes).expect("index parses");
        let keys: Vec<&str> = index.entries().map(|(rel, _)| rel).collect();
        for _ in 0..3 {
            let started = Instant::now();
            let safe =
                (0..10).map(|_| keys.iter().filter(|rel| marsh::path::check_rel(rel).is_ok()).count()).sum::<usize>();
            println!("check_rel: {:?} for 10 x {} keys ({safe} safe)", started.elapsed(), keys.len());
        }
        return;
    }
    if std::env::var_os("PARSE_ONLY").is_some() {
        return;
    }
    let (store, cache, _) = support::world_of(bytes);
    let env = TestEnv::new(1);
    if std::env::var_os("SHARDED").is_some() {
        // Format 2, as the bench's slow path: the monolith split into shards, so a full read is one GET per shard.
        let (config, instance) = (EngineConfig::default(), Instance::new());
        let migrated =
            block_on(Engine::new(&store, &cache, &env, &config, &instance).migrate_index()).expect("migrate");
        println!("migrated to {} shards", migrated.partitions.len());
    }
    if std::env::var_os("DRY_RUN").is_some() {
        // The planning scenario: dry-run pulls, no sidecar and no view (every entry decided by size + recorded mtime).
        let config = EngineConfig { dry_run: true, ..EngineConfig::default() };
        let instance = Instance::new();
        for round in 0..5 {
            let engine = Engine::new(&store, &cache, &env, &config, &instance);
            let started = Instant::now();
            let report = block_on(engine.pull_changed()).expect("dry run");
            println!("dry run {round}: {:?} ({} planned)", started.elapsed(), report.planned.len());
        }
        return;
    }
    let config = EngineConfig::default();
    for round in 0..3 {
        cache.remove_file(SIDECAR_NAME);
        let instance = Instance::new();
        let engine = Engine::new(&store, &cache, &env, &config, &instance);
        let started = Instant::now();
        let pull = block_on(engine.pull_changed()).expect("pull");
        let pulled = started.elapsed();
        let push = block_on(engine.push_changed()).expect("push");
        let total = started.elapsed();
        println!(
            "round {round}: pull {:?} push {:?} total {:?} (downloaded {}, uploaded {}, walk reused {})",
            pulled,
            total - pulled,
            total,
            pull.downloaded,
            push.uploaded,
            push.walk_reused
        );
    }
}
