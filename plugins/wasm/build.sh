#!/usr/bin/env bash
# Builds the standard WASM guests and copies each into plugins/wasm/<name>.wasm (or into OUT_DIR
# when given, which the up-to-date test uses). Needs the wasm32 target:
#   rustup target add wasm32-unknown-unknown
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-plugins/wasm}"
guests=(backup-recency contention off-peak provider-probe)
target_dir="${CARGO_TARGET_DIR:-target}"
args=()
for g in "${guests[@]}"; do args+=(-p "$g-guest"); done
# --remap-path-prefix keeps builds byte-identical across machines and checkouts; a 64 KiB stack
# (Rust's default is 1 MiB) keeps memories small, so the host's reset between evaluations is cheap.
RUSTFLAGS="--remap-path-prefix=$PWD=. --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo -C link-arg=-zstack-size=65536" \
    cargo build --locked --quiet --target wasm32-unknown-unknown --profile wasm-guest "${args[@]}"
mkdir -p "$out"
for g in "${guests[@]}"; do
    cp "$target_dir/wasm32-unknown-unknown/wasm-guest/${g//-/_}_guest.wasm" "$out/$g.wasm"
done
