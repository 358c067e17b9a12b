"""The model's prediction of a node's worth of pods: CPU and wall time, planned and as run.

Builds the 110-pod suite of ``benchmarks/bench_pods.py`` (its ``suite_doc``: 109 Burstable pods
holding 16Mi each near the eviction threshold of profiles/cluster-default.yaml, one BestEffort
leaker, ``launch: parallel``) on a fixed node (the local cluster's MemTotal, 24684092 kB, cgroup v2,
kubelet 1.33: the figures do not depend on the machine's own facts), then times

  planned  ``predict_scenario(sc, kubelet=True)`` after ``size_workloads``: what
           ``harness model predict`` and a run's setup compute
  as-run   ``predict_scenario(sc, kubelet=True, schedules=..., housekeeping=...)``: what the run
           computes after the scenario (``harness.scenario.asrun``), with synthetic but realistic
           leak schedules for every workload (pods launched over the 23 s a parallel start-up took
           on the local cluster, each chunk taking a few tens of ms, the leaker's reports ending
           where it was evicted) and two recorded housekeeping schedules (earliest, latest)

in CPU seconds (``time.process_time``) and wall seconds, ``--repeat`` times each (min and median).
The machine may be shared: CPU time is the figure to compare. A digest of each prediction shows
that two versions of the model predict the same.

``--repo DIR`` imports the harness from another checkout (the code before a change), e.g.::

    git worktree add --detach /tmp/base main && python3 benchmarks/bench_predict.py --repo /tmp/base

Usage: ``python3 benchmarks/bench_predict.py [--pods 110] [--repeat 3] [--repo DIR]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# MemTotal of the local cluster's host (profiles/cluster-default.yaml: 24684092 kB)
NODE = {"memoryCapacity": 24684092 * 1024, "cgroupVersion": 2, "kubeletVersion": "1.33"}
# the parallel start-up of 110 pods on the local cluster (README, "110 pods"): 23.1 s
STARTUP_S = 23.1


def build(pods: int, hold: str) -> Any:
    import yaml
    from bench_pods import suite_doc

    from harness.config.suite import load_suite
    from harness.model.sizing import size_workloads

    doc = suite_doc(pods, hold)
    doc["node"] = dict(NODE)
    path = Path(tempfile.mkdtemp(prefix="harness-bench-predict-")) / "pods.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return size_workloads(load_suite(path, detect_host=False).scenarios[0])


def as_run_inputs(sc: Any, seed: int = 0) -> tuple[dict[str, Any], list[Any]]:
    """Leak schedules for every workload and two recorded housekeeping schedules."""
    from harness.model import housekeeping as hk
    from harness.model.schedule import ProcSchedule, Schedule

    rng = random.Random(seed)
    schedules: dict[str, Any] = {}
    early: dict[str, list[float]] = {}
    late: dict[str, list[float]] = {}
    for w in sc.workloads:
        leak = w.leak
        start = leak.start_delay_s + rng.uniform(0.5, STARTUP_S)
        chunks = int((sc.timeout_s - start) / leak.interval_s)
        if leak.max_bytes:
            chunks = min(chunks, -(-leak.max_bytes // leak.chunk_bytes))
        else:
            chunks = min(chunks, 110)  # the leaker: evicted after ~55 s of leaking, its reports end
        due, done, t = [], [], start
        for k in range(chunks):
            d = start + k * leak.interval_s
            t = max(d, t) + rng.uniform(0.01, 0.06)  # a 4-16Mi chunk's page faults on a loaded node
            due.append(d)
            done.append(t)
        schedules[w.name] = Schedule(
            procs={0: ProcSchedule(start_s=start, interval_s=leak.interval_s, due_s=due, done_s=done)},
            planned_start_s=leak.start_delay_s,
            chunk_bytes=leak.chunk_bytes,
        )
        ts, h = [], start + rng.uniform(0.2, 2.0)
        while h < sc.timeout_s + 30 * hk.HOUSEKEEPING_INTERVAL_S:
            ts.append(float(int(h)))
            h += rng.uniform(9.5, 10.5)
        early[w.name] = ts
        late[w.name] = [x + 0.999 * rng.random() for x in ts]
    recorded = [
        hk.Schedule("housekeeping as recorded (earliest)", early),
        hk.Schedule("housekeeping as recorded (latest)", late),
    ]
    return schedules, recorded


def timed(fn: Any, repeat: int) -> tuple[list[float], list[float], Any]:
    cpu, wall, out = [], [], None
    for _ in range(repeat):
        c, w = time.process_time(), time.perf_counter()
        out = fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return cpu, wall, out


def summary(pred: Any) -> tuple[str, str]:
    text = json.dumps(pred.to_dict(), sort_keys=True, default=repr)
    counts = Counter(w.label for w in pred.workloads)
    return hashlib.sha256(text.encode()).hexdigest()[:16], ", ".join(
        f"{n} {o}" for o, n in counts.most_common()
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--pods", type=int, default=110)
    ap.add_argument("--hold", default="16Mi")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--repo", type=Path, default=HERE.parent, help="the checkout whose harness to time")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(args.repo.resolve()))
    sys.path.insert(0, str(HERE))
    import harness
    from harness.model.predict import predict_scenario

    sc = build(args.pods, args.hold)
    schedules, recorded = as_run_inputs(sc)
    rows = []
    for name, fn in (
        ("planned", lambda: predict_scenario(sc, kubelet=True)),
        (
            "as-run",
            lambda: predict_scenario(sc, kubelet=True, schedules=schedules, housekeeping=recorded),
        ),
    ):
        cpu, wall, pred = timed(fn, args.repeat)
        digest, outcomes = summary(pred)
        rows.append(
            {
                "prediction": name,
                "cpu_min_s": round(min(cpu), 3),
                "cpu_median_s": round(statistics.median(cpu), 3),
                "wall_min_s": round(min(wall), 3),
                "wall_median_s": round(statistics.median(wall), 3),
                "digest": digest,
                "outcomes": outcomes,
            }
        )
    print(
        f"harness {Path(harness.__file__).parent.parent}; {len(sc.workloads)} workloads; repeat {args.repeat}"
    )
    if args.json:
        print(json.dumps(rows))
        return 0
    print(
        f"{'prediction':<11}{'CPU min':>9}{'CPU med':>9}{'wall min':>10}{'wall med':>10}  digest            outcomes"
    )
    for r in rows:
        print(
            f"{r['prediction']:<11}{r['cpu_min_s']:>8.2f}s{r['cpu_median_s']:>8.2f}s{r['wall_min_s']:>9.2f}s"
            f"{r['wall_median_s']:>9.2f}s  {r['digest']}  {r['outcomes']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
