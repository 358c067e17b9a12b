"""End-to-end tests run the ``harness`` CLI as a user would, on real cgroups and daemons."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def harness(*args: str, timeout: float = 600, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,  # type: ignore[call-overload]
    )


def require_docker() -> None:
    if os.environ.get("HARNESS_SKIP_DOCKER") == "1":
        pytest.skip("HARNESS_SKIP_DOCKER=1")


@pytest.fixture(autouse=True)
def _no_leftovers_after() -> object:
    yield
    from harness.host.cgroups import leftover_trees

    left = leftover_trees()
    if left:
        harness("cleanup")
    assert not left, f"the test left harness cgroups behind: {left}"
