"""Builds the Rust library as part of building the package, so that `pip install ./python` (after
cloning) is the whole install: `build_py` runs `cargo build --release --lib` on the crate at the
repository root and bundles the shared library it produced into the package, and the wheel is
tagged for this platform (any Python 3: the library is loaded with ctypes, not as an extension
module).

Why a setuptools command and not setuptools-rust or maturin: the library is a plain cdylib that
ctypes loads, so none of their Python-binding support applies; setuptools-rust's binding-less mode
compiles with `cargo rustc --crate-type cdylib`, a different compilation unit from `cargo build
--release`, so a tree that is already built (CI, a developer's checkout) would compile the crate
again; maturin has no binding-less library mode (its cffi mode generates cffi bindings). Running
the same `cargo build` as everyone else reuses `target/` (or `$CARGO_TARGET_DIR`) and is a no-op
when the library is up to date.

Environment: FACTORTOPY_LIB=<path to a built library> bundles that file instead of running cargo
(and, at run time, overrides the bundled one); FACTORTOPY_FEATURES=cuda builds the crate with those
cargo features; CARGO_TARGET_DIR and CARGO as cargo reads them.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel

NAME = {"darwin": "libfactortopy.dylib", "win32": "factortopy.dll"}.get(sys.platform, "libfactortopy.so")
HERE = Path(__file__).resolve().parent
MANIFEST = HERE.parent / "Cargo.toml"


def cargo_build() -> Path:
    """Runs `cargo build --release --lib` on the crate and returns the cdylib cargo reports."""
    if not MANIFEST.is_file():
        raise SystemExit(
            f"factortopy: the Rust crate is not at {MANIFEST}: build from a clone of the repository "
            "(`pip install ./python`), or set FACTORTOPY_LIB to a built library"
        )
    cargo = os.environ.get("CARGO", "cargo")
    cmd = [cargo, "build", "--release", "--lib", "--manifest-path", str(MANIFEST), "--message-format=json-render-diagnostics"]
    features = os.environ.get("FACTORTOPY_FEATURES", "").strip()
    if features:
        cmd += ["--features", features]
    print("factortopy: " + " ".join(cmd), file=sys.stderr)
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=MANIFEST.parent)
    except FileNotFoundError:
        raise SystemExit(
            f"factortopy: building the package compiles its Rust library and needs `{cargo}` (install "
            "Rust with rustup), or set FACTORTOPY_LIB to a built library"
        ) from None
    if proc.returncode != 0:
        raise SystemExit(f"factortopy: `cargo build` failed (exit {proc.returncode}); its errors are above")
    found = None
    for line in proc.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == "factortopy":
            for f in msg.get("filenames", []):
                if Path(f).name == NAME:
                    found = Path(f)
    if found is None or not found.is_file():
        raise SystemExit(f"factortopy: `cargo build` succeeded but reported no {NAME}")
    return found


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        given = os.environ.get("FACTORTOPY_LIB")
        lib = Path(given) if given else cargo_build()
        if given and not lib.is_file():
            raise SystemExit(f"factortopy: FACTORTOPY_LIB={given} is not a file")
        dest = Path(self.build_lib) / "factortopy" / NAME
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib, dest)
        print(f"factortopy: bundled {lib}", file=sys.stderr)


class PlatformWheel(bdist_wheel):
    """A wheel for this platform (it holds a native library) and any Python 3 (ctypes loads it)."""

    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        _python, _abi, plat = super().get_tag()
        return "py3", "none", plat


class BinaryDistribution(Distribution):
    """The package holds a native library: installed into platlib, so the wheel keeps the package
    at its root (where auditwheel and the platform tag expect it) rather than under
    ``.data/purelib``."""

    def has_ext_modules(self):
        return True


setup(distclass=BinaryDistribution, cmdclass={"build_py": BuildWithLibrary, "bdist_wheel": PlatformWheel})
