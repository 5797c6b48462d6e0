#!/usr/bin/env bash
# Runs warren's whole test suite on a fresh machine: installs what the tests need (the js-libp2p
# peer used by the interoperability test, by npm package name), builds once, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-interop.sh
cargo fmt --all -- --check
cargo build --workspace --all-targets --locked
cargo test --workspace --locked
