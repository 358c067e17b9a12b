"""Fault injection: a node daemon dies in the middle of a scenario (containerd for the containerd
backend, the kubelet for the kubernetes one). The run records it (``host_failure`` events, a note in
the scenario's verdicts), judges that scenario on the evidence it has, and stops with exit 3 and one
``harness: error:`` line naming the daemon instead of starting the next scenario on a broken node;
after ``harness cleanup`` nothing of the run is left.

Deterministic: the run pauses right after the first scenario launched its workloads
(``HARNESS_FAULT_PAUSE=launched:S1``, ``harness.faults``); the test kills the daemon by the pid in
its pid file (start time checked), waits until that pid is gone, and only then lets the run go on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from harness.cluster import Cluster
from harness.engines.containerd import answers, ctr, default_instance
from harness.host.cgroups import hierarchies
from harness.launch.containerd.names import NAMESPACE, run_prefix
from harness.owned import OWNED_DIR
from harness.procs import proc_start_time, read_pid, signal_same

from .conftest import REPO, harness

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _start(tmp_path: Path, backend: str, suite: str, scenarios: list[str]) -> subprocess.Popen[str]:
    args = [
        sys.executable,
        "-m",
        "harness",
        "run",
        suite,
        "--backend",
        backend,
        "--results",
        str(tmp_path / "r"),
    ]
    for s in scenarios:
        args += ["--scenario", s]
    env = {
        **os.environ,
        "HARNESS_FAULT_PAUSE": f"launched:{scenarios[0]}",
        "HARNESS_FAULT_DIR": str(tmp_path / "fault"),
        "HARNESS_FAULT_TIMEOUT": "120",
    }
    return subprocess.Popen(
        args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _kill_at_pause(tmp_path: Path, p: subprocess.Popen[str], kill: Callable[[], int]) -> None:
    """Wait for the run's pause marker, kill the daemon (``kill`` returns its pid), wait until that
    pid is gone, then let the run go on."""
    folder = tmp_path / "fault"
    deadline = time.monotonic() + 240
    while not list(folder.glob("launched.*.paused")):
        if p.poll() is not None:
            out, err = p.communicate()
            raise AssertionError(f"the run ended before its first scenario launched: {out}\n{err}")
        assert time.monotonic() < deadline, "the run never reached the pause point"
        time.sleep(0.1)
    marker = next(folder.glob("launched.*.paused"))
    assert int(marker.read_text()) == p.pid  # the run itself is paused there
    pid = kill()
    end = time.monotonic() + 30
    while proc_start_time(pid) is not None:  # gone (or a zombie of its parent)
        assert time.monotonic() < end, f"pid {pid} still alive after SIGKILL"
        time.sleep(0.05)
    marker.with_suffix(".resume").write_text("")


def _check_run_stopped_on_host_failure(
    tmp_path: Path, p: subprocess.Popen[str], daemon: str, first: str, second: str
) -> tuple[str, Path]:
    out, err = p.communicate(timeout=300)
    print(out, err)
    assert p.returncode == 3, (p.returncode, err)  # the host failed
    errors = [ln for ln in err.splitlines() if ln.startswith("harness: error:")]
    assert len(errors) == 1 and "Traceback" not in err, f"one error line, no traceback: {err}"
    assert daemon in errors[0] and "not started" in errors[0], errors[0]
    run = next(d for d in (tmp_path / "r").iterdir() if (d / "run.json").exists())
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "failed"
    ev = pd.read_parquet(run / "events.parquet")
    failures = ev[ev["kind"] == "host_failure"]
    # recorded during the first scenario (the wait step's check), then between the scenarios
    during = failures[failures["scenario"] == first]
    assert len(during) >= 1 and daemon in " ".join(during["detail"].astype(str)), failures
    started = ev[ev["kind"] == "scenario_start"]["scenario"].tolist()
    assert started == [first], f"only the first scenario ran: {started}"
    assert second not in started
    # the first scenario was judged, and its verdicts say the node failed under it
    verdicts = pd.read_parquet(run / "verdicts.parquet")
    mine = verdicts[verdicts["scenario"] == first]
    assert len(mine) >= 1, verdicts
    for reasons in mine["reasons"]:
        text = reasons if isinstance(reasons, str) else " ".join(str(r) for r in reasons)
        assert "the node failed during the scenario" in text and daemon in text, text
    assert (run / "outcomes.parquet").exists()
    return str(meta["run_id"]), run


def test_containerd_killed_mid_scenario_stops_the_run_with_exit_3(tmp_path: Path) -> None:
    inst = default_instance()
    p = _start(tmp_path, "containerd", "suites/local.yaml", ["S1", "S4"])

    def kill() -> int:
        pid = read_pid(inst.pidfile_path)
        assert pid is not None, inst.pidfile_path
        assert signal_same(pid, proc_start_time(pid), signal.SIGKILL)
        return pid

    try:
        _kill_at_pause(tmp_path, p, kill)
        run_id, _ = _check_run_stopped_on_host_failure(
            tmp_path, p, "containerd", "s1-container-limit", "s4-kubepods-fast"
        )
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(30)
        # cleanup starts containerd again to remove what the run recorded, and stops it after
        r = harness("cleanup")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not [h for h in hierarchies() if (h / "harness" / run_id).exists()]
    # every container the run recorded was removed (its ledger is gone), none is listed any more
    # (Ledger.open would create the file: look at the path)
    assert not (OWNED_DIR / f"run-{run_id}.jsonl").exists(), "the run's ledger still lists things"
    if answers(inst):
        left = ctr(inst, "containers", "ls", "-q", namespace=NAMESPACE).stdout.split()
        assert not [c for c in left if c.startswith(run_prefix(run_id))], left


def test_kubelet_killed_mid_scenario_stops_the_run_with_exit_3(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if os.environ.get("HARNESS_SKIP_KUBELET") == "1":
        pytest.skip("HARNESS_SKIP_KUBELET=1")
    request.getfixturevalue("local_cluster")  # up (built if needed) for this module, as found after
    c = Cluster()
    rec = c.record()
    p = _start(tmp_path, "kubernetes", "suites/kubelet.yaml", ["S1", "S2"])

    def kill() -> int:
        d = c.daemon("kubelet")
        pid = d.pid()
        assert pid is not None, d.pidfile
        assert signal_same(pid, (d.record() or {}).get("start"), signal.SIGKILL)  # type: ignore[arg-type]
        return pid

    try:
        _kill_at_pause(tmp_path, p, kill)
        run_id, run = _check_run_stopped_on_host_failure(
            tmp_path, p, "kubelet", "s1-container-limit", "s2-slow-past-allocatable"
        )
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(30)
        # the cluster as found: up again with its recorded version and profile (a new kubelet)
        up = harness(
            "cluster", "up", "--version", str(rec.get("version")), "--profile", str(rec.get("profile"))
        )
        assert up.returncode == 0, up.stdout + up.stderr
    r = harness("cleanup")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not [h for h in hierarchies() if (h / "harness" / run_id).exists()]
    # the run's pod is gone from the API, and the new kubelet removes its orphaned pod cgroup
    assert not (OWNED_DIR / f"run-{run_id}.jsonl").exists(), "the run's ledger still lists things"
    samples = pd.read_parquet(run / "samples.parquet", columns=["key", "path"])
    cgroups = {str(x) for x in samples[samples["key"] == "s1-container-limit/leaker"]["path"].unique()}
    pod_dirs = {Path(cg).parent for cg in cgroups if "/pod" in cg}
    assert pod_dirs, f"the leaker's pod cgroup was sampled: {cgroups}"
    end = time.monotonic() + 90
    while any(d.exists() for d in pod_dirs) and time.monotonic() < end:
        time.sleep(0.5)
    assert not any(d.exists() for d in pod_dirs), pod_dirs
