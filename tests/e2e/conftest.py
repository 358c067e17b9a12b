"""End-to-end tests run the ``harness`` CLI as a user would, on real cgroups and daemons."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
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


KUBELET_VERSION = os.environ.get("HARNESS_KUBELET_VERSION", "1.33.4")


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[None]:
    """The local cluster for this module's tests: brought up if it is down (built if needed), and
    down again at the end if this fixture started it."""
    st = harness("cluster", "status", "--json")
    was_up = False
    with contextlib.suppress(ValueError):
        was_up = all(c.get("running") for c in json.loads(st.stdout).get("components", {}).values()) and bool(
            json.loads(st.stdout).get("components")
        )
    if not was_up:
        profile = REPO / "profiles" / "cluster-default.yaml"
        r = harness("cluster", "up", "--version", KUBELET_VERSION, "--profile", str(profile), timeout=3600)
        assert r.returncode == 0, r.stderr[-3000:]
    yield
    if not was_up:
        d = harness("cluster", "down", timeout=300)
        assert d.returncode == 0, d.stderr[-2000:]
