#!/usr/bin/env bash
# Builds, on a machine with the Rust toolchain (no GPU needed), everything scripts/gpu_check.sh
# runs on a GPU machine that has the NVIDIA driver but no Rust: the GPU test binaries, the
# step benchmark, the CLI and the C library, all release, `--features cuda`, stripped, into
# gpu-bin/ (git-ignored). Carry that folder to the GPU machine with the repository.
#
#   bash scripts/build_gpu_bins.sh            # then, on the GPU machine:
#   bash scripts/gpu_check.sh gpu-bin OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=gpu-bin
rm -rf "$OUT"
mkdir -p "$OUT"
export CARGO_TERM_COLOR=never

# Test and bench executables: cargo prints their paths as JSON artifacts.
list=$(cargo test --release --features cuda --no-run --message-format=json \
        --test gpu_kernels --test gpu_model --test gpu_fit --test gpu_monitor 2>/dev/null;
       cargo bench --features cuda --no-run --message-format=json --bench gpu_step 2>/dev/null)
printf '%s\n' "$list" | python3 -c '
import json, shutil, sys
out = sys.argv[1]
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        name = m["target"]["name"]
        shutil.copy(m["executable"], out + "/" + name)
        print(out + "/" + name)
' "$OUT"
cargo build --release --features cuda
cp target/release/factortopy target/release/libfactortopy.so "$OUT"/
cp benches/torch_reference.py "$OUT"/
strip "$OUT"/gpu_kernels "$OUT"/gpu_model "$OUT"/gpu_fit "$OUT"/gpu_monitor "$OUT"/gpu_step "$OUT"/factortopy "$OUT"/libfactortopy.so
git rev-parse HEAD > "$OUT"/COMMIT
du -sh "$OUT"
total=$(du -sm "$OUT" | cut -f1)
if [ "$total" -ge 64 ]; then
    echo "gpu-bin is ${total} MiB; the device tool carries at most 64 MiB" >&2
    exit 1
fi
