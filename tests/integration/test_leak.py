"""The leak program as a plain process in a real memory cgroup (workloads/leak.c)."""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.config.suite import HEAP_CAP_EXIT_CODE, Leak

from .conftest import Kmsg, MemCgroup, MiB

pytestmark = pytest.mark.integration


def events(out: bytes) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in out.decode().splitlines() if ln.strip()]


def of(evs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in evs if e["event"] == name]


def slope(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def test_bad_arguments_exit_2(leak_binary: Path) -> None:
    for bad in (["--chunk=0"], ["--touch=1.5"], ["--mode=swap"], ["--nope"], ["extra"], ["--processes=0"]):
        r = subprocess.run([leak_binary, *bad], capture_output=True, timeout=10)
        assert r.returncode == 2, bad
        (ev,) = events(r.stdout)
        assert ev["event"] == "error"


def test_arguments_from_the_suite_model_are_accepted(leak_binary: Path, memcg: MemCgroup) -> None:
    leak = Leak.model_validate(
        {
            "chunk": "1Mi",
            "interval": "5ms",
            "max": "4Mi",
            "hold": "10ms",
            "processes": 2,
            "touch": 0.5,
            "heapCapPercent": 90,
            "startDelay": "1ms",
        }
    )
    p = memcg.popen([leak_binary, *leak.leak_args()])
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 0, out
    evs = events(out)
    starts = of(evs, "start")
    assert len(starts) == 2
    assert starts[0]["chunk"] == MiB and starts[0]["touch"] == 0.5 and starts[0]["heap_cap_percent"] == 90
    assert len(of(evs, "max")) == 2


def test_oom_killed_at_the_limit(
    leak_binary: Path, memcg: MemCgroup, kmsg: Kmsg, full_oom_reports: float
) -> None:
    chunk = 4 * MiB
    before = memcg.oom_kills()
    p = memcg.popen([leak_binary, f"--chunk={chunk}", "--interval-ms=20", "--max=0"])
    out, _ = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL, out[-500:]
    evs = events(out)
    start = of(evs, "start")[0]
    assert start["limit"] == memcg.limit and start["limit_source"] == f"cgroup-v{memcg.version}"
    last = of(evs, "chunk")[-1]["allocated"]
    # killed while allocating the next chunk: the last one reported fits, the next one does not
    assert last < memcg.limit <= last + chunk
    assert not of(evs, "exit")
    kill = kmsg.wait_for_oom_kill(p.pid)
    assert kill.scope == "memcg" and kill.kernel_format == "modern"
    assert kill.task_memcg == memcg.name and kill.oom_memcg == memcg.name
    assert memcg.oom_kills() == before + 1


def test_resident_follows_the_requested_rate(
    leak_binary: Path, memcg_factory: Callable[..., MemCgroup]
) -> None:
    cg = memcg_factory(512 * MiB)
    chunk, interval_ms, total = 1 * MiB, 20.0, 100 * MiB  # 50 MiB/s for 2 s
    p = cg.popen(
        [leak_binary, f"--chunk={chunk}", f"--interval-ms={interval_ms}", f"--max={total}", "--hold-ms=200"]
    )
    samples = []
    while p.poll() is None:
        samples.append((time.monotonic(), cg.anon_bytes()))
        time.sleep(0.05)
    out = p.stdout.read() if p.stdout else b""
    assert p.returncode == 0
    evs = events(out)
    chunks = of(evs, "chunk")
    assert len(chunks) == total // chunk
    requested = chunk / (interval_ms / 1000)
    # achieved rate from the program's own clock and from its resident set
    t = [e["mono_ns"] / 1e9 for e in chunks]
    assert slope(t, [float(e["allocated"]) for e in chunks]) == pytest.approx(requested, rel=0.03)
    assert slope(t, [float(e["resident"]) for e in chunks]) == pytest.approx(requested, rel=0.03)
    # deadlines are absolute: no drift, every chunk within a few ms of its deadline
    lateness = [(e["mono_ns"] - e["deadline_ns"]) / 1e6 for e in chunks]
    assert max(lateness) < 15, lateness
    # the kernel's view agrees: the cgroup's anonymous memory grows at the same rate
    # while it allocates (time.monotonic() is the program's CLOCK_MONOTONIC): not while it exits
    growing = [(ts, b) for ts, b in samples if t[0] <= ts <= t[-1] and b > 4 * MiB]
    assert len(growing) > 10
    assert slope([s[0] for s in growing], [float(s[1]) for s in growing]) == pytest.approx(requested, rel=0.1)
    assert of(evs, "max")[0]["resident"] >= total
    assert of(evs, "exit")[0]["reason"] == "hold_done"


def test_touch_fraction_sets_resident(leak_binary: Path, memcg_factory: Callable[..., MemCgroup]) -> None:
    cg = memcg_factory(256 * MiB)
    p = cg.popen(
        [leak_binary, "--chunk=16777216", "--interval-ms=0", "--max=134217728", "--touch=0.25", "--hold-ms=0"]
    )
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 0
    mx = of(events(out), "max")[0]
    base = of(events(out), "start")[0]["resident"]
    assert mx["allocated"] == 128 * MiB
    assert mx["resident"] - base == pytest.approx(32 * MiB, rel=0.02)


def test_processes_multiply_the_allocation(
    leak_binary: Path, memcg_factory: Callable[..., MemCgroup]
) -> None:
    cg = memcg_factory(256 * MiB)
    p = cg.popen([leak_binary, "--chunk=4194304", "--interval-ms=5", "--max=33554432", "--processes=3"])
    assert p.stdout is not None
    maxes = 0
    while maxes < 3:
        line = p.stdout.readline()
        assert line, "leak ended early"
        maxes += json.loads(line)["event"] == "max"
    assert len(cg.pids()) == 3
    assert cg.anon_bytes() >= 3 * 32 * MiB
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=10)
    assert p.returncode == 0
    evs = events(out)
    assert len(of(evs, "exit")) == 3
    assert len(of(evs, "child_exit")) == 2


def test_sigterm_exits_cleanly(leak_binary: Path, memcg: MemCgroup) -> None:
    p = memcg.popen([leak_binary, "--chunk=1048576", "--interval-ms=1", "--max=8388608"])
    assert p.stdout is not None
    while json.loads(p.stdout.readline())["event"] != "max":
        pass
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=10)
    assert p.returncode == 0
    (ex,) = of(events(out), "exit")
    assert ex["reason"] == "signal" and ex["exit_code"] == 0 and ex["allocated"] == 8 * MiB


def test_heap_cap_exits_before_the_limit(leak_binary: Path, memcg: MemCgroup) -> None:
    before = memcg.oom_kills()
    chunk = 4 * MiB
    p = memcg.popen([leak_binary, f"--chunk={chunk}", "--interval-ms=5", "--max=0", "--heap-cap-percent=75"])
    out, _ = p.communicate(timeout=30)
    assert p.returncode == HEAP_CAP_EXIT_CODE == 3
    evs = events(out)
    (cap,) = of(evs, "heap_cap")
    cap_bytes = memcg.limit * 75 // 100
    assert cap["heap_cap_bytes"] == cap_bytes
    assert cap["allocated"] <= cap_bytes < cap["allocated"] + chunk
    assert of(evs, "exit")[0]["exit_code"] == 3
    assert memcg.oom_kills() == before


def test_pagecache_raises_usage_not_working_set(
    leak_binary: Path, memcg: MemCgroup, request: pytest.FixtureRequest
) -> None:
    # a disk-backed directory: on tmpfs the "cache" would be unreclaimable shmem
    d = Path(tempfile.mkdtemp(prefix="harness-leak-", dir="/var/tmp"))

    def _cleanup() -> None:
        (d / "f").unlink(missing_ok=True)
        d.rmdir()

    request.addfinalizer(_cleanup)
    before = memcg.oom_kills()
    total = 3 * memcg.limit  # far more than the limit: reclaimed, never OOM
    p = memcg.popen(
        [
            leak_binary,
            "--mode=pagecache",
            f"--file={d / 'f'}",
            "--chunk=4194304",
            "--interval-ms=20",
            f"--max={total}",
            "--hold-ms=0",
        ]
    )
    max_cache = max_rss = 0
    while p.poll() is None:
        max_cache = max(max_cache, memcg.file_bytes())
        max_rss = max(max_rss, memcg.anon_bytes())
        time.sleep(0.02)
    out = p.stdout.read() if p.stdout else b""
    assert p.returncode == 0, out[-500:]
    evs = events(out)
    assert of(evs, "max")[0]["allocated"] == total
    assert max_cache >= memcg.limit // 2
    assert max_rss <= 8 * MiB
    assert max(e["resident"] for e in evs) <= 8 * MiB
    assert memcg.oom_kills() == before
    assert not (d / "f").exists()
