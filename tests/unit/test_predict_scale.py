"""The model's prediction at a node's worth of pods: the same predictions as a straightforward
simulation, and work that grows about linearly with the number of pods (counted in function calls
and simulation steps, not timed)."""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

from harness.model import predict, resources
from harness.model.predict import _Layout, _Sim, predict_scenario
from tests.unit.predict_cases import canonical, pods_scenario, pods_schedules, random_scenario


class _ReferenceSim(_Sim):
    """Every timeline computed the straightforward way, from t = 0 (no trunk shared between the stats
    schedules of a loop phase): its own layout (``place_workloads`` per timeline), memory summed over every workload at each look, every pod's working set recorded after
    every event, the running pods' requests and the ranking's requests computed from their specs."""

    def __init__(self, *args: Any, layout: _Layout | None = None, **kw: Any) -> None:
        super().__init__(*args, layout=None, **kw)
        if self.manager is not None:
            self.manager.memory_request = None

    def usage(self, cg: str) -> int:
        total = 0
        for s in self.ws.values():
            if cg == "" or any(c == cg for c in s.cgroups):
                total += sum(p.anon for p in s.procs if p.alive) + s.cache
        if cg == "":
            b = self.baseline
            total += b.root_usage if b.root_unavailable is None else b.root_unavailable
        elif cg == "kubepods":
            total += self.baseline.kubepods_usage
        return total

    def anon_in(self, cg: str) -> int:
        return sum(sum(p.anon for p in s.procs if p.alive) for s in self.ws.values() if cg in s.cgroups)

    def record_pods(self, t: float) -> None:
        for name, s in self.ws.items():
            if s.pod is None:
                continue
            ws = sum(p.anon for p in s.procs if p.alive)
            hist = self.pod_history.setdefault(name, [])
            if not hist or hist[-1][1] != ws:
                hist.append((t, ws))

    def fit_used(self) -> dict[str, int]:
        return resources.sum_ints(
            resources.pod_requests(o.pod, self.profile, self.facts.kubelet_minor)
            for o in self.ws.values()
            if o.pod is not None and o.started and o.outcome is None
        )


def _reference(monkeypatch: pytest.MonkeyPatch, sc: Any, kw: dict[str, Any]) -> str:
    with monkeypatch.context() as m:
        m.setattr(predict, "_Sim", _ReferenceSim)
        m.setattr(predict, "SHARE_TRUNKS", False)
        return canonical(predict_scenario(sc, **kw).to_dict())


def _seeds() -> Iterator[int]:
    rng = random.Random(20240611)
    return (rng.randrange(1 << 30) for _ in range(12))


@pytest.mark.parametrize("seed", list(_seeds()))
def test_fast_path_equals_the_straightforward_simulation(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    sc, kw = random_scenario(seed, pods=random.Random(seed).randint(2, 12))
    kw = {**kw, "phases": min(kw.get("phases", 4), 4)}
    fast = canonical(predict_scenario(sc, **kw).to_dict())
    assert fast == _reference(monkeypatch, sc, kw)


def test_fast_path_equals_the_straightforward_simulation_for_many_pods_as_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sc = pods_scenario(24)
    kw = {"kubelet": True, "phases": 3, "schedules": pods_schedules(sc)}
    assert canonical(predict_scenario(sc, **kw).to_dict()) == _reference(monkeypatch, sc, kw)


def test_the_reference_sees_a_wrong_sum() -> None:
    """The kept sums equal the reference's after a whole timeline, and one that is off is seen."""
    sc, _ = random_scenario(7, pods=3)
    assert sc.profile is not None and sc.node is not None
    sim = _Sim(sc, sc.profile, sc.node, True, 0.0, predict.Baseline())
    ref = _ReferenceSim(sc, sc.profile, sc.node, True, 0.0, predict.Baseline())
    for s in (sim, ref):
        s.run()
        assert s.usage("") == _ReferenceSim.usage(s, "")
        assert s.anon_in("kubepods") == _ReferenceSim.anon_in(s, "kubepods")
    sim._usage[""] += 1
    assert sim.usage("") != _ReferenceSim.usage(sim, "")


# --------------------------------------------------------------------------------------
# Work per pod


def _work(pods: int) -> tuple[int, int, int]:
    """Python function calls in the model, simulation steps (events popped), and pods' requests
    computed from their specs, for one planned prediction of the bench_pods suite with ``pods`` pods."""
    sc = pods_scenario(pods)
    calls = 0

    def prof(frame: FrameType, event: str, _arg: Any) -> None:
        nonlocal calls
        if (
            event == "call"
            and frame.f_code.co_filename.endswith(".py")
            and "harness" in frame.f_code.co_filename
        ):
            calls += 1

    steps = 0
    orig_pop = predict.heapq.heappop

    def counting_pop(heap: list[Any]) -> Any:
        nonlocal steps
        steps += 1
        return orig_pop(heap)

    specs = 0
    orig_requests = resources.pod_requests

    def counting_requests(*a: Any, **k: Any) -> dict[str, int]:
        nonlocal specs
        specs += 1
        return orig_requests(*a, **k)

    mp = pytest.MonkeyPatch()
    mp.setattr(predict.heapq, "heappop", counting_pop)
    mp.setattr(resources, "pod_requests", counting_requests)
    mp.setattr(predict, "pod_requests", counting_requests)
    sys.setprofile(prof)
    try:
        predict_scenario(sc, kubelet=True, phases=2)
    finally:
        sys.setprofile(None)
        mp.undo()
    return calls, steps, specs


def test_work_grows_about_linearly_with_the_number_of_pods() -> None:
    small, large = _work(20), _work(80)
    calls_ratio = large[0] / small[0]
    steps_ratio = large[1] / small[1]
    # four times the pods: at most about four times the work (quadratic would be ~16x on the
    # per-pod part); the leaker's chunks and the syncs are the same in both
    assert steps_ratio <= 4.2, (small, large)
    assert calls_ratio <= 4.2, (small, large)
    # each pod's requests computed from its spec a bounded number of times, not once per
    # admission, sync or timeline
    assert large[2] <= 2 * 80, large


def test_timelines_share_their_trunk_up_to_the_first_ranking(monkeypatch: pytest.MonkeyPatch) -> None:
    """In the 110-pod suite every loop phase's trunk stops at the sync that ranks pods for the
    leaker's eviction, and its 9 stats schedules continue from copies (test_predict_golden: the
    prediction is the one the model made with 9 timelines from t = 0)."""
    forks: list[bool] = []
    orig = _Sim.fork

    def fork(self: _Sim, housekeeping: Any) -> _Sim:
        forks.append(self.paused)
        return orig(self, housekeeping)

    monkeypatch.setattr(_Sim, "fork", fork)
    pred = predict_scenario(pods_scenario(110), kubelet=True, phases=4)
    assert pred.workload("leaker").outcome == "evicted"
    assert len(forks) == 4 * 9 and all(forks)
