"""Machine-wide locks (harness.locks): a second holder waits or fails with a clear message."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import HostError
from harness.locks import exclusive

HOLD = """
import sys, time
from pathlib import Path
from harness.locks import exclusive
with exclusive("cluster", "bring the local cluster up", directory=Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(tmp_path: Path, seconds: float) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    return p


def test_second_caller_fails_naming_the_holder(tmp_path: Path) -> None:
    p = _holder(tmp_path, 30)
    try:
        with (
            pytest.raises(HostError) as exc,
            exclusive("cluster", "bring the local cluster down", timeout=0.5, directory=tmp_path),
        ):
            pass
        msg = str(exc.value)
        assert "cannot bring the local cluster down" in msg
        assert f"pid {p.pid}: bring the local cluster up" in msg
    finally:
        p.kill()
        p.wait()
    # the kernel dropped the lock with its (SIGKILLed) holder
    with exclusive("cluster", "bring the local cluster down", timeout=0, directory=tmp_path):
        pass


def test_second_caller_waits_and_says_so(tmp_path: Path) -> None:
    p = _holder(tmp_path, 1.0)
    said: list[str] = []
    t = time.monotonic()
    with exclusive(
        "cluster", "bring the local cluster down", timeout=30, say=said.append, directory=tmp_path
    ):
        waited = time.monotonic() - t
    p.wait()
    assert waited > 0.2
    assert len(said) == 1 and "waiting for the lock" in said[0] and f"pid {p.pid}" in said[0]


def test_reentrant_within_a_process(tmp_path: Path) -> None:
    with (
        exclusive("engine", "start", directory=tmp_path),
        exclusive("engine", "stop", timeout=0, directory=tmp_path),
    ):
        pass
