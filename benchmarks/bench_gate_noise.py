"""How often the upgrade gate's position check fails an A/A comparison, and how often it sees a real shift.

The gate (``harness.compare.core``, ``harness.compare.position``) judges an eviction's latency from
the threshold crossing in kubelet loop periods (10 s). On a real kubelet that latency is the wait
for the next loop tick: where the crossing fell in the loop, uniform over one period (the model's
window), plus the kill (``harness.model.predict.KILL_LATENCY_S``, 0.1-1 s seen). This script draws
both sides from that distribution (A/A: the same kubelet twice) and from a kubelet that evicts a
given number of loop periods later (``--shift``), runs ``compare_groups`` on them as the gate
does, and prints per repeat count and ``--min-effect``:

  A/A false positives    share of A/A comparisons of one eviction that the gate calls a change
  suite of K checks      1 - (1 - that)^K: a suite judging K such times at once (kubelet.yaml has ~10)
  shift detected         share of comparisons with the planted shift that the gate calls a change

Usage::

    python benchmarks/bench_gate_noise.py [--trials 400] [--repeats 5,10] [--min-effect 1,1.5]
        [--shift 0.5] [--checks 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.catalog import RunInfo  # noqa: E402
from harness.compare import CompareOptions, Group, compare_groups  # noqa: E402
from harness.compare.position import EVICTION_MONITORING_PERIOD_S  # noqa: E402

CROSSING_S = 9.5  # the as-run window of S3's best-effort pod on this host: 9.5..19.0 s
KILL_S = (0.1, 1.0)  # harness.model.predict.KILL_LATENCY_S: 0.1-1 s seen


def _group(label: str, times: list[float]) -> Group:
    ids = [f"{label}-{i:03d}" for i in range(len(times))]
    rows: list[dict[str, Any]] = [
        {
            "run": run,
            "scenario": "s3",
            "workload": "besteffort",
            "predicted": "evicted",
            "observed": "evicted",
            "observed_t_s": t,
            "predicted_earliest_s": CROSSING_S,
            "predicted_latest_s": CROSSING_S + EVICTION_MONITORING_PERIOD_S,
            "time_ok": True,
            "victim_observed": False,
            "passed": True,
        }
        for run, t in zip(ids, times, strict=True)
    ]
    runs = [RunInfo(i, f"/nonexistent/{i}", "complete", i, None, {"suite": "kubelet"}, []) for i in ids]
    return Group(label, runs, pd.DataFrame(rows), pd.DataFrame(), {i: set() for i in ids})


def _evictions(rng: random.Random, n: int, shift: float) -> list[float]:
    period = EVICTION_MONITORING_PERIOD_S
    return [CROSSING_S + (rng.uniform(0, 1) + shift) * period + rng.uniform(*KILL_S) for _ in range(n)]


def _rate(rng: random.Random, trials: int, n: int, shift: float, opts: CompareOptions) -> float:
    hits = 0
    for _ in range(trials):
        c = compare_groups(_group("a", _evictions(rng, n, 0.0)), _group("b", _evictions(rng, n, shift)), opts)
        hits += c.changed
    return hits / trials


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=400)
    ap.add_argument("--repeats", default="5,10", help="runs per side, comma-separated")
    ap.add_argument("--min-effect", default="1,1.5", help="values of --min-effect, comma-separated")
    ap.add_argument("--shift", type=float, default=0.5, help="planted shift, in loop periods")
    ap.add_argument("--checks", type=int, default=10, help="K for the suite-level false-positive rate")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.trials < 1:
        ap.error("--trials must be at least 1")
    warnings.filterwarnings("ignore")  # scipy's exact-test notes on ties
    rng = random.Random(a.seed)
    print(
        f"{a.trials} comparisons per cell; eviction latency uniform over one loop period "
        f"({EVICTION_MONITORING_PERIOD_S:g} s) + kill {KILL_S[0]}-{KILL_S[1]} s; alpha 0.05, tolerance 1 s"
    )
    print(
        f"{'repeats':>7} {'min-effect':>10} {'A/A false pos.':>15} {f'suite of {a.checks}':>12} "
        f"{f'shift {a.shift:g} detected':>20} {'s':>6}"
    )
    for n in (int(x) for x in a.repeats.split(",")):
        for eff in (float(x) for x in a.min_effect.split(",")):
            t = time.monotonic()
            opts = CompareOptions(min_repeats=max(2, min(n, 5)), min_effect=eff)
            fp = _rate(rng, a.trials, n, 0.0, opts)
            tp = _rate(rng, a.trials, n, a.shift, opts)
            suite = 1 - (1 - fp) ** a.checks
            print(f"{n:>7} {eff:>10g} {fp:>15.1%} {suite:>12.1%} {tp:>20.1%} {time.monotonic() - t:>6.1f}")


if __name__ == "__main__":
    main()
