#!/usr/bin/env bash
# Builds warren's CUDA backend (`--features warren-inference/cuda`) with a CUDA toolkit installed
# by package name from PyPI, without touching the machine's package sources:
#   nvidia-cuda-nvcc (ships the `nvcc` driver since CUDA 13; the 12.x wheels ship ptxas and libnvvm
#   but no nvcc), nvidia-cuda-runtime, nvidia-cuda-crt, nvidia-nvvm, nvidia-cuda-cccl,
#   nvidia-cuda-nvrtc, nvidia-cublas, nvidia-curand.
# They are laid out as one toolkit directory (target/cuda/root: bin, include, lib64, nvvm) that
# cudarc and candle's kernel build find through CUDA_ROOT.
#
# Usage: scripts/check-cuda.sh [--lib]
#   Where the NVIDIA driver's libcuda is installed (a GPU machine), builds the release `warren`
#   binary with CUDA and, if models/ holds SmolLM2, times generation on the GPU against the CPU.
#   Without a driver (or with --lib) it builds the warren-inference library with CUDA, which
#   compiles every CUDA kernel and all of warren's CUDA code; only the final link needs libcuda,
#   which no package on PyPI or Debian main ships (it comes with the driver).
# CUDA_COMPUTE_CAP (default: the GPU's, else 90 = H100/H200) picks the kernels' architecture.
set -euo pipefail
cd "$(dirname "$0")/.."
CUDA_VERSION="${CUDA_VERSION:-13.4}"   # cudarc 0.19 knows CUDA up to 13.4
venv="target/cuda/venv"
root="$PWD/target/cuda/root"
py="$venv/bin/python"
if ! [ -x "$py" ] || ! "$py" -c 'import importlib.metadata as m; m.version("nvidia-cuda-nvcc")' 2>/dev/null; then
    python3 -m venv "$venv"
    "$py" -m pip install --quiet --disable-pip-version-check \
        "nvidia-cuda-nvcc==$CUDA_VERSION.*" "nvidia-cuda-runtime==$CUDA_VERSION.*" \
        "nvidia-cuda-crt==$CUDA_VERSION.*" "nvidia-nvvm==$CUDA_VERSION.*" \
        "nvidia-cuda-nvrtc==$CUDA_VERSION.*" "nvidia-cuda-cccl" "nvidia-cublas" "nvidia-curand"
fi
site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cu="$site/nvidia/cu13"
[ -x "$cu/bin/nvcc" ] || { echo "check-cuda: no nvcc in $cu/bin (the wheel layout changed?)" >&2; exit 1; }
# One toolkit directory, as CUDA installs lay it out.
rm -rf "$root" && mkdir -p "$root/lib64"
ln -s "$cu/bin" "$root/bin"
ln -s "$cu/include" "$root/include"
ln -s "$cu/nvvm" "$root/nvvm"
for so in "$cu"/lib/*.so*; do
    ln -sf "$so" "$root/lib64/"
    base="$(basename "$so")"
    ln -sf "$so" "$root/lib64/${base%%.so*}.so"   # the unversioned name the linker looks for
done
export CUDA_ROOT="$root" CUDA_PATH="$root" CUDA_TOOLKIT_ROOT_DIR="$root"
export PATH="$root/bin:$PATH"
export LIBRARY_PATH="$root/lib64${LIBRARY_PATH:+:$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$root/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CUDARC_CUDA_VERSION="${CUDA_VERSION/./0}0"
if [ -z "${CUDA_COMPUTE_CAP:-}" ]; then
    cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')" || true
    export CUDA_COMPUTE_CAP="${cap:-90}"
fi
nvcc --version | tail -2
echo "check-cuda: CUDA_ROOT=$root, compute capability $CUDA_COMPUTE_CAP"
have_driver=0
if ldconfig -p 2>/dev/null | grep -q 'libcuda\.so'; then have_driver=1; fi
if [ "${1:-}" = "--lib" ] || [ "$have_driver" = 0 ]; then
    [ "$have_driver" = 0 ] && echo "check-cuda: no NVIDIA driver (libcuda) here: building the library only (every kernel and all CUDA code; the final link needs the driver)"
    cargo build --release -p warren-inference --features cuda
    echo "check-cuda: warren-inference built with CUDA"
    exit 0
fi
cargo build --release -p warren-node --features warren-inference/cuda
echo "check-cuda: ${CARGO_TARGET_DIR:-target}/release/warren built with CUDA"
model="models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -f "$model" ] && nvidia-smi >/dev/null 2>&1; then
    cargo build --release -p warren-inference --features cuda --example gen_speed
    bin="${CARGO_TARGET_DIR:-target}/release/examples/gen_speed"
    WARREN_BACKEND=cpu "$bin" "$model" 64 3
    WARREN_BACKEND=cuda "$bin" "$model" 64 3
fi
