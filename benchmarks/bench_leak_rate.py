"""Requested vs achieved leak rate of workloads/build/leak, 1 MiB/s .. 1 GiB/s.

Each run is a short leak (a few seconds, at most 1 GiB) inside a fresh memory cgroup limited to
1.5 GiB, removed afterwards. Chunks are scheduled every 10 ms (chunk = rate x 10 ms), so this
also measures how well the absolute deadlines hold.

Columns:
  achieved (prog)   slope of ``allocated`` over the program's own clock (chunk events)
  achieved (rss)    slope of the program's resident set (``/proc/self/statm`` in the events)
  achieved (cgroup) slope of the cgroup's anonymous memory sampled from outside every 20 ms
  late p50/max      how late each chunk finished allocating after its deadline
  res/alloc         resident growth / allocated at the end (1.00 with --touch=1)

Usage (as root, after ``make -C workloads``)::

    python benchmarks/bench_leak_rate.py [--seconds 3] [--rates 1,4,16,64,256,1024] [--touch 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

MiB = 1 << 20
REPO = Path(__file__).resolve().parent.parent
LEAK = REPO / "workloads" / "build" / "leak"
LIMIT = 1536 * MiB
MAX_BYTES = 1024 * MiB
INTERVAL_MS = 10.0


def memory_root() -> tuple[Path, int]:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        f, r = left.split(), right.split()
        if r[0] == "cgroup" and "memory" in r[2].split(","):
            return Path(f[4]), 1
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        f, r = left.split(), right.split()
        if r[0] == "cgroup2":
            return Path(f[4]), 2
    raise SystemExit("no memory cgroup controller mounted")


class Cgroup:
    def __init__(self, limit: int) -> None:
        root, self.version = memory_root()
        self.path = root / f"harness-bench-{uuid.uuid4().hex[:10]}"
        if self.version == 2:
            ctl = root / "cgroup.subtree_control"
            if "memory" not in ctl.read_text().split():
                ctl.write_text("+memory")
        self.path.mkdir()
        (self.path / ("memory.limit_in_bytes" if self.version == 1 else "memory.max")).write_text(str(limit))
        self.anon_key = "rss" if self.version == 1 else "anon"
        self.stat_fd = os.open(self.path / "memory.stat", os.O_RDONLY)

    def anon(self) -> int:
        for ln in os.pread(self.stat_fd, 8192, 0).decode().splitlines():
            k, _, v = ln.partition(" ")
            if k == self.anon_key:
                return int(v)
        return 0

    def remove(self) -> None:
        os.close(self.stat_fd)
        deadline = time.monotonic() + 10
        while True:
            pids = [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                self.path.rmdir()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def slope(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 2:
        return float("nan")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else float("nan")


def run(rate_mib: float, seconds: float, touch: float) -> dict[str, Any]:
    rate = rate_mib * MiB
    chunk = max(1, round(rate * INTERVAL_MS / 1000))
    total = min(MAX_BYTES, int(rate * seconds))
    cg = Cgroup(LIMIT)
    procs = str(cg.path / "cgroup.procs")

    def join() -> None:
        with open(procs, "w") as f:
            f.write("0")

    try:
        # stdout to a file, not a pipe: nobody reads a pipe while sampling, and at 16 MiB/s the
        # chunk events filled it (64 KiB) within a second and the leak blocked in write() for ever
        out_file = tempfile.TemporaryFile()  # noqa: SIM115 - read and closed after the poll loop
        p = subprocess.Popen(
            [
                str(LEAK),
                f"--chunk={chunk}",
                f"--interval-ms={INTERVAL_MS:g}",
                f"--max={total}",
                f"--touch={touch:g}",
                "--hold-ms=0",
            ],
            stdout=out_file,
            preexec_fn=join,
        )
        samples: list[tuple[float, int]] = []
        while p.poll() is None:
            samples.append((time.monotonic(), cg.anon()))
            time.sleep(0.02)
        out_file.seek(0)
        out = out_file.read()
        out_file.close()
    finally:
        cg.remove()  # also on Ctrl-C and SIGTERM (a KeyboardInterrupt, see the end of the file)
    evs = [json.loads(ln) for ln in out.decode().splitlines() if ln.strip()]
    chunks = [e for e in evs if e["event"] == "chunk"]
    start = next(e for e in evs if e["event"] == "start")
    if p.returncode != 0 or not chunks:
        return {"rate": rate_mib, "error": f"exit {p.returncode}", "chunk": chunk}
    t = [e["mono_ns"] / 1e9 for e in chunks]
    late = sorted((e["mono_ns"] - e["deadline_ns"]) / 1e6 for e in chunks)
    # while it allocates (time.monotonic() and the program's mono_ns are both CLOCK_MONOTONIC);
    # after the last chunk the exiting process frees its memory, which must not count
    growing = [(ts, b) for ts, b in samples if t[0] <= ts <= t[-1] and b > 0.05 * total]
    last = chunks[-1]
    return {
        "rate": rate_mib,
        "chunk": chunk,
        "chunks": len(chunks),
        "total": total,
        "prog": slope(t, [float(e["allocated"]) for e in chunks]) / MiB,
        "rss": slope(t, [float(e["resident"]) for e in chunks]) / MiB,
        "cgroup": slope([s[0] for s in growing], [float(s[1]) for s in growing]) / MiB,
        "late_p50": late[len(late) // 2],
        "late_max": late[-1],
        "res_alloc": (last["resident"] - start["resident"]) / last["allocated"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rates", default="1,4,16,64,256,1024", help="MiB/s, comma separated")
    ap.add_argument("--touch", type=float, default=1.0)
    a = ap.parse_args()
    if not LEAK.exists():
        print(f"{LEAK} missing: run make -C workloads", file=sys.stderr)
        return 2
    print(
        f"leak rate: chunk every {INTERVAL_MS:g} ms, {a.seconds:g} s or 1 GiB per run, "
        f"cgroup limit {LIMIT // MiB} MiB, touch={a.touch:g}"
    )
    hdr = (
        f"{'requested':>10} {'chunk':>9} {'chunks':>6} {'prog':>9} {'rss':>9} {'cgroup':>9} "
        f"{'err%':>6} {'late p50':>9} {'late max':>9} {'res/alloc':>9}"
    )
    print(hdr)
    print(
        f"{'MiB/s':>10} {'bytes':>9} {'':>6} {'MiB/s':>9} {'MiB/s':>9} {'MiB/s':>9} {'':>6} {'ms':>9} {'ms':>9}"
    )
    print("-" * len(hdr))
    for r in (float(x) for x in a.rates.split(",")):
        res = run(r, a.seconds, a.touch)
        if "error" in res:
            print(f"{r:>10g} {res['chunk']:>9} {res['error']}")
            continue
        err = 100 * (res["prog"] - r) / r
        print(
            f"{r:>10g} {res['chunk']:>9} {res['chunks']:>6} {res['prog']:>9.2f} {res['rss']:>9.2f} "
            f"{res['cgroup']:>9.2f} {err:>6.2f} {res['late_p50']:>9.3f} {res['late_max']:>9.3f} "
            f"{res['res_alloc']:>9.3f}"
        )
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM unwinds like Ctrl-C: cleanup runs
    sys.exit(main())
