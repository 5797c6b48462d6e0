#!/usr/bin/env bash
# Runs warren's whole test suite on a fresh machine: installs what the tests need (the js-libp2p
# peer used by the interoperability test, by npm package name; chromium, nftables and iproute2 for
# the dashboard and NAT tests, by Debian package name), checks formatting and clippy (warnings are
# errors), builds once, runs every test, and
# ends with one "tests: N passed, N failed" line summing every test binary.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-interop.sh
scripts/setup-home.sh
scripts/fetch-models.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --all-targets --locked

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
