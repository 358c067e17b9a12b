"""The nightly cron line end to end on the process backend: run --json, export, prune.

A real run of suites/local.yaml (scenario S1, then S4 in the background) into a temp results
folder given by ``HARNESS_RESULTS`` (no ``--results`` anywhere), as a cron job would:

* ``harness run ... --json``: stdout is one JSON document whose figures equal the run's tables;
  the human lines go to stderr;
* ``harness export last:1 -o FILE``: a textfile with the run's verdict counts;
* ``harness runs prune --keep-last 0`` while the S4 run is still going: the running run is kept
  (it is registered in /run/harness/active by a live process), the finished one is removed; once
  S4 has finished, it goes too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.e2e.conftest import REPO, harness

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_run_json_export_prune(tmp_path: Path) -> None:
    res = tmp_path / "nightly"
    env = {**os.environ, "HARNESS_RESULTS": str(res)}
    r = harness(
        "run", "suites/local.yaml", "--scenario", "S1", "-q", "--json", "--label", "lab=nightly", env=env
    )
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)  # nothing else on stdout
    assert "verdicts match" in r.stderr
    run_dir = Path(s["run_dir"])
    assert run_dir.parent == res and s["status"] == "complete" and s["labels"] == {"lab": "nightly"}
    v = pd.read_parquet(run_dir / "verdicts.parquet")
    assert s["verdicts"] == {"passed": int(v["passed"].sum()), "failed": int((~v["passed"]).sum())}
    assert [(w["scenario"], w["workload"], w["observed"]) for w in s["workloads"]] == list(
        zip(v["scenario"], v["workload"], v["observed"], strict=True)
    )

    prom = tmp_path / "harness.prom"
    r = harness("export", "last:1", "--format", "prometheus", "-o", str(prom), env=env)
    assert r.returncode == 0, r.stderr
    assert 'result="pass"' in prom.read_text()

    # a second run, still going while we prune
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "suites/local.yaml", "--scenario", "S4", "-q"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        running: list[Path] = []
        while not running and time.monotonic() < deadline:
            running = [p.parent for p in res.glob("*/run.json") if p.parent != run_dir]
            time.sleep(0.2)
        assert running, "the second run did not start"
        r = harness("runs", "prune", "--keep-last", "0", "--json", env=env)
        assert r.returncode == 0, r.stderr
        decisions = {d["run"]: d for d in json.loads(r.stdout)["decisions"]}
        assert decisions[running[0].name]["prune"] is False, decisions
        assert "running" in decisions[running[0].name]["reason"]
        assert not run_dir.exists() and running[0].exists()
    finally:
        proc.wait(timeout=120)
    r = harness("runs", "prune", "--keep-last", "0", env=env)
    assert r.returncode == 0, r.stderr
    assert not running[0].exists()
