"""An import inside a function says why it is there (the architecture's rule).

A function-local import is only for an optional heavy dependency (to keep the CLI's start-up
fast) or to break an import cycle, and carries a one-line reason: a comment at the end of the
import's line(s), or a comment line directly above it or above its block of consecutive imports
(statements one after another; blank lines between isort's groups do not end a block), e.g. ``# lazy: pandas/pyarrow load only for commands that read results (CLI start-up)`` or
``# cycle: harness.x imports this module``. Everything else belongs at the top of the module.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import harness

PACKAGE = Path(harness.__file__).resolve().parent

# comments that instruct a tool and give no reason
_PRAGMA = re.compile(r"^\s*(noqa\b|type:|pragma:|fmt:|pylint:|pyright:|mypy:|isort:|ruff:)", re.I)


def _comments(src: str) -> tuple[dict[int, list[str]], set[int]]:
    """The comments of each line, and the lines that hold nothing but a comment."""
    by_line: dict[int, list[str]] = {}
    only: set[int] = set()
    lines = src.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            row = tok.start[0]
            by_line.setdefault(row, []).append(tok.string)
            if lines[row - 1].lstrip().startswith("#"):
                only.add(row)
    return by_line, only


def _is_reason(comment: str) -> bool:
    """A comment with words in it that are not a tool's pragma (``# noqa: F401`` is no reason)."""
    parts = [p.strip() for p in comment.split("#")]
    return any(re.search(r"[A-Za-z]{2}", p) and not _PRAGMA.match(p) for p in parts)


def _reason_above(row: int, by_line: dict[int, list[str]], only: set[int]) -> bool:
    """A reason in the run of comment-only lines that ends directly above ``row``."""
    row -= 1
    while row in only:
        if any(_is_reason(c) for c in by_line[row]):
            return True
        row -= 1
    return False


def _local_import_blocks(tree: ast.AST) -> list[list[ast.Import | ast.ImportFrom]]:
    """Runs of consecutive import statements in the bodies of functions (nested ones too)."""
    blocks: list[list[ast.Import | ast.ImportFrom]] = []
    seen: set[int] = set()
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            for field in ("body", "orelse", "finalbody", "handlers"):
                stmts = getattr(node, field, None)
                if not isinstance(stmts, list):
                    continue
                run: list[ast.Import | ast.ImportFrom] = []
                for stmt in [*stmts, None]:
                    if isinstance(stmt, ast.Import | ast.ImportFrom):
                        run.append(stmt)
                        continue
                    if run and id(run[0]) not in seen:
                        seen.update(id(s) for s in run)
                        blocks.append(run)
                    run = []
    return blocks


def unexplained_imports(path: Path, src: str | None = None) -> list[int]:
    """Lines of the function-local imports in ``path`` that give no reason."""
    src = path.read_text() if src is None else src
    by_line, only = _comments(src)
    bad: list[int] = []
    for block in _local_import_blocks(ast.parse(src, str(path))):
        covered = False  # a comment line above an import covers it and the rest of its block
        for stmt in block:
            covered = covered or _reason_above(stmt.lineno, by_line, only)
            end = stmt.end_lineno or stmt.lineno
            own = any(_is_reason(c) for row in range(stmt.lineno, end + 1) for c in by_line.get(row, []))
            if not (own or covered):
                bad.append(stmt.lineno)
    return sorted(bad)


def test_every_function_local_import_in_harness_gives_a_reason() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line in unexplained_imports(path)
    ]
    assert not found, (
        f"{len(found)} function-local import(s) without a reason: move each to the top of its module, "
        "or say why it is local ('# lazy: ...' for a heavy dependency or the CLI's start-up, "
        "'# cycle: ...' for an import cycle):\n  " + "\n  ".join(found)
    )


def test_the_check_finds_an_import_without_a_reason_and_accepts_the_reasons() -> None:
    src = """
import os  # module level: not checked


def f():
    import json
    x = 1
    import difflib  # noqa: F401
    # lazy: pandas loads only when results are read
    import pandas
    import pyarrow

    import numpy
    from a import (  # cycle: a imports this module
        b,
    )
    # a plain note
    # lazy: the reason may be on any line of the comment above
    import scipy
    if x:
        import yaml
    return 1


class C:
    def m(self):
        def inner():
            import docker  # lazy: the Docker SDK only for this engine

            import jinja2
        return inner
"""
    # numpy and scipy: the comment above pandas covers its block (blank lines do not end a block, as
    # isort separates the groups of one block); yaml: its block is the body of the if
    assert unexplained_imports(Path("t.py"), src) == [6, 8, 21, 30]
