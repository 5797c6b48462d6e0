#!/usr/bin/env bash
# Makes a Python virtual environment with the official `openai` package (from PyPI, by name) for
# tests/tests/openai.rs, and prints its python's path. Usage: scripts/setup-openai.sh [VENV_DIR]
# (default: target/openai-venv). Reuses the venv when `openai` already imports there.
set -euo pipefail
venv="${1:-$(dirname "$0")/../target/openai-venv}"
py="$venv/bin/python"
if [ -x "$py" ] && "$py" -c 'import openai' 2>/dev/null; then
    echo "$py"
    exit 0
fi
python3 -m venv "$venv" >&2
"$py" -m pip install --quiet --disable-pip-version-check openai >&2
"$py" -c 'import openai; import sys; print("openai", openai.__version__, file=sys.stderr)'
echo "$py"
