"""``harness``: thin commands over the library.

Exit codes: 0 success / all verdicts match; 1 a verdict mismatch or a regression;
2 bad input or a harness error (one clear line, no traceback).
"""

from __future__ import annotations

import sys

import click

from harness import __version__
from harness.errors import HarnessError


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except HarnessError as exc:
            click.echo(f"harness: error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="harness")
def cli() -> None:
    """Stress-test how the kubelet and the Linux kernel protect node memory."""


def main() -> None:
    try:
        cli(standalone_mode=True)
    except HarnessError as exc:  # pragma: no cover - defensive
        click.echo(f"harness: error: {exc}", err=True)
        sys.exit(2)


def _register() -> None:
    from harness.commands.doctor import doctor_cmd
    from harness.commands.model import model_group
    from harness.commands.report import compare_cmd, report_cmd, runs_group
    from harness.commands.run import cleanup_cmd, run_cmd

    cli.add_command(model_group)
    cli.add_command(run_cmd)
    cli.add_command(cleanup_cmd)
    cli.add_command(doctor_cmd)

    from harness.commands.provision import provision_cmd

    cli.add_command(provision_cmd)
    cli.add_command(report_cmd)
    cli.add_command(compare_cmd)
    cli.add_command(runs_group)

    from harness.commands.sweep import sweep_cmd

    cli.add_command(sweep_cmd)

    from harness.commands.cluster import cluster_group

    cli.add_command(cluster_group)
    from harness.commands.upgrade import upgrade_cmd

    cli.add_command(upgrade_cmd)

    from harness.commands.nightly import register as register_nightly

    register_nightly(cli, runs_group)

    from harness.commands.lab import lab_group

    cli.add_command(lab_group)


_register()
