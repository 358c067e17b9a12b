"""Registers the nightly-lab commands: ``export``, ``trend``, ``runs show``, ``runs prune``."""

from __future__ import annotations

import click

from harness.commands.export import export_cmd
from harness.commands.runs import runs_prune_cmd, runs_show_cmd
from harness.commands.trend import trend_cmd


def register(cli: click.Group, runs_group: click.Group) -> None:
    cli.add_command(export_cmd)
    cli.add_command(trend_cmd)
    runs_group.add_command(runs_show_cmd)
    runs_group.add_command(runs_prune_cmd)
