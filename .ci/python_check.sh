#!/usr/bin/env bash
# The Python package (issue 6): installs it with `pip install ./python` into a virtual environment
# (target/ci-venv) next to torch, lightning and transformers from PyPI, checks that the installed
# package bundles and loads the library it was built with, then runs its pytest suite against the
# installed copy: numpy/DLPack round trips, hooks, the Lightning and Hugging Face callbacks inside
# real Trainer runs, and examples/python/finetune.py for 30 steps.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
VENV="$ROOT/target/ci-venv"

cargo build --release --lib
if ! [ -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r python/requirements-ci.txt
"$VENV/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps ./python

# The installed package must find the library inside itself (no environment variable), and it
# must be the one just built.
( cd /tmp && env -u FACTORTOPY_LIB "$VENV/bin/python" - "$ROOT/target/release/libfactortopy.so" <<'PY'
import filecmp, sys
import factortopy as ft
path = ft.library_path()
print(f"factortopy {ft.__version__}: library {ft.library_version()} from {path}")
assert "site-packages" in str(path), path
assert filecmp.cmp(path, sys.argv[1], shallow=False), "the bundled library is not the one just built"
PY
)

# From the repository root, `import factortopy` resolves to the installed package (the source is
# under python/), so the suite tests what `pip install` produced.
env -u FACTORTOPY_LIB OMP_NUM_THREADS=2 "$VENV/bin/python" -m pytest -q -rs -p no:cacheprovider python/tests
