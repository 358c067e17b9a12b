"""``harness trend``: outcome and event times across runs, with compare's change flags."""

from __future__ import annotations

import time

import click

from harness.commands.report import SELECTOR_HELP, _results_option, _say


@click.command("trend", epilog=SELECTOR_HELP)
@click.argument("selector", default="")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default="trend.html",
    show_default=True,
    help="HTML file to write (self-contained).",
)
@_results_option
@click.option(
    "--window", type=int, default=5, show_default=True, help="Runs before each run it is judged against."
)
@click.option(
    "--tolerance-seconds", type=float, default=1.0, show_default=True, help="As in 'harness compare'."
)
@click.option(
    "--tolerance-share", type=float, default=0.0, show_default=True, help="As in 'harness compare'."
)
@click.option("--alpha", type=float, default=0.05, show_default=True, help="As in 'harness compare'.")
@click.option("--min-repeats", type=int, default=5, show_default=True, help="As in 'harness compare'.")
def trend_cmd(
    selector: str,
    output: str,
    results_dir: str,
    window: int,
    tolerance_seconds: float,
    tolerance_share: float,
    alpha: float,
    min_repeats: int,
) -> None:
    """Write a trend page of the runs SELECTOR names: per scenario and workload, the outcome
    and event time of each run (dates, kubelet versions, hosts), with every change that
    'harness compare' would flag against the --window runs of the same suite before it.

    \b
    Examples:
      harness trend lab=nightly,last:30 -o trend.html
      harness trend suite=kubelet,host=lab-1 --window 7 -o /srv/www/kubelet-trend.html
      harness trend --results tests/fixtures/runs backend=process -o /tmp/trend.html
    Exit 0 (the page is written whether or not changes were flagged; the count is printed).
    """
    # lazy: compare and trend load pandas/pyarrow, the trend page matplotlib (CLI start-up)
    from harness.compare import CompareOptions
    from harness.trend import build_trend
    from harness.trend.html import write_trend

    t0 = time.monotonic()
    opts = CompareOptions(
        tolerance_seconds=tolerance_seconds,
        tolerance_share=tolerance_share,
        alpha=alpha,
        min_repeats=min_repeats,
        cgroups=False,
    )
    t = build_trend(selector, results_dir, window=window, options=opts, progress=_say)
    p = write_trend(t, output)
    click.echo(
        f"harness: trend of {len(t.runs)} run(s) written to {p} ({len(t.changes)} change(s) flagged, "
        f"{time.monotonic() - t0:.1f} s)"
    )
