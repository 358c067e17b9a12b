"""Interrupted runs: SIGTERM stops and flushes; SIGKILL leaves debris that ``harness cleanup`` removes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from harness.host.cgroups import cgroup_version, iter_pids, leftover_trees, memory_root, remove_tree
from harness.procs import alive, proc_start_time

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


def _cgroup_with_sleeper(rel: str) -> tuple[Path, subprocess.Popen[bytes]]:
    """A memory cgroup ``rel`` (cgroup v1 memory hierarchy or v2) with a sleeping process inside."""
    d = memory_root(cgroup_version()) / rel
    d.mkdir(parents=True)
    p = subprocess.Popen(["sleep", "300"])
    (d / "cgroup.procs").write_text(str(p.pid))
    return d, p


def _dead_pid() -> tuple[int, int]:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    start = proc_start_time(p.pid) or 1
    p.wait()
    return p.pid, start


def test_cleanup_removes_only_what_a_dead_runs_ledger_names(tmp_path: Path) -> None:
    """A decoy ``harness/other-*`` cgroup (not made by a run: no ledger names it) and its process
    survive ``harness cleanup``; a dead run's cgroup (named in its ledger) and its process go."""
    tag = uuid.uuid4().hex[:8]
    owned = tmp_path / "owned"
    owned.mkdir()
    decoy, decoy_proc = _cgroup_with_sleeper(f"harness/other-{tag}")
    dead_cg, dead_proc = _cgroup_with_sleeper(f"harness/deadrun-{tag}")
    pid, start = _dead_pid()
    (owned / f"run-deadrun-{tag}.jsonl").write_text(
        json.dumps({"owner": f"run-deadrun-{tag}", "pid": pid, "start": start})
        + "\n"
        + json.dumps({"op": "add", "kind": "cgroup", "path": f"harness/deadrun-{tag}"})
        + "\n"
    )
    try:
        r = harness("cleanup", "--backend", "process", env={**os.environ, "HARNESS_OWNED_DIR": str(owned)})
        print(r.stdout, r.stderr)
        assert decoy.is_dir(), "cleanup removed a cgroup no run of the harness made"
        assert decoy_proc.poll() is None, "cleanup killed a process it does not own"
        assert r.returncode == 0, r.stdout + r.stderr
        assert (
            f"left alone (no ledger names it, not made by a harness run): cgroup harness/other-{tag}"
            in r.stdout
        )
        assert not dead_cg.exists()
        assert dead_proc.wait(timeout=10) == -signal.SIGKILL
        assert not list(owned.iterdir())  # the dead run's ledger is done
    finally:
        for p in (decoy_proc, dead_proc):
            p.kill()
            p.wait()
        remove_tree(f"harness/other-{tag}")
        remove_tree(f"harness/deadrun-{tag}")
