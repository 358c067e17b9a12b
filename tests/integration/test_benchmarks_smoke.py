"""Every benchmark runs in CI with its smallest parameters and prints its figures.

A benchmark that nobody runs rots (``bench_leak_rate.py`` hung for ever at 16 MiB/s: the leak
blocked writing to a stdout pipe that nobody read). Each script runs here as a user would run it,
with tiny parameters; the test asserts it exited 0 within its time limit, printed its table, and
left no cgroup of its own. Benchmarks that need an engine start their own (containerd: a private
instance; the remote sampler: its own sshd on loopback). Run under the machine-wide lock:

    flock /tmp/harness-shared.lock python3 -m pytest tests/integration/test_benchmarks_smoke.py
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CGROUP_ROOTS = [Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup")]

# script, smallest parameters, a line pattern of its figures, time limit (s)
BENCHMARKS = [
    ("bench_leak_rate.py", ["--seconds", "6", "--rates", "1,16"], r"^\s+16\s+\d+\s+\d+\s+1[56]\.\d+", 120),
    ("bench_sampler.py", ["--seconds", "1", "--rates", "10", "--counts", "10"], r"\b10\b.*\d+\.\d+", 120),
    ("bench_oom_latency.py", ["--kills", "2"], r"kmsg.*\d", 180),
    (
        "bench_compare.py",
        ["--runs", "2", "--scenarios", "1", "--workloads", "1", "--minutes", "0.1"],
        r"compare.*\d",
        300,
    ),
    ("bench_sweep.py", ["--trials", "1"], r"\d+\.\d+\s*s", 300),
    (
        "bench_gate_noise.py",
        ["--trials", "5", "--repeats", "5", "--min-effect", "1"],
        r"^\s+5\s+1\s+\d+\.\d+%",
        120,
    ),
    (
        "bench_remote_sampler.py",
        ["--seconds", "1", "--cgroups", "10", "--hz", "10"],
        r"^\s+10\s+10\s+\d+\.\d+",
        300,
    ),
    ("bench_containerd_launch.py", ["-n", "2"], r"task started\s+median\s+\d+\.\d+ ms", 300),
    # two loopback sshd hosts: all alive, then one killed mid-run; the live one completes
    ("bench_fanout.py", ["--hosts", "2", "--dead", "kill"], r"^\s+2\s+kill\s+\d+\.\d+.*\s1/2$", 420),
]


def _bench_cgroups() -> set[Path]:
    out: set[Path] = set()
    for root in CGROUP_ROOTS:
        out |= set(root.glob("harness-bench-*")) | set(root.glob("harness/bench-*"))
    return out


@pytest.mark.parametrize(("script", "args", "figures", "limit"), BENCHMARKS, ids=[b[0] for b in BENCHMARKS])
def test_benchmark_runs_with_its_smallest_parameters(
    script: str, args: list[str], figures: str, limit: int
) -> None:
    before = _bench_cgroups()
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=limit,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert re.search(figures, proc.stdout, re.MULTILINE), (
        f"no figures ({figures!r}) in:\n{proc.stdout[-3000:]}"
    )
    assert _bench_cgroups() <= before, f"{script} left cgroups: {_bench_cgroups() - before}"


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("bench_leak_rate.py", ["--seconds", "20", "--rates", "16"]),
        ("bench_sampler.py", ["--seconds", "20", "--rates", "10", "--counts", "10"]),
        ("bench_oom_latency.py", ["--kills", "50"]),
    ],
    ids=["bench_leak_rate.py", "bench_sampler.py", "bench_oom_latency.py"],
)
def test_benchmark_interrupted_removes_its_cgroups(script: str, args: list[str]) -> None:
    before = _bench_cgroups()
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not (_bench_cgroups() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _bench_cgroups() - before, f"{script} made no cgroup within 30 s"
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert _bench_cgroups() <= before, f"{script} left cgroups after SIGTERM: {_bench_cgroups() - before}"
