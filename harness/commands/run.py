"""``harness run`` and ``harness cleanup`` (``harness doctor``: harness/commands/doctor.py)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from harness import paths
from harness.backends import NAMES, backend_class
from harness.commands.provision import run_on_inventory_cmd
from harness.commands.runs import echo_run_summary
from harness.config.suite import load_suite
from harness.errors import HarnessError
from harness.owned import including_live_owners, sweep_host, unowned_cgroups
from harness.progress import Progress


@click.command("run")
@click.argument("suite_file", metavar="SUITE", type=click.Path(dir_okay=False))
@click.option(
    "--backend",
    type=click.Choice(NAMES),
    default="process",
    show_default=True,
    help="How workloads are launched.",
)
@click.option(
    "--results",
    "results_dir",
    type=click.Path(file_okay=False),
    default="results",
    envvar="HARNESS_RESULTS",
    show_envvar=True,
    show_default=True,
    help="Folder receiving results/<run-id>/.",
)
@click.option("--scenario", "only", multiple=True, help="Run only this scenario (name or id); repeatable.")
@click.option("--sample-hz", type=float, help="Sampling rate (default: the suite's sampleHz).")
@click.option("-q", "--quiet", is_flag=True, help="No live progress.")
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="Label the run (stored in run.json, used by 'harness runs list' and 'harness compare'); repeatable.",
)
@click.option(
    "--inventory",
    "inventory_file",
    type=click.Path(dir_okay=False),
    help="Run on every host of this lab inventory (over SSH) instead of this host; results merged.",
)
@click.option(
    "--forks",
    type=click.IntRange(1, 100),
    default=5,
    show_default=True,
    help="With --inventory: hosts run at once.",
)
@click.option("--limit", multiple=True, help="With --inventory: only these hosts or groups.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary of the run on stdout at the end.")
@click.option(
    "--warm-up",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Touch and release each scenario's memory before it starts, so that this host's page faults "
    "keep the leak's pace (auto: where the run-start measurement shows fresh memory faulting in slowly).",
)
def run_cmd(
    suite_file: str,
    backend: str,
    results_dir: str,
    only: tuple[str, ...],
    sample_hz: float | None,
    quiet: bool,
    labels: tuple[str, ...],
    inventory_file: str | None,
    forks: int,
    limit: tuple[str, ...],
    as_json: bool,
    warm_up: str,
) -> None:
    """Run a suite on this host and compare every outcome with the model.

    \b
    Examples:
      harness run suites/local.yaml
      harness run suites/local.yaml --backend docker --scenario S1
      harness run suites/local.yaml --label kubelet=1.33.4 --label lab=nightly
      harness run suites/local.yaml --inventory lab.yaml --forks 4   # on every lab host
    Exit 0 when every verdict matches, 1 on a mismatch, 2 on bad input, 3 when the host failed
    (a daemon, a kubelet that will not start), 4 on an internal error (the traceback is saved in
    the run), 130 when interrupted (results are kept and marked interrupted).
    """
    if inventory_file:
        return run_on_inventory_cmd(
            suite_file,
            inventory_file,
            backend=backend,
            results_dir=results_dir,
            only=list(only),
            sample_hz=sample_hz,
            quiet=quiet,
            forks=forks,
            limit=list(limit),
            labels=list(labels),
            as_json=as_json,
        )
    # lazy: harness.catalog and harness.run load pandas/pyarrow (CLI start-up)
    from harness.catalog import parse_labels
    from harness.run import run_suite

    run_labels = parse_labels(labels)
    suite = load_suite(suite_file)
    res = run_suite(
        suite,
        backend,
        Path(results_dir),
        only=list(only) or None,
        progress=Progress(quiet=quiet),
        sample_hz=sample_hz,
        labels=run_labels,
        warm_up=warm_up,
    )
    n = len(res.verdicts)
    bad = sum(1 for v in res.verdicts if not v.passed)
    click.echo(
        f"harness: {n - bad}/{n} verdicts match; run {res.status}; results in {res.run_dir}", err=as_json
    )
    if as_json:
        echo_run_summary(res.run_dir)
    if res.status == "interrupted":
        sys.exit(130)
    sys.exit(0 if bad == 0 else 1)


@click.command("cleanup")
@click.option(
    "--backend",
    "backends",
    type=click.Choice(NAMES),
    multiple=True,
    help="Only this backend (default: all).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Also remove what runs in progress made (destroys them); default: only dead runs' leftovers.",
)
def cleanup_cmd(backends: tuple[str, ...], force: bool) -> None:
    """Remove what runs no longer alive created: their workloads, containers, tasks, pods, cgroups.

    Works after the harness itself was killed with SIGKILL: each run records what it creates in a
    ledger under /run/harness/owned before creating it (harness.owned), and cleanup removes exactly
    what the ledgers of dead runs name, processes by pid and start time. A run in progress, and
    anything no ledger names (another tool's harness/<x> cgroup, container or task), is left alone.
    A run left 'running' by a killed harness (under $HARNESS_RESULTS) is marked 'killed', its
    progress files become its tables and its page-cache files are removed. VM labs whose QEMUs all
    stopped are removed; a running lab (or one whose up/down is in progress) is left alone unless
    --force.
    """
    # lazy: recovery and run load pandas/pyarrow, vmlab.lab paramiko (CLI start-up)
    from harness.recovery import recover_killed_runs
    from harness.run import active_runs
    from harness.vmlab.lab import cleanup_all as lab_cleanup_all

    recover_killed_runs(paths.results_dir(), lambda m: click.echo(m, err=True))

    running = active_runs()
    if running and not force:
        who = ", ".join(f"{r['run_id']} (pid {r['pid']})" for r in running)
        click.echo(f"harness: runs in progress are left alone: {who}")
    failed: list[str] = []
    with including_live_owners() if force else contextlib.nullcontext():
        # containers, tasks and pods first (each by its engine), the plain processes and cgroups last
        for name in sorted(backends or NAMES, key=lambda n: n == "process"):
            try:
                b = backend_class(name)
            except (HarnessError, ImportError):
                continue
            try:
                failed += b.cleanup_all()
            except HarnessError as exc:
                click.echo(f"harness: {name}: {exc}", err=True)
        failed += sweep_host()
        if not backends:  # stopped labs of `harness lab up` (running ones with --force), by pid
            failed += lab_cleanup_all(say=lambda m: click.echo(m, err=True), force=force)
    for rel in unowned_cgroups():
        click.echo(f"harness: left alone (no ledger names it, not made by a harness run): cgroup {rel}")
    if failed:
        for f in failed:
            click.echo(f"harness: could not remove {f}", err=True)
        raise HarnessError(f"{len(failed)} leftovers could not be removed")
    click.echo("harness: nothing left behind")
