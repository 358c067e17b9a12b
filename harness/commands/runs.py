"""``harness runs show``, ``harness runs prune`` and the JSON summary of ``harness run --json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from harness.commands.report import SELECTOR_HELP, _results_option, _say, runs_group
from harness.errors import HarnessError, InputError


def run_summary(run_dir: str | Path) -> dict[str, Any]:
    """What a script needs of one run: status, counts, host facts, per-workload outcome and time."""
    from harness.export import run_figures  # lazy: pandas/pyarrow and prometheus_client (CLI start-up)

    fig = run_figures(run_dir)
    d = fig.to_dict()
    return {
        "run_id": fig.run_id,
        "run_dir": str(Path(run_dir)),
        "status": fig.status,
        "started": fig.started,
        "finished": fig.finished,
        "duration_s": d["duration_s"],
        "passed": fig.verdicts_failed == 0 and fig.status == "complete",
        "verdicts": {"passed": fig.verdicts_passed, "failed": fig.verdicts_failed},
        "host": fig.labels,
        "labels": fig.explicit_labels,
        "host_deviations": fig.deviations,
        "workloads": d["workloads"],
        "evictions": d["evictions"],
    }


def echo_run_summary(run_dir: str | Path) -> None:
    """The hook of ``harness run --json``: one JSON document on stdout."""
    click.echo(json.dumps(run_summary(run_dir), indent=2))


def _one_run(run: str, results_dir: str) -> Path:
    from harness.catalog import select_runs  # lazy: harness.catalog loads pandas/pyarrow (CLI start-up)

    runs = select_runs(run, results_dir)
    if len(runs) != 1:
        ids = ", ".join(r.id for r in runs[:5]) + (", ..." if len(runs) > 5 else "")
        raise InputError("RUN", None, f"{run!r} selects {len(runs)} runs ({ids or 'none'}); name exactly one")
    return runs[0].dir


def _fmt_t(t: float | None) -> str:
    return "-" if t is None else f"{t:.2f}s"


@click.command("show", epilog=SELECTOR_HELP)
@click.argument("run")
@_results_option
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
def runs_show_cmd(run: str, results_dir: str, as_json: bool) -> None:
    """Show one run: status, host facts, every workload's verdict and event time.

    \b
    Examples:
      harness runs show last:1
      harness runs show 20261123T183957Z-local-process-8ad9 --json
    """
    s = run_summary(_one_run(run, results_dir))
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    v = s["verdicts"]
    click.echo(f"run       {s['run_id']}  ({s['status']})")
    click.echo(f"folder    {s['run_dir']}")
    dur = f", {s['duration_s']:.1f} s" if s["duration_s"] is not None else ""
    click.echo(f"started   {s['started']}{dur}")
    click.echo("host      " + "  ".join(f"{k}={val}" for k, val in s["host"].items() if val))
    if s["labels"]:
        click.echo("labels    " + "  ".join(f"{k}={val}" for k, val in sorted(s["labels"].items())))
    click.echo(f"verdicts  {v['passed']}/{v['passed'] + v['failed']} match")
    for d in s["host_deviations"]:
        click.echo(f"deviation {d}")
    rows = [
        (
            "ok" if w["passed"] else "FAIL",
            w["scenario"],
            w["workload"],
            w["predicted"],
            w["observed"],
            _fmt_t(w["event_s"]),
        )
        for w in s["workloads"]
    ]
    head = ("", "scenario", "workload", "predicted", "observed", "t")
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) if rows else len(head[i]) for i in range(6)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    click.echo(fmt.format(*head).rstrip())
    for r in rows:
        click.echo(fmt.format(*r).rstrip())
    for e in s["evictions"]:
        age = "unknown" if e["stats_age_s"] is None else f"{e['stats_age_s']:.2f}s"
        click.echo(
            f"eviction  {e['scenario']}/{e['workload'] or e['pod']}: kubelet stats age {age}"
            f" (summary of {e['stats_time'] or '-'})"
        )


@click.command("prune", epilog=SELECTOR_HELP)
@click.argument("filters", nargs=-1)
@_results_option
@click.option("--keep-last", type=int, metavar="N", help="Keep the N most recent runs (per pool).")
@click.option("--older-than", metavar="AGE", help="Remove runs started more than AGE ago (30d, 12h, 2w).")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.option("--no-sweeps", is_flag=True, help="Leave the trial runs of sweeps alone.")
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as JSON.")
def runs_prune_cmd(
    filters: tuple[str, ...],
    results_dir: str,
    keep_last: int | None,
    older_than: str | None,
    dry_run: bool,
    no_sweeps: bool,
    as_json: bool,
) -> None:
    """Remove old run folders under --results, and old trial runs of its sweeps.

    \b
    Examples:
      harness runs prune --keep-last 30 --dry-run
      harness runs prune --older-than 30d lab=nightly
      harness runs prune --keep-last 14 --older-than 14d
    Pools: the runs of the results folder, and each sweep's trial runs (results/sweeps/*/runs/),
    each on its own. With both --keep-last and --older-than a run must meet both to go.
    FILTERS narrow the runs considered (like 'harness runs list'). A run that is still running
    (registered in /run/harness/active, or a sweep holding its lock) is never removed.
    """
    # lazy: harness.retention loads pandas/pyarrow via harness.run (CLI start-up)
    from harness.retention import apply, parse_age, plan_prune

    if keep_last is None and older_than is None:
        raise InputError("runs prune", None, "give --keep-last N and/or --older-than AGE")
    plan = plan_prune(
        results_dir,
        keep_last=keep_last,
        older_than_s=parse_age(older_than) if older_than else None,
        selector=",".join(filters),
        sweeps=not no_sweeps,
    )
    failed: list[str] = [] if dry_run else apply(plan, results_dir)
    if as_json:
        click.echo(
            json.dumps(
                {"dry_run": dry_run, "decisions": [d.to_dict() for d in plan.decisions], "failed": failed},
                indent=2,
            )
        )
    else:
        verb = "would remove" if dry_run else "removed"
        for d in plan.decisions:
            if d.prune:
                click.echo(f"{verb:<12} {d.pool:<10} {d.run.id}  ({d.reason.removeprefix('prune: ')})")
            elif d.reason.startswith("kept:"):
                click.echo(f"{'kept':<12} {d.pool:<10} {d.run.id}  ({d.reason.removeprefix('kept: ')})")
    _say(f"{len(plan.prune)} of {len(plan.decisions)} run(s) {'to remove' if dry_run else 'removed'}")
    if failed:
        raise HarnessError("could not remove: " + "; ".join(failed))


# `runs list` is defined with the catalog in harness.commands.report; `show` and `prune` join it here
runs_group.add_command(runs_show_cmd)
runs_group.add_command(runs_prune_cmd)
