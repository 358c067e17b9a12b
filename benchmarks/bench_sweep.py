"""What a rate sweep costs: the model's curve, and the time one trial adds to its scenario.

1. Model: ``predicted_boundary`` (25-point curve + bisection, 40 kubelet-loop phases per rate)
   for suites/sweep-local.yaml S11-local (no kubelet) and S11 (kubelet, cluster-default profile,
   with and without kernelMemcgNotification).
2. Trial overhead: wall time of one trial (``harness.run.run_suite`` on S11-local at a rate that
   survives, i.e. the whole 4 s scenario) minus the scenario timeout: backend checks, host facts,
   kmsg/sampler start and stop, teardown, Parquet files.

Usage (as root, after ``make -C workloads``)::

    python benchmarks/bench_sweep.py [--trials 3]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.progress import Progress  # noqa: E402
from harness.run import run_suite  # noqa: E402
from harness.sweep.rates import format_rate, scenario_for_rate  # noqa: E402
from harness.sweep.runner import SweepConfig, predict, resolve  # noqa: E402

MI = float(1 << 20)
SUITE = str(REPO / "suites" / "sweep-local.yaml")


def bench_model() -> None:
    print("model: predicted_boundary (25 points + bisection, 40 phases with a kubelet)")
    cases = [
        ("S11-local", "process", 4 * MI, 64 * MI, {}),
        ("S11", "kubernetes", 32 * MI, 2048 * MI, {}),
        ("S11", "kubernetes", 32 * MI, 2048 * MI, {"kernelMemcgNotification": True}),
    ]
    for scen, backend, lo, hi, sets in cases:
        cfg = SweepConfig(suite_file=SUITE, scenario=scen, backend=backend, low=lo, high=hi, profile_set=sets)
        res = resolve(cfg)
        t = time.perf_counter()
        pb = predict(cfg, res)
        dt = time.perf_counter() - t
        label = f"{scen} {backend}" + (" " + ",".join(f"{k}={v}" for k, v in sets.items()) if sets else "")
        rate = format_rate(pb.rate) if pb.rate else "none"
        print(f"  {label:<55} boundary {rate:>11}  {pb.evaluations:3d} evaluations  {dt:6.2f} s")


def bench_trial(n: int) -> None:
    cfg = SweepConfig(suite_file=SUITE, scenario="S11-local", backend="process", low=4 * MI, high=64 * MI)
    res = resolve(cfg)
    sc = scenario_for_rate(res.scenario, res.workload, 6 * MI)
    suite = res.suite.model_copy(update={"scenarios": [sc]})
    walls = []
    with tempfile.TemporaryDirectory() as d:
        for _ in range(n):
            t = time.monotonic()
            r = run_suite(suite, "process", Path(d), only=[sc.name], progress=Progress(quiet=True))
            walls.append(time.monotonic() - t)
            assert r.status == "complete" and r.verdicts[0].observed == "completed", r.verdicts
    over = [w - sc.timeout_s for w in walls]
    print(f"trial: S11-local at 6 MiB/s (survives the {sc.timeout_s:g} s scenario), {n} trials")
    print(
        f"  wall median {statistics.median(walls):.2f} s; overhead median {statistics.median(over):.2f} s, "
        f"max {max(over):.2f} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    bench_model()
    bench_trial(args.trials)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM unwinds like Ctrl-C: cleanup runs
    main()
