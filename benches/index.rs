//! Native micro-benchmarks (criterion): index parse and serialisation, the per-entry planning decisions, and a whole
//! dry-run pull on the in-memory store and cache, the native twin of the wasm planning scenario of `scripts/bench.sh`.
//!
//! ```sh
//! cargo bench --bench index                                        # synthetic data, 10k entries
//! MARSH_BENCH_INDEX=bench/tmp/data-250000/index.json cargo bench --bench index   # dry run over a generated index
//! ```
//!
//! `MARSH_BENCH_INDEX` names an official-format index written by `bench/gen.ts`; the dry run then plans it against a
//! cache holding every entry with its size and recorded mtime (all in sync, as in the wasm scenario).
//! `MARSH_BENCH_QUICK=1` shortens the measurement (development runs).
//! Native only: criterion does not build for wasm32, so there the bench is an empty `main`.

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::hint::black_box;
    use std::time::Duration;

    use criterion::{criterion_group, BenchmarkId, Criterion, SamplingMode, Throughput};
    use marsh::encoding::time::{iso_from_ms, ms_from_iso};
    use marsh::engine::plan::{pull_decision, push_decision, Marked};
    use marsh::engine::{Engine, EngineConfig, Instance};
    use marsh::index::{IndexEntry, RemoteIndex};
    use marsh::local::view::ViewEntry;
    use marsh::path::INDEX_KEY;
    use marsh::store::FileStat;
    use marsh::testing::memory::{Faults, MemoryCache, MemoryStore, TestEnv, TokenStyle};
    use marsh::testing::sim::{block_on, SplitMix64};

    /// Entries of the synthetic index used by the micro-benchmarks.
    const MICRO_ENTRIES: usize = 10_000;
    /// 2026-01-01T00:00:00Z.
    const EPOCH_MS: i64 = 1_767_225_600_000;

    fn quick() -> bool {
        std::env::var("MARSH_BENCH_QUICK").is_ok_and(|value| value == "1")
    }

    /// A swamp-like official-format index of `n` entries (no hashes), deterministic.
    fn synthetic_index(n: usize) -> RemoteIndex {
        let types = ["command/shell", "aws/ec2/instance", "@acme/k8s/deployment", "gcp/compute/instance"];
        let mut rng = SplitMix64::new(7);
        let mut entries = Vec::with_capacity(n + 8);
        while entries.len() < n {
            let kind = types[rng.below(types.len())];
            let id = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
            let id = format!("{}-{}-{}-{}-{}", &id[..8], &id[8..12], &id[12..16], &id[16..20], &id[20..32]);
            for version in 1..=1 + rng.below(8) {
                let mtime = EPOCH_MS - (rng.below(120 * 86_400) as i64) * 1000;
                let size = 200 + rng.below(3_900) as u64;
                let entry = IndexEntry::new(size, iso_from_ms(mtime + 1_000), Some(iso_from_ms(mtime)), None);
                entries.push((format!("data/{kind}/{id}/{version}.json"), entry));
            }
        }
        entries.truncate(n);
        let mut index = RemoteIndex::empty();
        index.insert_all(entries);
        index.set_last_pulled(iso_from_ms(EPOCH_MS));
        index
    }

    /// The local stat each entry describes (its size and recorded mtime): every file in sync.
    fn stats_of(index: &RemoteIndex) -> Vec<(String, IndexEntry, FileStat)> {
        index
            .entries()
            .map(|(rel, entry)| {
                let mtime_ms = entry.local_mtime.as_deref().and_then(ms_from_iso).unwrap_or(0);
                (rel.to_string(), entry.clone(), FileStat { size: entry.size, mtime_ms })
            })
            .collect()
    }

    fn index_benches(c: &mut Criterion) {
        let index = synthetic_index(MICRO_ENTRIES);
        let bytes = index.to_json();
        let mut group = c.benchmark_group("index");
        group.throughput(Throughput::Elements(index.len() as u64));
        if quick() {
            group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
        }
        group.bench_function(BenchmarkId::new("parse", index.len()), |b| {
            b.iter(|| RemoteIndex::parse(black_box(&bytes)).expect("parses"))
        });
        group.bench_function(BenchmarkId::new("serialize", index.len()), |b| b.iter(|| black_box(&index).to_json()));
        group.finish();
    }

    fn plan_benches(c: &mut Criterion) {
        let index = synthetic_index(MICRO_ENTRIES);
        let files = stats_of(&index);
        let views: Vec<ViewEntry> = files.iter().map(|(_, entry, stat)| ViewEntry::new(*stat, None, entry)).collect();
        let mut group = c.benchmark_group("plan");
        group.throughput(Throughput::Elements(files.len() as u64));
        if quick() {
            group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
        }
        // No view: the official rule (size and recorded mtime, which formats an ISO time per entry).
        group.bench_function(BenchmarkId::new("pull_decision_no_view", files.len()), |b| {
            b.iter(|| {
                for (_, entry, stat) in &files {
                    black_box(pull_decision(Some(entry), Some(stat), None, Marked::default()));
                }
            })
        });
        group.bench_function(BenchmarkId::new("pull_decision_with_view", files.len()), |b| {
            b.iter(|| {
                for ((_, entry, stat), view) in files.iter().zip(&views) {
                    black_box(pull_decision(Some(entry), Some(stat), Some(view), Marked::default()));
                }
            })
        });
        group.bench_function(BenchmarkId::new("push_decision_no_view", files.len()), |b| {
            b.iter(|| {
                for (_, entry, stat) in &files {
                    black_box(push_decision(Some(entry), Some(stat), None, Marked::default()));
                }
            })
        });
        group.bench_function(BenchmarkId::new("push_decision_with_view", files.len()), |b| {
            b.iter(|| {
                for ((_, entry, stat), view) in files.iter().zip(&views) {
                    black_box(push_decision(Some(entry), Some(stat), Some(view), Marked::default()));
                }
            })
        });
        group.finish();
    }

    /// The whole dry-run pull: index GET (a copy), parse, walk, view read, per-entry decisions.
    fn dry_run_benches(c: &mut Criterion) {
        let bytes = match std::env::var("MARSH_BENCH_INDEX") {
            Ok(path) => std::fs::read(&path).unwrap_or_else(|err| panic!("MARSH_BENCH_INDEX={path}: {err}")),
            Err(_) => synthetic_index(MICRO_ENTRIES).to_json(),
        };
        let index = RemoteIndex::parse(&bytes).expect("the benchmark index parses");
        let store = MemoryStore::new(TokenStyle::S3).with_faults(Faults::without_yields());
        store.put_raw(INDEX_KEY, bytes);
        let cache = MemoryCache::new().with_faults(Faults::without_yields());
        for (rel, _, stat) in stats_of(&index) {
            cache.write_file_with_mtime(&rel, vec![b' '; stat.size as usize], stat.mtime_ms);
        }
        let env = TestEnv::new(1);
        let config = EngineConfig { dry_run: true, ..EngineConfig::default() };
        let instance = Instance::new();

        let mut group = c.benchmark_group("dry_run_pull");
        group.throughput(Throughput::Elements(index.len() as u64));
        group.sample_size(10).sampling_mode(SamplingMode::Flat);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(if quick() { 2 } else { 15 }));
        group.bench_function(BenchmarkId::from_parameter(index.len()), |b| {
            b.iter(|| {
                let engine = Engine::new(&store, &cache, &env, &config, &instance);
                let report = block_on(engine.pull_changed()).expect("dry run");
                assert!(report.planned.is_empty(), "every file is in sync");
                report
            })
        });
        group.finish();
    }

    criterion_group!(benches, index_benches, plan_benches, dry_run_benches);
}

#[cfg(not(target_arch = "wasm32"))]
criterion::criterion_main!(native::benches);

#[cfg(target_arch = "wasm32")]
fn main() {}
