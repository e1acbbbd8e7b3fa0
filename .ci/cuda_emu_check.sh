#!/usr/bin/env bash
# The GPU path on every CI run, without a GPU: builds factortopy's CUDA emulator (scripts/cuda-emu:
# libcuda, libnvrtc and libcublas that run the crate's kernels/*.cu on the CPU through the same host
# code a GPU would) into target/cuda-emu, then runs every GPU test on its device cuda:0:
#   - gpu_kernels: each kernel against the CPU op it replaces (f32/f16/bf16, awkward sizes);
#   - gpu_model:   the CUDA execution model and f16/bf16 rounding, and the emulator's own checks
#                  (races, faults, bad masks, unimplemented calls);
#   - gpu_fit:     the GPU fit through the engine against the CPU's, reproducibility, predictions,
#                  recovery (reduced on the emulator), and `factortopy fit/predict --device cuda:0`
#                  against `--device cpu` on a `factortopy synth` set (same argmax layer for ≥ 99 %
#                  of voxels, held-out R² within 2e-3);
#   - gpu_monitor: the monitor on cuda:0 against the CPU;
#   - gpu_ffi:     the C ABI on cuda:0 (CUDA DLPack tensors, fit and predict against the CPU);
# then gpu_kernels and gpu_model again with the lanes and blocks run in a seeded random order, to
# expose order-dependent races, and the Python package's device tests with device="cuda:0" on the
# `--features cuda` libfactortopy.so (numpy and pytest in target/cuda-emu/venv, from PyPI). Fails
# if any test fails or any output line says SKIPPED.
#
# Needs only g++ and readelf besides the Rust toolchain. Honours CARGO_TARGET_DIR.
#   bash .ci/cuda_emu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export CARGO_TERM_COLOR=never
T0=$(date +%s)

if ! command -v g++ >/dev/null 2>&1 || ! command -v readelf >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq g++ binutils
fi

EMU="$ROOT/target/cuda-emu"
bash scripts/cuda-emu/build.sh "$EMU"
export LD_LIBRARY_PATH="$EMU${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Kernel modules are compiled once per source and reused by every test process.
export FACTORTOPY_CUDA_EMU_CACHE="$EMU/cache"
# A missing device is a failure here, not a skip.
export FACTORTOPY_TEST_REQUIRE_CUDA=1
LOG="$EMU/test.log"
: > "$LOG"

run() {  # label, command...
    local label=$1
    shift
    echo "== $label"
    local t=$(date +%s)
    set +e
    "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    set -e
    echo "== $label: exit $rc, $(( $(date +%s) - t )) s"
    [ "$rc" -eq 0 ] || { echo "cuda_emu_check: $label failed" >&2; exit 1; }
}

run "build (--features cuda)" cargo build --release --features cuda
run "GPU tests on the emulator" \
    cargo test --release --features cuda --test gpu_kernels --test gpu_model --test gpu_fit --test gpu_monitor \
    --test gpu_ffi -- --nocapture
ORDER="random:$(( T0 % 1000 ))"
run "kernels in lane and block order $ORDER (FACTORTOPY_CUDA_EMU_ORDER=$ORDER reproduces it)" \
    env FACTORTOPY_CUDA_EMU_ORDER="$ORDER" cargo test --release --features cuda --test gpu_kernels --test gpu_model

# Python with device="cuda:0": fit, score and predict against the CPU through the C ABI.
PYVENV="$EMU/venv"
if ! [ -x "$PYVENV/bin/python" ] || ! "$PYVENV/bin/python" -c "import numpy, pytest" 2>/dev/null; then
    python3 -m venv "$PYVENV"
    "$PYVENV/bin/pip" install --quiet --disable-pip-version-check numpy pytest
fi
CUDA_LIB="${CARGO_TARGET_DIR:-$ROOT/target}/release/libfactortopy.so"
[[ "$CUDA_LIB" = /* ]] || CUDA_LIB="$ROOT/$CUDA_LIB"
run "Python on cuda:0" env FACTORTOPY_LIB="$CUDA_LIB" PYTHONPATH="$ROOT/python" \
    "$PYVENV/bin/python" -m pytest -q -rs -p no:cacheprovider python/tests/test_cuda.py

if grep -n "SKIPPED" "$LOG"; then
    echo "cuda_emu_check: a GPU test was skipped on the emulator (lines above)" >&2
    exit 1
fi
echo "cuda_emu_check: all GPU tests passed on the CUDA emulator in $(( $(date +%s) - T0 )) s"
