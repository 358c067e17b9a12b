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
    path, msg = _one_error(errs[0], model)
    if len(errs) > 1:
        msg += f" (and {len(errs) - 1} more error{'s' if len(errs) > 2 else ''})"
    return InputError(file, path or None, msg)


def all_errors(exc: ValidationError, model: type[BaseModel] | None = None) -> list[tuple[str | None, str]]:
    """Every validation error as (field path, reason)."""
    out: list[tuple[str | None, str]] = []
    for err in exc.errors():
        path, msg = _one_error(err, model)
        out.append((path or None, msg))
    return out


def _one_error(err: Any, model: type[BaseModel] | None) -> tuple[str, str]:
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
    return path, msg


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


class NoAliasLoader(yaml.SafeLoader):
    """A safe loader that refuses aliases (``*name``, ``<<: *name``).

    An alias is a reference, so a few nested anchors expand into an exponentially large
    structure when the document is turned into Python objects (a "billion laughs" bomb:
    a passthrough kubelet field with nine levels of aliases made a run allocate 1.2 GB and
    die with MemoryError). No file of the harness needs them; each key is written out.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases are not allowed (*{event.anchor})", event.start_mark
            )
        return super().compose_node(parent, index)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` without aliases (see :class:`NoAliasLoader`)."""
    return yaml.load(text, Loader=NoAliasLoader)


def safe_load_all(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=NoAliasLoader))


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: where, and what."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return f"invalid YAML: {where}{problem}"


def read_text(path: str | Path) -> str:
    """A file's text as UTF-8; every failure is one InputError naming the file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise InputError(str(p), None, "file not found") from None
    except IsADirectoryError:
        raise InputError(str(p), None, "is a directory, not a file") from None
    except OSError as exc:
        raise InputError(str(p), None, f"cannot read: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(
            str(p), None, f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at line {line} (offset {exc.start})"
        ) from None


def load_yaml_text(path: str | Path) -> Any:
    """One YAML document of a file (None if empty), safely: no aliases, UTF-8, one-line errors."""
    try:
        return safe_load(read_text(path))
    except yaml.YAMLError as exc:
        raise InputError(str(path), None, yaml_problem(exc)) from None


def load_yaml_documents(path: str | Path) -> list[Any]:
    p = Path(path)
    text = read_text(p)
    try:
        docs = [d for d in safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise InputError(str(p), None, yaml_problem(exc)) from None
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
