#!/usr/bin/env bash
# Shows that the tests catch one deliberately flawed engine variant (a `flaw-*` cargo feature):
#   1. the simulator's mutation test for it (tests/mutations.rs), when there is one, finds a violation;
#   2. every race test in tests/races.rs whose comment says "Fails on `<flaw>`" fails with the flaw compiled in.
# Also refuses a race test that names no flaw at all, so the claim "each race test fails on its flaw" stays true.
#   bash scripts/check-flaw.sh flaw-post-walk-head
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
flaw="${1:?usage: check-flaw.sh flaw-NAME}"

# "name flaw" for every #[test] in races.rs, from the "Fails on `flaw-…`" line of its doc comment.
races=$(awk '
  /^\/\/\// { if (match($0, /Fails on `flaw-[a-z-]+`/)) flaw = substr($0, RSTART + 10, RLENGTH - 11); next }
  /^#\[test\]/ { pending = 1; next }
  pending && /^fn / { name = $2; sub(/\(.*/, "", name); print name, (flaw ? flaw : "-"); pending = 0; flaw = ""; next }
  { flaw = ""; pending = 0 }
' tests/races.rs)
unnamed=$(awk '$2 == "-" { print $1 }' <<<"$races")
if [ -n "$unnamed" ]; then
  echo "check-flaw: these race tests name no flawed variant (\"Fails on \`flaw-…\`\"): $unnamed" >&2
  exit 1
fi
grep -q "^$flaw = \[\]" Cargo.toml || { echo "check-flaw: $flaw is not a feature in Cargo.toml" >&2; exit 1; }

if grep -q "feature = \"$flaw\"" tests/mutations.rs; then
  echo "check-flaw: the simulator must catch $flaw"
  cargo test --quiet --features "$flaw" --test mutations
fi

expected=$(awk -v flaw="$flaw" '$2 == flaw { print $1 }' <<<"$races")
# Built first, so that a build failure is never taken for the failing test we expect.
[ -z "$expected" ] || cargo test --quiet --no-run --features "$flaw" --test races
for name in $expected; do
  if cargo test --quiet --features "$flaw" --test races -- --exact "$name" >/dev/null 2>&1; then
    echo "check-flaw: races.rs $name passed with $flaw compiled in: it does not catch the flaw it names" >&2
    exit 1
  fi
  echo "check-flaw: races.rs $name fails with $flaw, as it should"
done
[ -n "$expected" ] || grep -q "feature = \"$flaw\"" tests/mutations.rs \
  || { echo "check-flaw: nothing catches $flaw (no mutation test, no race test names it)" >&2; exit 1; }
