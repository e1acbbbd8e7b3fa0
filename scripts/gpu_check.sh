#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA driver (CUDA 13, e.g. an H100/H200) and
# no Rust toolchain, runs the binaries that scripts/build_gpu_bins.sh built, and writes every
# result into one folder:
#   - kernel parity: every CUDA kernel against the CPU op it replaces (gpu_kernels);
#   - the CUDA execution model the kernels rely on and f16/bf16 rounding (gpu_model);
#   - the GPU fit through the engine: CPU/GPU step agreement, reproducibility, GPU vs CPU
#     predictions, and recovery of the planted hierarchy (gpu_fit);
#   - the monitor on the GPU: observe on cuda equals observe on cpu (gpu_monitor), and, when
#     PyTorch with CUDA is installed, observe on CUDA torch tensors through DLPack (python);
#   - the step benchmark of DESIGN §3.8 and PyTorch eager of the same model on the same GPU.
# Exits non-zero, with a message, when there is no usable GPU or any check fails.
#
#   bash scripts/gpu_check.sh [BIN_DIR (default gpu-bin)] [OUT_DIR (default gpu-check)]
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-gpu-bin}
OUT=${2:-gpu-check}
mkdir -p "$OUT"
log() { echo "$*" | tee -a "$OUT/summary.txt"; }
: > "$OUT/summary.txt"

if [ ! -x "$BIN/gpu_kernels" ]; then
    log "gpu_check: no binaries in $BIN; build them first with: bash scripts/build_gpu_bins.sh"
    exit 2
fi
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    log "gpu_check: no NVIDIA GPU or driver on this machine (nvidia-smi failed); this check needs one"
    exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/device.txt"
# This check is about real GPUs: refuse to report results from the CPU emulator (scripts/cuda-emu)
# if its libraries come first on LD_LIBRARY_PATH.
for d in ${LD_LIBRARY_PATH//:/ }; do
    if [ -f "$d/libcuda.so.1" ] && grep -q "factortopy CUDA emulator" "$d/libcuda.so.1" 2>/dev/null; then
        log "gpu_check: LD_LIBRARY_PATH puts the factortopy CUDA emulator ($d) before the NVIDIA driver; unset it"
        exit 2
    fi
done
log "binaries from commit $(cat "$BIN/COMMIT" 2>/dev/null || echo unknown)"

fail=0
run() {  # name, timeout seconds, command...
    local name=$1 limit=$2; shift 2
    local t0=$(date +%s)
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    local dt=$(( $(date +%s) - t0 ))
    if [ $rc -eq 0 ] && ! grep -q "SKIPPED" "$OUT/$name.log" && ! grep -q "factortopy CUDA emulator" "$OUT/$name.log"; then
        log "PASS $name (${dt} s)"
    else
        log "FAIL $name (exit $rc, ${dt} s): see $OUT/$name.log"; tail -5 "$OUT/$name.log" | sed 's/^/    /' | tee -a "$OUT/summary.txt"
        fail=1
    fi
}

run kernels 240 "$BIN/gpu_kernels" --test-threads 1 --nocapture
run model 120 "$BIN/gpu_model" --test-threads 1 --nocapture
run fit 300 "$BIN/gpu_fit" --test-threads 1 --nocapture
run monitor 180 "$BIN/gpu_monitor" --test-threads 1 --nocapture

if python3 -c "import torch, numpy; assert torch.cuda.is_available()" 2>/dev/null; then
    run monitor_dlpack 180 env FACTORTOPY_LIB="$PWD/$BIN/libfactortopy.so" PYTHONPATH="$PWD/python" \
        python3 scripts/gpu_observe_dlpack.py
    # The step at the paper's scale (DESIGN §3.8), ours and PyTorch eager, same card.
    run step_ours 180 "$BIN/gpu_step" --steps 20
    run step_torch 180 python3 "$BIN/torch_reference.py" --steps 20
    grep -h "^gpu_step\|^torch_step" "$OUT"/step_*.log | tee -a "$OUT/summary.txt"
else
    log "SKIP monitor_dlpack and step_torch: PyTorch with CUDA is not installed"
    run step_ours 180 "$BIN/gpu_step" --steps 20
    grep -h "^gpu_step" "$OUT"/step_ours.log | tee -a "$OUT/summary.txt"
fi
grep -h "GPU fit took\|GPU recovery\|parameters after\|cuda:" "$OUT"/fit.log | head -5 >> "$OUT/summary.txt"
log "gpu_check: $([ $fail -eq 0 ] && echo all checks passed || echo SOME CHECKS FAILED)"
exit $fail
