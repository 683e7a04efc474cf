#!/usr/bin/env bash
# Idle daemon (issue 3): CPU and RSS of `lanekeeper run` over 60 s on a copy of the shipped
# home, after its first runs have settled. Baseline in the same run: a plain `sleep` process.
# Usage: benches/idle_daemon.sh [SECONDS]   (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
cargo build --release -q
bin=target/release/lanekeeper
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
cp -r rules plugins jobs "$home"/
"$bin" --home "$home" run --once >/dev/null 2>&1 || true   # the first pass runs the due jobs
"$bin" --home "$home" run 2>"$home/daemon.log" &
pid=$!
sleep $((secs + 30)) & base=$!
sleep 5
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
c0=$(ticks $pid); b0=$(ticks $base); t0=$(date +%s.%N)
sleep "$secs"
c1=$(ticks $pid); b1=$(ticks $base); t1=$(date +%s.%N)
rss=$(awk '/^VmRSS/{print $2}' /proc/$pid/status)
hwm=$(awk '/^VmHWM/{print $2}' /proc/$pid/status)
brss=$(awk '/^VmRSS/{print $2}' /proc/$base/status)
passes=$(grep -c . "$home/daemon.log" || true)
kill -TERM $pid; wait $pid || true
kill $base 2>/dev/null || true
awk -v c0="$c0" -v c1="$c1" -v b0="$b0" -v b1="$b1" -v t0="$t0" -v t1="$t1" -v hz="$hz" \
    -v rss="$rss" -v hwm="$hwm" -v brss="$brss" -v lines="$passes" 'BEGIN {
  wall = t1 - t0
  printf "wall %.1f s; daemon CPU %.3f s = %.4f %% of a core (target < 0.1 %%); baseline sleep CPU %.3f s\n", wall, (c1-c0)/hz, 100*(c1-c0)/hz/wall, (b1-b0)/hz
  printf "daemon RSS %.1f MB (peak %.1f MB; target <= 30 MB); baseline sleep RSS %.1f MB; ratio %.1fx\n", rss/1024, hwm/1024, brss/1024, rss/brss
  printf "log lines written during the whole run: %d\n", lines
}'
