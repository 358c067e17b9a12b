"""``harness doctor``: read-only by default; ``--fix`` may start or install what is missing."""

from __future__ import annotations

import sys

import click

from harness.backends import NAMES
from harness.doctor import run_doctor
from harness.hostperf import doctor_line


@click.command("doctor")
@click.option(
    "--backend",
    "backends",
    type=click.Choice(NAMES),
    multiple=True,
    help="Only this backend (default: all); repeatable.",
)
@click.option(
    "--fix",
    is_flag=True,
    help="Start the project's Docker engine and containerd and import the workload images where missing.",
)
def doctor_cmd(backends: tuple[str, ...], fix: bool) -> None:
    """Check what each backend needs on this host, and say how to get what is missing.

    \b
    Examples:
      harness doctor                       # looks only: starts, installs and imports nothing
      harness doctor --backend docker --fix
    Also measures how fast this host faults in fresh and just-freed memory (a few seconds, in a
    scratch cgroup that is removed). Without --fix nothing on the host changes: a daemon that is not running is reported (a run
    starts it on demand). Exit 0 when nothing is missing, 1 otherwise.
    """
    worst = run_doctor(list(backends) or list(NAMES), click.echo, fix=fix)
    click.echo(doctor_line())  # how fast fresh and just-freed memory fault in (issue: reachable leak rates)
    sys.exit(worst)
