"""Fault injection: a node daemon dies in the middle of a scenario (containerd for the containerd
backend, the kubelet for the kubernetes one). The run records it (a ``host_failure`` event), keeps
what it judged, and stops with a one-line host error instead of starting the next scenario on a
broken node; ``harness cleanup`` then leaves nothing of the run. (The exit-code scheme maps
``HostError`` to 3; until it lands the CLI exits 2 for it: neither is 1, a kubelet mismatch.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.cluster import Cluster
from harness.engines.containerd import default_instance
from harness.host.cgroups import hierarchies, iter_pids, leftover_trees
from harness.procs import proc_start_time, read_pid, signal_same

from .conftest import REPO, harness

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _start(tmp_path: Path, backend: str, suite: str, scenarios: list[str]) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "harness", "run", suite, "--backend", backend, "--results", str(tmp_path)]
    for s in scenarios:
        args += ["--scenario", s]
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_workloads(tmp_path: Path, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(tmp_path.iterdir()) and any(
            list(iter_pids(t)) for t in leftover_trees() if not t.name.startswith("other-")
        ):
            return
        time.sleep(0.2)
    raise AssertionError("the run never started its workloads")


def _check_run_stopped_on_host_failure(tmp_path: Path, p: subprocess.Popen[str], daemon: str) -> str:
    out, err = p.communicate(timeout=400)
    print(out, err)
    assert p.returncode not in (0, 1, 130), (p.returncode, err)
    errors = [ln for ln in err.splitlines() if ln.startswith("harness: error:")]
    assert len(errors) == 1 and "Traceback" not in err, f"one error line, no traceback: {err}"
    assert daemon in errors[0], err
    run = next(d for d in tmp_path.iterdir() if (d / "run.json").exists())
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "failed"
    ev = pd.read_parquet(run / "events.parquet")
    failures = ev[ev["kind"] == "host_failure"]
    assert len(failures) >= 1 and daemon in " ".join(failures["detail"].astype(str)), failures
    assert "scenario_start" in set(ev["kind"])
    # the second scenario never started on the broken node
    assert ev[ev["kind"] == "scenario_start"]["scenario"].nunique() == 1
    return str(meta["run_id"])


def test_containerd_killed_mid_scenario_stops_the_run_with_a_host_error(tmp_path: Path) -> None:
    inst = default_instance()
    p = _start(tmp_path, "containerd", "suites/local.yaml", ["S4", "S1"])
    _wait_workloads(tmp_path)
    pid = read_pid(inst.pidfile_path)
    assert pid is not None
    assert signal_same(pid, proc_start_time(pid), signal.SIGKILL)
    run_id = _check_run_stopped_on_host_failure(tmp_path, p, "containerd")
    r = harness("cleanup")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not [h for h in hierarchies() if (h / "harness" / run_id).exists()]


def test_kubelet_killed_mid_scenario_stops_the_run_with_a_host_error(tmp_path: Path) -> None:
    if os.environ.get("HARNESS_SKIP_KUBELET") == "1":
        pytest.skip("HARNESS_SKIP_KUBELET=1")
    c = Cluster()
    c.require_up()
    p = _start(tmp_path, "kubernetes", "suites/kubelet.yaml", ["S1", "S2"])
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end and not list((tmp_path).glob("*/progress/events.jsonl")):
            time.sleep(0.2)
        time.sleep(3.0)  # the first scenario's pods are running
        d = c.daemon("kubelet")
        rec = d.record() or {}
        pid = d.pid()
        assert pid is not None
        assert signal_same(pid, rec.get("start"), signal.SIGKILL)  # type: ignore[arg-type]
        _check_run_stopped_on_host_failure(tmp_path, p, "kubelet")
    finally:
        # leave the cluster as found: up again with its recorded version and profile
        rec = c.record()
        r = harness(
            "cluster",
            "up",
            "--version",
            str(rec.get("version")),
            "--profile",
            str(rec.get("profile")),
        )
        assert r.returncode == 0, r.stdout + r.stderr
