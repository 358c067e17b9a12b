"""CPU cost of the sampler: process CPU time per wall second at 10/50/100 Hz, 10 and 100 cgroups.

Creates ``<memory mount>/harness-bench-<random>/`` with N empty child cgroups (v1: each has its
full ``memory.stat``; the cost does not depend on how much memory they hold), samples them for a
few seconds with the real background thread (including the node row and the 1 s Arrow IPC
flush + fsync), and prints:

  cpu %      process CPU time (``time.process_time``) / wall time, in % of one core
  oom        whether OOM counters are read every tick (``Sampler(oom_counters=...)``)
  tick µs    process CPU time of one batched pass (``sample_once``, with a flush every 50),
             measured separately in a tight loop (warm caches: below the threaded cost)
  ticks      ticks done / ticks expected, and missed ticks

  µs/cg·tick CPU time per cgroup per tick (cpu % / (cgroups x Hz)): the growth rate; the
             cost is linear in cgroups x Hz plus the fixed per-tick part (thread wake-up) and
             the node readings (/proc/meminfo, the root cgroup) at min(Hz, --node-hz)

Empty cgroups never change their usage, so their ``memory.stat`` is re-read only every
``STAT_REUSE_S`` (1 s), and, while it stays the same, at doubling intervals up to
``STAT_REUSE_MAX_S`` (4 s; ``--stat-reuse-max 1`` turns that back-off off); ``--no-stat-reuse``
reads it every tick, the worst case of a node where every cgroup's usage moves at every tick.

Everything is removed afterwards. Usage (as root on a cgroup v1 or v2 host)::

    python benchmarks/bench_sampler.py [--seconds 5] [--rates 10,50,100] [--counts 10,100]
        [--oom-counters on|off|both] [--no-stat-reuse] [--node-hz 10] [--repeats 1]

``--node-hz`` is the sampler's ``node_hz`` (default ``NODE_HZ``, 10): set it to the highest
rate (e.g. 100) to read the node row in every tick, as before it existed.

The issue 19 targets (500 cgroups at 10 Hz and 100 at 100 Hz, <= 2 % of a core, no missed tick)::

    python benchmarks/bench_sampler.py --counts 100,500 --rates 10,100 --oom-counters off
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.sample import sampler as sampler_module  # noqa: E402
from harness.sample.cgroupfs import CgroupPaths, detect_host_layout  # noqa: E402
from harness.sample.sampler import Sampler  # noqa: E402


def make_cgroups(n: int) -> tuple[CgroupPaths, list[CgroupPaths]]:
    mounts = detect_host_layout()
    parent = CgroupPaths(f"harness-bench-{uuid.uuid4().hex[:8]}", mounts.memory_version, mounts.root)
    os.mkdir(parent.memory_dir)
    if parent.version == "v2":
        # cgroup v2: the children get memory.* files only with the controller enabled below the parent
        Path(parent.memory_dir, "cgroup.subtree_control").write_text("+memory")
    children = []
    for i in range(n):
        child = CgroupPaths(f"{parent.rel}/c{i:03d}", parent.version, parent.root)
        os.mkdir(child.memory_dir)
        children.append(child)
    return parent, children


def remove_cgroups(parent: CgroupPaths, children: list[CgroupPaths]) -> None:
    for child in reversed(children):
        os.rmdir(child.memory_dir)
    os.rmdir(parent.memory_dir)


def tick_cost_us(children: list[CgroupPaths], oom: bool, ticks: int = 200) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        node = CgroupPaths("", children[0].version, children[0].root)
        s = Sampler(tmp, node_cgroup=node, oom_counters=oom)  # 10 Hz: the node row in every tick
        try:
            for i, c in enumerate(children):
                s.register(f"c{i}", c)
            s.sample_once()
            durations = []
            for _ in range(ticks):
                t0 = time.process_time()
                s.sample_once()
                durations.append(time.process_time() - t0)
                if len(durations) % 50 == 0:
                    s.flush()
            return statistics.mean(durations) * 1e6
        finally:
            s.close()


def cpu_share(
    children: list[CgroupPaths], rate: float, seconds: float, oom: bool, node_hz: float
) -> tuple[float, int, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        node = CgroupPaths("", children[0].version, children[0].root)
        s = Sampler(tmp, rate_hz=rate, node_cgroup=node, oom_counters=oom, node_hz=node_hz)
        for i, c in enumerate(children):
            s.register(f"c{i}", c)
        c0, w0 = time.process_time(), time.monotonic()
        s.start()
        time.sleep(seconds)
        s.stop()
        c1, w1 = time.process_time(), time.monotonic()
        ticks, missed = s.ticks, s.missed_ticks
        s.close()
    return (c1 - c0) / (w1 - w0) * 100, ticks, round((w1 - w0) * rate), missed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rates", default="10,50,100")
    ap.add_argument("--counts", default="10,100")
    ap.add_argument(
        "--oom-counters",
        choices=["on", "off", "both"],
        default="both",
        help="read memory.oom_control/memory.events every tick (off: left to OomWatcher)",
    )
    ap.add_argument(
        "--no-stat-reuse", action="store_true", help="read memory.stat every tick (STAT_REUSE_S = 0)"
    )
    ap.add_argument(
        "--stat-reuse-max",
        type=float,
        default=sampler_module.STAT_REUSE_MAX_S,
        help="longest reuse of an idle cgroup's unchanged memory.stat (STAT_REUSE_MAX_S; 1 = no back-off)",
    )
    ap.add_argument(
        "--node-hz",
        type=float,
        default=sampler_module.NODE_HZ,
        help="highest rate of the node row (meminfo + root cgroup); the rate itself: every tick",
    )
    ap.add_argument("--repeats", type=int, default=1, help="measure each row this many times")
    args = ap.parse_args()
    if args.no_stat_reuse:
        sampler_module.STAT_REUSE_S = 0.0
    sampler_module.STAT_REUSE_MAX_S = args.stat_reuse_max
    ooms = {"on": [True], "off": [False], "both": [True, False]}[args.oom_counters]
    rates = [float(r) for r in args.rates.split(",")]
    counts = [int(c) for c in args.counts.split(",")]
    mounts = detect_host_layout()
    print(f"host: layout={mounts.layout.value} memory={mounts.memory_version.value} cpus={os.cpu_count()}")
    print(
        f"stat reuse: {sampler_module.STAT_REUSE_S:g} s, idle and unchanged up to "
        f"{sampler_module.STAT_REUSE_MAX_S:g} s; node rows at most {args.node_hz:g} Hz"
    )
    print(
        f"{'cgroups':>7} {'oom':>4} {'rate Hz':>7} {'cpu %':>7} {'tick µs':>8} {'ticks':>11} {'missed':>6} "
        f"{'µs/cg·tick':>10}"
    )
    for n in counts:
        parent, children = make_cgroups(n)
        try:
            for oom in ooms:
                per_tick = tick_cost_us(children, oom)
                for rate in [r for r in rates for _ in range(args.repeats)]:
                    share, ticks, expected, missed = cpu_share(
                        children, rate, args.seconds, oom, args.node_hz
                    )
                    print(
                        f"{n:>7} {'on' if oom else 'off':>4} {rate:>7.0f} {share:>7.2f} {per_tick:>8.0f} "
                        f"{ticks:>5}/{expected:<5} {missed:>6} {share * 1e4 / (n * rate):>10.2f}"
                    )
        finally:
            remove_cgroups(parent, children)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM unwinds like Ctrl-C: cleanup runs
    main()
