"""``harness run``, ``harness cleanup`` and ``harness doctor``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from harness.errors import HarnessError

BACKENDS = ["process", "docker", "containerd", "kubernetes"]


@click.command("run")
@click.argument("suite_file", metavar="SUITE", type=click.Path(dir_okay=False))
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="process",
    show_default=True,
    help="How workloads are launched.",
)
@click.option(
    "--results",
    "results_dir",
    type=click.Path(file_okay=False),
    default="results",
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
) -> None:
    """Run a suite on this host and compare every outcome with the model.

    \b
    Examples:
      harness run suites/local.yaml
      harness run suites/local.yaml --backend docker --scenario S1
      harness run suites/local.yaml --label kubelet=1.33.4 --label lab=nightly
      harness run suites/local.yaml --inventory lab.yaml --forks 4   # on every lab host
    Exit 0 when every verdict matches, 1 on a mismatch, 2 on bad input or a harness error,
    130 when interrupted (results are kept and marked interrupted).
    """
    if inventory_file:
        from harness.commands.provision import run_on_inventory_cmd

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
        )
    from harness.catalog import parse_labels
    from harness.config.suite import load_suite
    from harness.run import Progress, run_suite

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
    )
    n = len(res.verdicts)
    bad = sum(1 for v in res.verdicts if not v.passed)
    click.echo(f"harness: {n - bad}/{n} verdicts match; run {res.status}; results in {res.run_dir}")
    if res.status == "interrupted":
        sys.exit(130)
    sys.exit(0 if bad == 0 else 1)


@click.command("cleanup")
@click.option(
    "--backend",
    "backends",
    type=click.Choice(BACKENDS),
    multiple=True,
    help="Only this backend (default: all).",
)
@click.option("--force", is_flag=True, help="Clean up even while other runs are in progress (destroys them).")
def cleanup_cmd(backends: tuple[str, ...], force: bool) -> None:
    """Remove every workload, container and cgroup the harness created.

    Works after the harness itself was killed with SIGKILL: leftovers are found by the
    'harness' cgroup prefix and by container labels, and processes are stopped by pid.
    """
    from harness.run import active_runs, get_backend

    running = active_runs()
    if running and not force:
        who = ", ".join(f"{r['run_id']} (pid {r['pid']})" for r in running)
        raise HarnessError(
            f"runs in progress: {who}; cleanup would destroy their workloads. "
            "Stop them first, or pass --force"
        )
    failed: list[str] = []
    for name in backends or BACKENDS:
        try:
            b = type(get_backend(name))
        except (HarnessError, ImportError):
            continue
        try:
            failed += b.cleanup_all()
        except HarnessError as exc:
            click.echo(f"harness: {name}: {exc}", err=True)
    if not backends:  # the VMs of `harness lab up` (their registry), by pid; nothing else
        from harness.vmlab.lab import cleanup_all

        failed += cleanup_all(say=lambda m: click.echo(m, err=True))
    if failed:
        for f in failed:
            click.echo(f"harness: could not remove {f}", err=True)
        raise HarnessError(f"{len(failed)} leftovers could not be removed")
    click.echo("harness: nothing left behind")


@click.command("doctor")
def doctor_cmd() -> None:
    """Check what each backend needs on this host, and say how to get what is missing."""
    from harness.run import get_backend

    worst = 0
    for name in BACKENDS:
        try:
            b = get_backend(name)
            checks = b.sanity_checks()
        except (HarnessError, ImportError) as exc:
            click.echo(f"{name}: unavailable: {exc}")
            worst = 1
            continue
        b.close()
        for c in checks:
            mark = "ok " if c.ok else "MISSING"
            line = f"{name:<11} {mark:<8} {c.name}: {c.detail}"
            if not c.ok and c.fix:
                line += f"  -> {c.fix}"
            click.echo(line)
            if not c.ok:
                worst = 1
    sys.exit(worst)
