"""``harness export``: a run's figures for Prometheus (node_exporter textfile or Pushgateway)."""

from __future__ import annotations

import sys

import click

from harness.commands.report import SELECTOR_HELP, _results_option
from harness.errors import InputError


@click.command("export", epilog=SELECTOR_HELP)
@click.argument("run")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["openmetrics", "prometheus"]),
    default="openmetrics",
    show_default=True,
    help="OpenMetrics text, or the classic Prometheus text format (0.0.4).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write here, atomically (e.g. node_exporter's textfile folder/harness.prom); default stdout.",
)
@click.option("--pushgateway", metavar="URL", help="Push to this Pushgateway (replaces the run's group).")
@click.option("--job", default="harness", show_default=True, help="Pushgateway job name.")
@_results_option
def export_cmd(
    run: str, fmt: str, output: str | None, pushgateway: str | None, job: str, results_dir: str
) -> None:
    """Export RUN's figures as Prometheus metrics.

    \b
    Examples:
      harness export last:1
      harness export last:1 -o /var/lib/prometheus/node-exporter/harness.prom
      harness export last:1 --pushgateway http://127.0.0.1:9091
    Metrics: verdict counts, outcome per scenario and workload, event times, predicted
    windows, host deviations, the kubelet's stats age at evictions; host facts (host,
    kubelet_version, kernel, cgroup_version, suite, backend) as labels. Names and types:
    see harness/export/openmetrics.py. RUN names exactly one run (selector, id or folder).
    """
    # lazy: the catalog and export load pandas/pyarrow and prometheus_client (CLI start-up)
    from harness.catalog import select_runs
    from harness.export import push, render, run_figures, write_textfile

    runs = select_runs(run, results_dir)
    if len(runs) != 1:
        ids = ", ".join(r.id for r in runs[:5]) + (", ..." if len(runs) > 5 else "")
        raise InputError("RUN", None, f"{run!r} selects {len(runs)} runs ({ids or 'none'}); name exactly one")
    fig = run_figures(runs[0].dir)
    if output:
        p = write_textfile(fig, output, fmt)
        click.echo(f"harness: metrics of {fig.run_id} written to {p}", err=True)
    if pushgateway:
        group = push(fig, pushgateway, job=job)
        where = "/".join(f"{k}/{v}" for k, v in group.items())
        click.echo(f"harness: metrics of {fig.run_id} pushed to {pushgateway} ({where})", err=True)
    if not output and not pushgateway:
        sys.stdout.write(render(fig, fmt).decode())
