#!/usr/bin/env python3
"""Repeat scenarios N times and count each outcome against the model's set.

    # run (each run holds the machine-wide lock only for itself), then count:
    python3 scripts/repeat_outcomes.py suites/eviction-order.yaml --backend kubernetes --repeat 5 \
        --results results/eviction-order --batch eo1
    # count runs already made (label batch=eo1) without running anything:
    python3 scripts/repeat_outcomes.py suites/eviction-order.yaml --results results/eviction-order \
        --batch eo1 --count-only

Per scenario and workload: how often each outcome was observed, the model's planned set with
its shares (``model.predict``: loop phases x housekeeping schedules), and per run whether the
observed outcome is in the *as-run* set re-predicted with this worktree's model from what the run
recorded: each program's start and pace (its ``as_run`` event: launch latency, achieved rate) and
the container stats times of the kubelet's ``/stats/summary`` (``model.housekeeping``). Exit 0
when every observed outcome is in its as-run set, 1 otherwise, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.config.suite import Scenario, load_suite
from harness.model import housekeeping as hk
from harness.model.predict import Prediction, predict_scenario
from harness.model.schedule import ProcSchedule, Schedule

LOCK = "/tmp/harness-shared.lock"


def run_repeats(args: argparse.Namespace) -> None:
    for i in range(1, args.repeat + 1):
        cmd = [sys.executable, "-m", "harness", "run", args.suite, "--backend", args.backend, "-q"]
        cmd += ["--results", args.results, "--label", f"batch={args.batch}", "--label", f"repeat={i}"]
        for s in args.scenario:
            cmd += ["--scenario", s]
        if args.lock:
            cmd = ["flock", LOCK, *cmd]
        print(f"repeat {i}/{args.repeat}: {' '.join(cmd)}", file=sys.stderr, flush=True)
        rc = subprocess.call(cmd)
        print(f"repeat {i}/{args.repeat}: exit {rc}", file=sys.stderr, flush=True)
        if rc not in (0, 1):
            raise SystemExit(f"repeat {i}: harness run exited {rc}; counted runs so far are kept")


def batch_runs(results: Path, batch: str) -> list[Path]:
    out = []
    for d in sorted(results.iterdir()) if results.is_dir() else []:
        rj = d / "run.json"
        if not rj.is_file() or not (d / "outcomes.parquet").is_file():
            continue
        labels = json.loads(rj.read_text()).get("labels") or {}
        if labels.get("batch") == batch:
            out.append(d)
    return out


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in r.items() if not (isinstance(v, float) and pd.isna(v))}
        for r in df.to_dict("records")
    ]


def as_run_prediction(
    sc: Scenario, run: Path, events: list[dict[str, Any]], samples: pd.DataFrame
) -> Prediction:
    """The as-run prediction again with this model: each program at its recorded start and rate,
    pods ranked on the recorded container stats times."""
    key = f"{sc.name}/kubepods"
    first = samples[samples["key"] == key]
    if first.empty:
        raise SystemExit(f"{run}: no samples of {key}")
    t0_wall = float(first["t_wall"].min())
    t0_mono = float(first["t_mono"].min())
    scheds: dict[str, Schedule] = {}
    for e in events:
        if e.get("kind") == "as_run" and e.get("scenario") == sc.name:
            w = next(x for x in sc.workloads if x.name == e["workload"])
            d = json.loads(e["detail"])
            rate = d.get("rate_bytes_per_s") or w.leak.rate_bytes_per_s
            interval = w.leak.chunk_bytes / rate if rate and rate != float("inf") else w.leak.interval_s
            start = w.leak.start_delay_s + float(d.get("launch_s") or 0.0)
            procs = {i: ProcSchedule(start_s=start, interval_s=interval) for i in range(w.leak.processes)}
            scheds[w.name] = Schedule(procs, w.leak.start_delay_s, w.leak.chunk_bytes)
    pods = {}
    for e in events:
        if e.get("source") == "kubelet-stats" and e.get("containers") and t0_mono <= float(e["t_mono"]):
            for pod, cs in json.loads(e["containers"]).items():
                for w in sc.workloads:
                    if w.name in cs and pod.startswith(sc.name[:20]):
                        pods[pod] = w.name
    recorded, _ = hk.from_summaries([e for e in events if float(e["t_mono"]) >= t0_mono], pods, t0_wall)
    return predict_scenario(sc, kubelet=True, schedules=scheds or None, housekeeping=recorded)


def count(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)
    runs = batch_runs(Path(args.results), args.batch)
    if not runs:
        print(f"no runs labelled batch={args.batch} in {args.results}", file=sys.stderr)
        return 2
    wanted = [suite.scenario(s) for s in args.scenario] if args.scenario else suite.scenarios
    kubelet = args.backend == "kubernetes"
    observed: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    in_set: dict[tuple[str, str], Counter[bool]] = defaultdict(Counter)
    shares: dict[tuple[str, str], list[str]] = defaultdict(list)
    joint: dict[str, Counter[str]] = defaultdict(Counter)
    for run in runs:
        outcomes = pd.read_parquet(run / "outcomes.parquet")
        if "scenario" not in outcomes:
            print(f"{run.name}: no outcomes recorded (the run failed); not counted", file=sys.stderr)
            continue
        events = _records(pd.read_parquet(run / "events.parquet"))
        samples = pd.read_parquet(run / "samples.parquet", columns=["t_mono", "t_wall", "key"])
        for sc in wanted:
            mine = outcomes[outcomes["scenario"] == sc.name]
            if mine.empty:
                continue
            got = dict(zip(mine["workload"], mine["outcome"], strict=True))
            joint[sc.name][
                ", ".join(f"{w} {o}" for w, o in got.items() if o != "completed") or "all completed"
            ] += 1
            asrun = as_run_prediction(sc, run, events, samples) if kubelet else None
            for w, o in got.items():
                observed[(sc.name, w)][o] += 1
                if asrun is not None:
                    alts = {a.outcome for a in asrun.workload(w).alternatives} | {asrun.workload(w).outcome}
                    in_set[(sc.name, w)][o in alts] += 1
                    share = sum(a.share for a in asrun.workload(w).alternatives if a.outcome == o)
                    shares[(sc.name, w)].append(f"{share:.0%}")
    ok = True
    print(f"{len(runs)} runs of batch {args.batch} ({args.results})")
    for sc in wanted:
        planned = predict_scenario(sc, kubelet=kubelet)
        print(
            f"\n{sc.id or ''} {sc.name}: " + "; ".join(f"{k} x{n}" for k, n in joint[sc.name].most_common())
        )
        for wp in planned.workloads:
            obs = observed.get((sc.name, wp.name), Counter())
            model = ", ".join(f"{a.outcome} {a.share:.0%}" for a in wp.alternatives)
            seen = ", ".join(f"{o} {n}/{sum(obs.values())}" for o, n in obs.most_common())
            inside = in_set.get((sc.name, wp.name), Counter())
            ok = ok and not inside[False]
            print(
                f"  {wp.name:<12} observed {seen:<28} model (planned) {model:<30} "
                f"in the as-run set {inside[True]}/{inside[True] + inside[False]} "
                f"(as-run share of what was observed, per run: {' '.join(shares[(sc.name, wp.name)])})"
            )
            for n in wp.notes:
                print(f"  {'':<12} note: {n}")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite")
    ap.add_argument("--backend", default="kubernetes")
    ap.add_argument("--scenario", action="append", default=[])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--results", default=os.environ.get("HARNESS_RESULTS", "results"))
    ap.add_argument("--batch", required=True, help="label batch=<this> on every run of the repetition")
    ap.add_argument("--count-only", action="store_true", help="count runs already made")
    ap.add_argument("--no-lock", dest="lock", action="store_false", help=f"do not hold {LOCK} per run")
    args = ap.parse_args()
    if not Path(args.suite).is_file():
        print(f"{args.suite}: no such suite file", file=sys.stderr)
        return 2
    if not args.count_only:
        run_repeats(args)
    return count(args)


if __name__ == "__main__":
    raise SystemExit(main())
