"""Outcome prediction for the scenario catalog (design.md, S1-S7).

Each test builds a scenario on a modelled node and argues the expected outcome from
the spec (kubelet-memory-spec.md) in its docstring.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.config.kubelet import parse_profile
from harness.config.node import NodeFacts
from harness.config.suite import Scenario
from harness.model.layout import node_layout
from harness.model.predict import Baseline, predict_scenario

MI = 1 << 20
GI = 1 << 30


def scenario(
    workloads: list[dict[str, Any]],
    profile: dict[str, Any] | None = None,
    *,
    memory: str = "4Gi",
    cgroup: int = 2,
    version: str = "1.33",
    timeout: str = "120s",
    **node: Any,
) -> Scenario:
    sc = Scenario.model_validate({"name": "t", "timeout": timeout, "workloads": workloads})
    sc.profile = parse_profile(
        {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", **(profile or {})}
    )
    sc.node = NodeFacts.model_validate(
        {"memoryCapacity": memory, "cgroupVersion": cgroup, "kubeletVersion": version, **node}
    )
    return sc


SMALL = {
    "kubeReserved": {"memory": "512Mi"},
    "systemReserved": {"memory": "256Mi"},
    "evictionHard": {"memory.available": "256Mi"},
}


def test_s1_container_limit_is_memcg_oom_at_the_limit() -> None:
    """S1: a container's own limit is enforced by the kernel at once (memcg OOM in the
    container cgroup), not by the kubelet. 8Mi every 100ms from 512KiB of base against a
    128Mi limit: the 16th chunk (t=1.5s) would exceed it."""
    sc = scenario(
        [
            {
                "name": "leaker",
                "resources": {"requests": {"memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                "leak": {"chunk": "8Mi", "interval": "100ms"},
            }
        ],
        SMALL,
    )
    for kubelet in (False, True):
        p = predict_scenario(sc, kubelet=kubelet).workload("leaker")
        assert p.outcome == "oom_killed"
        assert not p.race and not p.victim
        assert p.earliest_s == pytest.approx(1.5)
        assert "its own cgroup" in p.mechanism


def test_s2_slow_leak_past_allocatable_is_evicted() -> None:
    """S2: kubepods limit = 4Gi-512Mi-256Mi = 3328Mi; the automatic
    allocatableMemory.available<256Mi threshold (spec §5.4) is met once the pods' working set
    exceeds 3072Mi. At 16Mi/s the leak needs 16 s more to reach the kubepods limit, longer
    than one 10 s eviction loop plus the kill: the kubelet evicts first, whatever the phase."""
    sc = scenario(
        [
            {
                "name": "slow",
                "resources": {"requests": {"memory": "64Mi"}},
                "leak": {"chunk": "4Mi", "interval": "250ms"},
            }
        ],
        SMALL,
        timeout="400s",
    )
    p = predict_scenario(sc, kubelet=True).workload("slow")
    assert p.outcome == "evicted" and not p.race
    cross = 3072 * MI / (16 * MI)  # ~192 s
    assert p.earliest_s is not None and p.latest_s is not None
    assert cross - 1 <= p.earliest_s <= cross + 1
    assert p.latest_s <= cross + 10 + 1
    # Without a kubelet the same leak ends at the kubepods limit, killed by the kernel.
    k = predict_scenario(sc, kubelet=False).workload("slow")
    assert k.outcome == "node_oom_killed"


def test_s3_host_process_drains_node_besteffort_evicted_first() -> None:
    """S3: a process outside kubepods pushes the node's working set above
    MemTotal - memory.available threshold. The eviction manager ranks pods (spec §5.7):
    BestEffort (request 0) exceeds its request and goes first; the kubelet cannot evict the
    host process, so once the pods are gone the node OOM killer takes it."""
    sc = scenario(
        [
            {
                "name": "besteffort",
                "resources": {},
                "leak": {"chunk": "64Mi", "interval": "50ms", "max": "64Mi"},
            },
            {"name": "host", "placement": "host", "leak": {"chunk": "4Mi", "interval": "250ms"}},
        ],
        SMALL,
        timeout="400s",
    )
    p = predict_scenario(sc, kubelet=True)
    assert p.workload("besteffort").outcome == "evicted"
    assert p.workload("host").outcome == "node_oom_killed"


def test_s3_kernel_half_victims_by_oom_score_adj() -> None:
    """S3 without a kubelet: at the node limit the global OOM picks the highest badness
    (rss + oom_score_adj * totalpages/1000, spec §3.3): the idle BestEffort pod (adj 1000)
    and then the Burstable pod (adj 1000-1000*64Mi/1Gi = 938) die before the leaking host
    process (adj 0), and are marked innocent victims."""
    sc = scenario(
        [
            {
                "name": "besteffort",
                "resources": {},
                "leak": {"chunk": "64Mi", "interval": "50ms", "max": "64Mi"},
            },
            {
                "name": "burstable",
                "resources": {"requests": {"memory": "64Mi"}},
                "leak": {"chunk": "64Mi", "interval": "50ms", "max": "64Mi"},
            },
            {"name": "hostleak", "placement": "host", "leak": {"chunk": "16Mi", "interval": "100ms"}},
        ],
        {
            "kubeReserved": {"memory": "128Mi"},
            "systemReserved": {"memory": "64Mi"},
            "evictionHard": {"memory.available": "64Mi"},
        },
        memory="1Gi",
        cgroup=1,
    )
    p = predict_scenario(sc, kubelet=False)
    be, bu, host = p.workload("besteffort"), p.workload("burstable"), p.workload("hostleak")
    assert be.outcome == bu.outcome == host.outcome == "node_oom_killed"
    assert be.victim and bu.victim and not host.victim
    assert be.earliest_s is not None and bu.earliest_s is not None and host.earliest_s is not None
    assert be.earliest_s < bu.earliest_s < host.earliest_s
    assert host.victims == ["besteffort", "burstable"]
    assert be.oom_score_adj == 1000 and bu.oom_score_adj == 938


def test_s4_fast_leak_oom_beats_eviction() -> None:
    """S4: at 1Gi/s the pods' working set crosses the allocatable threshold (3072Mi) and
    reaches the kubepods limit (3328Mi) 0.25 s later, far inside one 10 s loop: the kernel
    kills at the kubepods limit before any eviction, for almost every loop phase."""
    sc = scenario(
        [
            {
                "name": "fast",
                "resources": {"requests": {"memory": "64Mi"}},
                "leak": {"chunk": "64Mi", "interval": "62500us"},
            }
        ],
        SMALL,
    )
    p = predict_scenario(sc, kubelet=True).workload("fast")
    assert p.outcome == "node_oom_killed"
    killed = next(a for a in p.alternatives if a.outcome == "node_oom_killed")
    assert killed.share >= 0.9
    assert "kubepods" in p.mechanism


def s4_race_scenario() -> Scenario:
    """A leak that crosses the threshold and reaches the limit within one loop (256Mi gap at
    ~64Mi/s = 4 s)."""
    return scenario(
        [
            {
                "name": "mid",
                "resources": {"requests": {"memory": "64Mi"}},
                "leak": {"chunk": "16Mi", "interval": "250ms"},
            }
        ],
        SMALL,
        timeout="200s",
    )


def test_s4_race_is_reported_with_both_windows() -> None:
    """Between S2 and S4: a leak that crosses the threshold and reaches the limit within
    one loop (256Mi gap at ~64Mi/s = 4 s) is evicted for some loop phases and OOM-killed for
    others. The prediction says so and gives both windows instead of guessing."""
    sc = s4_race_scenario()
    p = predict_scenario(sc, kubelet=True).workload("mid")
    assert p.race
    outcomes = {a.outcome for a in p.alternatives}
    assert outcomes == {"evicted", "node_oom_killed"}
    assert sum(a.share for a in p.alternatives) == pytest.approx(1.0)
    assert any("race" in n for n in p.notes)


def test_s5_heap_cap_fails_before_the_limit() -> None:
    """S5: a heap cap of 75% of a 256Mi limit gives up at 192Mi: runtime_failed, with no
    OOM kill, because the cap is below the container limit."""
    sc = scenario(
        [
            {
                "name": "jvm",
                "resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                "leak": {"chunk": "8Mi", "interval": "50ms", "heapCapPercent": 75},
            }
        ],
        SMALL,
    )
    p = predict_scenario(sc, kubelet=False).workload("jvm")
    assert p.outcome == "runtime_failed"
    assert p.earliest_s == pytest.approx(24 * 0.05)  # the 25th chunk would pass 192Mi


def test_s6_page_cache_does_not_evict_or_kill() -> None:
    """S6: written file pages are charged to the cgroup (usage) but sit on the inactive
    file LRU, which the working set excludes (spec §5.2), and are reclaimed at the limit.
    2Gi of file writes under a 128Mi limit on a node whose threshold is 3072Mi: nothing
    happens."""
    sc = scenario(
        [
            {
                "name": "dd",
                "resources": {"requests": {"memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                "leak": {
                    "mode": "pagecache",
                    "chunk": "64Mi",
                    "interval": "100ms",
                    "max": "2Gi",
                    "hold": "1s",
                },
            }
        ],
        SMALL,
    )
    for kubelet in (False, True):
        p = predict_scenario(sc, kubelet=kubelet).workload("dd")
        assert p.outcome == "completed" and not p.race


def test_s7_eviction_order_priority_and_guaranteed_survives() -> None:
    """S7: under node pressure the kubelet evicts one pod per loop, ranked (spec §5.7) by
    usage above request first, then lower priority, then excess usage. Two BestEffort pods
    exceed their (zero) requests; the low-priority one goes first. The Guaranteed pod
    stays within its request and is never ranked ahead of pods exceeding theirs."""
    sc = scenario(
        [
            {
                "name": "guaranteed",
                "resources": {
                    "requests": {"memory": "256Mi", "cpu": "100m"},
                    "limits": {"memory": "256Mi", "cpu": "100m"},
                },
                "leak": {"chunk": "200Mi", "interval": "100ms", "max": "200Mi"},
            },
            {
                "name": "high",
                "priority": 1000,
                "resources": {},
                "leak": {"chunk": "100Mi", "interval": "100ms", "max": "500Mi"},
            },
            {
                "name": "low",
                "priority": 0,
                "resources": {},
                "leak": {"chunk": "100Mi", "interval": "100ms", "max": "500Mi"},
            },
            {
                "name": "host",
                "placement": "host",
                "leak": {"chunk": "8Mi", "interval": "100ms", "max": "2800Mi"},
            },
        ],
        SMALL,
        timeout="300s",
    )
    p = predict_scenario(sc, kubelet=True)
    low, high, g = p.workload("low"), p.workload("high"), p.workload("guaranteed")
    assert low.outcome == "evicted"
    assert g.outcome == "completed"
    if high.outcome == "evicted":
        assert low.earliest_s is not None and high.earliest_s is not None
        assert low.earliest_s < high.earliest_s


def test_guaranteed_negative_adj_is_a_host_deviation() -> None:
    """Without CAP_SYS_RESOURCE the kernel keeps a Guaranteed container at 0 instead of
    -997: the layout records both values and a note explains the deviation."""
    sc = scenario(
        [
            {
                "name": "g",
                "resources": {
                    "requests": {"memory": "64Mi", "cpu": "1"},
                    "limits": {"memory": "64Mi", "cpu": "1"},
                },
            }
        ],
        SMALL,
        negativeOomScoreAdj=False,
    )
    lay = node_layout(sc)
    assert lay.workloads["g"].oom_score_adj == -997
    assert lay.workloads["g"].effective_oom_score_adj == 0
    assert any("CAP_SYS_RESOURCE" in n for n in lay.notes)


def test_baseline_usage_brings_eviction_earlier() -> None:
    """Memory already used on the node (outside the scenario) counts in memory.available:
    with 1Gi in use the same slow leak is evicted ~64 s (1Gi at 16Mi/s) earlier."""
    w = [
        {
            "name": "slow",
            "resources": {"requests": {"memory": "64Mi"}},
            "placement": "pod",
            "leak": {"chunk": "4Mi", "interval": "250ms"},
        }
    ]
    prof = {
        "kubeReserved": {"memory": "512Mi"},
        "evictionHard": {"memory.available": "256Mi"},
        "enforceNodeAllocatable": [],
    }
    sc = scenario(w, prof, timeout="400s")
    a = predict_scenario(sc, kubelet=True).workload("slow")
    b = predict_scenario(sc, kubelet=True, baseline=Baseline(root_working_set=GI, root_usage=GI)).workload(
        "slow"
    )
    assert a.outcome == b.outcome == "evicted"
    assert a.earliest_s is not None and b.earliest_s is not None
    assert a.earliest_s - b.earliest_s == pytest.approx(64, abs=1.5)


def test_the_kubelets_own_loop_phase_settles_a_race() -> None:
    """The S4 race above, with the loop phase known (``sync_phase_s``, as a run reads it from the
    kubelet's log): only that phase is simulated, so the prediction is one outcome. A sync right
    after the threshold crossing evicts; one that comes just too late for the kill leaves the leak
    to the kernel. Each phase agrees with the share of phases the race gives it."""
    sc = s4_race_scenario()
    race = predict_scenario(sc, kubelet=True).workload("mid")
    by_phase = {
        ph: predict_scenario(sc, kubelet=True, sync_phase_s=ph).workload("mid")
        for ph in (0.25 * i for i in range(40))
    }
    assert all(not p.race for p in by_phase.values())
    seen = {p.outcome for p in by_phase.values()}
    assert seen == {"evicted", "node_oom_killed"}
    evicted_share = sum(p.outcome == "evicted" for p in by_phase.values()) / len(by_phase)
    race_share = next(a.share for a in race.alternatives if a.outcome == "evicted")
    assert evicted_share == pytest.approx(race_share, abs=0.1)
    # a phase and the same phase a whole loop later are the same phase
    assert (
        predict_scenario(sc, kubelet=True, sync_phase_s=13.0).workload("mid").outcome == by_phase[3.0].outcome
    )
    # without a kubelet the phase means nothing
    assert not predict_scenario(sc, kubelet=False, sync_phase_s=3.0).workload("mid").race
