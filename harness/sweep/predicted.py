"""The model's side of a sweep: predicted P(A) against the leak rate, and the predicted boundary.

For every rate the scenario is rewritten (``rates.scenario_for_rate``) and simulated by
``harness.model.predict.predict_scenario`` over ``phases`` evenly spaced phases of the
kubelet's loop. The share of phases in which the leaking workload ends in class A is the
predicted P(A) at that rate: the phase of the 10 s loop relative to the leak is uniform in a
real run, so the share is a probability. Everything the boundary depends on is in that
simulation (see ``harness.model.predict``):

* the **threshold gap**: the kubelet evicts when an eviction signal crosses its threshold
  (``memory.available`` against the node, ``allocatableMemory.available`` against the kubepods
  limit), the kernel kills when a cgroup reaches its limit; the leak needs ``gap / rate``
  seconds from one to the other;
* the **eviction loop**: a sync every ``evictionMonitoringPeriod`` = 10 s (k8s:
  pkg/kubelet/kubelet.go), at most one eviction per sync, then the kill latency;
* **stats age**: the signals are computed from stats ``stats_age_s`` old (0 by default:
  ``synchronize`` asks for fresh stats, see ``harness.model.predict.STATS_AGE_S``);
* **kernelMemcgNotification** (cgroup v1): a memcg threshold eventfd wakes ``synchronize`` as
  soon as usage crosses the threshold (k8s: pkg/kubelet/eviction/memory_threshold_notifier.go,
  eviction_manager.go ``Start``: ``thresholdHandler`` calls ``m.synchronize``).

Without a kubelet (process/docker backends) there is a single deterministic timeline: P(A)
is 0 or 1 and the predicted boundary is where it steps.

P(A) is conditional on the outcome being A or B, like the measured fit (other outcomes are
excluded from both); the raw shares are kept as well.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.config.suite import Scenario
from harness.model.predict import Baseline, predict_scenario
from harness.sweep.rates import scenario_for_rate

MODEL_PHASES = 40  # finer than predict's default 20: P(A) in steps of 2.5 %


@dataclass
class ModelPoint:
    rate: float
    shares: dict[str, float]  # outcome -> share of kubelet loop phases
    p_a: float | None  # P(A | A or B); None when the model predicts neither
    share_a: float
    share_b: float
    outcome: str  # the most frequent outcome

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PredictedBoundary:
    rate: float | None
    bracket: tuple[float, float] | None
    reason: str
    evaluations: int
    curve: list[ModelPoint] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "bracket": list(self.bracket) if self.bracket else None,
            "reason": self.reason,
            "evaluations": self.evaluations,
            "curve": [p.to_dict() for p in self.curve],
        }


@dataclass
class ModelSettings:
    kubelet: bool
    class_a: frozenset[str]
    class_b: frozenset[str]
    phases: int = MODEL_PHASES
    stats_age_s: float | None = None  # None = the model's default
    baseline: Baseline | None = None


def model_point(scenario: Scenario, workload: str, rate: float, ms: ModelSettings) -> ModelPoint:
    sc = scenario_for_rate(scenario, workload, rate)
    kw: dict[str, Any] = {}
    if ms.stats_age_s is not None:
        kw["stats_age_s"] = ms.stats_age_s
    pred = predict_scenario(sc, kubelet=ms.kubelet, baseline=ms.baseline, phases=ms.phases, **kw)
    wp = pred.workload(workload)
    shares = {a.outcome: a.share for a in wp.alternatives} or {wp.outcome: 1.0}
    sa = sum(v for k, v in shares.items() if k in ms.class_a)
    sb = sum(v for k, v in shares.items() if k in ms.class_b)
    p = sa / (sa + sb) if sa + sb > 0 else None
    return ModelPoint(rate=rate, shares=shares, p_a=p, share_a=sa, share_b=sb, outcome=wp.outcome)


def log_rates(low: float, high: float, n: int) -> list[float]:
    la, lb = math.log(low), math.log(high)
    return [math.exp(la + (lb - la) * i / (n - 1)) for i in range(n)]


def predicted_boundary(
    scenario: Scenario,
    workload: str,
    low: float,
    high: float,
    ms: ModelSettings,
    *,
    points: int = 25,
    rel_tol: float = 0.002,
) -> PredictedBoundary:
    """The model's curve over LOW..HIGH and the rate where its P(A) crosses 0.5.

    The crossing is located by bisection on the model between the two curve points around
    it, from both sides: ``r1`` = the highest rate still on the low-rate side of 0.5 and
    ``r2`` = the lowest rate already past it; the boundary is their geometric mean (they
    differ when the model's P(A) sits exactly at 0.5 over an interval).
    """
    curve = [model_point(scenario, workload, r, ms) for r in log_rates(low, high, points)]
    evals = len(curve)
    known = [c for c in curve if c.p_a is not None]
    if len(known) < 2:
        return PredictedBoundary(
            None, None, "the model predicts neither outcome class in the range", evals, curve
        )
    first, last = known[0].p_a, known[-1].p_a
    assert first is not None and last is not None
    if first == last or (first - 0.5) * (last - 0.5) > 0:
        where = "above" if min(first, last) >= 0.5 else "below"
        return PredictedBoundary(
            None,
            None,
            f"the model's P(A) stays {where} 0.5 over the range ({first:.2f} .. {last:.2f})",
            evals,
            curve,
        )
    decreasing = first > last
    extra: list[ModelPoint] = []  # bisection points, added to the curve (they show the step)

    def low_side(p: float) -> bool:  # strictly on the low-rate side of 0.5
        return p > 0.5 if decreasing else p < 0.5

    def high_side(p: float) -> bool:
        return p < 0.5 if decreasing else p > 0.5

    def bisect(pred_is_past: Any) -> tuple[float, float]:
        nonlocal evals
        # first curve interval where the predicate turns true
        a = b = None
        for c1, c2 in itertools.pairwise(known):
            assert c1.p_a is not None and c2.p_a is not None
            if not pred_is_past(c1.p_a) and pred_is_past(c2.p_a):
                a, b = c1.rate, c2.rate
                break
        assert a is not None and b is not None
        while b / a > 1 + rel_tol:
            m = math.sqrt(a * b)
            pt = model_point(scenario, workload, m, ms)
            evals += 1
            extra.append(pt)
            if pt.p_a is None:
                break
            if pred_is_past(pt.p_a):
                b = m
            else:
                a = m
        return a, b

    a1, _ = bisect(lambda p: not low_side(p))  # a1: highest rate still clearly on the low side
    _, b2 = bisect(high_side)  # b2: lowest rate clearly past 0.5
    rate = math.sqrt(a1 * b2)
    curve = sorted(curve + extra, key=lambda c: c.rate)
    return PredictedBoundary(rate, (a1, b2), "P(A) crosses 0.5", evals, curve)
