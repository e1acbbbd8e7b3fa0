#!/usr/bin/env bash
# Documentation check. Called from .ci/run.
#
# 1. docs/ builds as an mdBook (into target/book) with the pinned mdbook.
# 2. Links and anchors in README.md, CHANGELOG.md, docs/ and the rendered book resolve, every docs
#    page is a chapter, every "DESIGN §x.y" citation in the code names a section of
#    docs/design.md, and docs/cli.md lists every flag of every subcommand (.ci/check_docs.py).
# 3. The Rust API documentation builds without a warning (broken intra-doc links, bad markup).
#
# mdbook is installed once into target/ci-tools (reruns reuse it), without its `serve` and
# `watch` features, which only a writer previewing the book needs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

MDBOOK_VERSION=0.5.4
TOOLS="${FACTORTOPY_CI_TOOLS:-$PWD/target/ci-tools}"
MDBOOK="$TOOLS/bin/mdbook"

if ! [ -x "$MDBOOK" ] || [ "$("$MDBOOK" --version)" != "mdbook v$MDBOOK_VERSION" ]; then
  echo "== installing mdbook $MDBOOK_VERSION into $TOOLS"
  cargo install mdbook --version "$MDBOOK_VERSION" --locked --no-default-features --root "$TOOLS"
fi

echo "== mdbook build docs ($("$MDBOOK" --version))"
rm -rf target/book
"$MDBOOK" build docs

echo "== links, anchors, DESIGN citations and CLI flags"
cargo build --release --bin factortopy
python3 .ci/check_docs.py --cli target/release/factortopy --book target/book

echo "== Rust API documentation (cargo doc, warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps
echo "== docs check passed"
