"""The trend page: one self-contained HTML file (jinja2, autoescaped, no script), plots as inline
PNG (matplotlib, like ``harness report``)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from jinja2 import Environment

from harness import __version__
from harness.report.plots import OUTCOME_COLORS, figure_png
from harness.report.template import CSS
from harness.results import atomic_write
from harness.trend import Trend

FLAG = "#d50000"

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>harness trend {{ t.selector }}</title>
<style>{{ css }}
td.cell { white-space: nowrap; font-family: monospace; font-size: 0.8rem; }
td.flag { outline: 2px solid #d50000; outline-offset: -2px; }
td.failc { background: #ffebee; }
</style>
</head>
<body>
<header>
  <h1>Trend: {{ t.selector or 'all runs' }}
    <span class="badge {{ 'fail' if changes else 'ok' }}">{{ changes|length }} change(s) flagged</span></h1>
  <div class="sub">{{ t.runs|length }} runs from {{ first }} to {{ last }} · each run judged against the
    {{ t.window }} run(s) of its suite before it with compare's checks (tolerance {{ opts.tolerance_seconds }} s,
    share {{ opts.tolerance_share }}, alpha {{ opts.alpha }}, statistical tests from {{ opts.min_repeats }} runs per side)</div>
</header>

<h2>Runs</h2>
<table>
<tr><th>#</th><th>run</th><th>date</th><th>kubelet</th><th>host</th><th>kernel</th><th>backend</th><th>verdicts</th></tr>
{% for r in runs %}<tr{% if r.failed %} class="fail"{% endif %}><td class="num">{{ r.n }}</td><td>{{ r.id }}</td>
<td>{{ r.date }}</td><td>{{ r.kubelet }}</td><td>{{ r.host }}</td><td>{{ r.kernel }}</td><td>{{ r.backend }}</td>
<td class="num">{{ r.verdicts }}</td></tr>
{% endfor %}</table>

<h2>Changes</h2>
{% if changes %}<table>
<tr><th>run</th><th>what changed (compare's finding)</th></tr>
{% for run, text in changes %}<tr><td>{{ run }}</td><td>{{ text }}</td></tr>
{% endfor %}</table>
{% else %}<p class="pass">No change beyond the tolerances in any run.</p>{% endif %}
{% if t.warnings %}<details><summary>{{ t.warnings|length }} warning(s)</summary><ul>
{% for w in t.warnings %}<li>{{ w }}</li>{% endfor %}</ul></details>{% endif %}

{% for sc in scenarios %}
<h2 id="{{ sc.anchor }}">{{ sc.name }}</h2>
<figure><img src="data:image/png;base64,{{ sc.png }}" width="{{ sc.w }}" height="{{ sc.h }}"
  alt="trend of scenario {{ sc.name }}">
<figcaption>Top: time of each workload's observed outcome since the scenario's start, run after run.
Bottom: the observed outcome (filled: verdict matched; hollow: mismatch). A red ring marks a change
compare flags against the runs before.</figcaption></figure>
<table>
<tr><th>workload</th>{% for r in runs %}<th title="{{ r.id }}">#{{ r.n }}</th>{% endfor %}</tr>
{% for w in sc.rows %}<tr><td>{{ w.name }}</td>{% for c in w.cells %}
<td class="cell{% if c.flag %} flag{% endif %}{% if c.fail %} failc{% endif %}"{% if c.title %} title="{{ c.title }}"{% endif %}>{{ c.text }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% endfor %}
<footer>harness trend · {{ t.runs|length }} runs · written by harness {{ version }}</footer>
</body>
</html>
"""


def _run_label(r: Any, n: int) -> str:
    return f"#{n}\n{r.labels.get('date', r.started[:10])}\n{r.labels.get('kubelet', '-')}\n{r.labels.get('host', '-')}"


def scenario_png(t: Trend, scenario: str) -> tuple[bytes, int, int]:
    keys = [w for sc, w in t.keys if sc == scenario]
    ids = [r.id for r in t.runs]
    x = list(range(1, len(ids) + 1))
    fig, (ax1, ax2) = plt.subplots(
        2,
        1,
        figsize=(12, 3.2 + 0.35 * len(keys)),
        dpi=100,
        sharex=True,
        gridspec_kw={"height_ratios": [3, max(1.0, 0.5 * len(keys))]},
    )
    cmap = plt.get_cmap("tab10")
    seen: set[str] = set()
    for k, w in enumerate(keys):
        cells = [t.cell(run, scenario, w) for run in ids]
        xs = [i for i, c in zip(x, cells, strict=True) if c is not None and c.t_s is not None]
        ys = [c.t_s for c in cells if c is not None and c.t_s is not None]
        color = cmap(k % 10)
        if xs:
            ax1.plot(xs, ys, "-o", color=color, label=w, linewidth=1.4, markersize=5)
        for i, c in zip(x, cells, strict=True):
            if c is None:
                continue
            oc = OUTCOME_COLORS.get(c.observed, OUTCOME_COLORS["unknown"])
            label = c.observed if c.observed not in seen else None
            seen.add(c.observed)
            face = oc if c.passed is not False else "white"
            ax2.scatter([i], [k], s=90, marker="s", facecolor=face, edgecolor=oc, linewidth=1.6, label=label)
            if c.flags:
                ax2.scatter([i], [k], s=300, marker="o", facecolor="none", edgecolor=FLAG, linewidth=2)
                if c.t_s is not None:
                    ax1.scatter(
                        [i], [c.t_s], s=220, marker="o", facecolor="none", edgecolor=FLAG, linewidth=2
                    )
    ax1.set_ylabel("event time (s)")
    ax1.grid(alpha=0.3)
    if ax1.get_legend_handles_labels()[0]:
        ax1.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="workload")
    ax1.set_title(scenario, loc="left", fontsize=11)
    ax2.set_yticks(range(len(keys)), keys, fontsize=8)
    ax2.set_ylim(-0.7, len(keys) - 0.3)
    ax2.invert_yaxis()
    ax2.set_xticks(x, [_run_label(r, n) for n, r in enumerate(t.runs, 1)], fontsize=7)
    ax2.set_xlim(0.5, len(x) + 0.5)
    ax2.grid(axis="x", alpha=0.3)
    ax2.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="outcome")
    fig.subplots_adjust(left=0.1, right=0.82, top=0.93, bottom=0.22 if len(keys) < 3 else 0.16, hspace=0.12)
    w, h = fig.get_size_inches() * fig.dpi
    return figure_png(fig), int(w), int(h)


def _cell_view(c: Any) -> dict[str, Any]:
    if c is None:
        return {"text": "·", "flag": False, "fail": False, "title": ""}
    text = c.observed + (" (victim)" if c.victim else "")
    if c.t_s is not None:
        text += f" {c.t_s:.2f}s"
    title = "\n".join(c.flags) if c.flags else (f"predicted {c.predicted}" if c.predicted else "")
    return {"text": text, "flag": bool(c.flags), "fail": c.passed is False, "title": title}


def render_trend(t: Trend) -> str:

    scenarios = []
    for sc in dict.fromkeys(s for s, _ in t.keys):
        png, w, h = scenario_png(t, sc)
        rows = [
            {"name": wl, "cells": [_cell_view(t.cell(r.id, sc, wl)) for r in t.runs]}
            for s, wl in t.keys
            if s == sc
        ]
        scenarios.append(
            {
                "name": sc,
                "anchor": "sc-" + html.escape(sc),
                "png": base64.b64encode(png).decode(),
                "w": w,
                "h": h,
                "rows": rows,
            }
        )
    runs = [
        {
            "n": n,
            "id": r.id,
            "date": r.labels.get("date", ""),
            "kubelet": r.labels.get("kubelet", "-"),
            "host": r.labels.get("host", "-"),
            "kernel": r.labels.get("kernel", "-"),
            "backend": r.labels.get("backend", "-"),
            "verdicts": f"{r.verdicts_passed}/{r.verdicts_total}" if r.verdicts_total is not None else "-",
            "failed": r.verdicts_total is not None and (r.verdicts_passed or 0) < r.verdicts_total,
        }
        for n, r in enumerate(t.runs, 1)
    ]
    num = {r.id: n for n, r in enumerate(t.runs, 1)}
    changes = [(f"#{num[run]} {run}", text) for run, _sc, _w, text in t.changes]
    env = Environment(autoescape=True)
    return env.from_string(TEMPLATE).render(
        t=t,
        css=CSS,
        opts=t.options,
        runs=runs,
        changes=changes,
        scenarios=scenarios,
        first=t.runs[0].labels.get("date", ""),
        last=t.runs[-1].labels.get("date", ""),
        version=__version__,
    )


def write_trend(t: Trend, out: str | Path) -> Path:

    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(p, render_trend(t).encode())
    return p
