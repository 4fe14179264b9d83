#!/usr/bin/env bash
# THE main-job command. For now a smoke run: install what is missing, build the wasm core, and run the CLI on it.
#   bash scripts/demo.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$root/.tools/bin:$HOME/.cargo/bin:$PATH"

bash scripts/setup.sh
bash scripts/build-wasm.sh
echo "demo: deno run --config pkg.json js/cli.ts version"
deno run --config pkg.json --node-modules-dir=none js/cli.ts version
