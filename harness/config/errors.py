"""Turn pydantic validation errors into one clear line naming file and field."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from harness.errors import InputError


def field_path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def first_error(exc: ValidationError, file: str, model: type[BaseModel] | None = None) -> InputError:
    """The first validation error as an InputError (file, field, reason)."""
    errs = exc.errors()
    err = errs[0]
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    path = field_path(loc)
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "extra_forbidden":
        name = str(loc[-1]) if loc else "?"
        known = _known_fields(model, loc[:-1]) if model else []
        hint = difflib.get_close_matches(name, known, n=1)
        msg = "unknown field" + (f" (did you mean {hint[0]!r}?)" if hint else "")
    if len(errs) > 1:
        msg += f" (and {len(errs) - 1} more error{'s' if len(errs) > 2 else ''})"
    return InputError(file, path or None, msg)


def _known_fields(model: type[BaseModel] | None, loc: list[Any]) -> list[str]:
    cur: Any = model
    for part in loc:
        if cur is None or isinstance(part, int):
            continue
        field = None
        for name, f in cur.model_fields.items():
            if part in (name, f.alias):
                field = f
                break
        if field is None:
            return []
        ann = field.annotation
        cur = _model_in(ann)
    if cur is None:
        return []
    return [f.alias or n for n, f in cur.model_fields.items()]


def _model_in(ann: Any) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        m = _model_in(arg)
        if m is not None:
            return m
    return None


def load_yaml_documents(path: str | Path) -> list[Any]:
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise InputError(str(p), None, "file not found") from None
    except OSError as exc:
        raise InputError(str(p), None, f"cannot read: {exc.strerror}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(str(p), None, f"invalid YAML: {where}{problem}") from None
    if not docs:
        raise InputError(str(p), None, "empty YAML file")
    return docs


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    docs = load_yaml_documents(path)
    if len(docs) != 1:
        raise InputError(str(path), None, f"expected one YAML document, found {len(docs)}")
    doc = docs[0]
    if not isinstance(doc, dict):
        raise InputError(str(path), None, f"expected a mapping at the top level, found {type(doc).__name__}")
    return doc
