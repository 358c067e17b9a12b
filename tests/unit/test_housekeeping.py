"""Stats age: the kubelet ranks pods on cAdvisor's cached container stats (``model.housekeeping``)."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime

import pytest

from harness.model import housekeeping as hk
from harness.model.predict import predict_scenario
from harness.verdict.kubeletview import eviction_view, message_usage
from tests.unit.test_predict import scenario

MI = 1 << 20

# the cluster profile's shape: eviction when the pods' working set passes allocatable - 1Gi
PROFILE = {
    "kubeReserved": {"memory": "1Gi"},
    "systemReserved": {"memory": "1Gi"},
    "evictionHard": {"memory.available": "100Mi", "allocatableMemory.available": "1Gi"},
    "enforceNodeAllocatable": ["pods"],
}


def young_vs_old(**leak_young: str) -> object:
    return scenario(
        [
            {"name": "old", "resources": {}, "leak": {"chunk": "64Mi", "interval": "20ms", "max": "900Mi"}},
            {
                "name": "young",
                "resources": {},
                "leak": {
                    "chunk": "16Mi",
                    "interval": "125ms",
                    "max": "1300Mi",
                    "startDelay": "15s",
                    **leak_young,
                },
            },
        ],
        PROFILE,
        memory="5Gi",  # kubepods 3Gi, eviction when the pods' working set passes 2Gi (crossing ~24 s)
        timeout="70s",
    )


def test_seen_at_is_the_last_housekeeping_before() -> None:
    s = hk.Schedule("x", {"a": [0.0, 10.0, 20.0]})
    assert s.seen_at("a", 9.9) == 0.0
    assert s.seen_at("a", 10.0) == 10.0
    assert s.seen_at("a", -1.0) is None
    assert s.seen_at("b", 5.0) is None  # no schedule: fresh


def test_samples_stay_within_cadvisor_intervals() -> None:
    for sched in hk.sample_schedules({"a": 2.0, "b": 7.0}, 100.0):
        for w, ts in sched.times.items():
            assert ts[0] == {"a": 2.0, "b": 7.0}[w]
            gaps = [b - a for a, b in itertools.pairwise(ts)]
            assert all(hk.HOUSEKEEPING_INTERVAL_S <= g < hk.max_age_s() for g in gaps), gaps


def test_young_fast_pod_ranked_on_stale_stats_gives_both_victims() -> None:
    """On fresh stats the young pod (bigger at the crossing) is evicted; on stats up to one
    housekeeping old it still looks smaller than the old pod, which is evicted instead. The
    prediction gives both, and says why."""
    fresh = predict_scenario(young_vs_old(), kubelet=True, pod_stats=False)
    assert fresh.workload("young").outcome == "evicted" and not fresh.workload("young").race
    p = predict_scenario(young_vs_old(), kubelet=True)
    old, young = p.workload("old"), p.workload("young")
    assert {a.outcome for a in old.alternatives} == {"evicted", "completed"}
    assert {a.outcome for a in young.alternatives} == {"evicted", "completed"}
    assert any("stats age" in n and "cAdvisor" in n for n in old.notes), old.notes
    assert "ranked on" in next(a.mechanism for a in old.alternatives if a.outcome == "evicted")


def test_recorded_housekeeping_narrows_the_set() -> None:
    """A run that recorded the young pod's housekeepings at its start and 10 s apart afterwards:
    at the crossing (~24 s) its stats are from t=20 (80Mi): the old pod is evicted on every phase."""
    rec = hk.Schedule(
        "recorded", {"old": [0.0, 10.0, 20.0, 30.0, 40.0], "young": [0.0, 10.0, 20.0, 30.0, 40.0]}
    )
    p = predict_scenario(young_vs_old(), kubelet=True, housekeeping=rec)
    assert p.workload("old").outcome == "evicted"
    # and one that housekept right at every kubelet sync sees the young pod as it is
    p2 = predict_scenario(young_vs_old(), kubelet=True, housekeeping=hk.Schedule("none", {}))
    assert p2.workload("young").outcome == "evicted" and not p2.workload("young").race


def test_single_pod_scenarios_are_unchanged() -> None:
    sc = scenario([{"name": "be", "resources": {}, "leak": {"chunk": "16Mi", "interval": "100ms"}}], PROFILE)
    a = predict_scenario(sc, kubelet=True)
    b = predict_scenario(sc, kubelet=True, pod_stats=False)
    assert a.to_dict() == b.to_dict()


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_from_summaries_and_the_kubelet_view() -> None:
    t0 = 1_800_000_000.0
    events = []
    for i, (hk_t, ws) in enumerate([(t0 + 1, 10 * MI), (t0 + 11, 500 * MI), (t0 + 21, 1200 * MI)]):
        containers = {"p-young": {"young": [_stamp(hk_t), ws]}, "other": {"x": [_stamp(hk_t), 1]}}
        for dt in (0.3, 1.3):  # polled twice: one housekeeping
            events.append(
                {
                    "source": "kubelet-stats",
                    "kind": "summary",
                    "t_wall": hk_t + dt,
                    "t_mono": hk_t + dt - t0,
                    "stats_time": _stamp(hk_t),
                    "containers": json.dumps(containers),
                }
            )
        del i
    scheds, views = hk.from_summaries(events, {"p-young": "young"}, t0)
    assert scheds[0].times["young"][:4] == [1.0, 11.0, 21.0, 31.0]  # then one every 10 s
    # the latest: the first poll that showed each stamp (0.3 s after it)
    assert scheds[1].times["young"][:4] == pytest.approx([1.3, 11.3, 21.3, 31.3])
    assert [v for _, v in views["young"].seen] == [10 * MI, 500 * MI, 1200 * MI]
    msg = (
        "The node was low on resource: memory. Threshold quantity: 1Gi, available: 900Mi. "
        "Container young was using 500Mi, request is 0, has larger consumption of memory. "
    )
    assert message_usage(msg) == 500 * MI
    events.append(
        {"source": "kubelet", "kind": "Evicted", "object": "Pod/p-young", "detail": msg, "t_wall": t0 + 20.5}
    )
    view = eviction_view("young", "p-young", events, [(t0 + 20.4, 900 * MI), (t0 + 20.6, 910 * MI)])
    assert view is not None
    assert view.message_usage_bytes == 500 * MI and view.summary_ws_bytes == 500 * MI
    assert view.sample_ws_bytes == 900 * MI
    assert view.stats_age_s is not None and abs(view.stats_age_s - 9.5) < 1e-6
    assert "9.5s old" in view.text()
    assert eviction_view("old", "p-old", events) is None
