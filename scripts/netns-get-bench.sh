#!/bin/bash
# Times a whole `warren get` of SIZE_MIB MiB of random data from one holder on the netns devnet
# (`warren devnet --netns`, 3 nodes), and the same file sent with iroh's `sendme` between the same
# two namespaces when `sendme` is on PATH (`cargo install sendme`; skipped, saying so, otherwise).
# Needs root, iproute2 and /dev/net/tun, like the devnet.
#
#   sudo scripts/netns-get-bench.sh WARREN_BIN LABEL [devnet link flags…]
#   sudo scripts/netns-get-bench.sh target/release/warren 20ms/100mbit --latency 20ms --rate 100mbit
set -euo pipefail
BIN=$1; LABEL=$2; shift 2
SIZE_MIB=${SIZE_MIB:-32}
D=$(mktemp -d /tmp/warren-netns-bench.XXXXXX)
"$BIN" --data-dir "$D" devnet --nodes 3 --netns "$@" >"$D/devnet.out" 2>"$D/devnet.err" &
DP=$!
trap 'kill -TERM $DP 2>/dev/null; wait $DP 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 1 200); do grep -q '^try:' "$D/devnet.out" && break; sleep 0.3; done
grep -q '^try:' "$D/devnet.out" || { cat "$D/devnet.err"; exit 1; }
NS1=$(awk '/^node-1/{print $5}' "$D/devnet.out"); NS2=$(awk '/^node-2/{print $5}' "$D/devnet.out")
head -c $((SIZE_MIB << 20)) /dev/urandom >"$D/f.bin"
sleep 3
CID=$(ip netns exec "$NS1" "$BIN" --data-dir "$D/node-1" put "$D/f.bin" --rf 0 --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["cid"])')
sleep 2
secs() { python3 -c "print($2 - $1)"; }
S=$(date +%s.%N)
ip netns exec "$NS2" "$BIN" --data-dir "$D/node-2" get "$CID" -o "$D/out.bin" >/dev/null
E=$(date +%s.%N)
cmp -s "$D/f.bin" "$D/out.bin" || { echo "warren get: bytes differ"; exit 1; }
W=$(secs "$S" "$E")
python3 -c "print('$LABEL  warren get  %d MiB  %.2f s  %.1f Mbit/s' % ($SIZE_MIB, $W, $SIZE_MIB * 8.388608 / $W))"
if ! command -v sendme >/dev/null; then
  echo "$LABEL  sendme      skipped: sendme is not on PATH (cargo install sendme)"
  exit 0
fi
mkdir -p "$D/send" "$D/recv"; cp "$D/f.bin" "$D/send/f.bin"
(cd "$D/send" && ip netns exec "$NS1" sendme send f.bin --relay disabled --ticket-type addresses \
  >"$D/send.out" 2>&1) &
SP=$!
for _ in $(seq 1 100); do grep -qo 'blob[a-z0-9]*' "$D/send.out" && break; sleep 0.3; done
TICKET=$(grep -o 'blob[a-z0-9]*' "$D/send.out" | head -1)
S=$(date +%s.%N)
(cd "$D/recv" && ip netns exec "$NS2" sendme receive "$TICKET" --relay disabled >/dev/null 2>&1)
E=$(date +%s.%N)
kill "$SP" 2>/dev/null || true
cmp -s "$D/f.bin" "$D/recv/f.bin" || { echo "sendme: bytes differ"; exit 1; }
T=$(secs "$S" "$E")
python3 -c "print('$LABEL  sendme      %d MiB  %.2f s  %.1f Mbit/s  (sendme / warren time %.2f)' % ($SIZE_MIB, $T, $SIZE_MIB * 8.388608 / $T, $T / $W))"
