"""A run whose harness was SIGKILLed is marked ``killed`` by the next ``runs list`` / ``cleanup``,
its progress files become its tables and its page-cache folder is removed.

Before: the run stayed ``running`` for ever, without events.parquet or samples.parquet.
The second test runs the real CLI on suites/local.yaml and needs the machine-wide lock:

    flock /tmp/harness-shared.lock python3 -m pytest tests/integration/test_killed_run.py
"""

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

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

WRITER = """
import os, sys, time
from pathlib import Path
from harness.launch.base import EventSink
from harness.procs import proc_start_time
from harness.results import RunStore
store = RunStore(Path(sys.argv[1]), "20261206T000000Z-t-process-dead")
store.update(suite="t", backend="process", pid=os.getpid(), pid_start=proc_start_time(os.getpid()))
ev = EventSink(store.progress / "events.jsonl")
ev.add("kmsg", "oom_kill", pid=1234, comm="leak")
ev.add("run", "scenario_start", scenario="s1")
work = Path(os.environ["HARNESS_WORKDIR"]) / store.run_id / "s6"
work.mkdir(parents=True)
(work / "cache.bin").write_bytes(b"x" * 4096)
print("ready", flush=True)
time.sleep(600)
"""


def _env(tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HARNESS_WORKDIR": str(tmp / "work"),
        "HARNESS_ACTIVE_DIR": str(tmp / "active"),
        "PYTHONPATH": str(REPO),
    }


def test_sigkilled_run_is_marked_killed_and_gets_its_tables(tmp_path: Path) -> None:
    results = tmp_path / "results"
    env = _env(tmp_path)
    p = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(results)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        run_dir = results / "20261206T000000Z-t-process-dead"
        # alive: runs list leaves it alone
        out = subprocess.run(
            [sys.executable, "-m", "harness", "runs", "list", "--results", str(results), "--json"],
            env=env,
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
        )
        assert [r["status"] for r in json.loads(out.stdout)] == ["running"]
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    out = subprocess.run(
        [sys.executable, "-m", "harness", "runs", "list", "--results", str(results), "--json"],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    assert [r["status"] for r in json.loads(out.stdout)] == ["killed"], out.stderr
    assert "marked killed" in out.stderr
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "killed" and "killed_detected" in meta
    events = pd.read_parquet(run_dir / "events.parquet")
    assert events["kind"].tolist() == ["oom_kill", "scenario_start"]
    assert (run_dir / "samples.parquet").exists()
    assert not (tmp_path / "work" / run_dir.name).exists()


def test_real_run_sigkilled_mid_scenario_then_runs_list(tmp_path: Path) -> None:
    results = tmp_path / "results"
    env = {**_env(tmp_path), "HARNESS_WORKDIR": "/var/tmp/harness", "PYTHONUNBUFFERED": "1"}
    env.pop("HARNESS_ACTIVE_DIR")
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness",
            "run",
            "suites/local.yaml",
            "--scenario",
            "S6",
            "--results",
            str(results),
        ],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        assert p.stdout is not None
        deadline = time.monotonic() + 60
        for line in p.stdout:
            lines.append(line)
            # one second into the scenario: samples streamed, the page-cache file being written
            if "t=  1.0s]" in line or time.monotonic() > deadline:
                break
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    (run_dir,) = [d for d in results.iterdir() if d.is_dir()]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running", "".join(lines)
    out = subprocess.run(
        [sys.executable, "-m", "harness", "runs", "list", "--results", str(results), "--json"],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    assert [r["status"] for r in json.loads(out.stdout)] == ["killed"], out.stderr
    assert len(pd.read_parquet(run_dir / "samples.parquet")) > 0
    assert (run_dir / "events.parquet").exists()
    assert not (Path("/var/tmp/harness") / run_dir.name).exists()
    # the workloads the killed harness left: cleanup removes them (under the lock)
    subprocess.run(
        [sys.executable, "-m", "harness", "cleanup", "--backend", "process"], env=env, cwd=REPO, check=True
    )
