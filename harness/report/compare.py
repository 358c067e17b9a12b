"""One HTML file for a comparison: the gate's table, then per scenario both sides' timelines side by side.

Self-contained like the run report (no script, plots embedded as PNG). Per scenario and side the
timeline is that of one run (the side's last run with the scenario; its id is in the caption), drawn
by :func:`harness.report.plots.scenario_png` over that run's own as-run windows, on one time axis
for both sides, so the two plots show where each side's events fell in what the model allowed it.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import __version__
from harness.compare.core import Comparison
from harness.report.data import load_run_data
from harness.report.html import _anchor, _png_size, _verdict_rows
from harness.report.plots import scenario_png
from harness.report.template import CSS
from harness.results import atomic_write

COMPARE_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{{ title }}</title><style>{{ css }}
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 0 1rem; }
td.noise { color: var(--muted); font-size: 0.8rem; }
</style></head>
<body>
<header>
<h1>{{ title }} <span class="badge {{ 'fail' if changed else 'ok' }}">{{ headline }}</span></h1>
<div class="sub">BASE <code>{{ base_label }}</code>: {{ base_runs|length }} run(s) · NEW <code>{{ new_label }}</code>:
{{ new_runs|length }} run(s) · {{ options }}</div>
</header>
{% for w in warnings %}<p class="failtxt">warning: {{ w }}</p>{% endfor %}
<h2>The gate</h2>
{% if changes %}
<table><tr><th>check</th><th>what</th><th>change</th><th>BASE</th><th>NEW</th><th>test</th><th>p</th>
<th>noise within a side</th></tr>
{% for f in changes %}<tr class="fail"><td>{{ f.check }}</td><td>{{ f.name }}</td><td>{{ f.summary }}</td>
<td>{{ f.base }}</td><td>{{ f.new }}</td><td>{{ f.test }}</td><td class="num">{{ f.p }}</td>
<td class="noise">{{ f.noise }}{% if f.note %} ({{ f.note }}){% endif %}</td></tr>
{% endfor %}</table>
{% else %}<p class="pass">No change beyond the noise and the model's windows ({{ findings|length }} checks).</p>{% endif %}
<details><summary>All {{ findings|length }} checks</summary>
<table><tr><th>check</th><th>result</th><th>noise within a side</th></tr>
{% for f in findings %}<tr{% if f.changed %} class="fail"{% endif %}><td>{{ f.check }}</td><td>{{ f.summary }}</td>
<td class="noise">{{ f.noise }}{% if f.note %} ({{ f.note }}){% endif %}</td></tr>
{% endfor %}</table></details>
<h2>Scenarios</h2>
{% for sc in scenarios %}
<h3 id="{{ sc.anchor }}">{{ sc.name }}{% if sc.changed %} <span class="badge fail">changed</span>{% endif %}</h3>
<div class="side">
{% for s in sc.sides %}<figure>
{% if s.png %}<img src="data:image/png;base64,{{ s.png }}" width="{{ s.width }}" height="{{ s.height }}"
alt="{{ sc.name }} {{ s.side }}">{% else %}<p class="sub">no run of this scenario</p>{% endif %}
<figcaption><b>{{ s.side }}</b> {{ s.kubelet }} — run {{ s.run }}</figcaption>
<table><tr><th>workload</th><th>predicted</th><th>window</th><th>observed</th><th>t</th><th>verdict</th></tr>
{% for v in s.verdicts %}<tr{% if not v.passed %} class="fail"{% endif %}><td>{{ v.workload }}</td>
<td class="outcome">{{ v.predicted }}</td><td>{{ v.window }}</td><td class="outcome">{{ v.observed }}</td>
<td class="num">{{ v.t }}</td><td>{{ 'pass' if v.passed else 'FAIL' }}</td></tr>{% endfor %}
</table></figure>
{% endfor %}</div>
{% endfor %}
<footer>harness {{ version }} · generated {{ generated }}</footer>
</body></html>
"""


def _scenario_of(run: Any | None, scenario: str, cache: dict[str, Any]) -> Any | None:
    if run is None:
        return None
    if run.id not in cache:
        cache[run.id] = load_run_data(run.dir)
    return next((s for s in cache[run.id].scenarios if s.name == scenario), None)


def _side_ctx(side: str, run: Any | None, sc: Any | None, scenario: str, duration: float) -> dict[str, Any]:
    if run is None or sc is None:
        return {"side": side, "png": None, "run": run.id if run else "-", "kubelet": "", "verdicts": []}
    png = scenario_png(sc, f"{scenario} — {side} ({run.labels.get('kubelet') or run.id})", duration)
    w, h = _png_size(png)
    return {
        "side": side,
        "png": base64.b64encode(png).decode(),
        "width": w,
        "height": h,
        "run": run.id,
        "kubelet": f"kubelet {run.labels['kubelet']}" if run.labels.get("kubelet") else "",
        "verdicts": _verdict_rows(sc),
    }


def _last_with(runs: list[Any], scenario: str, verdicts: Any) -> Any | None:
    have = set(verdicts.loc[verdicts["scenario"] == scenario, "run"]) if not verdicts.empty else set()
    for r in reversed(runs):
        if r.id in have:
            return r
    return None


def render_comparison(c: Comparison, title: str = "harness compare", progress: Any = None) -> str:
    import jinja2  # lazy: jinja2 loads only when templates are rendered

    scenarios = sorted(
        set(c.base.verdicts.get("scenario", [])) | set(c.new.verdicts.get("scenario", [])), key=str
    )
    cache: dict[str, Any] = {}
    sc_ctx = []
    for i, name in enumerate(scenarios, 1):
        if progress:
            progress(f"plotting {name} ({i}/{len(scenarios)}), both sides")
        runs = [_last_with(c.base.runs, name, c.base.verdicts), _last_with(c.new.runs, name, c.new.verdicts)]
        scs = [_scenario_of(r, name, cache) for r in runs]
        # one time axis for both sides, so where an event fell reads across
        duration = max((s.duration for s in scs if s is not None), default=0.0)
        sides = [
            _side_ctx(side, r, s, name, duration)
            for side, r, s in zip(("BASE", "NEW"), runs, scs, strict=True)
        ]
        changed = any(f.changed and f.scenario == name for f in c.findings)
        sc_ctx.append({"name": name, "anchor": _anchor(name), "sides": sides, "changed": changed})

    def row(f: Any) -> dict[str, Any]:
        d = f.to_dict()
        d["name"] = f.name
        d["p"] = f"{f.p_value:.3g}" if f.p_value is not None else ""
        return d

    o = c.options
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(COMPARE_TEMPLATE).render(
        css=CSS,
        title=title,
        changed=c.changed,
        headline=f"{len(c.changes)} change(s)" if c.changed else "no change",
        base_label=c.base.label,
        new_label=c.new.label,
        base_runs=c.base.ids,
        new_runs=c.new.ids,
        options=(
            f"times against each side's as-run window; ±{o.tolerance_seconds:g} s, alpha {o.alpha:g}, "
            f"tests from {o.min_repeats} runs per side, position shift > {o.min_effect:g} x spread"
        ),
        warnings=c.warnings,
        changes=[row(f) for f in c.changes],
        findings=[row(f) for f in c.findings],
        scenarios=sc_ctx,
        version=__version__,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )


def write_comparison_report(
    c: Comparison, out: str | Path, title: str = "harness compare", progress: Any = None
) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, render_comparison(c, title, progress).encode())
    return path
