#!/usr/bin/env bash
# Builds the two swamp extensions into dist/ (git-ignored), each a folder swamp can install:
#   dist/s3-datastore/   manifest.yaml, README.md, LICENSE.txt, extensions/datastores/s3.ts + _lib/
#   dist/gcs-datastore/  the same with gcs.ts
# Steps: the release wasm and js/gen/ (scripts/build-wasm.sh), then scripts/build_extensions.ts copies the modules each
# entry needs, rewrites their imports and turns the wasm-bindgen glue into a .ts module. The version is today's UTC
# date with .1 unless MARSH_EXTENSION_VERSION=YYYY.MM.DD.N is set. Usage:
#   bash scripts/build-extensions.sh [--skip-wasm]   # --skip-wasm: reuse the current js/gen/
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$root/.tools/bin:$HOME/.cargo/bin:$PATH"

if [ "${1:-}" != "--skip-wasm" ]; then
  bash scripts/build-wasm.sh
fi
[ -f js/gen/marsh.js ] && [ -f js/gen/wasm_bytes.ts ] || {
  echo "build-extensions: js/gen/ is missing: run without --skip-wasm" >&2
  exit 1
}
deno run --config pkg.json --node-modules-dir=none --allow-read="$root" --allow-write="$root/dist" \
  --allow-env=MARSH_EXTENSION_VERSION,MARSH_REPOSITORY_URL scripts/build_extensions.ts "$root/dist"
