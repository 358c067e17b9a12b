"""The model's boundary (harness/sweep/predicted.py) and what it depends on.

A BestEffort pod leaks on top of a 2.5Gi Guaranteed ballast on a 4Gi node with kubeReserved
512Mi and evictionHard memory.available 256Mi: kubepods limit 3.5Gi, the kubelet evicts when
the pods' working set passes 3.25Gi (allocatableMemory.available < 256Mi), the kernel kills
at 3.5Gi: the gap is the threshold. The leak needs ``gap / rate`` seconds from threshold to limit; with a uniformly random
phase of the 10 s loop, P(evicted) = gap / (10 s x rate), 0.5 at rate = gap / 5 s.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from harness.config.kubelet import parse_profile
from harness.config.node import NodeFacts
from harness.config.suite import Scenario
from harness.model.eviction import EVICTION_MONITORING_PERIOD_S
from harness.model.predict import NOTIFY_LATENCY_S, PROCESS_BASE_BYTES
from harness.sweep.predicted import ModelSettings, model_point, predicted_boundary

MI = float(1 << 20)
GAP = 256 * MI
KUBELET = ModelSettings(
    kubelet=True,
    class_a=frozenset({"evicted"}),
    class_b=frozenset({"oom_killed", "node_oom_killed"}),
    phases=20,
)


def kubelet_scenario(*, gap: str = "256Mi", cgroup: int = 1, **profile: Any) -> Scenario:
    """``gap``: evictionHard memory.available, which is the allocatable threshold's distance to the limit."""
    sc = Scenario.model_validate(
        {
            "name": "s11",
            "timeout": "200s",
            "workloads": [
                {
                    "name": "ballast",
                    "resources": {"requests": {"memory": "2600Mi"}, "limits": {"memory": "2600Mi"}},
                    "leak": {"chunk": "256Mi", "interval": "10ms", "max": "2560Mi"},
                },
                {"name": "leaker", "leak": {"chunk": "4Mi", "interval": "100ms", "startDelay": "1s"}},
            ],
        }
    )
    sc.profile = parse_profile(
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "kubeReserved": {"memory": "512Mi"},
            "evictionHard": {"memory.available": gap},
            **profile,
        }
    )
    sc.node = NodeFacts.model_validate(
        {"memoryCapacity": "4Gi", "cgroupVersion": cgroup, "kubeletVersion": "1.33"}
    )
    return sc


def test_eviction_share_follows_gap_over_loop_period() -> None:
    sc = kubelet_scenario()
    for rate_mi in (32, 64, 128):
        pt = model_point(sc, "leaker", rate_mi * MI, KUBELET)
        expected = GAP / (EVICTION_MONITORING_PERIOD_S * rate_mi * MI)
        assert pt.p_a == pytest.approx(expected, abs=0.1)
    slow = model_point(sc, "leaker", 16 * MI, KUBELET)
    assert slow.p_a == 1.0 and slow.outcome == "evicted"


def test_predicted_boundary_is_gap_over_half_a_loop() -> None:
    pb = predicted_boundary(kubelet_scenario(), "leaker", 16 * MI, 512 * MI, KUBELET, points=13)
    assert pb.rate == pytest.approx(GAP / 5.0, rel=0.1)
    ps = [c.p_a for c in pb.curve if c.p_a is not None]
    assert all(a >= b - 1e-9 for a, b in itertools.pairwise(ps)), "P(evicted) falls with the rate"


def test_boundary_scales_with_the_threshold_gap() -> None:
    small = predicted_boundary(
        kubelet_scenario(gap="256Mi"), "leaker", 16 * MI, 1024 * MI, KUBELET, points=13
    )
    big = predicted_boundary(kubelet_scenario(gap="512Mi"), "leaker", 16 * MI, 1024 * MI, KUBELET, points=13)
    assert small.rate and big.rate
    assert big.rate / small.rate == pytest.approx(2.0, rel=0.15)


def test_memcg_notification_moves_the_boundary_on_cgroup_v1_only() -> None:
    base = predicted_boundary(kubelet_scenario(), "leaker", 16 * MI, 2048 * MI, KUBELET, points=13)
    notify = predicted_boundary(
        kubelet_scenario(kernelMemcgNotification=True), "leaker", 16 * MI, 2048 * MI, KUBELET, points=13
    )
    v2 = predicted_boundary(
        kubelet_scenario(kernelMemcgNotification=True, cgroup=2),
        "leaker",
        16 * MI,
        2048 * MI,
        KUBELET,
        points=13,
    )
    assert base.rate and notify.rate and v2.rate
    # the eventfd wakes synchronize NOTIFY_LATENCY_S after the crossing: evicted while gap/rate > that
    # (within the chunk granularity: at ~500 MiB/s a 100 ms chunk is a fifth of the gap)
    assert notify.rate == pytest.approx(GAP / NOTIFY_LATENCY_S, rel=0.2)
    assert notify.rate > 5 * base.rate
    assert v2.rate == pytest.approx(base.rate, rel=0.02)  # no memcg thresholds on cgroup v2


def test_older_stats_lower_the_boundary() -> None:
    """Signals from stats ``age`` seconds old see the crossing ``age`` later: P = (gap/r - age)/10."""
    rates = {}
    for age in (0.0, 3.0, 6.0):
        ms = ModelSettings(**{**KUBELET.__dict__, "stats_age_s": age})
        pb = predicted_boundary(kubelet_scenario(), "leaker", 16 * MI, 512 * MI, ms, points=13)
        assert pb.rate is not None
        rates[age] = pb.rate
        assert pb.rate == pytest.approx(GAP / (5.0 + age), rel=0.15)
    assert rates[0.0] > rates[3.0] > rates[6.0]


def test_kernel_only_boundary_is_limit_over_deadline() -> None:
    """No kubelet: a 64Mi container leaking for 4 s survives below (64Mi - base) / 40 chunks per 100 ms."""
    sc = Scenario.model_validate(
        {
            "name": "deadline",
            "timeout": "4s",
            "workloads": [
                {
                    "name": "leaker",
                    "resources": {"requests": {"memory": "32Mi"}, "limits": {"memory": "64Mi"}},
                    "leak": {"chunk": "1Mi", "interval": "100ms"},
                }
            ],
        }
    )
    sc.profile = parse_profile(
        {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration"}
    )
    sc.node = NodeFacts.model_validate({"memoryCapacity": "1Gi", "cgroupVersion": 1})
    ms = ModelSettings(
        kubelet=False, class_a=frozenset({"completed"}), class_b=frozenset({"oom_killed", "node_oom_killed"})
    )
    pb = predicted_boundary(sc, "leaker", 4 * MI, 64 * MI, ms)
    # chunks at 0, 0.1, ..., 3.9 s: 40 chunks must fit below the limit with the process base
    expected = (64 * MI - PROCESS_BASE_BYTES) / 40 / 0.1
    assert pb.rate == pytest.approx(expected, rel=0.005)
    assert {c.p_a for c in pb.curve} == {0.0, 1.0}  # one deterministic timeline: a step


def test_no_crossing_in_range_is_reported() -> None:
    pb = predicted_boundary(kubelet_scenario(), "leaker", 2 * MI, 8 * MI, KUBELET, points=5)
    assert pb.rate is None and "stays" in pb.reason


def test_no_boundary_on_either_side_agrees_only_when_both_say_the_same_outcome() -> None:
    from types import SimpleNamespace

    from harness.sweep.fit import Fit
    from harness.sweep.predicted import PredictedBoundary
    from harness.sweep.runner import agreement

    all_a = Fit(n=5, n_a=5, n_b=0, method="insufficient", boundary=None)
    model_a = PredictedBoundary(
        None, None, "P(A) stays above", 3, [SimpleNamespace(p_a=p) for p in (1.0, 0.9, 0.8)]
    )  # type: ignore[list-item]
    model_b = PredictedBoundary(
        None, None, "P(A) stays below", 3, [SimpleNamespace(p_a=p) for p in (0.2, 0.1, 0.0)]
    )  # type: ignore[list-item]
    assert agreement(all_a, model_a, 0.1) is True
    assert agreement(all_a, model_b, 0.1) is False
    all_b = Fit(n=4, n_a=0, n_b=4, method="insufficient", boundary=None)
    assert agreement(all_b, model_b, 0.1) is True
