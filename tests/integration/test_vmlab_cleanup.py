"""`harness cleanup` and the VM lab: stopped labs go, a running or busy lab is left alone.

The "VMs" are real processes whose command lines name their overlays, as a QEMU's does; the lab
code decides by pid, start time and overlay, so booting real guests adds nothing here (the VM e2e
test boots one)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import locks, procs
from harness.vmlab import lab


@pytest.fixture
def labs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[subprocess.Popen[bytes]]]:
    monkeypatch.setattr(lab, "LAB_ROOT", tmp_path / "lab")
    monkeypatch.setattr(locks, "LOCK_DIR", tmp_path / "locks")
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:  # by the pid this test started
        if p.poll() is None:
            p.kill()
            p.wait()


def _lab(name: str, started: list[subprocess.Popen[bytes]], *, running: bool) -> Path:
    d = lab.lab_dir(name)
    d.mkdir(parents=True)
    overlay = d / "h1.qcow2"
    overlay.write_bytes(b"")
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", str(overlay)])
    started.append(p)
    start = procs.proc_start_time(p.pid)
    if not running:
        p.kill()
        p.wait()
    host = {"pid": p.pid, "start_time": start, "overlay": str(overlay), "port": 2222}
    (d / "lab.json").write_text(json.dumps({"name": name, "hosts": {"h1": host}, "inventory": "x"}))
    return d


@pytest.mark.integration
def test_cleanup_removes_stopped_labs_and_leaves_running_and_busy_ones(
    labs: list[subprocess.Popen[bytes]],
) -> None:
    dead = _lab("dead", labs, running=False)
    live = _lab("live", labs, running=True)
    busy = _lab("busy", labs, running=False)
    lockfile = locks.lock_path(lab.lab_lock("busy"))
    lockfile.parent.mkdir(parents=True, exist_ok=True)
    hold = "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
    hold += "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"
    # another harness's `lab up busy` in progress
    holder = subprocess.Popen([sys.executable, "-c", hold, str(lockfile)], stdout=subprocess.PIPE)
    labs.append(holder)
    said: list[str] = []
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        assert lab.cleanup_all(said.append) == []
    finally:
        holder.kill()
        holder.wait()
    assert not dead.exists()
    assert live.exists() and labs[1].poll() is None  # its "QEMU" still runs
    assert busy.exists()
    assert any("lab live is running (h1): left alone" in m for m in said), said
    assert any(m.startswith("harness: lab busy: left alone") for m in said), said

    assert lab.cleanup_all(said.append, force=True) == []
    assert not live.exists() and not busy.exists()
    assert labs[1].wait(20) is not None
