"""Where the harness keeps results: ``HARNESS_RESULTS`` or ``results`` (relative to the cwd).

A cron job starts in the home folder, not in the repository: ``HARNESS_RESULTS=/srv/nightly``
makes every command (run, report, compare, runs, trend, export, sweep, provision) use the same
folder without a ``--results`` on each.
"""

from __future__ import annotations

import os
from pathlib import Path

RESULTS_ENV = "HARNESS_RESULTS"


def results_dir() -> Path:
    """The default results folder (``--results`` overrides it per command)."""
    return Path(os.environ.get(RESULTS_ENV) or "results")


def sweeps_dir() -> Path:
    """The default folder of sweeps: ``<results>/sweeps``."""
    return results_dir() / "sweeps"
