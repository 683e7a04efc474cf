#!/usr/bin/env bash
# Checks plugins/__FILE__ in a throwaway home: a lane using it triggers while `peer` has not
# failed, and defers with `__NAME__-failed` after a failed run of `peer`.
# Usage: bash plugins/tests/__NAME__.sh   (LANEKEEPER=path/to/lanekeeper to pick a binary)
set -euo pipefail
plugins="$(cd "$(dirname "$0")/.." && pwd)"
lanekeeper="${LANEKEEPER:-lanekeeper}"
home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT
mkdir -p "$home/rules" "$home/plugins"
cp "$plugins/__FILE__" "$home/plugins/"
printf 'schedule:\n  every: 1h\ncommand:\n  argv: ["true"]\n' > "$home/rules/peer.yaml"
printf 'schedule:\n  every: 1h\npreconditions:\n  - use: __NAME__\n    with: { lane: peer }\ncommand:\n  argv: ["true"]\n' \
    > "$home/rules/subject.yaml"
lk() { "$lanekeeper" --home "$home" "$@"; }
lk validate
lk record peer --outcome success --at 2026-05-10T00:00:00Z >/dev/null
lk check subject --at 2026-05-10T01:00:00Z --json | grep -q '"outcome":"trigger"' \
    || { echo "FAIL: subject should trigger after a successful peer run" >&2; exit 1; }
lk record peer --outcome failure --at 2026-05-10T00:30:00Z >/dev/null
lk check subject --at 2026-05-10T01:00:00Z --json | grep -q '"reason":"__NAME__-failed"' \
    || { echo "FAIL: subject should defer with __NAME__-failed after a failed peer run" >&2; exit 1; }
echo "ok: __NAME__ passes after a success and defers after a failure"
