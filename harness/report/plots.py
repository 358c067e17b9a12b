"""The timeline plot of one scenario (matplotlib, Agg backend, PNG bytes).

Top panel, after the Grafana chart of ``seeds/003_*`` (figure 3): node available memory
(green, capacity minus the node's working set), the node's working set (yellow), the pods'
working set (blue, the kubepods cgroup) and each workload's working set (thin lines, its
usage dotted when page cache makes the two differ); horizontal lines for the node capacity,
allocatable (red) with the zone up to the kubepods limit shaded (where the kubelet evicts
pods), the kubepods limit (black, the OOM killer's line for pods) and every memory.available
eviction threshold (on the green curve); vertical markers for OOM kills and evictions, ticks
for the kubelet's eviction loop when the run recorded them.

Bottom panel, one lane per workload: the model's predicted windows (one bar per alternative
outcome, opacity = share of kubelet loop phases) and the observed events on the same time
axis: the classified outcome (star), kernel OOM kills, runtime OOM notices, evictions, exits.
"""

from __future__ import annotations

import io
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from harness.report.data import Event, MiB, ScenarioData

OUTCOME_COLORS = {
    "completed": "#2e7d32",
    "oom_killed": "#c62828",
    "node_oom_killed": "#6a1b1b",
    "evicted": "#6a1b9a",
    "rejected": "#ef6c00",
    "runtime_failed": "#8d6e63",
    "unknown": "#757575",
}
CATEGORY_STYLE: dict[str, dict[str, Any]] = {
    "oom_kill": {"marker": "X", "color": "#c62828", "label": "kernel OOM kill", "size": 70},
    "eviction": {"marker": "v", "color": "#6a1b9a", "label": "eviction", "size": 70},
    "pressure": {"marker": "D", "color": "#ef6c00", "label": "threshold / node condition", "size": 40},
    "admission": {"marker": "P", "color": "#ef6c00", "label": "admission rejected", "size": 60},
    "kubelet_tick": {"marker": "|", "color": "#455a64", "label": "kubelet loop / stats refresh", "size": 60},
    "runtime_oom": {
        "marker": "o",
        "color": "#e57373",
        "label": "runtime / kubelet OOM notice",
        "size": 30,
        "hollow": True,
    },
    "exit": {"marker": "s", "color": "#212121", "label": "exit", "size": 22},
    "other": {"marker": ".", "color": "#9e9e9e", "label": "other event", "size": 40},
}
NODE_AVAILABLE = "#43a047"
NODE_USED = "#f9a825"
PODS = "#1e88e5"


def _mib(values: list[float]) -> list[float]:
    return [v / MiB if v is not None and not math.isnan(v) else math.nan for v in values]


def _workload_colors(names: list[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    skip = {0, 1, 2, 3}  # blue, orange, green, red: pods, node working set, available, allocatable
    palette = [cmap(i) for i in range(10) if i not in skip]
    return {n: palette[i % len(palette)] for i, n in enumerate(names)}


def _pods_top(sc: ScenarioData) -> float:
    """The highest level that matters for pods: kubepods limit, pods' and workloads' usage (bytes)."""
    levels = [float(sc.lines.kubepods_limit or 0), float(sc.lines.allocatable or 0)]
    for name, s in sc.series.items():
        if name != "node" and s.usage:
            levels.append(max((v for v in s.usage if not math.isnan(v)), default=0.0))
    return max(levels)


def _memory_panel(
    ax: Any,
    sc: ScenarioData,
    colors: dict[str, Any],
    xmax: float,
    ytop: float | None = None,
    legend: bool = True,
) -> None:
    L = sc.lines
    node, kube = sc.series.get("node"), sc.series.get("kubepods")
    cap = L.capacity
    top = (cap or 0) / MiB
    if node is not None:
        # wider than the pods' line drawn over it: the two coincide when only pods use memory
        ax.plot(node.t, _mib(node.working_set), color=NODE_USED, lw=4, label="node working set")
        if cap:
            avail = [(cap - v) / MiB for v in node.working_set]
            ax.plot(node.t, avail, color=NODE_AVAILABLE, lw=2, label="node available")
    if kube is not None:
        ax.plot(kube.t, _mib(kube.working_set), color=PODS, lw=2, label="pods working set")
    for name in sc.workloads:
        s = sc.series.get(name)
        if s is None or not s.t:
            continue
        c = colors[name]
        ax.plot(s.t, _mib(s.working_set), color=c, lw=1.6, label=f"{name} working set")
        gap = max((u - w) for u, w in zip(s.usage, s.working_set, strict=True) if not math.isnan(u - w))
        if gap > 0.05 * max(max(s.usage), 1):
            ax.plot(s.t, _mib(s.usage), color=c, lw=1, ls=":", label=f"{name} usage (incl. cache)")
        if s.limit and (not cap or s.limit < cap):
            ax.axhline(s.limit / MiB, color=c, lw=0.8, ls="--")
            ax.annotate(
                f"{name} limit",
                (0, s.limit / MiB),
                xytext=(2, 2),
                textcoords="offset points",
                fontsize=7,
                color=c,
            )
        top = max(top, max(_mib(s.usage), default=0))
    ref: list[tuple[float | None, str, str, str]] = [
        (cap, "capacity", "#424242", "--"),
        (L.allocatable, "allocatable", "#d32f2f", "-"),
        (L.kubepods_limit, "kubepods limit", "#000000", "-"),
    ]
    for level, label, color, ls in ref:
        if level:
            ax.axhline(level / MiB, color=color, lw=1.2, ls=ls)
            ax.annotate(
                f"{label} {level / MiB:.0f}Mi",
                (xmax, level / MiB),
                xytext=(-4, 2),
                textcoords="offset points",
                ha="right",
                fontsize=8,
                color=color,
            )
    if L.allocatable and L.kubepods_limit and L.kubepods_limit > L.allocatable:
        ax.axhspan(L.allocatable / MiB, L.kubepods_limit / MiB, color="#d32f2f", alpha=0.08, lw=0)
    if L.kubepods_limit and cap and cap > L.kubepods_limit:
        ax.axhspan(L.kubepods_limit / MiB, cap / MiB, facecolor="none", edgecolor="#bdbdbd", hatch="//", lw=0)
    for label, level, hard in [] if ytop else L.thresholds:  # thresholds apply to "available"
        ax.axhline(level / MiB, color=NODE_AVAILABLE, lw=1, ls="--" if hard else ":")
        ax.annotate(
            label,
            (xmax, level / MiB),
            xytext=(-4, 2),
            textcoords="offset points",
            ha="right",
            fontsize=8,
            color=NODE_AVAILABLE,
        )
    for e in sc.events:
        if e.t is None or e.category not in ("oom_kill", "eviction"):
            continue
        st = CATEGORY_STYLE[e.category]
        ax.axvline(e.t, color=st["color"], lw=0.9, alpha=0.7, ls="-" if e.category == "oom_kill" else "-.")
    ticks = [e.t for e in sc.events if e.category == "kubelet_tick" and e.t is not None]
    if ticks:
        ax.plot(
            ticks,
            [0] * len(ticks),
            "|",
            color="#455a64",
            ms=12,
            mew=1.5,
            label="kubelet loop / stats refresh",
        )
    ax.set_ylim(0, (ytop / MiB if ytop else max(top, 1)) * 1.08)
    ax.set_ylabel("memory (MiB)" if not ytop else "pods, zoomed (MiB)")
    ax.grid(True, alpha=0.3)
    if legend:
        ax.legend(loc="upper left", fontsize=7, ncol=2, framealpha=0.85)


def _lanes_panel(ax: Any, sc: ScenarioData, colors: dict[str, Any], xmax: float) -> None:
    lanes = list(sc.workloads)
    others = [e for e in sc.events if e.t is not None and e.category and (e.workload not in lanes)]
    if others:
        lanes.append("(node / other)")
    ypos = {n: len(lanes) - 1 - i for i, n in enumerate(lanes)}
    min_w = max(xmax * 0.006, 0.05)
    seen: set[str] = set()
    for p in sc.predictions:
        y = ypos.get(str(p.get("name")))
        if y is None:
            continue
        alts = p.get("alternatives") or [
            {
                "outcome": p.get("outcome"),
                "earliest_s": p.get("earliest_s"),
                "latest_s": p.get("latest_s"),
                "share": 1.0,
            }
        ]
        for a in alts:
            lo, hi = a.get("earliest_s"), a.get("latest_s")
            color = OUTCOME_COLORS.get(str(a.get("outcome")), "#757575")
            if lo is None:
                continue
            hi = hi if hi is not None else lo
            width = max(hi - lo, min_w)
            label = f"predicted {a.get('outcome')}"
            ax.barh(
                y,
                width,
                left=lo - (width - (hi - lo)) / 2,
                height=0.55,
                color=color,
                alpha=0.25 + 0.45 * float(a.get("share") or 1.0),
                edgecolor=color,
                label=None if label in seen else label,
            )
            seen.add(label)
    for v in sc.verdicts:
        y = ypos.get(str(v.get("workload")))
        t = v.get("observed_t_s")
        if y is None or t is None:
            continue
        obs = str(v.get("observed"))
        label = f"observed {obs}"
        ax.scatter(
            [t],
            [y],
            marker="*",
            s=160,
            color=OUTCOME_COLORS.get(obs, "#757575"),
            edgecolor="black",
            zorder=5,
            label=None if label in seen else label,
        )
        seen.add(label)
    for e in sc.events:
        if e.t is None or not e.category or e.category == "kubelet_tick":
            continue
        y = ypos.get(e.workload or "", ypos.get("(node / other)"))
        if y is None:
            continue
        _event_marker(ax, e, y + 0.32, seen)
    ax.set_yticks(list(ypos.values()), list(ypos.keys()), fontsize=8)
    ax.set_ylim(-0.7, len(lanes) - 0.3)
    ax.set_xlabel("seconds since the scenario's start (the model's t = 0)")
    ax.grid(True, axis="x", alpha=0.3)
    if seen:
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, framealpha=0.85)


def _event_marker(ax: Any, e: Event, y: float, seen: set[str]) -> None:
    assert e.category is not None and e.t is not None
    st = CATEGORY_STYLE[e.category]
    label = st["label"]
    hollow = st.get("hollow", False)
    ax.scatter(
        [e.t],
        [y],
        marker=st["marker"],
        s=st["size"],
        zorder=4,
        facecolors="none" if hollow else st["color"],
        edgecolors=st["color"],
        label=None if label in seen else label,
    )
    seen.add(label)


def scenario_figure(sc: ScenarioData, title: str | None = None, duration: float | None = None) -> Figure:
    """The timeline of one scenario: memory (plus a zoom on the pods when needed) over event lanes.

    ``duration``: the time axis' extent (e.g. the longer of two runs drawn side by side)."""
    n_lanes = len(sc.workloads) + 1
    # on a real node the pods live far below the node's capacity: add a panel zoomed on them
    pods_top = _pods_top(sc)
    zoom = bool(sc.lines.capacity and pods_top and sc.lines.capacity > 3 * pods_top)
    heights = [3.2] + ([2.4] if zoom else []) + [0.6 + 0.42 * n_lanes]
    fig = plt.figure(figsize=(12, 2.0 + sum(heights)), dpi=100)
    gs = fig.add_gridspec(len(heights), 1, height_ratios=heights, hspace=0.08)
    ax1 = fig.add_subplot(gs[0])
    memory_axes = [ax1]
    xmax = max(duration if duration is not None else sc.duration, 1.0) * 1.02
    colors = _workload_colors(sc.workloads)
    _memory_panel(ax1, sc, colors, xmax)
    if zoom:
        axz = fig.add_subplot(gs[1], sharex=ax1)
        _memory_panel(axz, sc, colors, xmax, ytop=pods_top, legend=False)
        memory_axes.append(axz)
    ax2 = fig.add_subplot(gs[-1], sharex=ax1)
    _lanes_panel(ax2, sc, colors, xmax)
    ax1.set_xlim(min(-0.2, min((e.t for e in sc.events if e.t is not None), default=0.0)), xmax)
    for ax in memory_axes:
        plt.setp(ax.get_xticklabels(), visible=False)
    ax1.set_title(title or sc.name, fontsize=11, loc="left")
    fig.subplots_adjust(left=0.08, right=0.83, top=0.94, bottom=0.08)
    return fig


def figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def scenario_png(sc: ScenarioData, title: str | None = None, duration: float | None = None) -> bytes:
    return figure_png(scenario_figure(sc, title, duration))
