#!/usr/bin/env bash
# THE benchmark command (not part of scripts/test.sh): builds the release wasm, starts moto through
# scripts/with-emulators.sh, runs every scenario, prints PASS/MISS per target and rewrites bench/results/RESULTS.md.
#   bash scripts/bench.sh            # THE full run: 10k and 250k files, 3–10 runs per figure, and scenario 4 (marsh
#                                    # against a plain GET/PUT loop, 10k files of ~220 B, file:// and moto, 3 rounds);
#                                    # then the slow path on the directory-heavy layout (RESULTS-dirs.md)
#   bash scripts/bench.sh --quick    # CI-sized: 2k and 20k files, 2–3 runs, scenario 4 at 1k files, 3 rounds;
#                                    # writes bench/results/RESULTS-quick.md (and RESULTS-quick-dirs.md)
#   bash scripts/bench.sh --only 2,3 # some scenarios (1 zero-diff, 2 slow path, 3 planning, 4 transfers against the
#                                    # plain loop, 5 one changed file, micro = criterion only); combine with --quick
#   bash scripts/bench.sh --only 4 --transfer-files 10000 --transfer-reps 5
#                                    # the transfer comparison alone, sized by hand
#   bash scripts/bench.sh --only 1,2,5 --sizes big --stores file --formats 2,1 --big-reps 3
#                                    # narrow a run: datasets (small, big), stores (file, s3), layouts (2 = shards,
#                                    # always measured; 1 = the monolith baseline), runs per figure at the big N
# Every scenario runs on a format-2 bucket; format 1 (the default --formats 2,1) adds baseline rows in the same run.
# A MISS does not fail the command: the bench reports its targets, it is not a timed test.
# CARGO_TARGET_DIR is honoured by every step (cargo, build-wasm.sh, the criterion results the driver reads).
# Generated datasets are kept in bench/tmp/ (git-ignored; the full run's are large) and reused by later runs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$root/.tools/bin:$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

bash scripts/setup.sh
bash scripts/build-wasm.sh
# Compile the criterion benchmark before the clock matters (the driver runs it after the Deno scenarios).
cargo bench --quiet --bench index --no-run

bash scripts/with-emulators.sh \
  deno run --config pkg.json --node-modules-dir=none --quiet -A bench/main.ts "$@"

# The full and the quick run also measure the slow path on the directory-heavy layout (one directory per file), where
# the pull is judged against `find` over the same tree: its own dataset, file:// only, its own results file.
case "$*" in
  "") dirs_out=(--out bench/results/RESULTS-dirs.md) ;;
  "--quick") dirs_out=(--quick --out bench/results/RESULTS-quick-dirs.md) ;;
  *) exit 0 ;;
esac
deno run --config pkg.json --node-modules-dir=none --quiet -A bench/main.ts \
  --only 2 --sizes big --stores file --formats 2 --layout dirs "${dirs_out[@]}"
