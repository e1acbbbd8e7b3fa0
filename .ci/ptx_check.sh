#!/usr/bin/env bash
# Compiles every kernels/*.cu to PTX with NVRTC exactly as the crate does at run time (DESIGN
# §3.9): the text kernel_source in src/cuda/module.rs builds (kernels/prelude.cuh, then the file)
# with the same options. Then assembles each PTX with `ptxas -arch=sm_90 -v` and fails on any
# compile error or on register spills above the bound below. Needs only python3 with venv/pip and
# PyPI: the CUDA compiler pieces come from NVIDIA's wheels, so no CUDA toolkit or GPU is required.
#
# Bounds (per kernel):
MAX_SPILL_BYTES=0     # spill stores + spill loads; any spill in these small kernels is a bug
MAX_REGISTERS=128     # keeps >= 2 blocks of 256 threads resident per SM on sm_90
MAX_STACK_BYTES=0     # local-memory arrays cost like spills; the kernels keep everything in registers
# PTXAS_EXTRA_FLAGS (environment) is appended to ptxas, e.g. "--maxrregcount 24" to see the
# spill check fire.
#
# Pinned wheels (CUDA 13.0): nvidia-cuda-nvrtc ships libnvrtc, nvidia-cuda-nvcc ships ptxas,
# nvidia-cuda-runtime ships the CUDA headers. The kernels include no header (at run time the crate
# cannot count on any being installed, and NVRTC has no built-in cuda_fp16.h), so the headers are
# only put on the include path; the options otherwise match src/cuda/module.rs.
NVRTC_WHEEL="nvidia-cuda-nvrtc==13.0.88"
RUNTIME_WHEEL="nvidia-cuda-runtime==13.0.96"
NVCC_WHEEL="nvidia-cuda-nvcc==13.0.88"
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/target/ptx-venv"
OUT="$ROOT/target/ptx"
mkdir -p "$ROOT/target" "$OUT"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
# Reuse the venv when the pinned wheels are already there; pip is only asked otherwise.
if ! "$VENV/bin/python" - "$NVRTC_WHEEL" "$RUNTIME_WHEEL" "$NVCC_WHEEL" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    assert version(name) == want, spec
PY
then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$NVRTC_WHEEL" "$RUNTIME_WHEEL" "$NVCC_WHEEL"
fi

SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
CUDA_DIR=""
for cand in "$SITE/nvidia/cu13" "$SITE/nvidia/cuda_nvrtc" ; do
    if ls "$cand"/lib/libnvrtc.so* >/dev/null 2>&1; then CUDA_DIR="$cand"; break; fi
done
[ -n "$CUDA_DIR" ] || { echo "ptx_check: libnvrtc not found in the nvidia wheels under $SITE" >&2; exit 1; }
PTXAS=$(find "$SITE/nvidia" -name ptxas -type f | head -n 1)
[ -n "$PTXAS" ] || { echo "ptx_check: ptxas not found in the nvidia wheels under $SITE" >&2; exit 1; }
chmod +x "$PTXAS" 2>/dev/null || true
INCLUDE=$(find "$SITE/nvidia" -name cuda_runtime.h -path '*include*' | head -n 1 | xargs -r dirname)

# libnvrtc dlopens libnvrtc-builtins by name.
export LD_LIBRARY_PATH="$CUDA_DIR/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

"$VENV/bin/python" - "$CUDA_DIR/lib" "$INCLUDE" "$OUT" "$ROOT/kernels/prelude.cuh" "$ROOT"/kernels/*.cu <<'PY'
# A tiny ctypes driver of libnvrtc: nvrtcCreateProgram / CompileProgram / GetPTX.
import ctypes, glob, os, sys

libdir, include, out, prelude_path = sys.argv[1:5]
sources = sys.argv[5:]
prelude = open(prelude_path, "rb").read()
libs = sorted(glob.glob(os.path.join(libdir, "libnvrtc.so*")))
libs = [p for p in libs if "builtins" not in p and ".alt." not in p]
nvrtc = ctypes.CDLL(libs[0])
nvrtc.nvrtcGetErrorString.restype = ctypes.c_char_p
major, minor = ctypes.c_int(), ctypes.c_int()
nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
print(f"nvrtc {major.value}.{minor.value} ({libs[0]})")

# Keep in step with COMPILE_OPTIONS in src/cuda/module.rs (plus the architecture).
options = [b"--gpu-architecture=compute_90", b"--std=c++17"]
if include:
    options.append(b"--include-path=" + include.encode())

def check(code, what, prog=None):
    if code == 0:
        return
    log = ""
    if prog is not None:
        n = ctypes.c_size_t()
        nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(n))
        buf = ctypes.create_string_buffer(n.value)
        nvrtc.nvrtcGetProgramLog(prog, buf)
        log = buf.value.decode(errors="replace")
    sys.exit(f"ptx_check: {what}: {nvrtc.nvrtcGetErrorString(code).decode()}\n{log}")

failed = False
for path in sources:
    name = os.path.basename(path)
    # Keep in step with kernel_source in src/cuda/module.rs.
    src = b'#line 1 "prelude.cuh"\n' + prelude + b'\n#line 1 "' + name.encode() + b'"\n' + open(path, "rb").read()
    prog = ctypes.c_void_p()
    check(nvrtc.nvrtcCreateProgram(ctypes.byref(prog), src, name.encode(), 0, None, None), f"{name}: create")
    arr = (ctypes.c_char_p * len(options))(*options)
    check(nvrtc.nvrtcCompileProgram(prog, len(options), arr), f"{name}: compile", prog)
    n = ctypes.c_size_t()
    check(nvrtc.nvrtcGetPTXSize(prog, ctypes.byref(n)), f"{name}: ptx size")
    buf = ctypes.create_string_buffer(n.value)
    check(nvrtc.nvrtcGetPTX(prog, buf), f"{name}: ptx")
    # A clean compile can still carry warnings; show them.
    ln = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(ln))
    if ln.value > 1:
        lb = ctypes.create_string_buffer(ln.value)
        nvrtc.nvrtcGetProgramLog(prog, lb)
        print(f"{name}: nvrtc log:\n{lb.value.decode(errors='replace')}")
    nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))
    with open(os.path.join(out, name[:-3] + ".ptx"), "wb") as f:
        f.write(buf.value)
PY

status=0
for ptx in "$OUT"/*.ptx; do
    base=$(basename "$ptx" .ptx)
    if ! "$PTXAS" -arch=sm_90 -v ${PTXAS_EXTRA_FLAGS:-} -o "$OUT/$base.cubin" "$ptx" >"$OUT/$base.ptxas.log" 2>&1; then
        echo "ptx_check: ptxas failed on $base.ptx:" >&2
        cat "$OUT/$base.ptxas.log" >&2
        status=1
        continue
    fi
    # ptxas -v prints, per function: "Compiling entry function 'NAME' for 'sm_90'", then
    # "N bytes stack frame, N bytes spill stores, N bytes spill loads", then "Used N registers, ...".
    if ! awk -v file="$base.cu" -v max_spill="$MAX_SPILL_BYTES" -v max_regs="$MAX_REGISTERS" -v max_stack="$MAX_STACK_BYTES" '
        /Compiling entry function/ { match($0, /'"'"'[^'"'"']+'"'"'/); fn = substr($0, RSTART + 1, RLENGTH - 2) }
        /spill stores/ {
            for (i = 1; i <= NF; i++) { if ($(i+1) == "bytes" && $(i+2) == "spill" && $(i+3) == "stores,") st = $i; if ($(i+1) == "bytes" && $(i+2) == "spill" && $(i+3) == "loads") ld = $i }
            for (i = 1; i <= NF; i++) if ($(i+1) == "bytes" && $(i+2) == "stack") stack = $i
        }
        /Used [0-9]+ registers/ {
            for (i = 1; i <= NF; i++) if ($i == "Used") regs = $(i+1)
            ok = (st + ld <= max_spill && regs <= max_regs && stack <= max_stack)
            printf "%-6s %-14s %-22s registers %3d  stack %4d B  spill stores %4d B  spill loads %4d B\n", ok ? "ok" : "FAIL", file, fn, regs, stack, st, ld
            if (!ok) bad = 1
            st = 0; ld = 0; stack = 0
        }
        END { exit bad }
    ' "$OUT/$base.ptxas.log"; then
        status=1
    fi
done
if [ "$status" -ne 0 ]; then
    echo "ptx_check: FAILED (bounds: spills <= $MAX_SPILL_BYTES B, stack <= $MAX_STACK_BYTES B, registers <= $MAX_REGISTERS)" >&2
    exit 1
fi
echo "ptx_check: all kernels compiled; per kernel spills <= $MAX_SPILL_BYTES B, stack <= $MAX_STACK_BYTES B, registers <= $MAX_REGISTERS"
