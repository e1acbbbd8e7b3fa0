"""Copies the built shared library into the package, so an installed package needs no environment
variable: `cargo build --release` at the repository root, then `pip install ./python`. Without a
built library the package still installs and looks for one at run time (see
factortopy._lib.candidate_paths); FACTORTOPY_LIB overrides the library copied here."""

import os
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

NAME = {"darwin": "libfactortopy.dylib", "win32": "factortopy.dll"}.get(sys.platform, "libfactortopy.so")


def built_library():
    here = Path(__file__).resolve().parent
    candidates = []
    if os.environ.get("FACTORTOPY_LIB"):
        candidates.append(Path(os.environ["FACTORTOPY_LIB"]))
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(Path(os.environ["CARGO_TARGET_DIR"]) / "release" / NAME)
    candidates.append(here.parent / "target" / "release" / NAME)
    return next((p for p in candidates if p.is_file()), None)


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        lib = built_library()
        if lib is None:
            print(f"factortopy: no built {NAME} found; the package will look for it at run time")
            return
        dest = Path(self.build_lib) / "factortopy" / NAME
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib, dest)
        print(f"factortopy: bundled {lib}")


setup(cmdclass={"build_py": BuildWithLibrary})
