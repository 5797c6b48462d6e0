#!/usr/bin/env bash
# Installs what the home-node tests need, from Debian's packages, skipping what is present:
#   chromium   headless browser of the dashboard test (tests/tests/dashboard.rs)
#   nftables   the masquerading NAT of the NAT-traversal test (tests/tests/nat.rs)
#   iproute2   network namespaces and veth pairs of the same test
# Needs root or sudo for apt-get; without either it says what is missing and exits 0 (the tests
# then report themselves skipped).
set -euo pipefail

want=()
command -v chromium >/dev/null || want+=(chromium)
command -v nft >/dev/null || want+=(nftables)
command -v ip >/dev/null || want+=(iproute2)
[ ${#want[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "setup-home: not root and no sudo; missing: ${want[*]} (their tests will be skipped)" >&2
  exit 0
fi
echo "setup-home: installing ${want[*]} from Debian's packages" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${want[@]}"
