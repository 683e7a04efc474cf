#!/usr/bin/env bash
# Builds this plugin and installs it as plugins/__NAME__.wasm.
# Needs the wasm32 target once: rustup target add wasm32-unknown-unknown
set -euo pipefail
cd "$(dirname "$0")"
# A 64 KiB stack (Rust's default is 1 MiB) keeps the module's memory small, which makes the
# host's reset between evaluations cheaper (docs/PLUGINS.md, "How the host runs a plugin").
RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-zstack-size=65536" \
    cargo build --release --target wasm32-unknown-unknown
cp "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/__LIB__.wasm" ../../__NAME__.wasm
echo "installed plugins/__NAME__.wasm; check it with: lanekeeper validate"
