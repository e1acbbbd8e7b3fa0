#!/usr/bin/env bash
# Builds factortopy's CUDA emulator into DIR: libcuda.so.1, libnvrtc.so.13 and libcublas.so.13
# (with the libcuda.so, libnvrtc.so and libcublas.so names cudarc tries first). With
# LD_LIBRARY_PATH=DIR any `--features cuda` build sees one device, cuda:0, named
# "factortopy CUDA emulator (CPU)", that runs the crate's kernels/*.cu on the CPU.
#
#   bash scripts/cuda-emu/build.sh DIR
#
# Needs only g++ (C++20) and readelf; the emulated NVRTC calls g++ at run time to build each
# kernel file. See docs/gpu.md for what the emulator proves and what it cannot.
set -euo pipefail
SRC=$(cd "$(dirname "$0")" && pwd)
DIR=${1:?usage: bash scripts/cuda-emu/build.sh DIR}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
CXX=${CXX:-g++}
FLAGS=(-std=c++20 -O2 -g0 -fPIC -fvisibility=hidden -Wall -Wextra -Wno-unused-parameter -I"$SRC")
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Weak stubs for every entry point cudarc can look up (api/*.txt): the implemented ones override
# them at link time, the rest print their name and fail instead of letting cudarc panic.
stubs() {  # lib, status code for "not supported"
    local lib=$1 code=$2
    {
        echo '#include "emu_common.h"'
        echo "static int unimplemented(const char* name) {"
        echo "    emu_say(\"%s is not implemented by the factortopy CUDA emulator\", name);"
        echo "    return $code;"
        echo "}"
        echo "#define W extern \"C\" __attribute__((weak, visibility(\"default\")))"
        while read -r name kind; do
            case $kind in
                status) echo "W int $name(void) { return unimplemented(\"$name\"); }" ;;
                string) echo "W const char* $name(void) { unimplemented(\"$name\"); return \"not implemented by the factortopy CUDA emulator\"; }" ;;
                size) echo "W unsigned long $name(void) { unimplemented(\"$name\"); return 0; }" ;;
                void) echo "W void $name(void) { unimplemented(\"$name\"); }" ;;
            esac
        done < "$SRC/api/$lib.txt"
    } > "$TMP/stubs_$lib.cpp"
}
stubs cuda 801    # CUDA_ERROR_NOT_SUPPORTED
stubs nvrtc 11    # NVRTC_ERROR_INTERNAL_ERROR
stubs cublas 15   # CUBLAS_STATUS_NOT_SUPPORTED

"$CXX" "${FLAGS[@]}" -shared -o "$DIR/libcuda.so.1" -Wl,-soname,libcuda.so.1 \
    "$SRC/driver.cpp" "$TMP/stubs_cuda.cpp" -ldl -lpthread
"$CXX" "${FLAGS[@]}" -DCUDA_EMU_SRC_DIR="\"$SRC\"" -shared -o "$DIR/libnvrtc.so.13" -Wl,-soname,libnvrtc.so.13 \
    "$SRC/nvrtc.cpp" "$TMP/stubs_nvrtc.cpp" -lpthread
"$CXX" "${FLAGS[@]}" -O3 -shared -o "$DIR/libcublas.so.13" -Wl,-soname,libcublas.so.13 \
    "$SRC/cublas.cpp" "$TMP/stubs_cublas.cpp" -L"$DIR" -l:libcuda.so.1 -Wl,-rpath,'$ORIGIN'
ln -sf libcuda.so.1 "$DIR/libcuda.so"
ln -sf libnvrtc.so.13 "$DIR/libnvrtc.so"
ln -sf libcublas.so.13 "$DIR/libcublas.so"
echo "cuda-emu: built $DIR/{libcuda.so.1,libnvrtc.so.13,libcublas.so.13}; use LD_LIBRARY_PATH=$DIR"
