#!/usr/bin/env bash
# A/B of a hot-path change on the pure pipeline: runs benchmarks/bench_pipeline.py alternately
# with REV's version of FILE... (A) and the working copy (B), ROUNDS times (default 2), and prints
# each run's events/s and phase split. The machine is shared and noisy: compare pairs, not runs.
# The working copy is restored on exit, also on Ctrl-C.
#
#   scripts/ab_pipeline.sh HEAD streams/core/state.py [streams/core/pipeline.py ...]
#   ROUNDS=3 scripts/ab_pipeline.sh 38b9cc2 streams/core/pipeline.py
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: ab_pipeline.sh REV FILE...}
shift
[ $# -gt 0 ] || { echo "usage: ab_pipeline.sh REV FILE..." >&2; exit 2; }
keep=$(mktemp -d)
for f in "$@"; do
  git cat-file -e "$rev:$f"  # fails loudly for a file REV does not have
  mkdir -p "$keep/$(dirname "$f")"
  cp "$f" "$keep/$f"
done
restore() { for f in "$@"; do cp "$keep/$f" "$f"; done; rm -rf "$keep"; }
trap 'restore "$@"' EXIT
run() {
  .venv/bin/python benchmarks/bench_pipeline.py --repeat 3 |
    awk '/^pipeline:/ {printf "%s events/s", $(NF-1)} /^(apply|features|score|policy|serialise) / {printf "  %s %s", $1, $2} END {print ""}'
}
for _ in $(seq "${ROUNDS:-2}"); do
  for f in "$@"; do git show "$rev:$f" > "$f"; done
  echo "A ($rev): $(run)"
  for f in "$@"; do cp "$keep/$f" "$f"; done
  echo "B (working copy): $(run)"
done
