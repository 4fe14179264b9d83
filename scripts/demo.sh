#!/usr/bin/env bash
# THE main-job command: a real sync between two cache directories through a local `file://` store, no cloud account
# and no emulator. Machine A ("laptop") pushes a sample swamp cache, machine B ("ci-runner") pulls it, both sides
# edit, both sync, and the result is shown.
#   bash scripts/demo.sh            (keeps its files under a temp dir it prints)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$root/.tools/bin:$HOME/.cargo/bin:$PATH"

bash scripts/setup.sh
bash scripts/build-wasm.sh

demo="$(mktemp -d "${TMPDIR:-/tmp}/marsh-demo.XXXXXX")"
store="file://$demo/bucket"
laptop="$demo/laptop-cache"
runner="$demo/ci-runner-cache"
marsh() {
  deno run --config pkg.json --quiet --allow-read --allow-write --allow-env --allow-net --allow-sys js/cli.ts "$@"
}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { (cd "$1" && find . -type f ! -name '.*' | sort | sed 's|^\./|  |'); }

step "a sample swamp cache on the laptop"
mkdir -p "$laptop/models/aws-ec2" "$laptop/data/runs"
echo '{"type":"aws/ec2","name":"web"}' > "$laptop/models/aws-ec2/web.yaml"
echo '{"instances":3}' > "$laptop/data/runs/run-001.json"
echo '{"instances":4}' > "$laptop/data/runs/run-002.json"
show "$laptop"

step "laptop: mark-dirty, then sync to $store"
marsh mark-dirty --store "$store" --cache "$laptop"
marsh sync --store "$store" --cache "$laptop"

step "ci-runner: first sync (a fresh cache pulls everything)"
marsh sync --store "$store" --cache "$runner"
show "$runner"

step "both sides edit: the laptop adds a run, the ci-runner changes run-001 (same size)"
marsh mark-dirty --store "$store" --cache "$laptop"
echo '{"instances":5}' > "$laptop/data/runs/run-003.json"
marsh mark-dirty --store "$store" --cache "$runner"
echo '{"instances":9}' > "$runner/data/runs/run-001.json"

step "ci-runner syncs, then the laptop syncs"
marsh sync --store "$store" --cache "$runner"
marsh sync --store "$store" --cache "$laptop"

step "the ci-runner's next sync picks up the laptop's run (a dry run first shows the plan)"
marsh pull --dry-run --store "$store" --cache "$runner"
marsh sync --store "$store" --cache "$runner"

step "a zero-diff sync takes both fast paths"
marsh sync --store "$store" --cache "$laptop"

step "result"
for side in laptop-cache ci-runner-cache; do
  echo "$side:"
  show "$demo/$side"
  printf '  data/runs/run-001.json = %s\n' "$(cat "$demo/$side/data/runs/run-001.json")"
done
if diff -r -x '.*' "$laptop" "$runner" >/dev/null; then
  echo "demo: both caches hold the same files"
else
  echo "demo: the caches differ" >&2
  exit 1
fi
marsh status --store "$store" --cache "$laptop"
echo "demo: files kept under $demo"
