"""What a report shows, extracted from one run folder.

A run holds several scenarios on one shared clock (``time.monotonic`` of the harness, and
the kernel's clock for ``oom-kill`` records). Each scenario is cut out of the run's tables
and put on its own time axis, t = 0 at the scenario's start as the verdicts use it (the
model's t = 0), so that predicted windows and observed events line up.

Events are free-form (``source``/``kind`` strings): the process and Docker backends write
``kmsg``/``memcg``/``runtime``/``workload``/``docker``/``harness`` events, a real kubelet adds
``kubelet``/``k8s`` ones (``Evicted``, ``EvictionThresholdMet``, node conditions, loop ticks).
:func:`categorize` maps any of them onto a few plot categories; unknown ones become
``other`` and are still drawn and listed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.config.kubelet import load_profile, parse_profile
from harness.config.node import NodeFacts, parse_facts
from harness.errors import InputError
from harness.model.node import node_allocatable
from harness.model.thresholds import MEMORY_AVAILABLE, parse_thresholds

MiB = 1 << 20

# plot categories of events, in drawing order
CATEGORIES = ("oom_kill", "eviction", "pressure", "admission", "kubelet_tick", "runtime_oom", "exit", "other")
# events that are bookkeeping, not behaviour: listed in the table, not drawn
_QUIET = {("harness", "scenario_start"), ("harness", "scenario_end")}


def categorize(source: str, kind: str, reason: str | None = None, condition: str | None = None) -> str | None:
    """Map an event onto a plot category; None for events not drawn (start, bookkeeping).

    ``reason`` is the event's ``reason`` field when it has one (the kubernetes backend's
    ``pod_phase``/``container_terminated`` events carry ``Evicted``/``OOMKilled`` there),
    ``condition`` the node condition of a ``node_condition`` event (only memory ones are drawn).

    >>> categorize("kmsg", "oom_kill"), categorize("kubelet", "Evicted"), categorize("kubelet-stats", "summary")
    ('oom_kill', 'eviction', 'kubelet_tick')
    """
    s, k = (source or "").lower(), (kind or "").lower()
    r = (reason or "").lower()
    if (s, k) in _QUIET:
        return None
    if condition and "memory" not in condition.lower():
        return None  # DiskPressure, PIDPressure, Ready: not what this harness stresses
    if r == "evicted" or ("evict" in k and not re.search(r"threshold|signal", k)):
        return "eviction"
    if re.search(r"threshold|pressure|sufficient|condition", k):
        return "pressure"
    if k.startswith("outof") or "admission" in k or r in ("outofmemory", "topologyaffinityerror"):
        return "admission"
    if "oom" in k and s in ("docker", "containerd", "runtime", "cri", "kubelet", "k8s"):
        # notices of a kill the kernel made (on cgroup v1 Docker sends one to every container
        # below an OOMing cgroup; the kubelet's SystemOOM): the kernel's own record is "oom_kill"
        return "runtime_oom"
    if re.search(r"oom.?kill", k):
        return "oom_kill"
    if s.startswith("kubelet") and re.search(r"tick|loop|sync|housekeeping|summary|stats", k):
        return "kubelet_tick"
    if k in ("exit", "die", "exited", "killed", "stopped", "terminated", "container_terminated"):
        return "exit"
    if k in (
        "start",
        "launched",
        "started",
        "created",
        "scheduled",
        "pulled",
        "max",
        "oom_counter",
        "pod_created",
        "pod_phase",
        "oom_score_adj_set",
    ):
        return None
    return "other"


@dataclass
class Lines:
    """Horizontal reference levels of one scenario's node, in bytes (None = unknown)."""

    capacity: int | None = None
    allocatable: int | None = None
    kubepods_limit: int | None = None
    # (label, level of memory.available below which the kubelet evicts, hard?)
    thresholds: list[tuple[str, int, bool]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Series:
    key: str  # samples key, e.g. "s1-container-limit/leaker"
    name: str  # "node", "kubepods" or the workload
    t: list[float]
    working_set: list[float]
    usage: list[float]
    limit: int | None


@dataclass
class Event:
    t: float | None  # seconds since the scenario's t = 0
    source: str
    kind: str
    category: str | None
    workload: str | None
    text: str


@dataclass
class ScenarioData:
    name: str
    t0: float | None  # monotonic time of the scenario's t = 0
    t0_from: str  # how t0 was found
    series: dict[str, Series]
    events: list[Event]
    verdicts: list[dict[str, Any]]
    predictions: list[dict[str, Any]]
    outcomes: list[dict[str, Any]]
    lines: Lines
    workloads: list[str]

    @property
    def duration(self) -> float:
        ends = [s.t[-1] for s in self.series.values() if s.t]
        ends += [e.t for e in self.events if e.t is not None]
        return max(ends) if ends else 0.0


@dataclass
class RunData:
    dir: Path
    meta: dict[str, Any]
    scenarios: list[ScenarioData]
    missing: list[str]  # tables the run does not have


def _read(run_dir: Path, name: str) -> pd.DataFrame:
    p = run_dir / f"{name}.parquet"
    if not p.exists():
        return pd.DataFrame()
    try:
        return pd.read_parquet(p)
    except Exception as exc:
        raise InputError(str(p), None, f"unreadable table: {exc}") from None


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain dicts: NA -> None, JSON-encoded list/dict cells decoded."""
    out = []
    for row in df.to_dict("records"):
        clean: dict[str, Any] = {}
        for k, v in row.items():
            if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT:
                clean[str(k)] = None
            elif isinstance(v, str) and v[:1] in "[{":
                try:
                    clean[str(k)] = json.loads(v)
                except ValueError:
                    clean[str(k)] = v
            elif hasattr(v, "item"):
                clean[str(k)] = v.item()
            else:
                clean[str(k)] = v
        out.append(clean)
    return out


def load_run_data(run_dir: str | Path) -> RunData:
    """Read one run folder and cut it into scenarios (raises InputError for a non-run folder)."""
    d = Path(run_dir)
    try:
        meta = json.loads((d / "run.json").read_text())
    except FileNotFoundError:
        raise InputError(str(d), None, "not a run folder (no run.json)") from None
    except (OSError, ValueError) as exc:
        raise InputError(str(d / "run.json"), None, f"unreadable: {exc}") from None
    tables = {n: _read(d, n) for n in ("samples", "events", "outcomes", "verdicts", "predictions")}
    missing = [n for n, df in tables.items() if df.empty]
    names = list(meta.get("scenarios") or [])
    for n in ("verdicts", "predictions", "outcomes"):
        if "scenario" in tables[n]:
            names += [s for s in tables[n]["scenario"].dropna().unique() if s not in names]
    events = _events_by_scenario(tables["events"], names)
    scenarios = [_scenario(meta, name, tables, events.get(name, pd.DataFrame())) for name in names]
    return RunData(dir=d, meta=meta, scenarios=scenarios, missing=missing)


# ---------------------------------------------------------------------------------------------


def _events_by_scenario(ev: pd.DataFrame, names: list[str]) -> dict[str, pd.DataFrame]:
    """Events of each scenario: its own ``scenario`` column, else its start..end window."""
    if ev.empty or "t_mono" not in ev:
        return {}
    ev = ev.sort_values("t_mono", kind="stable").reset_index(drop=True)
    own = ev["scenario"] if "scenario" in ev else pd.Series([None] * len(ev))
    windows: dict[str, list[float]] = {}
    if "kind" in ev:
        for _, r in ev[ev["kind"].isin(["scenario_start", "scenario_end"])].iterrows():
            w = windows.setdefault(str(r["scenario"]), [math.inf, -math.inf])
            w[0 if r["kind"] == "scenario_start" else 1] = float(r["t_mono"])
    assigned: list[str | None] = []
    for t, sc in zip(ev["t_mono"], own, strict=True):
        if isinstance(sc, str) and sc in names:
            assigned.append(sc)
            continue
        found = None
        for name, (lo, hi) in windows.items():
            if lo <= t <= (hi if hi > -math.inf else math.inf):
                found = name
                break
        assigned.append(found)
    ev = ev.assign(_scenario=assigned)
    return {str(n): g.drop(columns="_scenario") for n, g in ev.groupby("_scenario")}


def _t0(
    name: str, verdicts: pd.DataFrame, outcomes: pd.DataFrame, events: pd.DataFrame
) -> tuple[float | None, str]:
    """The scenario's t = 0 on the run's clock.

    Verdict times are ``outcome.t_mono - t0`` (harness.run), so t0 is recovered exactly from
    any workload with both; otherwise the scenario_start event (a few ms earlier).
    """
    if not verdicts.empty and not outcomes.empty and "observed_t_s" in verdicts:
        m = verdicts.merge(outcomes[["scenario", "workload", "t_mono"]], on=["scenario", "workload"])
        m = m[(m["scenario"] == name) & m["t_mono"].notna() & m["observed_t_s"].notna()]
        if not m.empty:
            return float((m["t_mono"] - m["observed_t_s"]).median()), "verdict times"
    if not events.empty and "kind" in events:
        st = events[events["kind"] == "scenario_start"]
        if not st.empty:
            return float(st["t_mono"].iloc[0]), "scenario_start event"
    return None, "unknown"


def _lines(meta: dict[str, Any], name: str, series: dict[str, Series]) -> Lines:

    lines = Lines()
    node = series.get("node")
    kube = series.get("kubepods")
    lines.capacity = node.limit if node else None
    lines.kubepods_limit = kube.limit if kube else None
    prof = (meta.get("profile") or {}).get(name)
    facts = (meta.get("node") or {}).get(name)
    try:
        if not prof or not facts:
            found = _profile_from_host(meta)
            if found is None:
                lines.notes.append(
                    "no kubelet profile or node facts recorded: allocatable and thresholds unknown"
                )
                return lines
            profile, nf, note = found
            lines.notes.append(note)
        else:
            profile = parse_profile(prof, f"run.json: profile.{name}")
            nf = parse_facts(facts, f"run.json: node.{name}")
        alloc = node_allocatable(profile, nf)
        lines.capacity = lines.capacity or nf.memory_capacity_bytes
        lines.allocatable = alloc.allocatable_memory
        if lines.kubepods_limit is None and profile.cgroups_per_qos:
            lines.kubepods_limit = alloc.kubepods_memory_limit
        for t in parse_thresholds(profile, nf.kubelet_minor):
            if t.signal == MEMORY_AVAILABLE:
                kind = "hard" if t.hard else f"soft, grace {t.grace_period_s:g}s"
                level = t.value.resolve(lines.capacity or nf.memory_capacity_bytes)
                lines.thresholds.append((f"eviction {kind}: memory.available<{t.value.text}", level, t.hard))
    except Exception as exc:  # a report must still render what it can
        lines.notes.append(f"model values unavailable: {exc}")
    return lines


def _profile_from_host(meta: dict[str, Any]) -> tuple[Any, Any, str] | None:
    """A real node's profile and facts when run.json names the profile file instead of holding it.

    The kubernetes backend records ``host.engine.kubelet_profile`` (a path) and the node's own
    facts in ``host``; the file is read as it is now, which the report says.
    """

    host = meta.get("host") or {}
    engine = host.get("engine") or {}
    rel = engine.get("kubelet_profile") if isinstance(engine, dict) else None
    if not rel:
        return None
    repo = Path(__file__).resolve().parents[2]
    path = next((p for p in (Path(rel), repo / rel) if p.is_file()), None)
    if path is None:
        return None
    aliases = {f.alias or n for n, f in NodeFacts.model_fields.items()}
    facts = {k: v for k, v in host.items() if k in aliases}
    if engine.get("kubelet"):
        facts["kubeletVersion"] = str(engine["kubelet"]).lstrip("v")
    note = f"allocatable and thresholds from {rel} as it is now and the host's facts (run.json holds no copy)"
    return load_profile(path), parse_facts(facts, "run.json: host"), note


def _series(samples: pd.DataFrame, name: str, t0: float | None) -> dict[str, Series]:
    if samples.empty or "key" not in samples:
        return {}
    prefix = f"{name}/"
    sub = samples[samples["key"].astype("string").str.startswith(prefix, na=False)]
    out: dict[str, Series] = {}
    base = t0 if t0 is not None else (float(sub["t_mono"].min()) if not sub.empty else 0.0)
    for key, g in sub.groupby("key", sort=False):
        ws = g.get("working_set", g.get("usage"))
        use = g.get("usage", ws)
        if ws is None or use is None:
            continue
        lim = g["limit"].dropna() if "limit" in g else pd.Series(dtype="float64")
        short = str(key)[len(prefix) :]
        out[short] = Series(
            key=str(key),
            name=short,
            t=(g["t_mono"] - base).astype("float64").tolist(),
            working_set=ws.astype("float64").tolist(),
            usage=use.astype("float64").tolist(),
            limit=int(lim.iloc[-1]) if len(lim) else None,
        )
    return out


def _event_text(r: dict[str, Any]) -> str:
    skip = {"t_mono", "t_wall", "source", "kind", "scenario", "workload", "t_kernel_mono"}
    parts = []
    for k, v in r.items():
        if k in skip or v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
            continue
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        parts.append(f"{k}={v}")
    return ", ".join(parts)


def _workload_of(r: dict[str, Any], ids: dict[Any, str], workloads: list[str]) -> str | None:
    """The workload an event is about: its own field, else its pid, pod or cgroup."""
    w = r.get("workload")
    if isinstance(w, str) and w:
        return w
    pid = r.get("pid")
    if isinstance(pid, int | float) and not math.isnan(pid) and int(pid) in ids:
        return ids[int(pid)]
    for col in ("task_memcg", "cgroup", "pod", "object"):
        ref = r.get(col)
        if isinstance(ref, str) and ref:
            last = ref.rstrip("/").rsplit("/", 1)[-1]
            if last in ids:
                return ids[last]  # a pod name seen with its workload (pod_created, pod_phase)
            if last in workloads:
                return last
            # pods named after their workload, e.g. "s2-slow-past-allocatable-slowleak-tes-28da"
            hits = [w for w in workloads if f"-{w}-" in f"-{last}-"]
            if len(hits) == 1:
                return hits[0]
    return None


def _foreign(r: dict[str, Any], run_id: str) -> bool:
    """A kernel record of another harness run's cgroup (experiments run side by side on one host)."""
    cg = r.get("task_memcg") or r.get("oom_memcg")
    return (
        bool(run_id) and isinstance(cg, str) and cg.startswith("/harness/") and f"/{run_id}/" not in f"{cg}/"
    )


def _text_field(r: dict[str, Any], name: str) -> str | None:
    v = r.get(name)
    return v if isinstance(v, str) else None


def _scenario_events(
    ev: pd.DataFrame, t0: float | None, workloads: list[str], run_id: str, outcomes: list[dict[str, Any]]
) -> list[Event]:
    if ev.empty:
        return []
    recs = _records(ev)
    ids: dict[Any, str] = {}  # pid or pod name -> workload
    for o in outcomes:  # the classifier names the pids it attributed ("kernel oom-kill of pid 123 ...")
        for line in o.get("evidence") or []:
            for pid in re.findall(r"\bpid (\d+)", str(line)):
                ids[int(pid)] = str(o.get("workload"))
    for r in recs:
        if r.get("workload"):
            if isinstance(r.get("pid"), int | float):
                ids[int(r["pid"])] = str(r["workload"])
            if isinstance(r.get("pod"), str):
                ids[r["pod"]] = str(r["workload"])
    out = []
    for r in recs:
        t = r.get("t_kernel_mono") or r.get("t_mono")
        rel = (float(t) - t0) if (t is not None and t0 is not None) else None
        source, kind = str(r.get("source") or "?"), str(r.get("kind") or "?")
        foreign = _foreign(r, run_id)
        category = categorize(source, kind, _text_field(r, "reason"), _text_field(r, "condition"))
        out.append(
            Event(
                t=rel,
                source=source,
                kind=kind,
                category=None if foreign else category,
                workload=None if foreign else _workload_of(r, ids, workloads),
                text=("[another run's cgroup, not drawn] " if foreign else "") + _event_text(r),
            )
        )
    return out


def _scenario(
    meta: dict[str, Any], name: str, tables: dict[str, pd.DataFrame], ev: pd.DataFrame
) -> ScenarioData:
    def rows(table: str) -> pd.DataFrame:
        df = tables[table]
        return df[df["scenario"] == name] if "scenario" in df else pd.DataFrame()

    verdicts, outcomes, preds = rows("verdicts"), rows("outcomes"), rows("predictions")
    outcome_rows = _records(outcomes)
    t0, how = _t0(name, tables["verdicts"], tables["outcomes"], ev)
    series = _series(tables["samples"], name, t0)
    workloads: list[str] = []
    for df, col in ((preds, "name"), (verdicts, "workload"), (outcomes, "workload")):
        if col in df:
            workloads += [str(w) for w in df[col].dropna() if str(w) not in workloads]
    workloads += [s for s in series if s not in ("node", "kubepods") and s not in workloads]
    return ScenarioData(
        name=name,
        t0=t0,
        t0_from=how,
        series=series,
        events=_scenario_events(ev, t0, workloads, str(meta.get("run_id") or ""), outcome_rows),
        verdicts=_records(verdicts),
        predictions=_records(preds),
        outcomes=outcome_rows,
        lines=_lines(meta, name, series),
        workloads=workloads,
    )
