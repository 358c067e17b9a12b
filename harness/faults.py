"""Pause points for fault-injection tests: the run stops at a named point of a scenario, the test does
its damage (kills a daemon by the pid in the daemon's pid file) and lets the run go on, so that the
fault lands at the same place every time instead of after a sleep that a loaded host stretches.

Off unless ``HARNESS_FAULT_PAUSE=<point>:<scenario>`` is set (``<scenario>`` is the scenario's name
or id, ``*`` any scenario; points: ``launched``, right after every workload of the scenario started).
At the point the run writes ``<HARNESS_FAULT_DIR>/<point>.<scenario name>.paused`` (its pid) and waits
until ``<point>.<scenario name>.resume`` appears beside it, at most ``HARNESS_FAULT_TIMEOUT`` seconds
(default 300); then it goes on either way.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ENV_PAUSE = "HARNESS_FAULT_PAUSE"
ENV_DIR = "HARNESS_FAULT_DIR"
ENV_TIMEOUT = "HARNESS_FAULT_TIMEOUT"


def wanted(point: str, scenario: str, scenario_id: str | None = None) -> bool:
    """True when the environment asks to pause at ``point`` of this scenario."""
    raw = os.environ.get(ENV_PAUSE, "").strip()
    if not raw:
        return False
    want_point, _, want_scenario = raw.partition(":")
    return want_point == point and want_scenario in ("*", scenario, scenario_id or scenario)


def pause(point: str, scenario: str, scenario_id: str | None = None) -> float | None:
    """Wait at ``point`` if asked (see the module's docstring); the seconds paused, None if not asked."""
    if not wanted(point, scenario, scenario_id):
        return None
    folder = Path(os.environ.get(ENV_DIR) or ".")
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f"{point}.{scenario}.paused"
    resume = folder / f"{point}.{scenario}.resume"
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.rename(marker)  # the test never reads a half-written marker
    t0 = time.monotonic()
    deadline = t0 + float(os.environ.get(ENV_TIMEOUT) or 300)
    while not resume.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return time.monotonic() - t0
