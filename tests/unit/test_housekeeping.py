"""Stats age: the kubelet ranks pods on cAdvisor's cached pod-cgroup stats (``model.housekeeping``)."""

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


def test_an_idle_pod_cgroup_is_housekept_15_to_30_s_apart_until_its_program_leaks() -> None:
    # cAdvisor's nextHousekeepingInterval: 10 s after the first; doubled (capped at 15 s) while two
    # stats are equal (the program sleeps its start delay), back to 10 s once they differ
    assert hk.dynamic(0.0, 20.0, 100.0, [0.0] * 12)[:5] == [0.0, 10.0, 25.0, 35.0, 45.0]
    top = 1.0 - 1e-9
    slow = hk.dynamic(0.0, 40.0, 120.0, [top] * 12)
    assert slow[:4] == pytest.approx([0.0, 20.0, 50.0, 70.0])
    # a pod whose stats change from the start keeps the 10 s interval (10-20 s with jitter)
    assert hk.dynamic(0.0, 0.0, 60.0, [0.0] * 8) == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]


def test_the_ranking_reads_the_pod_level_stats_not_the_containers() -> None:
    """S14 on kubelet 1.33.4 (results of 2026-12-06, repeat 4): the summaries showed the young
    pod's *container* refreshed at 23:48:56 (1179Mi) and 23:49:05 (1403Mi), but its *pod* stats,
    which the eviction manager ranks on, stayed at 674Mi; the kubelet evicted the old pod (999Mi,
    request 256Mi). The recorded schedule comes from the pod-level stats times."""
    t0 = 1_800_000_000.0
    events = []
    # pod cgroup housekept at +1 and +26 (idle, then 25 s later); containers every 10 s
    for t, pod_t, pod_ws, cont_ws in [
        (1, 1, 1 * MI, 1 * MI),
        (11, 1, 1 * MI, 180 * MI),
        (21, 1, 1 * MI, 1179 * MI),
    ]:
        events.append(
            {
                "source": "kubelet-stats",
                "kind": "summary",
                "t_wall": t0 + t + 0.2,
                "stats_time": _stamp(t0 + t),
                "pod_stats": json.dumps({"p-young": [_stamp(t0 + pod_t), pod_ws]}),
                "containers": json.dumps({"p-young": {"young": [_stamp(t0 + t), cont_ws]}}),
            }
        )
    scheds, views = hk.from_summaries(events, {"p-young": "young"}, t0)
    assert scheds[0].times["young"][:2] == [1.0, 11.0]  # one pod housekeeping seen, then extrapolated
    assert [v for _, v in views["young"].seen] == [1 * MI]
    # a run recorded before the pod's stats were kept: the containers' times, as before
    legacy = [{k: v for k, v in e.items() if k != "pod_stats"} for e in events]
    scheds_old, _ = hk.from_summaries(legacy, {"p-young": "young"}, t0)
    assert scheds_old[0].times["young"][:3] == [1.0, 11.0, 21.0]
    # the kubelet's view at an eviction is the pod's
    events.append(
        {"source": "kubelet", "kind": "Evicted", "object": "Pod/p-young", "detail": "", "t_wall": t0 + 22}
    )
    view = eviction_view("young", "p-young", events)
    assert view is not None and view.summary_ws_bytes == 1 * MI
    assert view.stats_age_s is not None and abs(view.stats_age_s - 21.0) < 1e-6


def test_the_plan_tracks_a_delayed_pod_from_its_start_not_from_its_leak() -> None:
    """A young pod with a 25 s start delay is housekept from t=0, 15-30 s apart while it sleeps."""
    from harness.model.predict import _housekeeping_schedules

    scheds = _housekeeping_schedules(young_vs_old(startDelay="25s"), True, None, None, True)
    slowest = next(s for s in scheds if s is not None and s.label == "housekeeping every ~20 s")
    assert slowest.times["young"][:3] == pytest.approx([0.0, 20.0, 50.0], abs=0.01)
    assert slowest.times["old"][:3] == pytest.approx([0.0, 20.0, 40.0], abs=0.01)
