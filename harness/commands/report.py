"""``harness report``, ``harness compare`` and ``harness runs list``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from harness.errors import InputError

SELECTOR_HELP = """\b
Selectors (BASE, NEW, RUN, FILTER): comma-separated terms, all must hold:
  kubelet=1.33.4  backend!=docker  date>=2026-11-01  kubelet=1.33.*  host~^lab-
  last:5 / first:5       the most recent / oldest N runs that pass the filters
  RUN-ID or prefix       a run of the results folder
  PATH                   a run folder, or a folder of runs (all of them)
Labels: those given with 'harness run --label KEY=VALUE' and run, suite, backend,
host, kernel, cgroup, kubelet, date, started, git, status, harness, docker, containerd."""

_results_option = click.option(
    "--results",
    "results_dir",
    type=click.Path(file_okay=False),
    default="results",
    envvar="HARNESS_RESULTS",
    show_envvar=True,
    show_default=True,
    help="Results folder holding the runs.",
)


def _say(msg: str) -> None:
    click.echo(f"harness: {msg}", err=True)


@click.command("report", epilog=SELECTOR_HELP)
@click.argument("run")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="HTML file to write (default: RUN/report/report.html); PNGs are written beside it.",
)
@_results_option
def report_cmd(run: str, output: str | None, results_dir: str) -> None:
    """Write one self-contained HTML report of RUN, with a timeline plot per scenario.

    \b
    Examples:
      harness report results/20261123T182827Z-local-process-5fbf
      harness report last:1 -o /tmp/tonight.html
    RUN is a run folder, a run id (or unique prefix) in --results, or a selector naming
    exactly one run. The plots are also written as PNG files beside the HTML file.
    """
    # lazy: commands load their libraries only when they run
    from harness.catalog import select_runs

    # lazy: commands load their libraries only when they run
    from harness.report import write_run_report

    runs = select_runs(run, results_dir)
    if len(runs) != 1:
        ids = ", ".join(r.id for r in runs[:5]) + (", ..." if len(runs) > 5 else "")
        raise InputError("RUN", None, f"{run!r} selects {len(runs)} runs ({ids or 'none'}); name exactly one")
    t = time.monotonic()
    files = write_run_report(runs[0].dir, output, progress=_say)
    click.echo(
        f"harness: report of {runs[0].id} written to {files.html} "
        f"({len(files.pngs)} plots as PNG beside it, {time.monotonic() - t:.1f} s)"
    )


@click.command("compare", epilog=SELECTOR_HELP)
@click.argument("base")
@click.argument("new")
@_results_option
@click.option(
    "--tolerance-seconds",
    type=float,
    default=1.0,
    show_default=True,
    help="Shift of an event's time (median) that counts as a change.",
)
@click.option(
    "--tolerance-share",
    type=float,
    default=0.0,
    show_default=True,
    help="Move of an outcome's share (0..1) that counts as a change.",
)
@click.option(
    "--alpha",
    type=float,
    default=0.05,
    show_default=True,
    help="Significance level of the Fisher / Mann-Whitney tests.",
)
@click.option(
    "--min-repeats",
    type=int,
    default=5,
    show_default=True,
    help="Runs per side from which statistical tests are used instead of tolerances alone.",
)
@click.option(
    "--min-effect",
    type=float,
    default=1.0,
    show_default=True,
    help="With repeats: how many times the spread within a side (IQR) an event's position inside its "
    "as-run window must move to count as a change.",
)
@click.option("--no-cgroups", is_flag=True, help="Skip cgroup values (reads no samples at all).")
@click.option("--junit", "junit_file", type=click.Path(dir_okay=False), help="Write JUnit XML here.")
@click.option(
    "--markdown", "markdown_file", type=click.Path(dir_okay=False), help="Write a Markdown summary here."
)
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False),
    help="Write an HTML report here: the gate's table and both sides' timelines per scenario.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON on stdout.")
@click.option("-v", "--verbose", is_flag=True, help="Also list the checks that did not change.")
def compare_cmd(
    base: str,
    new: str,
    results_dir: str,
    tolerance_seconds: float,
    tolerance_share: float,
    alpha: float,
    min_repeats: int,
    min_effect: float,
    no_cgroups: bool,
    junit_file: str | None,
    markdown_file: str | None,
    html_file: str | None,
    as_json: bool,
    verbose: bool,
) -> None:
    """Compare runs BASE with runs NEW; exit 1 when behaviour changed beyond tolerance.

    \b
    Examples:
      harness compare 20261123T180653Z-local-process-b875 20261123T182827Z-local-process-5fbf
      harness compare kubelet=1.33.4,last:20 kubelet=1.34.0,last:20 --junit compare.xml
      harness compare backend=process,date=2026-11-22 backend=process,date=2026-11-23 --markdown sum.md
    Checks per scenario/workload: observed outcome (a victim kill counts apart), time of the
    event, verdict pass -> fail; plus cgroup values, host deviations (by kind) and missing
    workloads. A time is judged against each side's as-run predicted window: it is a change
    when it leaves that window; inside it, only when (with --min-repeats runs per side) its
    position in the window moved beyond the spread seen within each side (Mann-Whitney U,
    --min-effect, --tolerance-seconds). Outcome shares use Fisher's exact test from
    --min-repeats runs per side. Each check reports the noise within each side (-v).
    Only complete runs are selected by filters (add status=... to choose otherwise).
    Exit 0 no change, 1 a change beyond tolerance, 2 bad input.
    """
    # lazy: commands load their libraries only when they run
    from harness.catalog import Catalog

    # lazy: commands load their libraries only when they run
    from harness.compare import CompareOptions, compare_groups, load_selection

    # lazy: commands load their libraries only when they run
    from harness.compare.output import to_json, to_junit, to_markdown, to_text

    opts = CompareOptions(
        tolerance_seconds=tolerance_seconds,
        tolerance_share=tolerance_share,
        alpha=alpha,
        min_repeats=min_repeats,
        min_effect=min_effect,
        cgroups=not no_cgroups,
    )
    opts.validate()
    t = time.monotonic()
    cat = Catalog(results_dir) if Path(results_dir).is_dir() else None
    groups = []
    for side, sel in (("BASE", base), ("NEW", new)):
        groups.append(
            load_selection(sel, results_dir, side, cgroups=opts.cgroups, catalog=cat, progress=_say)
        )
    c = compare_groups(groups[0], groups[1], opts)
    elapsed = time.monotonic() - t
    if junit_file:
        Path(junit_file).write_text(to_junit(c, elapsed))
    if markdown_file:
        Path(markdown_file).write_text(to_markdown(c))
    if html_file:
        # lazy: the HTML comparison loads matplotlib, only with --html (CLI start-up)
        from harness.report.compare import write_comparison_report

        write_comparison_report(c, html_file, progress=_say)
    click.echo(to_json(c) if as_json else to_text(c, verbose=verbose))
    _say(f"compared {len(c.base.ids)} with {len(c.new.ids)} run(s) in {elapsed:.2f} s")
    sys.exit(1 if c.changed else 0)


@click.group("runs")
def runs_group() -> None:
    """The catalog of runs under a results folder."""


@runs_group.command("list", epilog=SELECTOR_HELP)
@click.argument("filters", nargs=-1)
@_results_option
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON (all labels).")
@click.option("--no-index", is_flag=True, help="Ignore and do not write the catalog cache (.catalog.json).")
def runs_list_cmd(filters: tuple[str, ...], results_dir: str, as_json: bool, no_index: bool) -> None:
    """List the runs under --results, oldest first, optionally filtered.

    \b
    Examples:
      harness runs list
      harness runs list backend=docker date>=2026-11-01 last:10
      harness runs list --results /srv/nightly kubelet=1.34.* --json
    Several FILTER arguments are combined like one comma-separated selector.
    """
    # lazy: commands load their libraries only when they run
    from harness.catalog import Catalog, select_runs

    # lazy: commands load their libraries only when they run
    from harness.recovery import recover_killed_runs

    cat = Catalog(results_dir, use_index=not no_index)
    # only the runs the catalog lists as running are read again; a recovered run.json changed
    if recover_killed_runs(Path(results_dir), lambda m: click.echo(m, err=True), catalog=cat):
        cat.refresh()
    runs = select_runs(",".join(filters), results_dir, catalog=cat)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in runs], indent=2))
        return
    rows = [
        (
            r.id,
            r.status,
            f"{r.verdicts_passed}/{r.verdicts_total}" if r.verdicts_total is not None else "-",
            r.labels.get("kubelet", "-"),
            r.labels.get("cgroup", "-"),
            r.labels.get("host", "-"),
            " ".join(f"{k}={v}" for k, v in sorted(r.explicit_labels.items())),
        )
        for r in runs
    ]
    head = ("run", "status", "verdicts", "kubelet", "cgroup", "host", "labels")
    widths = [max(len(head[i]), *(len(row[i]) for row in rows)) if rows else len(head[i]) for i in range(7)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    # 256 rows a write: click.echo per row was a third of the time for 10,000 runs; one write of
    # all of them would be cut short without an error when the reader goes away (| head -1)
    lines = [fmt.format(*head).rstrip(), *(fmt.format(*row).rstrip() for row in rows)]
    for i in range(0, len(lines), 256):
        click.echo("\n".join(lines[i : i + 256]))
    total = len(cat.runs())
    note = f"; skipped unreadable: {', '.join(cat.skipped)}" if cat.skipped else ""
    _say(f"{len(runs)} of {total} runs in {results_dir}{note}")
