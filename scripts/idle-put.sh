#!/usr/bin/env bash
# The idle experiment of the idle-at-scale issue (not part of CI): a 4-node devnet on loopback,
# a MIB-sized file (default 900) put at RF 3 on node 0, then each node's CPU-seconds per minute
# measured over two windows: minutes 0-2 after the put (the holders' first checks of the blocks
# that arrived) and minutes 12-14 (idle). Uses the release `warren` (build it first:
# cargo build --release -p warren-node) or WARREN=PATH.
#
#   bash scripts/idle-put.sh [MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
mib="${1:-900}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
warren="${WARREN:-$target/release/warren}"
[ -x "$warren" ] || { echo "no warren binary at $warren: cargo build --release -p warren-node" >&2; exit 1; }
tmp="$(mktemp -d)"
# Room for the replicas: an 8 GiB offer, and one origin may fill half of it (the default quarter
# of the 1 GiB default offer would refuse most of them).
for i in 0 1 2 3; do
  mkdir -p "$tmp/node-$i"
  chmod 700 "$tmp/node-$i"
  printf '[storage]\noffer_bytes = 8589934592\n\n[mesh]\norigin_quota_bytes = 4294967296\n' > "$tmp/node-$i/config.toml"
done
"$warren" devnet --nodes 4 --data-dir "$tmp" > "$tmp/devnet.log" 2>&1 &
devnet=$!
trap 'kill -INT $devnet 2>/dev/null; wait $devnet 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 120); do
  n=$(find "$tmp" -maxdepth 2 -name api.addr | wc -l)
  [ "$n" -eq 4 ] && break
  sleep 0.5
done
sleep 5
head -c "$((mib << 20))" /dev/urandom > "$tmp/file.bin"
start=$(date +%s)
"$warren" --data-dir "$tmp/node-0" put "$tmp/file.bin" --rf 3 --json > "$tmp/put.json"
echo "put ${mib} MiB at RF 3 in $(( $(date +%s) - start )) s: $(grep -o '"copies": *[0-9]*' "$tmp/put.json" | head -1)"
rm -f "$tmp/file.bin"
pids=()
for i in 0 1 2 3; do
  pids+=("$(pgrep -f -- "--data-dir $tmp/node-$i start" | head -1)")
done
cpu() { awk '{ sub(/.*\) /, ""); split($0, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }
measure() { # $1: label, $2: seconds
  local before=() after=() i
  for i in 0 1 2 3; do before[$i]=$(cpu "${pids[$i]}"); done
  sleep "$2"
  for i in 0 1 2 3; do after[$i]=$(cpu "${pids[$i]}"); done
  printf '%-28s' "$1"
  for i in 0 1 2 3; do
    awk -v a="${after[$i]}" -v b="${before[$i]}" -v s="$2" -v n="$i" \
      'BEGIN { printf "  node-%d %6.2f CPU-s/min (%4.1f %%)", n, (a - b) / 100 / (s / 60), (a - b) / s }'
  done
  echo
}
measure "minutes 0-2 after the put" 120
sleep $(( 12 * 60 - ( $(date +%s) - start ) ))
measure "minutes 12-14 (idle)" 120
