"""Ownership ledgers (harness.owned): what a dead owner made is removed, a live owner's and
anything unnamed is not; users of a shared engine are counted by pid and start time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.owned import Ledger, add_user, live_users, remove_user, sweep
from harness.procs import proc_start_time


def _dead_pid() -> tuple[int, int]:
    """A pid whose process has exited (and a start time no live process can have)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    start = proc_start_time(p.pid) or 1
    p.wait()
    return p.pid, start


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_live_entries_are_added_minus_released(tmp_path: Path) -> None:
    led = Ledger.open("run-a", directory=tmp_path)
    led.add("cgroup", path="harness/a")
    led.add("docker-container", socket="/s", name="c1", run="a")
    led.add("docker-container", socket="/s", name="c2", run="a")
    led.release("docker-container", socket="/s", name="c1", run="a")
    assert led.live() == [
        {"kind": "cgroup", "path": "harness/a"},
        {"kind": "docker-container", "socket": "/s", "name": "c2", "run": "a"},
    ]
    assert led.live("cgroup") == [{"kind": "cgroup", "path": "harness/a"}]
    assert led.owner_alive()  # this process
    assert not led.finish() and led.path.exists()  # something is left: kept for cleanup
    led.release("cgroup", path="harness/a")
    led.release("docker-container", socket="/s", name="c2", run="a")
    assert led.finish() and not led.path.exists()


def test_sweep_removes_only_what_dead_owners_named(tmp_path: Path) -> None:
    pid, start = _dead_pid()
    dead = Ledger.open("run-dead", pid=pid, start=start, directory=tmp_path)
    dead.add("thing", id="t1")
    dead.add("thing", id="t2")
    dead.add("other-kind", id="x")
    alive = Ledger.open("run-alive", directory=tmp_path)  # this process: alive
    alive.add("thing", id="t3")
    removed: list[Any] = []

    def remove(e: dict[str, Any]) -> str | None:
        removed.append(e["id"])
        return "busy" if e["id"] == "t1" else None

    failed = sweep({"thing": remove}, directory=tmp_path)
    assert removed == ["t2", "t1"]  # newest first; never the live owner's t3
    assert failed == ["run-dead: busy"]
    assert [e["id"] for e in dead.live()] == ["t1", "x"]  # t2 released, t1 stayed, x not this sweep's kind
    assert [e["id"] for e in alive.live()] == ["t3"]
    # once everything is gone the stale ledger is dropped
    sweep({"thing": lambda e: None, "other-kind": lambda e: None}, directory=tmp_path)
    assert not dead.path.exists() and alive.path.exists()
    # a live owner's ledger only with include_live_owners (cleanup --force)
    sweep({"thing": lambda e: None}, directory=tmp_path, include_live_owners=True)
    assert not alive.path.exists()


def test_a_reused_pid_is_not_the_owner(tmp_path: Path) -> None:
    p = _sleeper()
    try:
        led = Ledger.open("run-r", pid=p.pid, start=(proc_start_time(p.pid) or 0) + 1, directory=tmp_path)
        assert not led.owner_alive()  # same pid, other start time: that owner is gone
        led2 = Ledger.open("run-s", pid=p.pid, directory=tmp_path)
        assert led2.owner_alive()
    finally:
        p.kill()
        p.wait()


def test_engine_users_are_counted_by_pid_and_start_time(tmp_path: Path) -> None:
    other = _sleeper()
    try:
        add_user("engine-x", directory=tmp_path)  # this process
        add_user("engine-x", pid=other.pid, directory=tmp_path)  # another run
        dead, start = _dead_pid()
        Ledger.open("engine-x", directory=tmp_path).add("user", pid=dead, start=start)
        assert sorted(u["pid"] for u in live_users("engine-x", directory=tmp_path)) == sorted(
            [other.pid, os.getpid()]
        )
        # this run leaves: another run still uses the engine, so it must not be stopped
        left = remove_user("engine-x", directory=tmp_path)
        assert [u["pid"] for u in left] == [other.pid]
    finally:
        other.kill()
        other.wait()
    assert live_users("engine-x", directory=tmp_path) == []  # the other run died: nobody left
