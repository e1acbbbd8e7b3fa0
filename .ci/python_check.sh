#!/usr/bin/env bash
# The Python package: builds its manylinux wheel with scripts/build_wheel.sh (the package's build
# step runs `cargo build --release --lib` and bundles the library; auditwheel checks and tags it),
# installs that wheel into a brand-new virtual environment holding only what the wheel declares
# (numpy) plus pytest and runs the core tests there, with no cargo on PATH and from a folder where
# the source tree is not importable, then installs the same wheel into target/ci-venv next to
# torch, lightning and transformers from PyPI and runs the whole pytest suite against it: numpy/
# DLPack round trips, hooks and bounded-memory collection, the Lightning and Hugging Face callbacks
# inside real Trainer runs (single-process, and 2-process DDP/torchrun jobs on gloo), and
# examples/python/finetune.py for 30 steps.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
VENV="$ROOT/target/ci-venv"
FRESH="$ROOT/target/wheel-venv"
WHEELS="$ROOT/target/wheels"
PIP_FLAGS=(--quiet --disable-pip-version-check)

# The library every other check uses; the wheel's own cargo build below finds it up to date (same
# command, same target folder), so the crate is compiled once.
cargo build --release --lib
LIB="$ROOT/target/release/libfactortopy.so"

if ! [ -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install "${PIP_FLAGS[@]}" -r python/requirements-ci.txt

rm -rf "$WHEELS"
env -u FACTORTOPY_LIB bash scripts/build_wheel.sh "$WHEELS"
WHEEL=$(ls "$WHEELS"/factortopy-*-manylinux_*.whl)
echo "built $(basename "$WHEEL")"

# The installed package must find the library inside itself (no environment variable), and it
# must be the one just built.
check_installed() {
  ( cd /tmp && env -u FACTORTOPY_LIB -u CARGO_TARGET_DIR "$1" - "$LIB" <<'PY'
import filecmp, sys
import factortopy as ft
path = ft.library_path()
print(f"factortopy {ft.__version__}: library {ft.library_version()} from {path}")
assert "site-packages" in str(path), path
assert filecmp.cmp(path, sys.argv[1], shallow=False), "the bundled library is not the one just built"
PY
  )
}

# A fresh environment: the wheel and its declared dependencies only.
rm -rf "$FRESH"
python3 -m venv "$FRESH"
"$FRESH/bin/pip" install "${PIP_FLAGS[@]}" "$WHEEL" "$(grep '^pytest==' python/requirements-ci.txt)"
# A user's machine without Rust: PATH holds the fresh environment and a shell, nothing else (no
# cargo), and the tests that need no framework run from a copy outside the repository, so only the
# installed package can answer `import factortopy`.
CORE="$(mktemp -d)"
trap 'rm -rf "$CORE"' EXIT
mkdir "$CORE/bin"
ln -s "$(command -v bash)" "$CORE/bin/bash"
cp python/tests/conftest.py python/tests/test_core.py python/tests/test_robustness.py "$CORE/"
check_installed "$FRESH/bin/python"
( cd "$CORE" && env -u FACTORTOPY_LIB -u CARGO_TARGET_DIR PATH="$FRESH/bin:$CORE/bin" OMP_NUM_THREADS=2 bash -c '
    if command -v cargo >/dev/null; then echo "cargo is still on PATH: $(command -v cargo)" >&2; exit 1; fi
    python -c "import factortopy, sys; assert \"site-packages\" in factortopy.__file__, factortopy.__file__"
    python -m pytest -q -p no:cacheprovider .' )

# The CI environment with the frameworks: the same wheel, the whole suite.
"$VENV/bin/pip" install "${PIP_FLAGS[@]}" --force-reinstall --no-deps "$WHEEL"
check_installed "$VENV/bin/python"
# From the repository root, `import factortopy` resolves to the installed package (the source is
# under python/), so the suite tests what the wheel holds. The CUDA tests run in
# .ci/cuda_emu_check.sh, against a `--features cuda` library on the emulated device; this wheel
# is built without CUDA, where they could only skip.
env -u FACTORTOPY_LIB OMP_NUM_THREADS=2 "$VENV/bin/python" -m pytest -q -rs -p no:cacheprovider --durations=8 \
  --ignore=python/tests/test_cuda.py python/tests
