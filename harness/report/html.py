"""Render one run as a self-contained HTML file plus one PNG per scenario."""

from __future__ import annotations

import base64
import json
import re
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import __version__
from harness.catalog import RunInfo
from harness.report.data import MiB, RunData, ScenarioData, load_run_data
from harness.report.plots import scenario_png
from harness.report.template import CSS, RUN_TEMPLATE
from harness.results import atomic_write

MAX_EVENTS_LISTED = 400


@dataclass
class ReportFiles:
    html: Path
    pngs: list[Path] = field(default_factory=list)


def _fmt_t(t: Any) -> str:
    return "" if t is None else f"{float(t):.2f}"


def _fmt_window(lo: Any, hi: Any) -> str:
    """``lo``, or ``lo..hi`` when the window has a width; empty without a start."""
    return "" if lo is None else (_fmt_t(lo) if hi in (None, lo) else f"{_fmt_t(lo)}..{_fmt_t(hi)}")


def _fmt_bytes(b: Any) -> str:
    if b is None:
        return ""
    b = int(b)
    if b >= 1 << 30:
        return f"{b >> 30} GiB" if b % (1 << 30) == 0 else f"{b / (1 << 30):.1f} GiB"
    return f"{b / MiB:.1f} MiB" if b % MiB else f"{b // MiB} MiB"


def _anchor(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


def _png_size(data: bytes) -> tuple[int, int]:
    w, h = struct.unpack(">II", data[16:24])
    return int(w), int(h)


def _verdict_rows(sc: ScenarioData) -> list[dict[str, Any]]:
    preds = {str(p.get("name")): p for p in sc.predictions}
    outs = {str(o.get("workload")): o for o in sc.outcomes}
    rows = []
    names = [str(v.get("workload")) for v in sc.verdicts] or list(preds)
    vmap = {str(v.get("workload")): v for v in sc.verdicts}
    for name in names:
        v = vmap.get(name, {})
        p = preds.get(name, {})
        o = outs.get(name, {})
        lo, hi = (
            v.get("predicted_earliest_s", p.get("earliest_s")),
            v.get("predicted_latest_s", p.get("latest_s")),
        )
        window = _fmt_window(lo, hi)
        if p.get("basis") == "as-run" and window:
            planned = _fmt_window(p.get("planned_earliest_s"), p.get("planned_latest_s"))
            rate = p.get("alloc_rate_bytes_per_s")
            window += (
                f" (as run: started +{_fmt_t(p.get('launch_s'))} s"
                + (f", {float(rate) / MiB:.0f} MiB/s" if rate is not None and rate == rate else "")
                + (f"; planned {planned}" if planned else "")
                + ")"
            )
        alts = []
        if p.get("race") or len(p.get("alternatives") or []) > 1:
            for a in p.get("alternatives") or []:
                alts.append(
                    f"{a.get('outcome')} {float(a.get('share') or 0):.0%}"
                    + (
                        f" at {_fmt_t(a.get('earliest_s'))}..{_fmt_t(a.get('latest_s'))}s"
                        if a.get("earliest_s") is not None
                        else ""
                    )
                )
        qos = " / ".join(str(x) for x in (p.get("qos_class"), p.get("oom_score_adj")) if x is not None)
        victim = ""
        if v:
            victim = ("yes" if v.get("victim_observed") else "no") + (
                f" (predicted {'yes' if v.get('victim_predicted') else 'no'})"
                if bool(v.get("victim_observed")) != bool(v.get("victim_predicted"))
                else ""
            )
        ev = o.get("evidence")
        rows.append(
            {
                "workload": name,
                "qos": qos,
                "predicted": v.get("predicted", p.get("outcome", "")),
                "alternatives": alts,
                "window": window,
                "observed": v.get("observed", o.get("outcome", "—")),
                "t": _fmt_t(v.get("observed_t_s")),
                "victim": victim,
                "passed": bool(v.get("passed", False)),
                "reasons": list(v.get("reasons") or []),
                "deviations": list(v.get("host_deviations") or []),
                "mechanism": p.get("mechanism") or "",
                "evidence": "; ".join(ev) if isinstance(ev, list) else (ev or ""),
            }
        )
    return rows


def _host_rows(meta: dict[str, Any]) -> list[tuple[str, str]]:
    h = meta.get("host") or {}
    rows: list[tuple[str, str]] = []
    for key, label in (
        ("name", "host name"),
        ("kernel", "kernel"),
        ("memoryCapacity", "memory"),
        ("cpus", "CPUs"),
        ("swap", "swap"),
        ("pageSize", "page size"),
        ("pidMax", "pid_max"),
    ):
        if h.get(key) is not None:
            val = _fmt_bytes(h[key]) if key in ("memoryCapacity", "swap") else str(h[key])
            rows.append((label, val))
    if h.get("cgroupVersion") is not None:
        rows.append(("cgroup", f"v{h['cgroupVersion']} ({h.get('cgroupLayout', 'layout unknown')})"))
    numa = h.get("numaNodes")
    if isinstance(numa, list):
        rows.append(
            (
                "NUMA nodes",
                ", ".join(f"node{n.get('id')}: {_fmt_bytes(n.get('memory'))}" for n in numa) or "0",
            )
        )
    if "negativeOomScoreAdj" in h:
        rows.append(
            (
                "negative oom_score_adj",
                "writable" if h["negativeOomScoreAdj"] else "not writable (no CAP_SYS_RESOURCE)",
            )
        )
    known = {
        "name",
        "kernel",
        "memoryCapacity",
        "cpus",
        "swap",
        "pageSize",
        "pidMax",
        "cgroupVersion",
        "cgroupLayout",
        "numaNodes",
        "negativeOomScoreAdj",
        "engine",
        "python",
    }
    for k, v in sorted(h.items()):
        if k not in known:
            rows.append((k, json.dumps(v) if isinstance(v, dict | list) else str(v)))
    return rows


def _version_rows(meta: dict[str, Any]) -> list[tuple[str, str]]:
    h = meta.get("host") or {}
    rows = [
        ("harness", str(meta.get("harness_version", "?"))),
        ("git revision", str(meta.get("git_revision") or "unknown")),
        ("python", str(h.get("python", "?"))),
        ("kernel", str(h.get("kernel", "?"))),
    ]
    eng = h.get("engine")
    if isinstance(eng, dict):
        rows += [(f"engine: {k}", str(v)) for k, v in eng.items() if v is not None]
    kubelets = sorted(
        {str(n.get("kubeletVersion")) for n in (meta.get("node") or {}).values() if isinstance(n, dict)}
    )
    if kubelets:
        rows.append(("kubelet (modelled)", ", ".join(kubelets)))
    runc = sorted(
        {
            str(n.get("runcVersion"))
            for n in (meta.get("node") or {}).values()
            if isinstance(n, dict) and n.get("runcVersion")
        }
    )
    if runc:
        rows.append(("runc (node facts)", ", ".join(runc)))
    if meta.get("command"):
        rows.append(("command", " ".join(str(c) for c in meta["command"])))
    return rows


def _duration(meta: dict[str, Any]) -> str:
    try:
        a = datetime.fromisoformat(str(meta["started"]))
        b = datetime.fromisoformat(str(meta["finished"]))
    except (KeyError, ValueError):
        return ""
    return f"{(b - a).total_seconds():.1f} s"


def _levels(sc: ScenarioData) -> list[tuple[str, str]]:
    L = sc.lines
    rows = [
        ("capacity (node cgroup limit)", _fmt_bytes(L.capacity)),
        ("allocatable (model)", _fmt_bytes(L.allocatable)),
        ("kubepods limit", _fmt_bytes(L.kubepods_limit)),
    ]
    rows += [(label, _fmt_bytes(level)) for label, level, _hard in L.thresholds]
    for name in sc.workloads:
        s = sc.series.get(name)
        if s and s.limit:
            rows.append((f"{name} memory limit", _fmt_bytes(s.limit)))
        if s and s.working_set:
            rows.append((f"{name} peak working set", _fmt_bytes(max(s.working_set))))
    return [(k, v) for k, v in rows if v]


def _scenario_ctx(sc: ScenarioData, png: bytes | None, png_name: str) -> dict[str, Any]:
    rows = _verdict_rows(sc)
    events = [
        {
            "t": _fmt_t(e.t),
            "source": e.source,
            "kind": e.kind,
            "workload": e.workload or "",
            "text": e.text if len(e.text) < 400 else e.text[:400] + "…",
        }
        for e in sc.events
    ]
    kinds: dict[str, int] = {}
    for e in sc.events:
        kinds[f"{e.source}/{e.kind}"] = kinds.get(f"{e.source}/{e.kind}", 0) + 1
    w, h = _png_size(png) if png else (0, 0)
    return {
        "name": sc.name,
        "anchor": _anchor(sc.name),
        "verdicts": rows,
        "passed": sum(1 for r in rows if r["passed"]),
        "ok": all(r["passed"] for r in rows),
        "png": base64.b64encode(png).decode() if png else None,
        "png_name": png_name,
        "width": w,
        "height": h,
        "t0_from": sc.t0_from,
        "notes": sc.lines.notes,
        "levels": _levels(sc),
        "events": events[:MAX_EVENTS_LISTED],
        "events_cut": max(0, len(events) - MAX_EVENTS_LISTED),
        "event_kinds": ", ".join(f"{k} ×{n}" for k, n in sorted(kinds.items())),
    }


def render_run(data: RunData, png_names: dict[str, str], pngs: dict[str, bytes]) -> str:
    # lazy: jinja2 loads only when templates are rendered
    import jinja2

    meta = data.meta
    info = RunInfo.from_meta(meta, data.dir)
    scenarios = [_scenario_ctx(sc, pngs.get(sc.name), png_names.get(sc.name, "")) for sc in data.scenarios]
    passed = meta.get("verdicts_passed")
    total = meta.get("verdicts_total")
    if total is None:
        total = sum(len(s["verdicts"]) for s in scenarios)
        passed = sum(s["passed"] for s in scenarios)
    run = {
        "id": info.id,
        "status": info.status,
        "suite": meta.get("suite", "?"),
        "backend": meta.get("backend", "?"),
        "host": (meta.get("host") or {}).get("name", "?"),
        "started": info.started,
        "duration": _duration(meta),
        "labels": sorted(info.labels.items()),
        "passed": passed,
        "total": total,
        "missing": data.missing,
        "dir": str(data.dir),
    }
    deviations = sorted(
        set(meta.get("host_deviations") or [])
        | {d for s in scenarios for r in s["verdicts"] for d in r["deviations"]}
    )
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(RUN_TEMPLATE).render(
        css=CSS,
        run=run,
        scenarios=scenarios,
        host=_host_rows(meta),
        versions=_version_rows(meta),
        deviations=deviations,
        profiles=json.dumps({"profile": meta.get("profile"), "node": meta.get("node")}, indent=2),
        harness_version=__version__,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )


def write_run_report(run_dir: str | Path, out: str | Path | None = None, progress: Any = None) -> ReportFiles:
    """Write ``<run>/report/report.html`` (or ``out``) and ``<stem>-<scenario>.png`` beside it.

    >>> files = write_run_report("tests/fixtures/runs/20261123T183957Z-local-process-8ad9", "/tmp/r.html")  # doctest: +SKIP
    """

    data = load_run_data(run_dir)
    html_path = Path(out) if out else Path(run_dir) / "report" / "report.html"
    html_path.parent.mkdir(parents=True, exist_ok=True)
    stem = html_path.stem
    pngs: dict[str, bytes] = {}
    names: dict[str, str] = {}
    files = ReportFiles(html=html_path)
    for i, sc in enumerate(data.scenarios, 1):
        if not sc.series and not sc.verdicts:
            continue
        if progress:
            progress(f"plotting {sc.name} ({i}/{len(data.scenarios)})")
        title = f"{sc.name} — run {data.meta.get('run_id', '')}"
        png = scenario_png(sc, title)
        name = f"{stem}-{_anchor(sc.name)}.png"
        atomic_write(html_path.parent / name, png)
        pngs[sc.name], names[sc.name] = png, name
        files.pngs.append(html_path.parent / name)
    atomic_write(html_path, render_run(data, names, pngs).encode())
    return files
