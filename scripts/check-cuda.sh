#!/usr/bin/env bash
# Checks that the `stages` crate compiles with candle's CUDA backend (`--features cuda`) on a
# machine without CUDA: installs nvcc from the Python package index into a venv and runs
# `cargo check -p stages --features cuda` with the variables reference/rust_stack.md lists.
#
# - nvcc: `nvidia-cuda-nvcc==13.0.*`. The GPU machines' driver supports CUDA 13.0, and PTX from a
#   newer nvcc (13.5 is the newest wheel) would not JIT there. The 12.x wheel has no `bin/nvcc`.
# - CUDARC_CUDA_VERSION=13000 pins cudarc's API level to the driver's CUDA 13.0.
# - CUDA_COMPUTE_CAP=90 stops candle-kernels' build script from calling `nvidia-smi`.
# It takes ~9 minutes (nvcc compiles candle-kernels' .cu files one by one); run it on purpose.
# If the toolkit cannot be installed, it says why and exits 0: that is "not checked", never
# "passed", and the message says so.
set -uo pipefail
cd "$(dirname "$0")/.."
venv="${CUDA_VENV:-.venv-cuda}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

skip() {
  echo "check-cuda: NOT CHECKED: $1" >&2
  exit 0
}

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >"$log" 2>&1 || skip "cannot create a python venv at \`$venv\`: $(tail -1 "$log")"
fi
# nvcc's own runtime, crt and nvvm wheels must be pinned to 13.0 too: left to pip they resolve
# to the newest (13.5), whose nvvm emits PTX 9.5 that the 13.0 ptxas rejects ("Unsupported
# .version 9.5"). cccl provides <nv/target>.
pins=('nvidia-cuda-nvcc==13.0.*' 'nvidia-cuda-cccl==13.0.*' 'nvidia-nvvm==13.0.*'
  'nvidia-cuda-crt==13.0.*' 'nvidia-cuda-runtime==13.0.*')
if ! "$venv/bin/pip" install --quiet "${pins[@]}" >"$log" 2>&1; then
  skip "installing nvcc 13.0 from the package index failed: $(tail -3 "$log" | tr '\n' ' ')"
fi
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
export CUDA_ROOT="$site/nvidia/cu13"
[ -x "$CUDA_ROOT/bin/nvcc" ] || skip "the wheel installed no \`$CUDA_ROOT/bin/nvcc\`"
export PATH="$CUDA_ROOT/bin:$PATH"
export CUDA_PATH="$CUDA_ROOT"
export CUDARC_CUDA_VERSION=13000
export CUDA_COMPUTE_CAP=90
echo "check-cuda: $(nvcc --version | tail -1)"
exec cargo check -p stages --features cuda
