"""The figures of one run that leave the harness: read once from the run folder, as plain data.

Exports (OpenMetrics, ``harness runs show --json``) are built from this, never from the Parquet
tables directly, so every exporter shows the same numbers:

* the run: id, status, start, duration, the host facts as labels (``host``, ``kubelet_version``,
  ``kernel``, ``cgroup_version``, plus ``suite`` and ``backend``), taken from the catalog's labels
  (:func:`harness.catalog.implicit_labels`) so that a selector and a metric name a run alike;
* per scenario and workload (``verdicts.parquet``): the observed and predicted outcome, the time
  of the event in seconds since the scenario's start, the predicted window, pass/fail;
* host deviations (``run.json`` and each verdict's);
* the kubelet's stats age at each eviction (single-host runs): the ``Evicted`` event's time minus the timestamp of
  the last ``/stats/summary`` the harness recorded before it (``events.parquet``, source
  ``kubelet-stats``; the summary's ``stats_time`` is the kubelet's own time of those stats).
  Runs without a kubelet (or without recorded summaries) have none.

A lab run (``harness run --inventory``) merges every host's tables with a ``host`` column: each
workload row then carries its lab host, which replaces the controller's ``host`` label.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from harness.catalog import implicit_labels
from harness.errors import InputError

# run.json label -> metric label (Prometheus label names: [a-zA-Z_][a-zA-Z0-9_]*)
HOST_LABELS = {
    "host": "host",
    "kubelet": "kubelet_version",
    "kernel": "kernel",
    "cgroup": "cgroup_version",
    "suite": "suite",
    "backend": "backend",
}


@dataclass
class WorkloadFigures:
    scenario: str
    workload: str
    observed: str
    predicted: str
    passed: bool
    event_s: float | None  # time of the observed outcome since the scenario's start
    predicted_earliest_s: float | None
    predicted_latest_s: float | None
    victim: bool = False
    host: str = ""  # a lab run (--inventory) merges hosts: the lab host of this row


@dataclass
class EvictionFigures:
    scenario: str
    workload: str  # the workload whose pod was evicted ("" when the pod is not one of the run's)
    pod: str
    t_wall: float  # when the harness saw the Evicted event (epoch seconds)
    stats_time: str | None  # the last /stats/summary timestamp before it
    stats_age_s: float | None
    host: str = ""  # the lab host (merged lab runs)


@dataclass
class RunFigures:
    run_id: str
    status: str
    started: str
    finished: str | None
    labels: dict[str, str]  # metric label -> value (HOST_LABELS)
    verdicts_passed: int
    verdicts_failed: int
    workloads: list[WorkloadFigures] = field(default_factory=list)
    deviations: list[str] = field(default_factory=list)
    evictions: list[EvictionFigures] = field(default_factory=list)
    explicit_labels: dict[str, str] = field(default_factory=dict)

    @property
    def start_epoch(self) -> float | None:
        return _epoch(self.started)

    @property
    def duration_s(self) -> float | None:
        a, b = _epoch(self.started), _epoch(self.finished)
        return None if a is None or b is None else b - a

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["duration_s"] = self.duration_s
        return d


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _json_list(cell: Any) -> list[str]:
    if isinstance(cell, str) and cell.startswith("["):
        try:
            return [str(x) for x in json.loads(cell)]
        except ValueError:
            return [cell]
    if isinstance(cell, list | tuple):
        return [str(x) for x in cell]
    return []


def _read(run_dir: Path, name: str) -> pd.DataFrame:
    p = run_dir / f"{name}.parquet"
    if not p.exists():
        return pd.DataFrame()
    try:
        return pd.read_parquet(p)
    except Exception as exc:
        raise InputError(str(p), None, f"unreadable table: {exc}") from None


def run_figures(run_dir: str | Path) -> RunFigures:
    """Read a run folder into :class:`RunFigures`; a clear error when it is not a run."""
    d = Path(run_dir)
    p = d / "run.json"
    try:
        meta = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(str(d), None, "not a run folder (no run.json)") from None
    except (OSError, ValueError) as exc:
        raise InputError(str(p), None, f"unreadable run.json: {exc}") from None
    derived = implicit_labels(meta)
    labels = {metric: derived.get(key, "") for key, metric in HOST_LABELS.items()}
    v = _read(d, "verdicts")
    workloads: list[WorkloadFigures] = []
    deviations = {str(x) for x in meta.get("host_deviations") or []}
    for r in v.to_dict("records") if not v.empty else []:
        workloads.append(
            WorkloadFigures(
                scenario=str(r.get("scenario")),
                workload=str(r.get("workload")),
                observed=str(r.get("observed")),
                predicted=str(r.get("predicted")),
                passed=bool(r.get("passed")),
                event_s=_num(r.get("observed_t_s")),
                predicted_earliest_s=_num(r.get("predicted_earliest_s")),
                predicted_latest_s=_num(r.get("predicted_latest_s")),
                victim=bool(r.get("victim_observed") or False),
                host=str(r.get("host") or ""),
            )
        )
        deviations |= set(_json_list(r.get("host_deviations")))
    passed = sum(w.passed for w in workloads)
    explicit = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
    assert isinstance(explicit, dict)
    return RunFigures(
        run_id=str(meta.get("run_id") or d.name),
        status=str(meta.get("status") or "unknown"),
        started=str(meta.get("started") or ""),
        finished=meta.get("finished"),
        labels=labels,
        verdicts_passed=passed,
        verdicts_failed=len(workloads) - passed,
        workloads=workloads,
        deviations=sorted(deviations),
        evictions=_evictions_per_host(_read(d, "events"), {(w.scenario, w.workload) for w in workloads}),
        explicit_labels={str(k): str(x) for k, x in explicit.items()},
    )


def _evictions_per_host(events: pd.DataFrame, workloads: set[tuple[str, str]]) -> list[EvictionFigures]:
    """A merged lab run's events: each host's own scenario starts and stats summaries."""
    if events.empty or "host" not in events:
        return evictions(events, workloads)
    out = []
    for host, sub in events.groupby("host", sort=True):
        for e in evictions(sub, workloads):
            e.host = str(host)
            out.append(e)
    return out


def evictions(events: pd.DataFrame, workloads: set[tuple[str, str]]) -> list[EvictionFigures]:
    """Each kubelet ``Evicted`` event with the age of the kubelet's stats at that moment.

    The scenario is the last ``scenario_start`` before the event; the workload is the one whose
    pod name (``<scenario>-<workload>-...``) the event's object names.
    """
    if events.empty or "kind" not in events:
        return []
    ev = events.sort_values("t_mono" if "t_mono" in events else "t_wall")
    starts = ev[(ev["source"] == "harness") & (ev["kind"] == "scenario_start")]
    summaries = ev[(ev["source"] == "kubelet-stats") & (ev["kind"] == "summary")]
    if "stats_time" in summaries:
        summaries = summaries[summaries["stats_time"].notna()]
    out: list[EvictionFigures] = []
    for r in ev[(ev["source"] == "kubelet") & (ev["kind"] == "Evicted")].to_dict("records"):
        t = _num(r.get("t_wall"))
        if t is None:
            continue
        before = starts[starts["t_wall"] <= t]
        scenario = str(before["scenario"].iloc[-1]) if len(before) else ""
        obj = str(r.get("object") or r.get("pod") or "")
        pod = obj.split("/", 1)[1] if "/" in obj else obj
        workload = ""
        for sc, w in sorted(workloads, key=lambda k: -len(k[1])):
            if sc == scenario and pod.startswith(f"{sc}-{w}-"):
                workload = w
                break
        stats_time, age = None, None
        if "stats_time" in summaries:
            # the kubelet's stats time, not when the harness fetched the summary
            stamps = [(_epoch(s), s) for s in summaries["stats_time"].astype(str)]
            prior = [(e, s) for e, s in stamps if e is not None and e <= t]
            if prior:
                e, stats_time = max(prior)
                age = t - e
        out.append(EvictionFigures(scenario, workload, pod, t, stats_time, age))
    return out
