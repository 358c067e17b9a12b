"""Eviction manager model (spec §5): observations, thresholds met, synchronize state machine,
ranking, message, grace periods, admission, memcg notifier."""

from __future__ import annotations

from typing import Any

import pytest

from harness.config.kubelet import KubeletConfiguration
from harness.config.node import NodeFacts
from harness.config.pod import Pod, parse_pod
from harness.model import eviction as ev
from harness.model.thresholds import ALLOCATABLE_MEMORY_AVAILABLE, MEMORY_AVAILABLE, parse_thresholds

Mi = 1024 * 1024
Gi = 1024 * Mi


def _profile(**kw: Any) -> KubeletConfiguration:
    return KubeletConfiguration.model_validate(kw)


def _facts(minor: int = 31, mem: str = "8Gi") -> NodeFacts:
    return NodeFacts.model_validate({"memoryCapacity": mem, "kubeletVersion": f"1.{minor}"})


def _pod(name: str, req: str | None = None, lim: str | None = None, **spec: Any) -> Pod:
    res: dict[str, Any] = {}
    if req:
        res["requests"] = {"memory": req}
    if lim:
        res["limits"] = {"memory": lim}
    return parse_pod(
        {"metadata": {"name": name}, "spec": {"containers": [{"name": "app", "resources": res}], **spec}}
    )


def _obs(avail_mem: int, cap: int = 8 * Gi, alloc: int | None = None, alloc_cap: int | None = None) -> dict:
    out = {MEMORY_AVAILABLE: ev.Observation(MEMORY_AVAILABLE, avail_mem, cap)}
    if alloc is not None:
        out[ALLOCATABLE_MEMORY_AVAILABLE] = ev.Observation(
            ALLOCATABLE_MEMORY_AVAILABLE, alloc, alloc_cap or cap
        )
    return out


# ------------------------------------------------------------------------------ observations
def test_observe_working_set_and_allocatable() -> None:
    """memory.available = MemTotal - (usage - inactive_file); allocatable = limit - WS(kubepods),
    negative when the working set exceeds the limit (uint64 wrap converted to int64)."""
    obs = ev.observe(8 * Gi, 5 * Gi, 1 * Gi, 6 * Gi, 7 * Gi, 0)
    assert obs[MEMORY_AVAILABLE].available_bytes == 4 * Gi
    assert obs[MEMORY_AVAILABLE].capacity_bytes == 8 * Gi
    assert obs[ALLOCATABLE_MEMORY_AVAILABLE].available_bytes == -1 * Gi
    assert obs[ALLOCATABLE_MEMORY_AVAILABLE].capacity_bytes == 6 * Gi


def test_observe_clamps_and_unlimited() -> None:
    """inactive_file > usage gives WS 0; a kubepods limit above 1<<62 has no observation."""
    obs = ev.observe(8 * Gi, 1 * Gi, 2 * Gi, (1 << 63) - 4096, 1 * Gi, 0)
    assert obs[MEMORY_AVAILABLE].available_bytes == 8 * Gi
    assert ALLOCATABLE_MEMORY_AVAILABLE not in obs


def test_thresholds_met_strict_and_min_reclaim() -> None:
    """Met iff quantity > available (strict); with enforceMinReclaim, iff quantity + minReclaim > available."""
    p = _profile(
        evictionHard={"memory.available": "100Mi"}, evictionMinimumReclaim={"memory.available": "500Mi"}
    )
    ts = [t for t in parse_thresholds(p, 31) if t.signal == MEMORY_AVAILABLE]
    assert ev.thresholds_met(ts, _obs(100 * Mi), False) == []  # equal: not met
    assert ev.thresholds_met(ts, _obs(100 * Mi - 1), False) == ts
    assert ev.thresholds_met(ts, _obs(300 * Mi), False) == []
    assert ev.thresholds_met(ts, _obs(300 * Mi), True) == ts  # 600Mi > 300Mi
    assert ev.thresholds_met(ts, {}, False) == []  # no observation: skipped


# --------------------------------------------------------------------------------- ranking
def test_rank_above_request_then_priority_then_usage() -> None:
    """exceedMemoryRequests first (BestEffort always exceeds), then lower priority, then larger
    WS - request. Stats-missing pods come first of all."""
    prof = _profile()
    within_low = ev.PodUsage(_pod("within-low", req="1Gi", priority=-10), 512 * Mi, {"app": 512 * Mi})
    over_high = ev.PodUsage(_pod("over-high", req="100Mi", priority=1000), 600 * Mi, {"app": 600 * Mi})
    be_small = ev.PodUsage(_pod("be-small"), 50 * Mi, {"app": 50 * Mi})
    be_big = ev.PodUsage(_pod("be-big"), 900 * Mi, {"app": 900 * Mi})
    missing = ev.PodUsage(_pod("no-stats", req="1Gi", priority=5000), None, {})
    ranked = ev.rank_for_memory([within_low, over_high, be_small, be_big, missing], prof, 31)
    assert [p.pod.name for p in ranked] == ["no-stats", "be-big", "be-small", "over-high", "within-low"]


def test_rank_stable_for_ties() -> None:
    """Equal on every key keeps input order (model choice; upstream sort.Sort is unstable)."""
    a = ev.PodUsage(_pod("a"), 10 * Mi, {})
    b = ev.PodUsage(_pod("b"), 10 * Mi, {})
    assert [p.pod.name for p in ev.rank_for_memory([a, b], _profile(), 31)] == ["a", "b"]
    assert [p.pod.name for p in ev.rank_for_memory([b, a], _profile(), 31)] == ["b", "a"]


# --------------------------------------------------------------------------------- message
def test_eviction_message_spec_example() -> None:
    """Spec §5.10 example: 100Mi threshold, container app using 1500Mi with request 100Mi; every
    sentence ends with '. ' (trailing space). The spec prints the available 51200Ki, but 51200Ki =
    50Mi and Quantity.String() picks the largest exact binary suffix, so the kubelet prints 50Mi;
    a value that is not a whole number of MiB prints in Ki (50Mi + 1Ki -> 51201Ki)."""
    t = next(t for t in parse_thresholds(_profile(), 31) if t.signal == MEMORY_AVAILABLE)
    victim = ev.PodUsage(_pod("p", req="100Mi"), 1500 * Mi, {"app": 1500 * Mi})
    msg = ev.eviction_message(t, ev.Observation(MEMORY_AVAILABLE, 50 * Mi, 8 * Gi), victim, _profile(), 31)
    assert msg == (
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
        "Container app was using 1500Mi, request is 100Mi, has larger consumption of memory. "
    )
    msg = ev.eviction_message(
        t, ev.Observation(MEMORY_AVAILABLE, 50 * Mi + 1024, 8 * Gi), victim, _profile(), 31
    )
    assert "Threshold quantity: 100Mi, available: 51201Ki. " in msg


def test_eviction_message_request_zero_and_within_request() -> None:
    """A container without request prints 'request is 0'; one within its request is not listed;
    a limit-only container is defaulted (request = limit)."""
    t = next(t for t in parse_thresholds(_profile(), 31) if t.signal == MEMORY_AVAILABLE)
    pod = parse_pod(
        {
            "metadata": {"name": "p"},
            "spec": {
                "containers": [
                    {"name": "a"},
                    {"name": "b", "resources": {"limits": {"memory": "1Gi"}}},
                ]
            },
        }
    )
    victim = ev.PodUsage(pod, 2 * Gi, {"a": 81920 * 1024, "b": 512 * Mi})
    msg = ev.eviction_message(t, ev.Observation(MEMORY_AVAILABLE, 1000, 8 * Gi), victim, _profile(), 31)
    assert msg.endswith(
        "available: 1000. Container a was using 80Mi, request is 0, has larger consumption of memory. "
    )
    assert "Container b" not in msg


def test_eviction_message_init_containers_from_1_31() -> None:
    """PR #124947 (1.31): init/sidecar containers are considered too; 1.30 ignores them."""
    t = next(t for t in parse_thresholds(_profile(), 30) if t.signal == MEMORY_AVAILABLE)
    pod = parse_pod(
        {
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [{"name": "side", "restartPolicy": "Always"}],
                "containers": [{"name": "app", "resources": {"requests": {"memory": "1Gi"}}}],
            },
        }
    )
    victim = ev.PodUsage(pod, 300 * Mi, {"app": 100 * Mi, "side": 200 * Mi})
    obs = ev.Observation(MEMORY_AVAILABLE, 10 * Mi, 8 * Gi)
    assert "Container side" not in ev.eviction_message(t, obs, victim, _profile(), 30)
    assert "Container side was using 200Mi, request is 0" in ev.eviction_message(
        t, obs, victim, _profile(), 31
    )


@pytest.mark.parametrize(
    ("pod_resources", "containers", "sentence"),
    [
        # a pod-level memory request, as given
        ({"requests": {"memory": "1024Mi"}}, [{"name": "app"}], "request is 1Gi"),
        # only pod-level limits: the request is defaulted from the containers' aggregate, printed in
        # the first container's spelling (defaults.go defaultPodRequests)
        (
            {"limits": {"memory": "2Gi"}},
            [
                {"name": "app", "resources": {"requests": {"memory": "256Mi"}}},
                {"name": "b", "resources": {"requests": {"memory": "256Mi"}}},
            ],
            "request is 512Mi",
        ),
        # ... or from the pod-level limit where no container asks memory
        ({"limits": {"memory": "2Gi"}}, [{"name": "app"}], "request is 2Gi"),
        # no pod-level memory request at all (cpu only): no Pod sentence
        ({"requests": {"cpu": "1"}}, [{"name": "app"}], None),
    ],
)
def test_eviction_message_pod_level_sentence_from_1_34(
    pod_resources: dict[str, Any], containers: list[dict[str, Any]], sentence: str | None
) -> None:
    """1.34 helpers.go evictionMessage: with PodLevelResources on and a pod-level memory request
    (after the API server's defaulting), ``Pod <name> was using <usage>, request is <request>, has
    larger consumption of memory. `` comes before the containers', whatever the usage."""
    t = next(t for t in parse_thresholds(_profile(), 34) if t.signal == MEMORY_AVAILABLE)
    pod = parse_pod(
        {"metadata": {"name": "p"}, "spec": {"containers": containers, "resources": pod_resources}}
    )
    victim = ev.PodUsage(pod, 300 * Mi, {"app": 100 * Mi})
    msg = ev.eviction_message(t, ev.Observation(MEMORY_AVAILABLE, 10 * Mi, 8 * Gi), victim, _profile(), 34)
    if sentence is None:
        assert "Pod p" not in msg
    else:
        assert (
            f"available: 10Mi. Pod p was using 300Mi, {sentence}, has larger consumption of memory. " in msg
        )
    # 1.33: no such sentence (the gate is off by default, and the code is not there)
    assert "Pod p" not in ev.eviction_message(
        t, ev.Observation(MEMORY_AVAILABLE, 10 * Mi, 8 * Gi), victim, _profile(), 33
    )


# ---------------------------------------------------------------------------- grace periods
@pytest.mark.parametrize(("minor", "expected"), [(30, 60), (31, 1), (32, 1)])
def test_hard_grace_per_version(minor: int, expected: int) -> None:
    """Hard: override 0 (<=1.30) falls back to the pod TGPS (60 here, bug #115819); 1 s from 1.31."""
    t = next(t for t in parse_thresholds(_profile(), minor) if t.hard)
    pod = _pod("p", terminationGracePeriodSeconds=60)
    assert ev.eviction_grace_period_s(t, pod, _profile(), minor) == expected


@pytest.mark.parametrize(("minor", "max_grace", "tgps", "expected"), [
    (31, 0, 30, 30),   # override 0 -> pod TGPS
    (31, 60, 30, 60),  # <=1.31 a larger max *increases* the grace period (#64530)
    (32, 60, 30, 30),  # 1.32+: min(max, TGPS) (PR #122890)
    (32, 10, 30, 10),
    (31, -1, 30, 1),   # negative -> 1 s (not "defer to pod")
])  # fmt: skip
def test_soft_grace_per_version(minor: int, max_grace: int, tgps: int, expected: int) -> None:
    """Soft thresholds use evictionMaxPodGracePeriod (≤1.31) or min(max, TGPS) (1.32+), then the
    pod worker maps 0 to TGPS and clamps to ≥ 1."""
    p = _profile(
        evictionSoft={"memory.available": "1Gi"},
        evictionSoftGracePeriod={"memory.available": "30s"},
        evictionMaxPodGracePeriod=max_grace,
    )
    t = next(t for t in parse_thresholds(p, minor) if not t.hard)
    assert ev.eviction_grace_period_s(t, _pod("p", terminationGracePeriodSeconds=tgps), p, minor) == expected


# ------------------------------------------------------------------------------ admission
def test_admit_under_memory_pressure() -> None:
    """Only MemoryPressure: BestEffort rejected (reason Evicted, exact message) unless it tolerates
    the memory-pressure taint; Burstable admitted; critical admitted; DiskPressure rejects all."""
    prof = _profile()
    be = _pod("be")
    assert ev.admit(be, {"MemoryPressure"}, prof, 31) == (
        False,
        "Evicted",
        "The node had condition: [MemoryPressure]. ",
    )
    tol = _pod(
        "be-tol",
        tolerations=[
            {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}
        ],
    )
    assert ev.admit(tol, {"MemoryPressure"}, prof, 31)[0]
    assert ev.admit(_pod("bu", req="10Mi"), {"MemoryPressure"}, prof, 31)[0]
    assert ev.admit(
        _pod("crit", priorityClassName="system-node-critical"), {"MemoryPressure", "DiskPressure"}, prof, 31
    )[0]
    assert ev.admit(_pod("bu", req="10Mi"), {"MemoryPressure", "DiskPressure"}, prof, 31) == (
        False,
        "Evicted",
        "The node had condition: [MemoryPressure DiskPressure]. ",
    )
    assert ev.admit(be, set(), prof, 31)[0]


def test_memcg_notifier_threshold() -> None:
    """Notifier fires at usage = capacity - threshold + inactive_file (WS = capacity - threshold)."""
    assert ev.memcg_notifier_usage_threshold(8 * Gi, 100 * Mi, 1 * Gi) == 9 * Gi - 100 * Mi


# ------------------------------------------------------------------------- synchronize
def test_soft_threshold_grace_then_one_eviction_per_sync_and_transition() -> None:
    """Soft memory.available<1Gi with 30s grace, pressure transition 60s:
    t=0 met -> MemoryPressure true at once, no eviction (grace not met);
    t=20 still no eviction; t=30 grace met (>=) -> exactly one eviction: the burstable pod (both it
    and the BestEffort pod exceed their request, same priority, and 700Mi-100Mi > 500Mi-0);
    t=40 still met -> one more eviction (the BestEffort pod); t=50 recovered -> pressure stays (<60s);
    t=100 -> 60s since last met -> pressure cleared."""
    p = _profile(
        evictionHard={"memory.available": "100Mi"},
        evictionSoft={"memory.available": "1Gi"},
        evictionSoftGracePeriod={"memory.available": "30s"},
        evictionPressureTransitionPeriod="60s",
    )
    m = ev.EvictionManager(p, _facts(31))
    pods = [
        ev.PodUsage(_pod("guaranteed-ish", req="2Gi"), 1 * Gi, {"app": 1 * Gi}),
        ev.PodUsage(_pod("besteffort"), 500 * Mi, {"app": 500 * Mi}),
        ev.PodUsage(_pod("burstable", req="100Mi"), 700 * Mi, {"app": 700 * Mi}),
    ]
    r0 = m.synchronize(0, _obs(900 * Mi), pods)
    assert r0.memory_pressure and r0.evicted is None
    assert m.synchronize(20, _obs(900 * Mi), pods).evicted is None
    r30 = m.synchronize(30, _obs(900 * Mi), pods)
    assert r30.evicted is not None and r30.evicted.pod.name == "burstable"
    assert [x.pod.name for x in r30.ranked] == ["burstable", "besteffort", "guaranteed-ish"]
    assert r30.grace_period_s == 30  # soft, max grace 0 -> pod TGPS 30
    assert r30.message is not None and r30.message.startswith(
        "The node was low on resource: memory. Threshold quantity: 1Gi, available: 900Mi. "
    )
    r40 = m.synchronize(40, _obs(900 * Mi), pods[:2])
    assert r40.evicted is not None and r40.evicted.pod.name == "besteffort"
    r50 = m.synchronize(50, _obs(3 * Gi), pods[:1])
    assert r50.evicted is None and r50.memory_pressure and r50.met == []
    assert m.synchronize(99, _obs(3 * Gi), pods[:1]).memory_pressure  # 59s < 60s
    assert not m.synchronize(100, _obs(3 * Gi), pods[:1]).memory_pressure


def test_soft_threshold_reset_when_not_met() -> None:
    """thresholdsFirstObservedAt drops a threshold that is no longer met: the grace restarts."""
    p = _profile(
        evictionSoft={"memory.available": "1Gi"}, evictionSoftGracePeriod={"memory.available": "30s"}
    )
    m = ev.EvictionManager(p, _facts(31))
    pods = [ev.PodUsage(_pod("be"), 500 * Mi, {})]
    m.synchronize(0, _obs(900 * Mi), pods)
    m.synchronize(20, _obs(2 * Gi), pods)  # recovered: first-observed forgotten
    assert m.synchronize(40, _obs(900 * Mi), pods).evicted is None  # grace restarts at 40
    assert m.synchronize(70, _obs(900 * Mi), pods).evicted is not None


def test_hard_threshold_critical_skipped_and_min_reclaim() -> None:
    """Hard threshold evicts on the first sync; a static (critical) pod ranked first is skipped;
    with min-reclaim 500Mi the threshold stays met until available >= 600Mi."""
    p = _profile(
        evictionHard={"memory.available": "100Mi"}, evictionMinimumReclaim={"memory.available": "500Mi"}
    )
    m = ev.EvictionManager(p, _facts(31))
    static = parse_pod(
        {
            "metadata": {"name": "static", "annotations": {"kubernetes.io/config.source": "file"}},
            "spec": {"containers": [{"name": "app"}]},
        }
    )
    crit = ev.PodUsage(static, 3 * Gi, {})
    be = ev.PodUsage(_pod("be"), 100 * Mi, {"app": 100 * Mi})
    r = m.synchronize(0, _obs(50 * Mi), [crit, be])
    assert [x.pod.name for x in r.ranked] == ["static", "be"]
    assert r.evicted is be and [x.pod.name for x in r.skipped_critical] == ["static"]
    assert r.grace_period_s == 1
    # 400Mi available: above 100Mi but below 100Mi + 500Mi -> still met (not yet reclaimed)
    r2 = m.synchronize(10, _obs(400 * Mi), [crit])
    assert r2.met and r2.evicted is None and r2.skipped_critical  # only the critical pod left
    assert m.synchronize(20, _obs(700 * Mi), [crit]).met == []


def test_allocatable_threshold_triggers_eviction() -> None:
    """The automatic allocatableMemory.available copy evicts when WS(kubepods) > limit - 100Mi
    even though memory.available is fine."""
    m = ev.EvictionManager(_profile(), _facts(31))
    obs = ev.observe(8 * Gi, 6 * Gi, 0, 6 * Gi, 6 * Gi - 50 * Mi, 0)
    assert obs[MEMORY_AVAILABLE].available_bytes == 2 * Gi
    r = m.synchronize(0, obs, [ev.PodUsage(_pod("be"), 1 * Gi, {"app": 1 * Gi})])
    assert r.threshold is not None and r.threshold.signal == ALLOCATABLE_MEMORY_AVAILABLE
    assert r.message is not None and "Threshold quantity: 100Mi, available: 50Mi. " in r.message


def test_stale_stats_do_not_evict() -> None:
    """thresholdsUpdatedStats: a threshold acts only when its observation is newer than the last."""
    m = ev.EvictionManager(_profile(), _facts(31))
    pods = [ev.PodUsage(_pod("be"), 1 * Gi, {})]
    stale = {MEMORY_AVAILABLE: ev.Observation(MEMORY_AVAILABLE, 10 * Mi, 8 * Gi, time=5.0)}
    assert m.synchronize(0, stale, pods).evicted is not None
    assert m.synchronize(10, stale, pods).evicted is None  # same stats timestamp


def test_next_sync_time() -> None:
    """10 s without eviction; after an eviction the loop resumes once the pod is cleaned up
    (1 s polls) or after 30 s."""
    assert ev.next_sync_time(0, False) == 10
    assert ev.next_sync_time(0, True, 2.5) == 3
    assert ev.next_sync_time(0, True, None) == 30
