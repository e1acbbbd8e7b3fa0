"""The package's ctypes declarations agree with the C header, so that a change on one side that the
other does not follow fails here instead of corrupting memory at run time.

Read from ``include/factortopy.h``: every struct (its fields, and its size, alignment and field
offsets as the system C compiler lays them out, from a small C program generated from the header)
and every function prototype. Read from the package: every ``ctypes.Structure`` subclass in
``factortopy._lib`` and every function the loaded library object carries a signature for. A
structure must have the C struct's fields, in order, with matching types, size, alignment and
offsets; a function must exist in the header with the same number of arguments and a matching
ctypes type for each argument and the result. Header functions the package neither declares nor
names anywhere are listed as information only: the Python package need not bind every entry point.

Only ABI-equivalent spellings are accepted in place of the exact pointer type: ``c_void_p`` for
an opaque handle, ``void *``, a byte buffer (``uint8_t *``) or a string the library returns for
the caller to free (``char *``, whose address ``ft_string_free`` needs back).
"""

from __future__ import annotations

import ctypes
import keyword
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import factortopy
from factortopy import _lib

HEADER = Path(__file__).resolve().parents[2] / "include" / "factortopy.h"

# ---------------------------------------------------------------------------------------------
# C types, as parsed from the header


def _spell(t) -> str:
    """A C type as the header writes it."""
    if isinstance(t, Base):
        return ("const " if t.const else "") + t.name
    if isinstance(t, Ptr):
        return f"{t.to} *"
    if isinstance(t, Arr):
        return f"{t.of}[{t.n}]"
    return f"{t.ret} (*)({', '.join(map(str, t.args))})"


@dataclass(frozen=True)
class Base:
    """A named type: ``int32_t``, ``double``, ``void``, a struct or enum tag (without the
    ``struct``/``enum`` keyword: cbindgen typedefs every tag to its own name)."""

    name: str
    const: bool = False
    __str__ = _spell


@dataclass(frozen=True)
class Ptr:
    to: object
    __str__ = _spell


@dataclass(frozen=True)
class Arr:
    of: object
    n: int
    __str__ = _spell


@dataclass(frozen=True)
class FnPtr:
    ret: object
    args: tuple
    __str__ = _spell


@dataclass
class Header:
    structs: dict = field(default_factory=dict)  # name -> [(field, C type)]
    opaque: set = field(default_factory=set)  # handle types: declared, never defined
    enums: set = field(default_factory=set)
    functions: dict = field(default_factory=dict)  # name -> (result, [argument C types])


_TOKEN = re.compile(r"[A-Za-z_]\w*|\d+|[*\[\](),]")
_QUALIFIERS = {"const", "volatile", "restrict"}


def _split_top(text: str, sep: str = ",") -> list[str]:
    """``text`` split at ``sep`` outside parentheses (a function-pointer parameter holds commas)."""
    out, depth, cur = [], 0, []
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [p.strip() for p in out if p.strip()]


def _type_of(spec: list[str]) -> object:
    """The type of a declaration's specifier and pointer tokens (``const char * const *``)."""
    stars = spec.index("*") if "*" in spec else len(spec)
    words = spec[:stars]
    name = [w for w in words if w not in _QUALIFIERS and w not in ("struct", "enum")]
    if len(name) != 1:
        raise ValueError(f"cannot read the type {' '.join(spec)!r}")
    t: object = Base(name[0], "const" in words)
    for tok in spec[stars:]:
        if tok == "*":
            t = Ptr(t)
        elif tok not in _QUALIFIERS:  # `* const`: the pointer itself is const, the ABI is the same
            raise ValueError(f"cannot read the type {' '.join(spec)!r}")
    return t


def parse_declaration(text: str) -> tuple[str, object]:
    """``(name, type)`` of one field or parameter: ``T name``, ``T name[N]`` or
    ``R (*name)(params)``."""
    if "(" in text:
        m = re.fullmatch(r"(.+?)\(\s*\*\s*(\w+)\s*\)\s*\((.*)\)", text.strip(), re.S)
        if not m:
            raise ValueError(f"cannot read the declaration {text!r}")
        ret = _type_of(_TOKEN.findall(m[1]))
        args = tuple(parse_declaration(p)[1] for p in _parameters(m[3]))
        return m[2], FnPtr(ret, args)
    toks = _TOKEN.findall(text)
    if toks[-1] == "]":
        if len(toks) < 5 or toks[-3] != "[" or not toks[-2].isdigit():
            raise ValueError(f"cannot read the declaration {text!r}")
        return toks[-4], Arr(_type_of(toks[:-4]), int(toks[-2]))
    return toks[-1], _type_of(toks[:-1])


def _parameters(text: str) -> list[str]:
    params = _split_top(text)
    return [] if params == ["void"] else params


def _strip(text: str) -> str:
    """The header without comments, preprocessor lines and the C++ ``extern "C"`` braces."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r"^\s*#(?:[^\n]*\\\n)*[^\n]*", " ", text, flags=re.M)
    return re.sub(r'extern\s+"C"\s*\{', " ", text)


def parse_header(text: str) -> Header:
    """Every struct, handle, enum and function of a cbindgen-generated header. Anything else at
    the top level is an error, so a header this reader does not understand fails the test."""
    h = Header()
    text = _strip(text)

    def struct(m: re.Match) -> str:
        h.structs[m[1]] = [parse_declaration(f) for f in m[2].split(";") if f.strip()]
        return ";"

    def enum(m: re.Match) -> str:
        h.enums.add(m[1])
        return ";"

    def opaque(m: re.Match) -> str:
        h.opaque.add(m[1])
        return ";"

    text = re.sub(r"typedef\s+struct\s+(\w+)\s*\{(.*?)\}\s*\1\s*;", struct, text, flags=re.S)
    text = re.sub(r"typedef\s+enum\s+(\w+)\s*\{.*?\}\s*\1\s*;", enum, text, flags=re.S)
    text = re.sub(r"typedef\s+struct\s+(\w+)\s+\1\s*;", opaque, text)
    for stmt in text.split(";"):
        stmt = stmt.strip()
        if stmt in ("", "}"):
            continue
        m = re.fullmatch(r"([^()]+?)\b(\w+)\s*\((.*)\)", stmt, re.S)
        if not m:
            raise ValueError(f"the header has a declaration this test cannot read: {stmt!r}")
        ret = _type_of(_TOKEN.findall(m[1]))
        h.functions[m[2]] = (ret, [parse_declaration(p)[1] for p in _parameters(m[3])])
    return h


# ---------------------------------------------------------------------------------------------
# The layout the C compiler gives each struct


def c_layout(header: Header, header_path: Path, workdir: Path) -> dict:
    """``{struct: (size, alignment, {field: offset})}`` and ``{enum: size}`` from a C program
    generated for every struct and enum of ``header``, compiled with ``$CC`` (default ``cc``, else ``gcc``)."""
    names = [os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc"]
    cc = next((n for n in names if shutil.which(n)), None)
    if cc is None:
        pytest.fail(f"no C compiler ({' or '.join(names)}) on PATH: the layout check needs one (set CC)")
    lines = ["#include <stdio.h>", "#include <stddef.h>", f'#include "{header_path.name}"', "int main(void) {"]
    for name, fields in header.structs.items():
        lines.append(f'  printf("struct {name} %zu %zu\\n", sizeof(struct {name}), _Alignof(struct {name}));')
        for fname, _ in fields:
            lines.append(f'  printf("field {name} {fname} %zu\\n", offsetof(struct {name}, {fname}));')
    for name in sorted(header.enums):
        lines.append(f'  printf("enum {name} %zu\\n", sizeof(enum {name}));')
    lines += ["  return 0;", "}"]
    src, exe = workdir / "layout.c", workdir / "layout"
    src.write_text("\n".join(lines) + "\n")
    build = subprocess.run(
        [cc, "-std=c11", "-Wall", "-Werror", "-I", str(header_path.parent), str(src), "-o", str(exe)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, f"the generated layout program does not compile:\n{build.stderr}"
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    structs, enums = {}, {}
    for line in out.splitlines():
        kind, name, *rest = line.split()
        if kind == "struct":
            structs[name] = (int(rest[0]), int(rest[1]), {})
        elif kind == "field":
            structs[name][2][rest[0]] = int(rest[1])
        else:
            enums[name] = int(rest[0])
    return {"structs": structs, "enums": enums}


# ---------------------------------------------------------------------------------------------
# Comparing ctypes declarations with C types

_SCALARS = {
    "int8_t": ctypes.c_int8,
    "uint8_t": ctypes.c_uint8,
    "int16_t": ctypes.c_int16,
    "uint16_t": ctypes.c_uint16,
    "int32_t": ctypes.c_int32,
    "uint32_t": ctypes.c_uint32,
    "int64_t": ctypes.c_int64,
    "uint64_t": ctypes.c_uint64,
    "size_t": ctypes.c_size_t,
    "uintptr_t": ctypes.c_size_t,
    "int": ctypes.c_int,
    "unsigned": ctypes.c_uint,
    "float": ctypes.c_float,
    "double": ctypes.c_double,
    "bool": ctypes.c_bool,
    "char": ctypes.c_char,
}
# Pointees whose pointer may be declared c_void_p: raw memory and byte buffers.
_VOID_OK = {"void", "uint8_t"}


def _signed_int(size: int):
    return {1: ctypes.c_int8, 2: ctypes.c_int16, 4: ctypes.c_int32, 8: ctypes.c_int64}[size]


def _name(t) -> str:
    if t is None:
        return "None"
    return getattr(t, "__name__", repr(t))


@dataclass
class Abi:
    """What a comparison needs: the parsed header, the compiler's enum sizes and which Python
    structure stands for which C struct."""

    header: Header
    enum_sizes: dict
    structures: dict  # C struct name -> ctypes.Structure subclass

    def mismatch(self, c, py) -> str | None:
        """Why the ctypes type ``py`` cannot stand for the C type ``c``, or None when it can."""
        if isinstance(c, Base):
            if c.name == "void":
                return None if py is None else f"void result declared {_name(py)}"
            if c.name in _SCALARS:
                want = _SCALARS[c.name]
            elif c.name in self.header.enums:
                want = _signed_int(self.enum_sizes[c.name])
            elif c.name in self.header.structs:
                want = self.structures.get(c.name)
                if want is None:
                    return f"struct {c.name} passed by value has no ctypes structure"
            else:
                return f"{c} is not a type this test knows"
            return None if py is want else f"{c} declared {_name(py)}, expected {_name(want)}"
        if isinstance(c, Ptr):
            to = c.to
            if isinstance(to, Base):
                if py is ctypes.c_void_p and (
                    to.name in _VOID_OK or to.name in self.header.opaque or (to.name == "char" and not to.const)
                ):
                    return None
                if to.name == "char":
                    return None if py is ctypes.c_char_p else f"{c} declared {_name(py)}, expected c_char_p"
                if to.name == "void":
                    return f"{c} declared {_name(py)}, expected c_void_p"
                if to.name in self.header.opaque:
                    ok = isinstance(py, type) and issubclass(py, ctypes._Pointer) and py._type_.__name__ in (
                        to.name,
                        _camel(to.name),
                    )
                    return None if ok else f"{c} (a handle) declared {_name(py)}, expected c_void_p"
            if not (isinstance(py, type) and issubclass(py, ctypes._Pointer)):
                return f"{c} declared {_name(py)}, expected a POINTER"
            inner = self.mismatch(to, py._type_)
            return None if inner is None else f"{c}: {inner}"
        if isinstance(c, Arr):
            if not (isinstance(py, type) and issubclass(py, ctypes.Array)) or py._length_ != c.n:
                return f"{c} declared {_name(py)}, expected an array of {c.n}"
            inner = self.mismatch(c.of, py._type_)
            return None if inner is None else f"{c}: {inner}"
        if isinstance(c, FnPtr):
            if not (isinstance(py, type) and issubclass(py, ctypes._CFuncPtr)):
                return f"{c} declared {_name(py)}, expected a CFUNCTYPE"
            problems = self.signature_problems(c.ret, list(c.args), list(py._argtypes_), py._restype_)
            return None if not problems else f"{c}: " + "; ".join(problems)
        raise TypeError(c)

    def signature_problems(self, ret, args: list, py_args: list, py_ret) -> list[str]:
        if len(args) != len(py_args):
            return [f"{len(py_args)} arguments declared, the header has {len(args)}"]
        out = []
        for i, (c, py) in enumerate(zip(args, py_args)):
            why = self.mismatch(c, py)
            if why:
                out.append(f"argument {i + 1}: {why}")
        why = self.mismatch(ret, py_ret)
        if why:
            out.append(f"result: {why}")
        return out


def _camel(c_name: str) -> str:
    """``ft_fit_options`` -> ``FtFitOptions``, the package's naming of C structs."""
    return "".join(p[:1].upper() + p[1:] for p in c_name.split("_"))


def structure_names(header: Header, classes: list) -> tuple[dict, list[str]]:
    """``{C struct: class}`` for the ctypes structures ``classes``, and the ones that name no
    struct of the header. A class is named as its struct (``DLTensor``) or in CamelCase
    (``FtFitOptions`` for ``ft_fit_options``)."""
    by_name = {n: n for n in header.structs} | {_camel(n): n for n in header.structs}
    found, problems = {}, []
    for cls in classes:
        c_name = by_name.get(cls.__name__)
        if c_name is None:
            problems.append(f"{cls.__name__}: no struct of that name in the header")
        else:
            found[c_name] = cls
    return found, problems


def structure_problems(abi: Abi, layout: dict, c_name: str, cls) -> list[str]:
    """Where the ctypes structure ``cls`` differs from the C struct ``c_name``: fields (names in
    order, types), size, alignment and offsets."""
    fields = abi.header.structs[c_name]
    py_fields = cls._fields_
    where = f"{cls.__name__} (struct {c_name})"
    # A trailing underscore escapes a Python keyword (`global_` for C's `global`).
    py_names = [n[:-1] if n.endswith("_") and keyword.iskeyword(n[:-1]) else n for n, *_ in py_fields]
    c_names = [n for n, _ in fields]
    if py_names != c_names:
        return [f"{where}: fields {py_names}, the header has {c_names}"]
    out = []
    for (fname, ctype), (py_name, py_type, *_) in zip(fields, py_fields):
        why = abi.mismatch(ctype, py_type)
        if why:
            out.append(f"{where}.{fname}: {why}")
    size, align, offsets = layout[c_name]
    if ctypes.sizeof(cls) != size:
        out.append(f"{where}: size {ctypes.sizeof(cls)}, the C compiler says {size}")
    if ctypes.alignment(cls) != align:
        out.append(f"{where}: alignment {ctypes.alignment(cls)}, the C compiler says {align}")
    for (fname, _), (py_name, *_) in zip(fields, py_fields):
        off = getattr(cls, py_name).offset
        if off != offsets[fname]:
            out.append(f"{where}.{fname}: offset {off}, the C compiler says {offsets[fname]}")
    return out


def function_problems(abi: Abi, declared: dict) -> list[str]:
    """Where the declared functions ``{name: (argtypes, restype)}`` differ from the header,
    including functions the header does not have."""
    out = []
    for name, (args, res) in sorted(declared.items()):
        if name not in abi.header.functions:
            out.append(f"{name}: declared in Python, not in the header")
            continue
        if args is None:
            out.append(f"{name}: called without argtypes (ctypes would guess every argument)")
            continue
        ret, c_args = abi.header.functions[name]
        out += [f"{name}: {p}" for p in abi.signature_problems(ret, c_args, list(args), res)]
    return out


# ---------------------------------------------------------------------------------------------
# What the package declares


def package_structures() -> list:
    return [
        v
        for v in vars(_lib).values()
        if isinstance(v, type) and issubclass(v, ctypes.Structure) and v.__module__ == _lib.__name__
    ]


def package_functions() -> dict:
    """``{name: (argtypes, restype)}`` of every function the loaded library object holds: each
    one ``_lib.lib()`` declared, and any other the package has looked up (without argtypes)."""
    cdll = _lib.lib()
    return {
        name: (fn.argtypes, fn.restype) for name, fn in vars(cdll).items() if isinstance(fn, ctypes._CFuncPtr)
    }


def names_in_package() -> set[str]:
    """Every ``ft_*`` identifier the package's sources mention."""
    src = Path(factortopy.__file__).parent
    return {m for p in src.glob("*.py") for m in re.findall(r"\bft_\w+", p.read_text())}


# ---------------------------------------------------------------------------------------------
# The tests


@pytest.fixture(scope="module")
def abi(tmp_path_factory):
    header = parse_header(HEADER.read_text())
    layout = c_layout(header, HEADER, tmp_path_factory.mktemp("abi"))
    structures, unnamed = structure_names(header, package_structures())
    assert not unnamed, "\n".join(unnamed)
    return Abi(header, layout["enums"], structures), layout["structs"]


def test_the_header_is_read_whole(abi):
    a, layout = abi
    h = a.header
    # Spot checks of the reader against the header text, so a reader that silently drops
    # declarations cannot pass the comparisons below.
    assert len(h.functions) == len(re.findall(r"^[^\s*/#][^;]*?\b(ft_\w+)\s*\(", _strip(HEADER.read_text()), re.M))
    assert h.functions["ft_version"] == (Ptr(Base("char", True)), [])
    assert h.functions["ft_rank_combine"][1] == [Ptr(Ptr(Base("char", True))), Base("size_t"), Ptr(Ptr(Base("char")))]
    assert {"ft_brain", "ft_features", "ft_fit", "ft_monitor", "ft_step_report"} <= h.opaque
    assert "ft_status" in h.enums
    assert h.structs["ft_layer_view"][1] == ("local_shape", Arr(Base("int64_t"), 4))
    deleter = dict(h.structs["DLManagedTensor"])["deleter"]
    assert deleter == FnPtr(Base("void"), (Ptr(Base("DLManagedTensor")),))
    assert set(layout) == set(h.structs)


def test_every_structure_matches_the_c_layout(abi):
    a, layout = abi
    assert a.structures, "no ctypes structures found in factortopy._lib"
    problems = [p for c_name, cls in a.structures.items() for p in structure_problems(a, layout, c_name, cls)]
    assert not problems, "\n".join(problems)


def test_every_declared_function_matches_its_prototype(abi):
    a, _ = abi
    declared = package_functions()
    assert len(declared) >= 10, f"only {len(declared)} functions declared: {sorted(declared)}"
    problems = function_problems(a, declared)
    assert not problems, "\n".join(problems)


def test_header_functions_the_package_uses_are_declared(abi):
    a, _ = abi
    declared = package_functions()
    used = names_in_package() & set(a.header.functions)
    undeclared = sorted(used - set(declared))
    assert not undeclared, f"the package names these functions but declares no signature: {undeclared}"
    unbound = sorted(set(a.header.functions) - set(declared))
    # Information only: the package need not bind every entry point.
    print(f"{len(unbound)} header functions without Python bindings: {', '.join(unbound)}")


# Drift: deliberately wrong declarations must be reported.


def test_a_changed_field_type_is_reported(abi):
    a, layout = abi
    fields = list(_lib.FtFitOptions._fields_)
    i = [n for n, _ in fields].index("max_epochs")
    fields[i] = ("max_epochs", ctypes.c_uint64)
    wrong = type("FtFitOptions", (ctypes.Structure,), {"_fields_": fields})
    problems = structure_problems(a, layout, "ft_fit_options", wrong)
    assert any("ft_fit_options).max_epochs: uint32_t declared" in p for p in problems), problems
    assert any("batch_size: offset 24, the C compiler says 20" in p for p in problems), problems
    assert any("offset" in p for p in problems), problems
    assert any("size" in p for p in problems), problems


def test_a_same_size_type_change_and_a_swap_are_reported(abi):
    a, layout = abi
    fields = list(_lib.FtFitOptions._fields_)
    signed = [(n, ctypes.c_int32 if t is ctypes.c_uint32 else t) for n, t in fields]
    wrong = type("FtFitOptions", (ctypes.Structure,), {"_fields_": signed})
    problems = structure_problems(a, layout, "ft_fit_options", wrong)
    assert any("max_epochs: uint32_t declared c_int" in p for p in problems), problems
    swapped = [fields[1], fields[0], *fields[2:]]
    wrong = type("FtFitOptions", (ctypes.Structure,), {"_fields_": swapped})
    assert structure_problems(a, layout, "ft_fit_options", wrong)[0].startswith("FtFitOptions (struct ft_fit_options): fields")


def test_a_nested_structure_and_a_callback_are_compared(abi):
    a, layout = abi

    class DLManagedTensor(ctypes.Structure):
        pass

    DLManagedTensor._fields_ = [
        ("dl_tensor", _lib.DLTensor),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.CFUNCTYPE(None, ctypes.c_void_p)),
    ]
    problems = structure_problems(a, layout, "DLManagedTensor", DLManagedTensor)
    assert any("deleter" in p and "argument 1" in p for p in problems), problems
    opts = list(_lib.FtMonitorOptions._fields_)
    opts[0] = ("fit", _lib.FtSynthOptions)
    wrong = type("FtMonitorOptions", (ctypes.Structure,), {"_fields_": opts})
    problems = structure_problems(a, layout, "ft_monitor_options", wrong)
    assert any("fit: ft_fit_options declared FtSynthOptions" in p for p in problems), problems


def test_wrong_function_declarations_are_reported(abi):
    a, _ = abi
    P = ctypes.POINTER
    right = {"ft_fit_new": ([ctypes.c_void_p, ctypes.c_void_p, P(_lib.FtFitOptions), P(ctypes.c_void_p)], ctypes.c_int32)}
    assert function_problems(a, right) == []
    cases = {
        "argument 3": ([ctypes.c_void_p, ctypes.c_void_p, P(_lib.FtMonitorOptions), P(ctypes.c_void_p)], ctypes.c_int32),
        "3 arguments declared": ([ctypes.c_void_p, ctypes.c_void_p, P(_lib.FtFitOptions)], ctypes.c_int32),
        "result": ([ctypes.c_void_p, ctypes.c_void_p, P(_lib.FtFitOptions), P(ctypes.c_void_p)], ctypes.c_double),
        "argument 4": ([ctypes.c_void_p, ctypes.c_void_p, P(_lib.FtFitOptions), ctypes.c_void_p], ctypes.c_int32),
    }
    for expected, decl in cases.items():
        problems = function_problems(a, {"ft_fit_new": decl})
        assert len(problems) == 1 and expected in problems[0], (expected, problems)
    assert function_problems(a, {"ft_no_such_function": ([], None)}) == [
        "ft_no_such_function: declared in Python, not in the header"
    ]
    # A string argument must be c_char_p; a byte buffer may be c_void_p, a C string not.
    problems = function_problems(a, {"ft_brain_load": ([ctypes.c_void_p, P(ctypes.c_void_p)], ctypes.c_int32)})
    assert problems and "expected c_char_p" in problems[0], problems
    assert function_problems(a, {"ft_bytes_free": ([ctypes.c_void_p, ctypes.c_size_t], None)}) == []
    assert function_problems(a, {"ft_version": (None, ctypes.c_char_p)}) == [
        "ft_version: called without argtypes (ctypes would guess every argument)"
    ]


def test_the_reader_refuses_what_it_cannot_read():
    with pytest.raises(ValueError, match="cannot read"):
        parse_header("int (*table[4])(void);")
    h = parse_header("typedef struct a { const char *const *names; double (*f)(int x, float y); int64_t s[2]; } a;")
    assert h.structs["a"] == [
        ("names", Ptr(Ptr(Base("char", True)))),
        ("f", FnPtr(Base("double"), (Base("int"), Base("float")))),
        ("s", Arr(Base("int64_t"), 2)),
    ]
