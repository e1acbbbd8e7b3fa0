#!/usr/bin/env bash
# Agreement test against himalaya: installs himalaya into a virtual environment under
# target/, lets it fit RidgeCV on generated arrays, then runs tests/ridge_himalaya.rs, which fits
# factortopy's ridge on the same arrays and checks that the chosen penalties match and the
# predictions agree to 1e-4 relative. Run from the repository root (CI: .ci/run).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=target/himalaya-venv
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import himalaya" 2>/dev/null; then
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "himalaya==0.4.11" "numpy>=1.24" "scikit-learn>=1.3" packaging
fi
OUT=target/himalaya-agreement
rm -rf "$OUT"
mkdir -p "$OUT"
"$VENV/bin/python" tests/himalaya/agreement.py "$OUT"
FACTORTOPY_HIMALAYA_DIR="$PWD/$OUT" cargo test --release --test ridge_himalaya -- --nocapture
