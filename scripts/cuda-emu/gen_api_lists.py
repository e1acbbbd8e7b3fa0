#!/usr/bin/env python3
"""Regenerates api/{cuda,nvrtc,cublas}.txt: every entry point cudarc's dynamic loader can look up
(one `name return-kind` per line), from cudarc's generated bindings. build.sh turns each list into
weak stubs that print the name and fail, so a call the emulator does not implement is an error
with its name instead of cudarc's "Missing symbol" panic.

    python3 scripts/cuda-emu/gen_api_lists.py ~/.cargo/registry/src/*/cudarc-0.19.*/
"""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1]) / "src"
out = pathlib.Path(__file__).resolve().parent / "api"
kinds = {"CUresult": "status", "nvrtcResult": "status", "cublasStatus_t": "status",
         "*const ::core::ffi::c_char": "string", "usize": "size", "()": "void"}
for lib, sub in (("cuda", "driver"), ("nvrtc", "nvrtc"), ("cublas", "cublas")):
    text = (root / sub / "sys" / "mod.rs").read_text()
    rows = {}
    for name, ret in re.findall(r"pub unsafe fn (\w+)\(.*?\)(?: -> ([^{]+?))? \{", text, re.S):
        ret = (ret or "()").strip()
        if ret not in kinds:  # culib(), is_culib_present() and the like are cudarc's own
            continue
        rows[name] = kinds[ret]
    (out / f"{lib}.txt").write_text("".join(f"{n} {k}\n" for n, k in sorted(rows.items())))
    print(f"api/{lib}.txt: {len(rows)} entry points")
