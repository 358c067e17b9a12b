"""``launch: parallel`` in a suite, and the default launch_many / stop_many of a backend (serial)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.config import load_suite
from harness.errors import InputError
from harness.launch.base import ExitInfo, Handle
from harness.launch.process import ProcessBackend

REPO = Path(__file__).resolve().parents[2]


def _suite(tmp_path: Path, **scenario: Any) -> Path:
    doc = {
        "apiVersion": "harness/v1",
        "kind": "Suite",
        "name": "t",
        "profile": str(REPO / "profiles" / "local.yaml"),
        "scenarios": [
            {
                "name": "s",
                "workloads": [{"name": "a", "leak": {"chunk": "1Mi", "interval": "1s"}}],
                **scenario,
            }
        ],
    }
    p = tmp_path / "suite.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_launch_defaults_to_serial_and_accepts_parallel(tmp_path: Path) -> None:
    assert load_suite(_suite(tmp_path)).scenarios[0].launch == "serial"
    assert load_suite(_suite(tmp_path, launch="parallel")).scenarios[0].launch == "parallel"
    with pytest.raises(InputError, match="launch"):
        load_suite(_suite(tmp_path, launch="all-at-once"))


class _Recorder(ProcessBackend):
    """Records the calls the default launch_many / stop_many make (no process is started)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def launch(self, ctx: Any, workload: Any, layout: Any) -> Handle:
        self.calls.append(f"launch {workload.name}")
        return Handle(workload=workload.name, backend=self.name, cgroup=workload.name, cgroup_abs=Path("/x"))

    def stop(self, ctx: Any, handle: Handle, timeout: float = 5.0) -> None:
        self.calls.append(f"stop {handle.workload}")
        handle.exit = ExitInfo(0.0, 0.0, 143, 15, None, stopped_by_harness=True)


def test_default_launch_many_is_serial_with_on_started_in_order() -> None:
    b = _Recorder()
    ws = [type("W", (), {"name": n})() for n in ("a", "b", "c")]
    started: list[str] = []

    def on_started(h: Handle) -> None:
        started.append(h.workload)
        b.calls.append(f"started {h.workload}")

    hs = b.launch_many(None, [(w, None) for w in ws], on_started)  # type: ignore[arg-type]
    assert [h.workload for h in hs] == started == ["a", "b", "c"]
    assert b.calls == ["launch a", "started a", "launch b", "started b", "launch c", "started c"]
    b.stop_many(None, hs)  # type: ignore[arg-type]
    assert b.calls[-3:] == ["stop a", "stop b", "stop c"] and all(h.exit for h in hs)
