"""The fault-injection pause point (``harness.faults``): off unless asked, waits for the test's
resume file, and gives up after its timeout."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from harness import faults


def test_off_without_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(faults.ENV_PAUSE, raising=False)
    assert faults.pause("launched", "s1-container-limit", "S1") is None


@pytest.mark.parametrize(
    ("asked", "hit"),
    [
        ("launched:S1", True),
        ("launched:s1-container-limit", True),
        ("launched:*", True),
        ("launched:S4", False),
        ("teardown:S1", False),
        ("launched", False),
    ],
)
def test_matches_point_and_scenario_by_name_or_id(
    monkeypatch: pytest.MonkeyPatch, asked: str, hit: bool
) -> None:
    monkeypatch.setenv(faults.ENV_PAUSE, asked)
    assert faults.wanted("launched", "s1-container-limit", "S1") is hit


def test_pauses_until_the_resume_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(faults.ENV_PAUSE, "launched:S1")
    monkeypatch.setenv(faults.ENV_DIR, str(tmp_path))
    monkeypatch.setenv(faults.ENV_TIMEOUT, "30")
    got: list[float | None] = []
    t = threading.Thread(target=lambda: got.append(faults.pause("launched", "s1-container-limit", "S1")))
    t.start()
    marker = tmp_path / "launched.s1-container-limit.paused"
    deadline = time.monotonic() + 10
    while not marker.exists():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.3)
    assert t.is_alive(), "the run waits at the point"
    marker.with_suffix(".resume").write_text("")
    t.join(10)
    assert not t.is_alive() and got and got[0] is not None and got[0] >= 0.3


def test_goes_on_after_the_timeout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(faults.ENV_PAUSE, "launched:*")
    monkeypatch.setenv(faults.ENV_DIR, str(tmp_path))
    monkeypatch.setenv(faults.ENV_TIMEOUT, "0.2")
    waited = faults.pause("launched", "s4", None)
    assert waited is not None and waited >= 0.2
    assert (tmp_path / "launched.s4.paused").read_text().strip().isdigit()
