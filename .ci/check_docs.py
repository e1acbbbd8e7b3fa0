#!/usr/bin/env python3
"""Checks that the documentation's cross-references hold (called by .ci/docs_check.sh).

1. Every relative link and image in README.md, CHANGELOG.md and docs/*.md points at a file that
   exists, and every #anchor at a heading of the target page (ids as mdBook and GitHub make them).
2. Every page in docs/ is a chapter of docs/SUMMARY.md, and every chapter exists.
3. Every "DESIGN §x.y" citation in the code and the docs names a section of docs/design.md.
4. With `--cli BINARY` (a built `factortopy`): every subcommand has a section in docs/cli.md and
   every flag its --help lists appears on that page.
5. With `--book DIR` (the output of `mdbook build docs`): every link between the rendered pages,
   and its #fragment, lands on a page and an element id that exist, as the reader's browser will
   resolve them.

Stdlib only, so it runs with any python3.
"""

from __future__ import annotations

import re
import subprocess
import sys
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]
# Where the code cites the design reference.
CODE_DIRS = ["src", "python", "include", "kernels", "tests", "scripts", "benches", "examples", ".ci"]
CODE_EXT = {".rs", ".py", ".h", ".c", ".cu", ".cuh", ".sh", ".md", ".toml"}

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"`[^`]*`")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
CITATION = re.compile(r"DESIGN\s+((?:§\s*\d+(?:\.\d+)*(?:\s*(?:,|–|-|and|or)\s*)?)+)")
SECTION_NUMBER = re.compile(r"\d+(?:\.\d+)*")
DESIGN_HEADING = re.compile(r"^#{2,4}\s+(\d+(?:\.\d+)*)\.?\s")


def prose_lines(text: str):
    """The lines outside fenced code blocks, with inline code removed, and their numbers."""
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield n, INLINE_CODE.sub("", line)


def slug(heading: str) -> str:
    """The id mdBook (and GitHub) give a heading: markup and punctuation dropped, lower case,
    spaces to hyphens; letters, digits, '_' and '-' kept."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays
    text = re.sub(r"<[^>]+>", "", text).lower()
    out = []
    for ch in text:
        if ch == " ":
            out.append("-")
        elif ch in "-_" or unicodedata.category(ch)[0] in "LN":
            out.append(ch)
    return "".join(out)


def anchors(page: Path) -> set[str]:
    """The ids of a page's headings; a repeated heading gets -1, -2, ... as mdBook does."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else HEADING.match(line)
        if m:
            base = slug(m.group(2))
            k = seen.get(base, 0)
            seen[base] = k + 1
            found.add(base if k == 0 else f"{base}-{k}")
    return found


def check_links(errors: list[str]) -> None:
    cache: dict[Path, set[str]] = {}
    for page in PAGES:
        if not page.is_file():
            errors.append(f"{page.relative_to(ROOT)}: missing")
            continue
        for n, line in prose_lines(page.read_text(encoding="utf-8")):
            for m in LINK.finditer(line):
                target = m.group(1)
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                    continue
                path_part, _, anchor = target.partition("#")
                where = f"{page.relative_to(ROOT)}:{n}: link `{target}`"
                dest = (page.parent / path_part).resolve() if path_part else page
                if not dest.exists():
                    errors.append(f"{where}: {path_part} does not exist")
                    continue
                if anchor:
                    if dest.suffix != ".md":
                        errors.append(f"{where}: an anchor into a file that is not markdown")
                        continue
                    ids = cache.setdefault(dest, anchors(dest))
                    if anchor not in ids:
                        errors.append(f"{where}: no heading with id `{anchor}` in {dest.relative_to(ROOT)}")


def check_summary(errors: list[str]) -> None:
    summary = DOCS / "SUMMARY.md"
    chapters = set()
    for n, line in prose_lines(summary.read_text(encoding="utf-8")):
        for m in LINK.finditer(line):
            chapters.add(m.group(1))
            if not (DOCS / m.group(1)).is_file():
                errors.append(f"docs/SUMMARY.md:{n}: chapter {m.group(1)} does not exist")
    for page in sorted(DOCS.glob("*.md")):
        if page.name != "SUMMARY.md" and page.name not in chapters:
            errors.append(f"docs/{page.name} is not a chapter of docs/SUMMARY.md")


def code_files():
    """The repository's files (tracked, or new and not ignored) under CODE_DIRS, and the pages:
    build folders such as python/build hold copies that are not the source."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *CODE_DIRS],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    for name in sorted(set(listed)):
        p = ROOT / name
        if p.is_file() and p.suffix in CODE_EXT:
            yield p
    yield from (p for p in PAGES if p.is_file())


def check_citations(errors: list[str]) -> int:
    design = DOCS / "design.md"
    sections = {m.group(1) for line in design.read_text(encoding="utf-8").splitlines() if (m := DESIGN_HEADING.match(line))}
    count = 0
    for path in code_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            for m in CITATION.finditer(line):
                for number in SECTION_NUMBER.findall(m.group(1)):
                    count += 1
                    if number not in sections:
                        errors.append(f"{path.relative_to(ROOT)}:{n}: DESIGN §{number} is not a section of docs/design.md")
    return count


def check_cli(binary: str, errors: list[str]) -> int:
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    top = subprocess.run([binary, "--help"], capture_output=True, text=True, check=True).stdout
    commands = re.findall(r"^\s{2}([a-z][a-z-]*)\s{2,}", top.split("Commands:", 1)[1].split("Options:", 1)[0], re.M)
    commands = [c for c in commands if c != "help"]
    if not commands:
        errors.append(f"{binary} --help lists no subcommands")
    n_flags = 0
    for cmd in commands:
        if not re.search(rf"^## {re.escape(cmd)}\s*$", page, re.M):
            errors.append(f"docs/cli.md: no section `## {cmd}`")
        text = subprocess.run([binary, cmd, "--help"], capture_output=True, text=True, check=True).stdout
        # Option lines only: descriptions also mention flags in passing.
        for flag in sorted(set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)", text, re.M)) - {"--help", "--version"}):
            n_flags += 1
            if not re.search(rf"`{re.escape(flag)}(?![\w-])", page):
                errors.append(f"docs/cli.md: `factortopy {cmd} --help` lists {flag}, the page does not")
    return n_flags


def check_book(book: Path, errors: list[str]) -> int:
    pages = {p.relative_to(book).as_posix(): p.read_text(encoding="utf-8") for p in book.rglob("*.html")}
    if "design.html" not in pages:
        errors.append(f"{book}: no design.html; is it the output of `mdbook build docs`?")
    ids = {name: set(re.findall(r'\bid="([^"]+)"', html)) for name, html in pages.items()}
    count = 0
    for name, html in pages.items():
        # The sidebar's table of contents is the same on every page: checked once, on the index.
        body = html.split('<main>', 1)[-1] if name != "index.html" else html
        for href in re.findall(r'\bhref="([^"]+)"', body):
            if re.match(r"^[a-z][a-z0-9+.-]*:", href) or href.startswith("//"):
                continue
            path_part, _, fragment = href.partition("#")
            target = (Path(name).parent / path_part).as_posix() if path_part else name
            target = re.sub(r"(^|/)\./", r"\1", target)
            count += 1
            if path_part and not (book / target).exists():
                errors.append(f"book {name}: link {href}: {target} does not exist")
            elif fragment and target.endswith(".html") and fragment not in ids.get(target, set()):
                errors.append(f"book {name}: link {href}: no element with id `{fragment}` in {target}")
    return count


def main() -> int:
    args = sys.argv[1:]
    options = dict(zip(args[::2], args[1::2]))
    if len(args) % 2 or set(options) - {"--cli", "--book"}:
        print(f"usage: {sys.argv[0]} [--cli FACTORTOPY_BINARY] [--book BOOK_DIR]", file=sys.stderr)
        return 2
    errors: list[str] = []
    check_links(errors)
    check_summary(errors)
    n_citations = check_citations(errors)
    n_flags = check_cli(options["--cli"], errors) if "--cli" in options else 0
    n_book = check_book(Path(options["--book"]), errors) if "--book" in options else 0
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"docs check: {len(errors)} problem(s)", file=sys.stderr)
        return 1
    print(
        f"docs check: links and anchors of {len(PAGES)} pages, {n_citations} DESIGN citations, "
        f"{n_flags} CLI flags, {n_book} links in the rendered book: all resolve"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
