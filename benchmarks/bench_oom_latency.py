"""Latency from an OOM kill (kernel timestamp) to the harness recording it, over ~10 kills.

One memory cgroup (``harness-bench-oom-<random>``, 48 MiB limit) receives one allocating python
process after another; each is OOM-killed by the kernel. Two independent sources are timed:

  kmsg      ``KmsgFollower``: receipt time − kernel timestamp of the "Killed process" line,
            with the kmsg→CLOCK_MONOTONIC offset measured first by ``KmsgClock.probe``
  counter   ``OomWatcher`` (v1 eventfd on memory.oom_control / v2 inotify on memory.events):
            time the incremented ``oom_kill`` was read − same kernel timestamp

It also checks that both sources saw every kill. Usage (root)::

    python benchmarks/bench_oom_latency.py [--kills 10]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.sample.cgroupfs import CgroupPaths, detect_host_layout  # noqa: E402
from harness.sample.kmsg import KmsgClock, KmsgFollower  # noqa: E402
from harness.sample.oomwatch import OomWatcher  # noqa: E402

MiB = 1 << 20
ALLOCATOR = "c = []\nwhile True:\n    c.append(b'\\x01' * (1 << 20))\n"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def summary(name: str, ms: list[float]) -> str:
    return (
        f"{name:<8} n={len(ms):>2}  min {min(ms):6.2f}  median {statistics.median(ms):6.2f}  "
        f"p90 {pct(ms, 0.9):6.2f}  max {max(ms):6.2f}  (ms)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--limit-mib", type=int, default=48)
    args = ap.parse_args()
    mounts = detect_host_layout()
    cg = CgroupPaths(f"harness-bench-oom-{uuid.uuid4().hex[:8]}", mounts.memory_version, mounts.root)
    os.mkdir(cg.memory_dir)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        Path(cg.limit).write_text(str(args.limit_mib * MiB))
        offsets = [KmsgClock().probe() for _ in range(5)]
        print(f"kmsg clock: CLOCK_MONOTONIC - ts_usec = {statistics.median(offsets) * 1e3:.3f} ms "
              f"(5 probes, spread {(max(offsets) - min(offsets)) * 1e6:.0f} µs)")  # fmt: skip
        with KmsgFollower() as follower, OomWatcher(mode="event") as watcher:
            follower.clock.offset = follower.clock.probed_offset = statistics.median(offsets)
            source = watcher.add("bench", cg)
            print(f"counter source: {source}")

            def join() -> None:
                Path(cg.procs).write_text(str(os.getpid()))

            kmsg_ms: list[float] = []
            counter_ms: list[float] = []
            for i in range(args.kills):
                proc = subprocess.Popen([sys.executable, "-c", ALLOCATOR], preexec_fn=join)
                procs.append(proc)
                proc.wait(60)
                kill = follower.wait_for(lambda k, pid=proc.pid: k.pid == pid, 5)
                change = watcher.wait_for(lambda c, n=i + 1: c.counter == "oom_kill" and c.new >= n, 5)
                if kill is None or change is None or kill.t_mono is None or kill.t_mono_received is None:
                    print(f"kill {i}: MISSED (kmsg={kill is not None}, counter={change is not None})")
                    continue
                kmsg_ms.append((kill.t_mono_received - kill.t_mono) * 1e3)
                counter_ms.append((change.t_mono - kill.t_mono) * 1e3)
            total_kmsg = len([k for k in follower.kills if k.task_memcg == "/" + cg.rel])
            total_counter = watcher.counters("bench").get("oom_kill", 0)
        print(summary("kmsg", kmsg_ms))
        print(summary("counter", counter_ms))
        print(f"kills: started {args.kills}, kmsg saw {total_kmsg}, oom_kill counter {total_counter}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        deadline = time.monotonic() + 10
        while os.path.exists(cg.memory_dir):
            try:
                os.rmdir(cg.memory_dir)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM unwinds like Ctrl-C: cleanup runs
    main()
