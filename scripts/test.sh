#!/usr/bin/env bash
# THE test command: installs what is missing, then runs every check. Stops at the first failing stage.
#   bash scripts/test.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$root/.tools/bin:$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
deno_flags=(--config pkg.json --node-modules-dir=none)

started=$(date +%s)
passed=0
summary=()

# stage NAME CMD...: runs CMD, records its time; on failure prints every stage so far and exits.
stage() {
  local name="$1" stage_started
  shift
  stage_started=$(date +%s)
  printf '\n==> %s\n' "$name"
  if "$@"; then
    passed=$((passed + 1))
    summary+=("PASS  $name ($(($(date +%s) - stage_started))s)")
    printf 'test: PASS %s (%ss)\n' "$name" "$(($(date +%s) - stage_started))"
  else
    local status=$?
    summary+=("FAIL  $name (exit $status)")
    printf '\ntest: stages\n'
    printf '  %s\n' "${summary[@]}"
    printf 'test: FAILED at "%s" after %ss\n' "$name" "$(($(date +%s) - started))"
    exit 1
  fi
}

stage "setup" bash scripts/setup.sh
stage "boundary: JavaScript only in src/wasm/" bash scripts/check-boundary.sh
stage "cargo fmt --check" cargo fmt --check
stage "cargo clippy (native)" cargo clippy --quiet --all-targets -- -D warnings
stage "cargo clippy (wasm32)" cargo clippy --quiet --all-targets --target wasm32-unknown-unknown -- -D warnings
stage "cargo test (native, incl. simulator)" cargo test --quiet
# Every flawed variant declared in Cargo.toml: the simulator and the race tests that name it must catch it.
for flaw in $(sed -n 's/^\(flaw-[a-z-]*\) = \[\].*/\1/p' Cargo.toml); do
  stage "tests catch $flaw" bash scripts/check-flaw.sh "$flaw"
done
stage "wasm-pack test --node" wasm-pack --log-level warn test --node
stage "build wasm" bash scripts/build-wasm.sh
stage "build extensions (dist/)" bash scripts/build-extensions.sh --skip-wasm
stage "deno fmt --check" deno fmt --config pkg.json --check
stage "deno lint" deno lint --config pkg.json
stage "deno check" deno check "${deno_flags[@]}" js/ tests/deno/ bench/ scripts/
stage "deno test (with emulators)" bash scripts/with-emulators.sh \
  deno test "${deno_flags[@]}" --allow-env --allow-net=127.0.0.1 --allow-read --allow-write --allow-run --allow-sys tests/deno/

printf '\ntest: stages\n'
printf '  %s\n' "${summary[@]}"
printf 'test: ALL %s STAGES PASSED in %ss\n' "$passed" "$(($(date +%s) - started))"
