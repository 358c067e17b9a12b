"""How long the catalog, group loading and the comparison take on 2 groups x 50 runs.

Synthesizes two groups of runs (``--runs`` each, default 50) as real run folders written with
the real writers (``harness.results.RunStore`` for run.json, events, outcomes, verdicts,
predictions and junit.xml; the sampler's Arrow ``SCHEMA`` and ``pq.write_table`` for
samples.parquet, as ``harness.sample.sampler.finalize`` does), each with ``--scenarios``
scenarios of ``--workloads`` workloads sampled at ``--hz`` for ``--minutes`` minutes (the
node and kubepods cgroups, every workload, and the host's /proc/meminfo row per tick). NEW
has planted changes: one workload evicted instead of OOM-killed in 60 % of the runs, one
event 3 s later. Then it times, each in a fresh state:

  runs list (cold)     Catalog scan reading every run.json, writing .catalog.json
  runs list (indexed)  the same with the index fresh
  load BASE / NEW      harness.compare.load_group (verdicts, run.json, key+limit of samples)
  load, no cgroups     the same without reading samples at all (--no-cgroups)
  compare              harness.compare.compare_groups (Fisher / Mann-Whitney per workload),
                       first with the one-off import of scipy.stats, then again
  CLI end to end       'python -m harness compare group=base group=new' (process start included)
  all samples          for scale: reading every samples.parquet completely (what compare avoids)

Usage::

    python benchmarks/bench_compare.py [--runs 50] [--scenarios 5] [--workloads 3] [--hz 10]
        [--minutes 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.catalog import Catalog, select_runs  # noqa: E402
from harness.compare import compare_groups, load_group  # noqa: E402
from harness.results import RunStore  # noqa: E402
from harness.sample.sampler import SCHEMA  # noqa: E402

MiB = 1 << 20


def _samples(
    rng: np.random.Generator,
    run_id: str,
    scenarios: list[str],
    workloads: list[str],
    hz: float,
    minutes: float,
) -> pa.Table:
    n_ticks = int(hz * minutes * 60)
    frames = []
    t_base = 1000.0
    tick0 = 0
    for sc in scenarios:
        t = t_base + np.arange(n_ticks) / hz
        ws_w = []
        for i, _w in enumerate(workloads):
            rate = (8 + 4 * i) * MiB * hz / 10 * (1 + 0.02 * rng.standard_normal())
            ws = np.minimum(np.arange(n_ticks) * rate / hz, (100 + 60 * i) * MiB)
            ws_w.append(ws.astype(np.int64))
        kube = np.sum(ws_w, axis=0)
        node = kube + 5 * MiB
        cg_keys = [("node", node, 1 << 30), ("kubepods", kube, 832 * MiB)] + [
            (w, ws_w[i], (128 + 64 * i) * MiB if i % 2 == 0 else None) for i, w in enumerate(workloads)
        ]
        for key, ws, limit in cg_keys:
            frames.append(
                pd.DataFrame(
                    {
                        "t_mono": t,
                        "t_wall": t + 1.7e9,
                        "tick": tick0 + np.arange(n_ticks),
                        "scope": "cgroup",
                        "key": f"{sc}/{key}",
                        "path": f"/sys/fs/cgroup/memory/harness/{run_id}/{sc}/{key}",
                        "version": "v1",
                        "usage": ws + 700_000,
                        "working_set": ws,
                        "rss": ws,
                        "cache": 700_000,
                        "inactive_file": 700_000,
                        "active_file": 0,
                        "mapped_file": 0,
                        "shmem": 0,
                        "pgmajfault": 0,
                        "limit": limit,
                        "oom": None,
                        "oom_kill": 0,
                        "under_oom": False,
                    }
                )
            )
        frames.append(
            pd.DataFrame(
                {
                    "t_mono": t,
                    "t_wall": t + 1.7e9,
                    "tick": tick0 + np.arange(n_ticks),
                    "scope": "node",
                    "key": "node",
                    "path": "/proc/meminfo",
                    "mem_total": 24 << 30,
                    "mem_free": (20 << 30) - node,
                    "mem_available": (22 << 30) - node,
                    "cached": 1 << 30,
                    "buffers": 90 * MiB,
                }
            )
        )
        t_base += minutes * 60 + 1
        tick0 += n_ticks
    df = pd.concat(frames, ignore_index=True)
    for col in SCHEMA.names:
        if col not in df:
            df[col] = None
    df = df.sort_values(["tick", "scope", "key"], kind="stable")
    return pa.Table.from_pandas(df[list(SCHEMA.names)], schema=SCHEMA, preserve_index=False)


def make_run(root: Path, group: str, i: int, args: argparse.Namespace, rng: np.random.Generator) -> None:
    scenarios = [f"s{k + 1}-synthetic" for k in range(args.scenarios)]
    workloads = [f"w{k + 1}" for k in range(args.workloads)]
    run_id = (
        f"2026111{1 if group == 'base' else 2}T{i // 60:02d}{i % 60:02d}00Z-bench-process-{group[:1]}{i:03d}"
    )
    store = RunStore(root, run_id)
    store.update(
        suite="bench",
        backend="process",
        scenarios=scenarios,
        harness_version="0.1.0",
        git_revision="bench",
        host={"name": "bench", "kernel": "6.1", "cgroupVersion": 1},
        node={s: {"kubeletVersion": "1.33" if group == "base" else "1.34"} for s in scenarios},
        labels={"group": group},
    )
    pq.write_table(
        _samples(rng, run_id, scenarios, workloads, args.hz, args.minutes), store.dir / "samples.parquet"
    )
    verdicts, outcomes, events, preds = [], [], [], []
    for sc in scenarios:
        for k, w in enumerate(workloads):
            outcome, t = ("oom_killed", 1.5 + 0.7 * k + 0.05 * rng.standard_normal())
            if group == "new" and sc == scenarios[0] and w == workloads[0] and rng.random() < 0.6:
                outcome = "evicted"  # planted: the kubelet wins the race more often
            if group == "new" and sc == scenarios[-1] and w == workloads[-1]:
                t += 3.0  # planted: an event 3 s later
            verdicts.append(
                {
                    "scenario": sc,
                    "workload": w,
                    "predicted": "oom_killed",
                    "observed": outcome,
                    "match": outcome == "oom_killed",
                    "time_ok": True,
                    "observed_t_s": t,
                    "predicted_earliest_s": 1.5,
                    "predicted_latest_s": 1.5 + 0.7 * k,
                    "victim_predicted": False,
                    "victim_observed": False,
                    "reasons": [],
                    "host_deviations": [],
                    "race": False,
                    "passed": outcome == "oom_killed",
                }
            )
            outcomes.append(
                {
                    "scenario": sc,
                    "workload": w,
                    "outcome": outcome,
                    "t_mono": 1000 + t,
                    "victim": False,
                    "evidence": ["synthetic"],
                    "sources": ["bench"],
                }
            )
            preds.append(
                {"scenario": sc, "name": w, "outcome": "oom_killed", "earliest_s": 1.5, "latest_s": 1.5}
            )
            events.append(
                {
                    "t_mono": 1000 + t,
                    "t_wall": 1.7e9 + t,
                    "source": "kmsg",
                    "kind": "oom_kill",
                    "workload": w,
                    "pid": 100 + k,
                }
            )
    store.write_table("events", events)
    store.write_table("outcomes", outcomes)
    store.write_table("predictions", preds)
    store.write_table("verdicts", verdicts)
    store.write_junit("bench", verdicts, 1.0)
    store.update(
        host_deviations=[], verdicts_passed=sum(v["passed"] for v in verdicts), verdicts_total=len(verdicts)
    )
    store.finish("complete")


def timed(fn: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=50, help="runs per group")
    ap.add_argument("--scenarios", type=int, default=5)
    ap.add_argument("--workloads", type=int, default=3, help="workloads per scenario")
    ap.add_argument("--hz", type=float, default=10.0)
    ap.add_argument("--minutes", type=float, default=5.0, help="sampled minutes per scenario")
    ap.add_argument(
        "--keep", type=Path, help="write the runs here and keep them (default: a temp dir, removed)"
    )
    args = ap.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="harness-bench-compare-"))
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    try:
        t0 = time.perf_counter()
        for group in ("base", "new"):
            for i in range(args.runs):
                make_run(root, group, i, args, rng)
                print(f"\rwriting runs: {group} {i + 1}/{args.runs}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        made = time.perf_counter() - t0
        sample = next(root.glob("*/samples.parquet"))
        rows = pq.read_metadata(sample).num_rows
        size = sum(p.stat().st_size for p in root.glob("*/samples.parquet"))
        print(
            f"runs: 2 x {args.runs}, {args.scenarios} scenarios x {args.workloads} workloads, "
            f"{args.hz:g} Hz x {args.minutes:g} min per scenario"
        )
        print(
            f"samples.parquet: {rows:,} rows per run, {size / 2**20:.0f} MiB in total; written in {made:.1f} s"
        )

        figures: list[tuple[str, float]] = []
        runs, dt = timed(lambda: Catalog(root).runs())
        figures.append(("runs list, cold (reads every run.json, writes the index)", dt))
        runs, dt = timed(lambda: Catalog(root).runs())
        figures.append(("runs list, indexed", dt))
        base_runs, dt = timed(lambda: select_runs("group=base", root, complete_only=True))
        new_runs = select_runs("group=new", root, complete_only=True)
        figures.append(("select group=base (indexed)", dt))
        assert len(runs) == 2 * args.runs and len(base_runs) == len(new_runs) == args.runs
        base, dt_b = timed(lambda: load_group("group=base", base_runs))
        new, dt_n = timed(lambda: load_group("group=new", new_runs))
        figures.append((f"load BASE ({args.runs} runs, with cgroup limits from samples)", dt_b))
        figures.append((f"load NEW ({args.runs} runs, with cgroup limits from samples)", dt_n))
        _, dt = timed(lambda: load_group("group=base", base_runs, cgroups=False))
        figures.append((f"load BASE ({args.runs} runs, --no-cgroups)", dt))
        c, dt = timed(lambda: compare_groups(base, new))
        figures.append((f"compare ({len(c.findings)} checks; includes importing scipy.stats)", dt))
        c, dt = timed(lambda: compare_groups(base, new))
        figures.append(("compare again (scipy.stats already imported)", dt))
        cli = [sys.executable, "-m", "harness", "compare", "group=base", "group=new", "--results", str(root)]
        proc, dt = timed(lambda: subprocess.run(cli, cwd=REPO, capture_output=True, text=True, timeout=600))
        figures.append(("CLI end to end: harness compare group=base group=new", dt))
        _, dt = timed(lambda: [pq.read_table(r.dir / "samples.parquet") for r in base_runs + new_runs])
        figures.append(("for scale: read every samples.parquet completely", dt))

        for label, secs in figures:
            print(f"  {secs:8.3f} s  {label}")
        print(f"changes found: {len(c.changes)} (exit code of the CLI: {proc.returncode})")
        for f in c.changes:
            print(f"  {f.check}: {f.summary}")
        summary = {label: round(s, 3) for label, s in figures}
        print(json.dumps({"rows_per_run": rows, "seconds": summary}))
        if proc.returncode != 1:
            raise SystemExit(
                f"the CLI should have exited 1 on the planted changes: {proc.stdout}{proc.stderr}"
            )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM unwinds like Ctrl-C: cleanup runs
    main()
