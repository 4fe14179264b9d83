#!/usr/bin/env bash
# The boundary rule: only src/wasm/ may touch JavaScript, so nothing else in src/ names wasm_bindgen,
# wasm_bindgen_futures, js_sys or JsValue. Comments count too: doc comments hold doctests, which compile, and core
# prose that speaks of JsValue is a JS concern outside the boundary.
#   bash scripts/check-boundary.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# `wasm_bindgen` also matches `wasm_bindgen_futures` (and `wasm_bindgen_test`).
pattern='wasm_bindgen|js_sys|JsValue'
if offending="$(grep -rnE --include='*.rs' "$pattern" src | grep -v '^src/wasm/')"; then
  echo "check-boundary: JavaScript outside src/wasm/ (only the boundary module may use it):" >&2
  echo "$offending" >&2
  exit 1
fi
echo "check-boundary: no wasm_bindgen, wasm_bindgen_futures, js_sys or JsValue in src/ outside src/wasm/"
