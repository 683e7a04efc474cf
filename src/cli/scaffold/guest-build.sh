#!/usr/bin/env bash
# Builds this plugin and installs it as plugins/__NAME__.wasm.
# Needs the wasm32 target once: rustup target add wasm32-unknown-unknown
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --target wasm32-unknown-unknown
cp "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/__LIB__.wasm" ../../__NAME__.wasm
echo "installed plugins/__NAME__.wasm; check it with: lanekeeper validate"
