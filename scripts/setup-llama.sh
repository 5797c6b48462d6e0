#!/usr/bin/env bash
# Makes a Python virtual environment with llama.cpp's Python binding (`llama-cpp-python` from PyPI,
# by name, built from its source distribution; pip brings `cmake` by name as a build dependency) for
# the llama.cpp reference line of `warren-bench infer`, and prints its python's path.
# Usage: scripts/setup-llama.sh [VENV_DIR] (default: target/llama-venv). Reuses a working venv.
# Building llama.cpp takes several minutes on two cores.
set -euo pipefail
venv="${1:-$(dirname "$0")/../target/llama-venv}"
py="$venv/bin/python"
if [ -x "$py" ] && "$py" -c 'import llama_cpp' 2>/dev/null; then
    echo "$py"
    exit 0
fi
python3 -m venv "$venv" >&2
"$py" -m pip install --quiet --disable-pip-version-check --upgrade pip cmake >&2
# Built for this machine's CPU (llama.cpp's default GGML_NATIVE), as a user would install it.
"$py" -m pip install --quiet --disable-pip-version-check --no-binary llama-cpp-python "llama-cpp-python==0.3.*" >&2
"$py" -c 'import llama_cpp, sys; print("llama-cpp-python", llama_cpp.__version__, file=sys.stderr)'
echo "$py"
