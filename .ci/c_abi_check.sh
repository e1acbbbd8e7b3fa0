#!/usr/bin/env bash
# C ABI check (DESIGN §6). Called from .ci/run.
#
# 1. The committed include/factortopy.h is exactly what the pinned cbindgen generates from
#    src/ffi/ with cbindgen.toml (any difference fails: regenerate and commit).
# 2. The header compiles as strict C99 and as C++11.
# 3. Every tests/c/*.c builds against the header and both library kinds (libfactortopy.so and
#    libfactortopy.a) and passes.
# 4. The shared-library build runs clean under valgrind (--error-exitcode=1 --leak-check=full).
#
# cbindgen is installed once into target/ci-tools (reruns reuse it). valgrind is installed with
# apt-get when missing and possible.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

CBINDGEN_VERSION=0.29.4
TOOLS="$PWD/target/ci-tools"
CBINDGEN="$TOOLS/bin/cbindgen"
CC="${CC:-gcc}"
CXX="${CXX:-g++}"

if ! [ -x "$CBINDGEN" ] || [ "$("$CBINDGEN" --version)" != "cbindgen $CBINDGEN_VERSION" ]; then
  echo "== installing cbindgen $CBINDGEN_VERSION into $TOOLS"
  cargo install cbindgen --version "$CBINDGEN_VERSION" --locked --root "$TOOLS"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "== header is up to date ($("$CBINDGEN" --version))"
# Single-file mode: cbindgen reads src/ffi/ and its submodules only, so public items elsewhere in
# the crate never leak into the C header.
"$CBINDGEN" --quiet --config cbindgen.toml --output "$tmp/factortopy.h" src/ffi/mod.rs
if ! diff -u include/factortopy.h "$tmp/factortopy.h"; then
  echo "include/factortopy.h differs from the generated header; regenerate it with" >&2
  echo "  $CBINDGEN --config cbindgen.toml --output include/factortopy.h src/ffi/mod.rs" >&2
  exit 1
fi

echo "== header compiles as C99 and C++11"
printf '#include "factortopy.h"\nint main(void) { return ft_version() == 0; }\n' > "$tmp/h.c"
"$CC" -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude -fsyntax-only "$tmp/h.c"
cp "$tmp/h.c" "$tmp/h.cpp"
"$CXX" -std=c++11 -Wall -Wextra -Werror -pedantic -Iinclude -fsyntax-only "$tmp/h.cpp"

echo "== building the library"
cargo build --release
LIB="$PWD/target/release"
CFLAGS=(-std=c11 -Wall -Wextra -Werror -O1 -g -Iinclude)

shopt -s nullglob
programs=(tests/c/*.c)
if [ ${#programs[@]} -eq 0 ]; then
  echo "no C programs in tests/c" >&2
  exit 1
fi

for src in "${programs[@]}"; do
  name="$(basename "$src" .c)"
  echo "== $name: shared and static builds"
  "$CC" "${CFLAGS[@]}" "$src" -o "$tmp/${name}_shared" -L"$LIB" -Wl,-rpath,"$LIB" -lfactortopy -lm
  "$CC" "${CFLAGS[@]}" "$src" -o "$tmp/${name}_static" "$LIB/libfactortopy.a" -lpthread -ldl -lm
  for kind in shared static; do
    mkdir -p "$tmp/work_${name}_$kind"
    "$tmp/${name}_$kind" "$tmp/work_${name}_$kind"
  done
done

# Programs written against an older header (tests/c/compat/factortopy_*.h) still build and run
# against today's library: option structs are frozen (the versioning rule in the header).
for src in tests/c/compat/*.c; do
  name="$(basename "$src" .c)"
  echo "== $name: a program built against an old header"
  "$CC" "${CFLAGS[@]/-Iinclude/-Itests/c/compat}" "$src" -o "$tmp/$name" -L"$LIB" -Wl,-rpath,"$LIB" -lfactortopy -lm
  mkdir -p "$tmp/work_$name"
  "$tmp/$name" "$tmp/work_$name"
done

# The C side built with AddressSanitizer and UndefinedBehaviorSanitizer: the misuse cases (NULLs,
# bad shapes and dtypes, zero-stride views past memory, out-of-range options) and the
# rest of the program must not touch memory they do not own. Leak checking is valgrind's job below
# (LeakSanitizer would report rayon's global worker pool, which lives until exit by design).
for src in "${programs[@]}"; do
  name="$(basename "$src" .c)"
  echo "== $name with -fsanitize=address,undefined"
  "$CC" "${CFLAGS[@]}" -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
    "$src" -o "$tmp/${name}_asan" -L"$LIB" -Wl,-rpath,"$LIB" -lfactortopy -lm
  mkdir -p "$tmp/asan_$name"
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$tmp/${name}_asan" "$tmp/asan_$name"
done

if ! command -v valgrind >/dev/null 2>&1; then
  echo "== installing valgrind"
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq valgrind
  else
    echo "valgrind is missing and apt-get is not available" >&2
    exit 1
  fi
fi

for src in "${programs[@]}"; do
  name="$(basename "$src" .c)"
  echo "== $name under valgrind"
  mkdir -p "$tmp/vg_$name"
  # One worker thread: valgrind runs threads one at a time, and idle rayon workers spinning for
  # work would only slow it down. The suppression covers the TLS block of rayon's global pool
  # workers, which live until exit by design (see .ci/valgrind.supp).
  RAYON_NUM_THREADS=1 valgrind --error-exitcode=1 --leak-check=full \
    --suppressions=.ci/valgrind.supp "$tmp/${name}_shared" "$tmp/vg_$name"
done
echo "== C ABI check passed"
