#!/bin/sh
# A stand-in for a platform job: announces itself, does a bounded amount of real work
# (hashing the home's rules and plugins, STEPS times), and writes a small report under
# state/work/. Usage: work.sh NAME STEPS
set -eu
name=${1:?usage: work.sh NAME STEPS}
steps=${2:-3}
home=${LANEKEEPER_HOME:-.}
out="$home/state/work"
mkdir -p "$out"
echo "$name: starting ($steps steps) in lane ${LANEKEEPER_LANE:-?}"
i=1
while [ "$i" -le "$steps" ]; do
    sum=$(cat "$home"/rules/*.yaml "$home"/plugins/*.rhai 2>/dev/null | cksum | cut -d' ' -f1)
    echo "$name: step $i/$steps digest $sum"
    i=$((i + 1))
done
date -u +"%Y-%m-%dT%H:%M:%SZ $name done ($steps steps)" > "$out/$name.last"
echo "$name: done"
