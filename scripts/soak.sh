#!/usr/bin/env bash
# The hostile-peer soak of issue 19 (not part of CI): 9 honest warren nodes and one hostile node
# on loopback for MINUTES (default 20); the hostile node runs attacks in a loop while two honest
# holders stop for good. Passes when every block of every RF-3 file put by honest nodes still has
# 3 honest copies that pass an audit, and prints each honest node's peak RSS.
#
#   bash scripts/soak.sh [MINUTES] [more warren-soak flags, e.g. --attacks 2,3]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-20}"
shift || true
cargo build -p warren-tests --bins --locked
target="${CARGO_TARGET_DIR:-$PWD/target}"
exec "$target/debug/warren-soak" --minutes "$minutes" "$@"
