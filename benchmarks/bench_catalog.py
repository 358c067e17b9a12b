"""The catalog at a year of nights: ``runs list``, a selector, ``compare`` and ``trend`` over N runs.

Plants ``--runs`` run folders (default 10,000) in a temp results folder from the recorded runs of
``tests/fixtures/runs`` (the process-backend ones): each is a copy whose Parquet files are
hard links to the fixture's (the samples of a real 5-scenario run) and whose ``run.json`` has its
own run id, start time (``--per-night`` runs a night, one night after the other back from
2026-11-30) and labels (``lab=nightly``, ``half=a|b`` alternating, ``night=<n>``). Then it times
the CLI end to end (process start included, as a user sees it), each with its peak RSS (with
``--repeat N`` a warm case runs N times: the min and the median; ``--list-only`` skips compare/trend):

  runs list, cold       reads every run.json and writes .catalog.json
  runs list, warm       the index is fresh
  runs list SELECTOR    ``half=a,date>=2026-10-01`` (warm)
  compare 2 x M         ``compare half=a,last:M half=b,last:M`` (M = ``--compare``, default 500)
  trend over K nights   ``trend night>=...`` of the last ``--trend`` runs (default 365)

Usage::

    python benchmarks/bench_catalog.py [--runs 10000] [--per-night 27] [--compare 500] [--trend 365]
    python benchmarks/bench_catalog.py --list-only --repeat 7   # runs list only, min / median of 7
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "runs"
SOURCES = sorted(p for p in FIXTURES.glob("*-local-process-*") if (p / "run.json").is_file())
LAST_NIGHT = dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.UTC)


def plant_runs(root: Path, n: int, per_night: int) -> None:
    metas = [json.loads((s / "run.json").read_text()) for s in SOURCES]
    for i in range(n):
        k = i % len(SOURCES)
        src, meta = SOURCES[k], dict(metas[k])
        night = (n - 1 - i) // per_night
        started = LAST_NIGHT - dt.timedelta(days=night, seconds=-60 * (i % per_night))
        run_id = f"{started:%Y%m%dT%H%M%SZ}-nightly-process-{i:05x}"
        d = root / run_id
        d.mkdir()
        for f in src.iterdir():
            if f.suffix == ".parquet":
                os.link(f, d / f.name)
        meta.update(
            run_id=run_id,
            started=started.isoformat(),
            suite="nightly",
            labels={"lab": "nightly", "half": "ab"[i % 2], "night": str(night)},
        )
        (d / "run.json").write_text(json.dumps(meta))
        if i % 500 == 499:
            print(f"\rplanting runs: {i + 1}/{n}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)


def cli(args: list[str], root: Path) -> tuple[float, float, int, str]:
    """Wall seconds, peak RSS (MiB) and exit code of ``python -m harness ARGS --results ROOT``."""
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", *args, "--results", str(root)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - t, usage.ru_maxrss / 1024, proc.returncode, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--per-night", type=int, default=27, help="runs per night (10,000 / 365 ≈ 27)")
    ap.add_argument("--compare", type=int, default=500, help="runs per side of the compare")
    ap.add_argument("--trend", type=int, default=365, help="runs in the trend")
    ap.add_argument("--keep", type=Path, help="plant the runs here and keep them")
    ap.add_argument("--list-only", action="store_true", help="time runs list (cold, warm, selector) only")
    ap.add_argument("--repeat", type=int, default=1, help="time each warm case N times: min and median")
    args = ap.parse_args()
    if not SOURCES:
        raise SystemExit(f"no process-backend runs under {FIXTURES}")
    root = args.keep or Path(tempfile.mkdtemp(prefix="harness-bench-catalog-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        plant_runs(root, args.runs, args.per_night)
        print(
            f"{args.runs:,} runs planted from {len(SOURCES)} recorded runs in {time.perf_counter() - t:.1f} s"
        )
        trend_out = root / "trend.html"
        cases = [
            ("runs list, cold (reads every run.json, writes the index)", ["runs", "list"]),
            ("runs list, warm", ["runs", "list"]),
            ("runs list half=a,date>=2026-10-01 (warm)", ["runs", "list", "half=a,date>=2026-10-01"]),
            (
                f"compare half=a,last:{args.compare} half=b,last:{args.compare}",
                ["compare", f"half=a,last:{args.compare}", f"half=b,last:{args.compare}"],
            ),
            (
                f"trend lab=nightly,last:{args.trend}",
                ["trend", f"lab=nightly,last:{args.trend}", "-o", str(trend_out)],
            ),
        ]
        if args.list_only:
            cases = cases[:3]
        print(f"{'wall s':>8} {'median':>8} {'peak RSS MiB':>12} {'exit':>4}  command")
        figures = {}
        for label, argv in cases:
            n = 1 if "cold" in label else max(1, args.repeat)
            walls, rss = [], 0.0
            for _ in range(n):
                wall, r, rc, out = cli(argv, root)
                walls.append(wall)
                rss = max(rss, r)
                if rc not in (0, 1):
                    break
            wall, med = min(walls), statistics.median(walls)
            print(f"{wall:8.2f} {med:8.2f} {rss:12.0f} {rc:>4}  {label}", flush=True)
            figures[label] = {
                "seconds": round(wall, 3),
                "median_seconds": round(med, 3),
                "repeats": len(walls),
                "peak_rss_mib": round(rss),
                "exit": rc,
            }
            if rc not in (0, 1):  # compare exits 1 on a change
                print(out[-2000:], file=sys.stderr)
                raise SystemExit(f"'{' '.join(argv)}' failed with exit code {rc}")
        print(json.dumps({"runs": args.runs, "figures": figures}))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
