"""The sweep's picture and page: ``sweep.png`` and ``report.html`` in the sweep directory.

The plot: P(A) against the leak rate (log scale). Measured trials are points at 1 (A) or 0
(B), jittered vertically so repeats stay visible; other outcomes sit on a separate row below
0. The fitted logistic curve with its 95 % band (logistic fits), the measured boundary (with
its profile-likelihood interval, or the bracketing interval under separation), the model's
P(A) curve and the predicted boundary.

:func:`report_section` returns an HTML fragment (plot embedded as a data URI, the boundaries,
the trials) that ``harness report`` can include; :func:`write_plot_and_report` writes both
files for a sweep directory.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from harness.sweep.fit import Fit
from harness.sweep.rates import axis_rate, format_rate
from harness.sweep.store import SweepStore

MiB = float(1 << 20)


def _load(sweep_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:

    store = SweepStore(sweep_dir)
    meta = store.load()
    trials, _ = store.read_trials()
    return meta, trials


def render_png(meta: dict[str, Any], trials: list[dict[str, Any]]) -> bytes:
    # lazy: plotting stack loads only when a plot is drawn
    # lazy: plotting stack loads only when a plot is drawn
    import matplotlib

    matplotlib.use("Agg")
    # lazy: plotting stack loads only when a plot is drawn
    # lazy: plotting stack loads only when a plot is drawn
    import matplotlib.pyplot as plt

    # lazy: plotting stack loads only when a plot is drawn
    # lazy: plotting stack loads only when a plot is drawn
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    inputs = meta["inputs"]
    a_name = "/".join(inputs["class_a"])
    b_name = "/".join(inputs["class_b"])
    fit = Fit.from_dict(meta["fit"]) if meta.get("fit") else None
    pred = meta.get("predicted") or {}
    lo, hi = inputs["low"], inputs["high"]
    if trials:  # achieved rates may fall outside the labels' range
        lo, hi = min(lo, *(axis_rate(t) for t in trials)), max(hi, *(axis_rate(t) for t in trials))

    fig, ax = plt.subplots(figsize=(8.5, 4.8), dpi=110)
    rng = np.random.default_rng(0)  # deterministic jitter
    for cls, y0, color, label in (("A", 1.0, "tab:blue", a_name), ("B", 0.0, "tab:red", b_name)):
        pts = [t for t in trials if t["cls"] == cls]
        if pts:
            r = np.array([axis_rate(t) for t in pts]) / MiB
            y = y0 + rng.uniform(-0.035, 0.035, len(pts))
            ax.scatter(r, y, s=28, color=color, alpha=0.8, zorder=3, label=f"trial: {label} ({len(pts)})")
    others = [t for t in trials if t["cls"] not in ("A", "B")]
    if others:
        r = np.array([axis_rate(t) for t in others]) / MiB
        ax.scatter(
            r, np.full(len(r), -0.12), marker="x", color="grey", zorder=3, label=f"other ({len(others)})"
        )

    xs = np.exp(np.linspace(math.log(lo / 1.5), math.log(hi * 1.5), 300))
    if fit is not None and fit.method == "logistic" and fit.slope is not None and fit.slope != 0:
        ax.plot(xs / MiB, fit.p_a(xs), color="black", lw=1.8, label="fit: logistic P(A)")
        if fit.cov is not None:
            lo_b, hi_b = fit.band(xs)
            ax.fill_between(xs / MiB, lo_b, hi_b, color="black", alpha=0.12, label="fit: 95% band")
    if fit is not None and fit.boundary:
        ax.axvline(
            fit.boundary / MiB, color="black", lw=1.2, label=f"measured boundary {format_rate(fit.boundary)}"
        )
        if fit.method == "logistic":
            a, b = fit.ci_low or xs[0], fit.ci_high or xs[-1]
            span_label = "measured: 95% CI"
        else:
            a, b = fit.bracket_low or fit.boundary, fit.bracket_high or fit.boundary
            span_label = f"measured: bracket ({fit.method})"
        ax.axvspan(a / MiB, b / MiB, color="black", alpha=0.07, label=span_label)

    curve = pred.get("curve") or []
    model_pts = [(c["rate"], c["p_a"]) for c in curve if c.get("p_a") is not None]
    if model_pts:
        ax.plot(
            np.array([m[0] for m in model_pts]) / MiB,
            [m[1] for m in model_pts],
            color="tab:green",
            lw=1.6,
            ls="--",
            drawstyle="default",
            label="model P(A)",
        )
    if pred.get("rate"):
        ax.axvline(
            pred["rate"] / MiB,
            color="tab:green",
            lw=1.2,
            ls=":",
            label=f"model boundary {format_rate(pred['rate'])}",
        )

    if meta.get("host_limit"):
        top = max(axis_rate(t) for t in trials)
        ax.axvspan(
            top / MiB, hi * 1.5 / MiB, color="tab:orange", alpha=0.08, label="beyond this host's reach"
        )
    ax.set_xscale("log")
    ax.set_xlim(lo / 1.5 / MiB, hi * 1.5 / MiB)
    ax.xaxis.set_major_locator(LogLocator(base=2))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(-0.2, 1.1)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlabel("leak rate achieved (MiB/s)")
    ax.set_ylabel(f"P({a_name})")
    over = inputs.get("profile_set") or {}
    title = f"{inputs['scenario']} ({meta.get('workload', '')}) on {inputs['backend']}: {a_name} vs {b_name}"
    if over:
        title += "\n" + ", ".join(f"{k}={v}" for k, v in over.items())
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7.5, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def report_section(sweep_dir: Path, png: bytes | None = None) -> str:
    """An HTML fragment describing one sweep (for ``harness report`` or the sweep's own page)."""
    meta, trials = _load(sweep_dir)
    png = png if png is not None else render_png(meta, trials)
    inputs = meta["inputs"]
    fit = Fit.from_dict(meta["fit"]) if meta.get("fit") else None
    pred = meta.get("predicted") or {}
    e = html.escape
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{e(str(v))}</td>"
            for v in (
                t["trial"],
                format_rate(t["rate"]),
                "" if t.get("rate_achieved") is None else format_rate(t["rate_achieved"]),
                t["phase"],
                t["outcome"],
                t["cls"],
                "" if t.get("t_event_s") is None else f"{t['t_event_s']:.2f}",
                t["predicted"],
                t["run_id"],
            )
        )
        + "</tr>"
        for t in trials
    )
    measured = fit.describe() if fit else "no trials yet"
    predicted = (
        format_rate(pred["rate"]) if pred.get("rate") else f"none ({pred.get('reason', 'not computed')})"
    )
    agree = meta.get("agree")
    verdict = meta.get("host_limit") or {True: "agree", False: "DISAGREE", None: "cannot compare"}[agree]
    settings = (
        ", ".join(f"{k}={v}" for k, v in (inputs.get("profile_set") or {}).items()) or "as in the suite"
    )
    return f"""<section class="sweep">
<h2>Rate sweep {e(meta["sweep_id"])}</h2>
<p>Scenario <b>{e(inputs["scenario"])}</b> (workload {e(meta.get("workload", ""))}) of {e(inputs["suite_file"])},
backend {e(inputs["backend"])}, kubelet profile {e(settings)}; rates {e(format_rate(inputs["low"]))} ..
{e(format_rate(inputs["high"]))}; A = {e("/".join(inputs["class_a"]))}, B = {e("/".join(inputs["class_b"]))};
status {e(str(meta.get("status")))} ({e(str(meta.get("stop_reason", "")))}).</p>
<table>
<tr><th>measured boundary</th><td>{e(measured)}</td></tr>
<tr><th>predicted boundary</th><td>{e(predicted)}</td></tr>
<tr><th>model vs measurement</th><td>{e(verdict)} (tolerance {inputs.get("tolerance", 0):.0%})</td></tr>
</table>
<img alt="P(A) against the leak rate" src="data:image/png;base64,{base64.b64encode(png).decode()}">
<details><summary>{len(trials)} trials</summary>
<table><tr><th>#</th><th>rate</th><th>achieved</th><th>step</th><th>outcome</th><th>class</th><th>t (s)</th><th>model</th><th>run</th></tr>
{rows}</table></details>
</section>"""


def write_plot_and_report(sweep_dir: Path) -> tuple[Path, Path]:
    meta, trials = _load(sweep_dir)
    png = render_png(meta, trials)
    png_path = sweep_dir / "sweep.png"
    png_path.write_bytes(png)
    body = report_section(sweep_dir, png)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>sweep {html.escape(meta["sweep_id"])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:1em auto}} td,th{{padding:2px 8px;text-align:left}}
img{{max-width:100%}}</style></head>
<body>{body}
<script type="application/json" id="sweep-meta">{html.escape(json.dumps(meta.get("fit"), default=str))}</script>
</body></html>
"""
    html_path = sweep_dir / "report.html"
    html_path.write_text(page)
    return png_path, html_path
