"""Interrupted runs: SIGTERM stops and flushes; SIGKILL leaves debris that ``harness cleanup`` removes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.host.cgroups import iter_pids, leftover_trees
from harness.procs import alive

from .conftest import REPO, harness, require_docker

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _start(tmp_path: Path, backend: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness",
            "run",
            "suites/local.yaml",
            "--backend",
            backend,
            "--scenario",
            "S4",
            "--results",
            str(tmp_path),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_workloads(tmp_path: Path, timeout: float = 60) -> list[int]:
    """Wait until the run has started workloads (pids inside its harness cgroup)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for top in leftover_trees():
            pids = sorted(set(iter_pids(top)))
            if len(pids) >= 3 and any(tmp_path.iterdir()):
                return pids
        time.sleep(0.2)
    raise AssertionError("the run never started its workloads")


def test_sigterm_stops_workloads_and_marks_run_interrupted(tmp_path: Path) -> None:
    p = _start(tmp_path, "process")
    pids = _wait_for_workloads(tmp_path)
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, out + err
    run = next(tmp_path.iterdir())
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "interrupted"
    assert (run / "events.parquet").is_file() and (run / "samples.parquet").is_file()
    assert not leftover_trees()
    assert not any(alive(pid) for pid in pids)


@pytest.mark.parametrize("backend", ["process", "docker"])
def test_cleanup_after_sigkill_leaves_nothing(tmp_path: Path, backend: str) -> None:
    if backend == "docker":
        require_docker()
    p = _start(tmp_path, backend)
    pids = _wait_for_workloads(tmp_path, timeout=120)
    p.kill()  # SIGKILL: no chance to clean up
    p.communicate(timeout=30)
    assert leftover_trees(), "SIGKILL should have left the run's cgroups behind"
    run = next(tmp_path.iterdir())
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "running"  # never finished: visibly incomplete, its progress kept
    assert (run / "progress" / "events.jsonl").stat().st_size > 0
    r = harness("cleanup")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "nothing left behind" in r.stdout
    assert not leftover_trees()
    time.sleep(0.5)
    assert not any(alive(pid) for pid in pids)
    if backend == "docker":
        import docker

        from harness.engines.docker import DEFAULT_RUN_DIR, SOCKET_NAME, ping

        sock = DEFAULT_RUN_DIR / SOCKET_NAME
        if ping(sock):
            client = docker.DockerClient(base_url=f"unix://{sock}")
            assert client.containers.list(all=True, filters={"label": "io.harness.managed=true"}) == []
