#!/usr/bin/env bash
# Installs the js-libp2p peer used by the interop test
# (tests/tests/interop_js.rs) into tests/interop-js/node_modules.
# Needs Node >= 20 and npm with access to the npm registry.
#   scripts/setup-interop.sh            install from package-lock.json (npm ci)
#   scripts/setup-interop.sh --selftest also run the JS-only self-test
set -euo pipefail
cd "$(dirname "$0")/../tests/interop-js"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "setup-interop: installing Node.js and npm from Debian's packages" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq nodejs npm
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "setup-interop: Node $(node --version) is too old (need >= 20)" >&2
  exit 1
fi

if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund
else
  npm install --no-audit --no-fund
fi

if [ "${1:-}" = "--selftest" ]; then
  node selftest.mjs
fi
