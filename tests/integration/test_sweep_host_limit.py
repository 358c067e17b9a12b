"""A sweep on a host that cannot produce the rates it asks for ends with "host limit", exit 3.

Real parts: the process backend's cgroups and kernel OOM killer (suites/sweep-local.yaml, S11-local,
model boundary ~16 MiB/s), the real leak program, and a real CPU quota: the leak runs in a CPU
cgroup this test creates with 1 ms of CPU per 500 ms (HARNESS_LEAK_BIN points to a wrapper that
joins it, then execs the leak), so the leak tops out near 5 MiB/s, a third of the boundary.

What could fail: the grid going on to 32 and 64 MiB/s after 16 MiB/s achieved half its label;
the fit using labels (16 MiB/s would then look like a rate the host reached); the exit code being
1 (a model disagreement) instead of 3. ~4 trials of ~5 s.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.sweep.design import Design, Trial, next_step
from harness.sweep.store import SweepStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SUITE = str(REPO / "suites" / "sweep-local.yaml")
LEAK = REPO / "workloads" / "build" / "leak"
MI = float(1 << 20)
PERIOD_US, QUOTA_US = 500_000, 1_000  # 0.2 % of a CPU: ~5 MiB/s of leak on the dev VM, 1/3 of the boundary


@contextlib.contextmanager
def cpu_cgroup() -> Iterator[Path]:
    """A CPU cgroup with a quota (v1 cpu hierarchy or v2 cpu.max); removed after, its pids killed."""
    name = f"harness-test-cpu-{uuid.uuid4().hex[:8]}"
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():
        d = root / name
        d.mkdir()
        (d / "cpu.max").write_text(f"{QUOTA_US} {PERIOD_US}")
    else:
        d = root / "cpu" / name
        d.mkdir()
        (d / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (d / "cpu.cfs_quota_us").write_text(str(QUOTA_US))
    try:
        yield d
    finally:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pids = (d / "cgroup.procs").read_text().split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            try:
                d.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def test_sweep_ends_with_a_host_limit(tmp_path: Path) -> None:
    assert LEAK.is_file(), "run make -C workloads"
    with cpu_cgroup() as cg:
        wrapper = tmp_path / "leak"
        wrapper.write_text(f'#!/bin/sh\necho $$ > {cg}/cgroup.procs || exit 70\nexec {LEAK} "$@"\n')
        wrapper.chmod(0o755)
        env = {**os.environ, "HARNESS_LEAK_BIN": str(wrapper), "HARNESS_PAGEFAULT_PROBE": "0"}
        sweep = tmp_path / "sweep"
        cmd = [sys.executable, "-m", "harness", "sweep", SUITE, "--scenario", "S11-local"]
        cmd += ["--rate-range", "4Mi/s:64Mi/s", "--grid", "5", "--repeats", "1", "--warm-up", "off"]
        cmd += ["-o", str(sweep)]
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    print(out)
    assert p.returncode == 3, out
    assert "harness: host limit: max achieved" in out and "below the predicted 15" in out

    trials, _ = SweepStore(sweep).read_trials()
    labels = [t["rate"] for t in trials]
    achieved = [t["rate_achieved"] for t in trials]
    assert max(labels) <= 16 * MI * 1.001, f"labels above the host's ceiling were tried: {labels}"
    assert 32 * MI not in labels and 64 * MI not in labels
    # the last label could not be produced: it achieved well below what it asked
    assert achieved[-1] is not None and achieved[-1] < 0.8 * labels[-1]
    assert all(t["outcome"] == "completed" for t in trials)
    # replay: every trial was the design's step, and the design stops here, at the host's ceiling
    design = Design(4 * MI, 64 * MI, grid=5, repeats=1)
    done = [Trial(t["rate"], t["cls"], t["rate_achieved"]) for t in trials]
    for i, t in enumerate(trials):
        assert next_step(design, done[:i]).rate == t["rate"]
    last = next_step(design, done)
    assert last.rate is None and last.host_limited, last

    fit = json.loads((sweep / "fit.json").read_text())
    assert fit["host_limit"].startswith("host limit: max achieved") and fit["agree"] is None
    assert fit["max_achieved"] == pytest.approx(max(a for a in achieved if a is not None))
    assert fit["max_achieved"] < fit["predicted"]["rate"]
    assert "host limit" in (sweep / "report.html").read_text()
    assert not [
        d
        for d in (Path("/sys/fs/cgroup/memory") / "harness").glob("*")
        if d.name in {r.name for r in (sweep / "runs").iterdir()}
    ], "a trial's cgroups were left behind"
