"""The catalog of runs under a results folder, run labels, and run selection.

Every run directory ``<results>/<run-id>/`` holds a ``run.json``; the catalog reads only
that file (never the Parquet tables), so listing hundreds of runs is fast. A cache,
``<results>/.catalog.json``, keeps what was extracted from each ``run.json`` with its
mtime and size; an entry is re-read when either changed, and a missing, unreadable or
unwritable cache only costs time, never correctness.

Labels are explicit (``harness run --label key=value``, stored in ``run.json`` under
``labels``) or derived from ``run.json`` (:func:`implicit_labels`): ``run``, ``suite``,
``backend``, ``host``, ``kernel``, ``cgroup``, ``kubelet``, ``date``, ``started``, ``git``,
``status``, ``harness`` and, when recorded, engine versions (``docker``, ``containerd``).
An explicit label wins over a derived one of the same name.

A *selector* picks runs (see :func:`select_runs`)::

    kubelet=1.33.4,backend=docker      every filter must hold (globs allowed: kubelet=1.33.*)
    date>=2026-11-01,host!=lab-7       comparisons are version-aware (1.9 < 1.10)
    backend=process,last:5             the five most recent runs that pass the filters
    20261123T182827Z-local-process-5fbf,results/x/20261124T010203Z-local-docker-0a1b
                                       explicit run ids (or unique prefixes) and run folders
    /srv/nightly/2026-11-23            a folder of runs: all of them

>>> parse_selector("kubelet=1.33.*,last:2").filters[0].key
'kubelet'
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.results import atomic_write

INDEX_NAME = ".catalog.json"
INDEX_VERSION = 1

_LABEL_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$")
_TERM = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_.\-/]*)\s*(?P<op>!=|>=|<=|=|>|<|~)\s*(?P<value>.*)$")
_LIMIT = re.compile(r"^(?P<which>last|first):(?P<n>\d+)$")


# ---------------------------------------------------------------------------------------------
# labels


def parse_labels(items: Iterable[str], source: str = "--label") -> dict[str, str]:
    """``["kubelet=1.33.4", "lab=nightly"]`` -> a dict; errors name the bad item.

    >>> parse_labels(["kubelet=1.33.4", "lab=nightly"])
    {'kubelet': '1.33.4', 'lab': 'nightly'}
    """
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise InputError(source, None, f"{item!r}: expected KEY=VALUE")
        if not _LABEL_KEY.match(key):
            raise InputError(
                source, None, f"{item!r}: a label key starts with a letter or '_' and holds [A-Za-z0-9_.-/]"
            )
        if not value or "," in value:
            raise InputError(source, None, f"{item!r}: the value must be non-empty and contain no ','")
        out[key] = value
    return out


def _short_git(rev: str | None) -> str | None:
    if not rev:
        return None
    dirty = rev.endswith("-dirty")
    return rev.removesuffix("-dirty")[:12] + ("-dirty" if dirty else "")


def implicit_labels(meta: dict[str, Any]) -> dict[str, str]:
    """Labels derived from a ``run.json`` (see the module docstring)."""
    host = meta.get("host") if isinstance(meta.get("host"), dict) else {}
    assert isinstance(host, dict)
    out: dict[str, Any] = {
        "run": meta.get("run_id"),
        "suite": meta.get("suite"),
        "backend": meta.get("backend"),
        "status": meta.get("status"),
        "harness": meta.get("harness_version"),
        "git": _short_git(meta.get("git_revision")),
        "host": host.get("name"),
        "kernel": host.get("kernel"),
    }
    if host.get("cgroupVersion") is not None:
        out["cgroup"] = f"v{host['cgroupVersion']}"
    started = str(meta.get("started") or "")
    if started:
        out["started"] = started
        out["date"] = started[:10]
    # the kubelet a real node runs (kubernetes backend) wins over the modelled version
    kubelet = meta.get("kubelet_version") or host.get("kubeletVersion")
    engine = host.get("engine")
    if isinstance(engine, dict):
        kubelet = kubelet or engine.get("kubelet")
        for k in ("docker", "containerd", "runc"):
            if engine.get(k):
                out[k] = engine[k]
    if not kubelet and isinstance(meta.get("node"), dict):
        versions = sorted(
            {str(n.get("kubeletVersion")) for n in meta["node"].values() if isinstance(n, dict)} - {"None"}
        )
        kubelet = "+".join(versions) if versions else None
    # "v1.33.4" (a real kubelet's --version) and "1.33.4" (a suite) select alike
    out["kubelet"] = str(kubelet).removeprefix("v") if kubelet else None
    return {k: str(v) for k, v in out.items() if v not in (None, "")}


# ---------------------------------------------------------------------------------------------
# runs


@dataclass
class RunInfo:
    """What the catalog knows about one run (from its run.json only)."""

    id: str
    path: str
    status: str
    started: str
    finished: str | None
    labels: dict[str, str]
    explicit_labels: dict[str, str] = field(default_factory=dict)
    scenarios: list[str] = field(default_factory=list)
    verdicts_passed: int | None = None
    verdicts_total: int | None = None
    host_deviations: list[str] = field(default_factory=list)

    @property
    def dir(self) -> Path:
        return Path(self.path)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_meta(cls, meta: dict[str, Any], path: Path) -> RunInfo:
        explicit = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
        assert isinstance(explicit, dict)
        labels = implicit_labels(meta)
        labels.update({str(k): str(v) for k, v in explicit.items()})
        return cls(
            id=str(meta.get("run_id") or path.name),
            path=str(path.resolve()),
            status=str(meta.get("status") or "unknown"),
            started=str(meta.get("started") or ""),
            finished=meta.get("finished"),
            labels=labels,
            explicit_labels={str(k): str(v) for k, v in explicit.items()},
            scenarios=[str(s) for s in meta.get("scenarios") or []],
            verdicts_passed=meta.get("verdicts_passed"),
            verdicts_total=meta.get("verdicts_total"),
            host_deviations=[str(d) for d in meta.get("host_deviations") or []],
        )


def read_run_info(run_dir: Path) -> RunInfo:
    """The RunInfo of one run folder; a clear error when run.json is missing or broken."""
    p = Path(run_dir) / "run.json"
    try:
        meta = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(str(run_dir), None, "not a run folder (no run.json)") from None
    except (OSError, ValueError) as exc:
        raise InputError(str(p), None, f"unreadable run.json: {exc}") from None
    if not isinstance(meta, dict):
        raise InputError(str(p), None, "run.json is not a JSON object")
    return RunInfo.from_meta(meta, Path(run_dir))


class Catalog:
    """All runs under a results folder, sorted by start time (oldest first)."""

    def __init__(self, root: str | Path, *, use_index: bool = True) -> None:
        self.root = Path(root)
        self.use_index = use_index
        self.skipped: list[str] = []  # run folders whose run.json could not be read
        self.index_rebuilt = 0  # entries (re)read from run.json in the last scan
        self._runs: list[RunInfo] | None = None
        self._running: list[str] = []  # folder names of the runs whose status is "running"

    @property
    def index_path(self) -> Path:
        return self.root / INDEX_NAME

    def runs(self) -> list[RunInfo]:
        if self._runs is None:
            self._runs = self._scan()
        return self._runs

    def running_folders(self) -> list[str]:
        """The folder names (under the root) of the runs whose status is ``running``."""
        self.runs()
        return list(self._running)

    def refresh(self) -> None:
        """Forget the last scan: the next :meth:`runs` looks at the folder again."""
        self._runs = None

    def _load_index(self) -> dict[str, Any]:
        if not self.use_index:
            return {}
        try:
            data = json.loads(self.index_path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != INDEX_VERSION:
            return {}
        entries = data.get("runs")
        return entries if isinstance(entries, dict) else {}

    def _scan(self) -> list[RunInfo]:
        if not self.root.is_dir():
            raise InputError(str(self.root), None, "results folder does not exist")
        cached = self._load_index()
        fresh: dict[str, Any] = {}
        runs: list[RunInfo] = []
        self.skipped = []
        self.index_rebuilt = 0
        self._running = []
        with os.scandir(self.root) as it:
            entries = [e for e in it if e.is_dir() and not e.name.startswith(".")]
        for e in entries:
            try:
                st = os.stat(os.path.join(e.path, "run.json"))
            except OSError:
                continue  # not a run folder
            stamp = [st.st_mtime_ns, st.st_size]
            entry = cached.get(e.name)
            info: RunInfo | None = None
            if isinstance(entry, dict) and entry.get("stamp") == stamp:
                try:
                    info = RunInfo(**entry["info"])
                    fresh[e.name] = entry  # as cached: to_dict() (asdict) of 10,000 runs takes 1.5 s
                except (TypeError, KeyError):
                    info = None
            if info is None:
                try:
                    info = read_run_info(Path(e.path))
                except InputError:
                    self.skipped.append(e.name)
                    continue
                self.index_rebuilt += 1
                fresh[e.name] = {"stamp": stamp, "info": info.to_dict()}
            if info.status == "running":
                self._running.append(e.name)
            runs.append(info)
        if self.use_index and (self.index_rebuilt or set(fresh) != set(cached)):
            self._write_index(fresh)
        runs.sort(key=lambda r: (r.started, r.id))
        return runs

    def _write_index(self, entries: dict[str, Any]) -> None:

        # a read-only results folder: the cache is an optimisation only
        with contextlib.suppress(OSError):
            atomic_write(self.index_path, json.dumps({"version": INDEX_VERSION, "runs": entries}).encode())

    def find(self, ident: str) -> RunInfo | None:
        """A run by exact id or unique id prefix; None when nothing matches."""
        runs = self.runs()
        exact = [r for r in runs if r.id == ident or Path(r.path).name == ident]
        if exact:
            return exact[0]
        pref = [r for r in runs if r.id.startswith(ident)]
        if len(pref) > 1:
            raise InputError(
                "selector", None, f"{ident!r} matches {len(pref)} runs ({pref[0].id}, {pref[1].id}, ...)"
            )
        return pref[0] if pref else None


# ---------------------------------------------------------------------------------------------
# selection


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key comparing digit runs as numbers: ``1.9 < 1.10``, ``v1 < v2``, dates in order."""
    parts = re.findall(r"\d+|[^\d]+", text)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)


@dataclass(frozen=True)
class Filter:
    key: str
    op: str
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        have = labels.get(self.key)
        if self.op == "!=":
            return have is None or not _eq(have, self.value)
        if have is None:
            return False
        if self.op == "=":
            return _eq(have, self.value)
        if self.op == "~":
            return re.search(self.value, have) is not None
        a, b = natural_key(have), natural_key(self.value)
        return {">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b}[self.op]

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"


def _eq(have: str, want: str) -> bool:
    if any(c in want for c in "*?["):
        return fnmatch.fnmatchcase(have, want)
    return have == want


@dataclass
class Selector:
    text: str
    filters: list[Filter] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)  # run ids, prefixes or paths
    limit: tuple[str, int] | None = None  # ("last"|"first", n)

    @property
    def has_status_filter(self) -> bool:
        return any(f.key == "status" for f in self.filters)


def parse_selector(text: str) -> Selector:
    """Parse a selector (module docstring); bad terms raise InputError naming the term."""
    sel = Selector(text=text)
    for raw in text.split(","):
        term = raw.strip()
        if not term or term == "all":
            continue
        m = _LIMIT.match(term)
        if m:
            if sel.limit is not None:
                raise InputError("selector", None, f"{text!r}: more than one last:N/first:N")
            n = int(m.group("n"))
            if n < 1:
                raise InputError("selector", None, f"{term!r}: N must be at least 1")
            sel.limit = (m.group("which"), n)
            continue
        if os.path.exists(term):
            sel.refs.append(term)
            continue
        m = _TERM.match(term)
        if m and m.group("value").strip() != "":
            op = m.group("op")
            if op == "~":
                try:
                    re.compile(m.group("value"))
                except re.error as exc:
                    raise InputError("selector", None, f"{term!r}: bad regular expression: {exc}") from None
            sel.filters.append(Filter(m.group("key"), op, m.group("value").strip()))
            continue
        if m or any(c in term for c in "=<>~"):
            raise InputError(
                "selector",
                None,
                f"{term!r}: expected KEY=VALUE, KEY!=VALUE, KEY>=VALUE, KEY<=VALUE, KEY>VALUE, "
                "KEY<VALUE, KEY~REGEX, last:N, first:N, a run id or a run folder",
            )
        sel.refs.append(term)
    return sel


def select_runs(
    selector: str | Selector,
    results: str | Path,
    *,
    complete_only: bool = False,
    catalog: Catalog | None = None,
) -> list[RunInfo]:
    """The runs a selector names, oldest first.

    Explicit refs (run ids, unique id prefixes, run folders, folders of runs) form the base set,
    otherwise every run of the catalog of ``results``. Filters then apply (all must hold), then
    ``last:N``/``first:N``. With ``complete_only``, runs found by filters only (not named
    explicitly) must have status ``complete`` unless the selector filters on ``status``.
    Raises InputError when a ref matches nothing; returns [] when filters match nothing.
    """
    sel = parse_selector(selector) if isinstance(selector, str) else selector
    explicit: list[RunInfo] = []
    pool: list[RunInfo] = []
    cat = catalog
    for ref in sel.refs:
        p = Path(ref)
        if (p / "run.json").is_file():
            explicit.append(read_run_info(p))
            continue
        if p.is_dir():
            pool += Catalog(p).runs()
            continue
        if cat is None:
            cat = Catalog(results)
        info = cat.find(ref) if Path(results).is_dir() else None
        if info is None:
            raise InputError("selector", None, f"{ref!r} is neither a run folder nor a run id in {results}")
        explicit.append(info)
    if not sel.refs:
        if cat is None:
            cat = Catalog(results)
        pool = cat.runs()
    if complete_only and not sel.has_status_filter:
        pool = [r for r in pool if r.status == "complete"]
    chosen = {r.path: r for r in explicit}
    for r in pool:
        chosen.setdefault(r.path, r)
    runs = sorted(chosen.values(), key=lambda r: (r.started, r.id))
    runs = [r for r in runs if all(f.matches(r.labels) for f in sel.filters)]
    if sel.limit:
        which, n = sel.limit
        runs = runs[-n:] if which == "last" else runs[:n]
    return runs


def label_summary(runs: Sequence[RunInfo], keys: Sequence[str] | None = None) -> dict[str, list[str]]:
    """label -> its distinct values over the runs (to explain an empty selection)."""
    out: dict[str, set[str]] = {}
    for r in runs:
        for k, v in r.labels.items():
            if keys is None or k in keys:
                out.setdefault(k, set()).add(v)
    return {k: sorted(v, key=natural_key) for k, v in sorted(out.items())}
