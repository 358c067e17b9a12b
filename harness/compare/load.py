"""Load what a comparison needs from a group of runs, and nothing more.

Per run: ``run.json`` (host deviations), ``verdicts.parquet`` (observed outcome, victim, time
of the event, verdict; a few rows) and, for cgroup values, two columns of ``samples.parquet``
(``key``, ``limit``) reduced to one value per cgroup inside Arrow, plus ``cgroups.parquet``
when a run records observed cgroup files (S8 conformance). Samples' memory columns are never
read. Runs are read in parallel threads (Parquet decoding releases the GIL).
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harness.catalog import RunInfo
from harness.errors import InputError

VERDICT_COLUMNS = (
    "scenario",
    "workload",
    "predicted",
    "observed",
    "observed_t_s",
    "predicted_earliest_s",
    "predicted_latest_s",
    "time_ok",
    "victim_observed",
    "passed",
    "eviction_stats_age_s",
)
# accepted spellings of the columns of an observed cgroup values table (cgroups.parquet)
_CG_PATH = ("path", "cgroup", "key")
_CG_FILE = ("file", "name", "field")
_CG_VALUE = ("observed", "value")


@dataclass
class Group:
    """The runs of one side of a comparison, as tables with a ``run`` column."""

    label: str
    runs: list[RunInfo]
    verdicts: pd.DataFrame
    # run, scenario, cgroup, file, value (text); for sampled limits also expected (the run's
    # model) and host_only (the value is that model's, and the same in every kubelet version)
    cgroups: pd.DataFrame
    deviations: dict[str, set[str]]  # run id -> host deviations
    warnings: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.runs]


def _pick(names: list[str], options: tuple[str, ...]) -> str | None:
    return next((o for o in options if o in names), None)


def _verdicts(info: RunInfo) -> tuple[pd.DataFrame, list[str]]:
    d = info.dir
    p = d / "verdicts.parquet"
    warnings: list[str] = []
    if p.exists():
        try:
            names = pq.read_schema(p).names
            cols = [c for c in VERDICT_COLUMNS if c in names]
            df = pq.read_table(p, columns=cols).to_pandas()
        except Exception as exc:
            raise InputError(str(p), None, f"unreadable table: {exc}") from None
        return df, warnings
    # no verdicts (e.g. interrupted before the end): observed outcomes only
    o = d / "outcomes.parquet"
    if o.exists():
        df = pd.read_parquet(o, columns=["scenario", "workload", "outcome", "victim"])
        df = df.rename(columns={"outcome": "observed", "victim": "victim_observed"})
        warnings.append(f"{info.id}: no verdicts.parquet; outcomes only (no times, no verdicts)")
        return df, warnings
    warnings.append(f"{info.id}: neither verdicts.parquet nor outcomes.parquet; run ignored for outcomes")
    return pd.DataFrame(columns=list(VERDICT_COLUMNS)), warnings


def _verdict_deviations(info: RunInfo) -> set[str]:
    p = info.dir / "verdicts.parquet"
    if not p.exists() or "host_deviations" not in pq.read_schema(p).names:
        return set()
    out: set[str] = set()
    for cell in pq.read_table(p, columns=["host_deviations"]).column(0).to_pylist():
        if isinstance(cell, str) and cell.startswith("["):
            try:
                out |= {str(x) for x in json.loads(cell)}
            except ValueError:
                out.add(cell)
        elif isinstance(cell, list):
            out |= {str(x) for x in cell}
    return out


def _limits(info: RunInfo) -> pd.DataFrame:
    """One memory limit per sampled cgroup, reduced in Arrow (min and max over the run)."""
    p = info.dir / "samples.parquet"
    if not p.exists():
        return pd.DataFrame()
    names = pq.read_schema(p).names
    if "key" not in names or "limit" not in names:
        return pd.DataFrame()
    t = pq.read_table(p, columns=["key", "limit"], read_dictionary=["key"])
    t = t.filter(pc.is_valid(t["key"]))
    agg = t.group_by("key").aggregate([("limit", "min"), ("limit", "max"), ("limit", "count")])
    rows = []
    for key, lo, hi, n in zip(
        agg["key"].to_pylist(),
        agg["limit_min"].to_pylist(),
        agg["limit_max"].to_pylist(),
        agg["limit_count"].to_pylist(),
        strict=True,
    ):
        key = str(key)
        if "/" not in key:
            continue  # the host's /proc/meminfo row
        scenario, _, cg = key.partition("/")
        if not n:
            value = "max"  # no limit (unlimited)
        else:
            value = str(lo) if lo == hi else f"{lo}..{hi}"
        rows.append({"scenario": scenario, "cgroup": cg, "file": "memory limit", "value": value})
    return pd.DataFrame(rows)


_POD_UID = re.compile(r"pod[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}")
_CONTAINER_ID = re.compile(r"\b[0-9a-f]{64}\b")


def cgroup_subject(path: str, workload: Any = None) -> str:
    """A cgroup path that is the same in every run: pod UIDs and container ids replaced.

    >>> cgroup_subject("kubepods/pod8c636f80-d933-400b-950d-967f31ade9bb/guaranteed", "guaranteed")
    'kubepods/pod<uid>/guaranteed [guaranteed]'
    """
    out = _CONTAINER_ID.sub("<container>", _POD_UID.sub("pod<uid>", str(path)))
    if isinstance(workload, str) and workload:
        out += f" [{workload}]"
    return out


def _observed_cgroups(info: RunInfo) -> tuple[pd.DataFrame, list[str]]:
    """Observed cgroup files (``cgroups.parquet``, written by the S8 conformance scenario)."""
    p = info.dir / "cgroups.parquet"
    if not p.exists():
        return pd.DataFrame(), []
    names = pq.read_schema(p).names
    path_col, file_col, value_col = _pick(names, _CG_PATH), _pick(names, _CG_FILE), _pick(names, _CG_VALUE)
    if not (path_col and file_col and value_col):
        return pd.DataFrame(), [f"{p}: columns {names} not understood (want path, file, observed); skipped"]
    cols = [c for c in ("scenario", path_col, file_col, value_col, "workload") if c in names]
    df = pq.read_table(p, columns=cols).to_pandas()
    workload = df["workload"] if "workload" in df else pd.Series([None] * len(df), index=df.index)
    out = pd.DataFrame(
        {
            "scenario": df["scenario"].astype(str) if "scenario" in df else "",
            "cgroup": [cgroup_subject(c, w) for c, w in zip(df[path_col], workload, strict=True)],
            "file": df[file_col].astype(str),
            "value": df[value_col].astype(str),
        }
    )
    return out, []


def _model_limits(info: RunInfo) -> dict[tuple[str, str], tuple[str, bool, str | None]]:
    """(scenario, sampled cgroup) -> the model's memory limit as the run recorded it ("max" for
    none), whether no kubelet version changes it (event ``expected_limits``,
    ``model.layout.sampled_limits``) and the value the harness's own ceiling writes there (None:
    none recorded; runs before 2026-12-07 recorded two fields); empty for runs older than that
    event."""
    p = info.dir / "events.parquet"
    if not p.exists() or not {"kind", "scenario", "detail"} <= set(pq.read_schema(p).names):
        return {}
    t = pq.read_table(p, columns=["kind", "scenario", "detail"], filters=[("kind", "==", "expected_limits")])
    out: dict[tuple[str, str], tuple[str, bool, str | None]] = {}
    for sc, detail in zip(t["scenario"].to_pylist(), t["detail"].to_pylist(), strict=True):
        try:
            limits = json.loads(detail)
            for name, fields in limits.items():
                value, same, own = (*fields, None)[:3]
                out[(str(sc), str(name))] = (
                    "max" if value is None else str(int(value)),
                    bool(same),
                    None if own is None else str(int(own)),
                )
        except (TypeError, ValueError):
            continue
    return out


def _load_one(info: RunInfo, cgroups: bool) -> dict[str, Any]:
    verdicts, warnings = _verdicts(info)
    verdicts = verdicts.assign(run=info.id)
    devs = set(info.host_deviations) | _verdict_deviations(info)
    cg = pd.DataFrame()
    if cgroups:
        observed, w = _observed_cgroups(info)
        warnings += w
        limits = _limits(info)
        if not limits.empty:
            model = _model_limits(info)
            seen = [model.get((sc, c)) for sc, c in zip(limits["scenario"], limits["cgroup"], strict=True)]
            limits["expected"] = [None if m is None else m[0] for m in seen]
            # the run's value is its own model's, and no kubelet version changes that value; or it
            # is the harness's own ceiling on this host (never the kubelet's)
            limits["host_only"] = [
                m is not None and ((m[1] and v == m[0]) or (m[2] is not None and v == m[2]))
                for v, m in zip(limits["value"], seen, strict=True)
            ]
        parts = [x for x in (limits, observed) if not x.empty]
        if parts:
            cg = pd.concat(parts, ignore_index=True).assign(run=info.id)
    return {"verdicts": verdicts, "cgroups": cg, "deviations": devs, "warnings": warnings}


def load_group(label: str, runs: list[RunInfo], *, cgroups: bool = True, workers: int = 8) -> Group:
    """Read a group of runs (in parallel); raises InputError when a table is unreadable."""
    if not runs:
        raise InputError(label, None, "no runs selected")
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(runs)))) as pool:
        parts = list(pool.map(lambda r: _load_one(r, cgroups), runs))
    verdicts = [p["verdicts"] for p in parts if not p["verdicts"].empty]
    cgs = [p["cgroups"] for p in parts if not p["cgroups"].empty]
    vdf = (
        pd.concat(verdicts, ignore_index=True)
        if verdicts
        else pd.DataFrame(columns=[*VERDICT_COLUMNS, "run"])
    )
    cdf = (
        pd.concat(cgs, ignore_index=True)
        if cgs
        else pd.DataFrame(columns=["scenario", "cgroup", "file", "value", "expected", "host_only", "run"])
    )
    return Group(
        label=label,
        runs=runs,
        verdicts=vdf,
        cgroups=cdf,
        deviations={r.id: p["deviations"] for r, p in zip(runs, parts, strict=True)},
        warnings=[w for p in parts for w in p["warnings"]],
    )
