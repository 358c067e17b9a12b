"""The kubelet's eviction syncs read from its klog text log, and the verdict's use of them."""

from __future__ import annotations

import time

from harness.classify import Outcome
from harness.model.predict import Alternative, WorkloadPrediction
from harness.sample.kubeletlog import eviction_syncs, parse_line
from harness.verdict import first_sync_from, judge

# 2026-12-07 03:40:00 local time
T0 = time.mktime((2026, 12, 7, 3, 40, 0, 0, 0, -1))

LOG = """\
I1207 03:39:50.000000    2345 eviction_manager.go:251] "Eviction manager: synchronize housekeeping"
I1207 03:39:50.400000    2345 eviction_manager.go:366] "Eviction manager: no resources are starved"
I1207 03:40:00.900000    2345 eviction_manager.go:251] "Eviction manager: synchronize housekeeping"
I1207 03:40:01.100000    2345 kubelet.go:2400] "SyncLoop (PLEG): event for pod" pod="default/a"
I1207 03:40:03.250000    2345 eviction_manager.go:366] "Eviction manager: no resources are starved"
I1207 03:40:13.800000    2345 eviction_manager.go:251] "Eviction manager: synchronize housekeeping"
I1207 03:40:16.000000    2345 eviction_manager.go:376] "Eviction manager: attempting to reclaim" resourceName="memory"
I1207 03:40:16.100000    2345 eviction_manager.go:405] "Eviction manager: pods ranked for eviction" pods=["default/a"]
I1207 03:40:16.900000    2345 eviction_manager.go:629] "Eviction manager: pod is evicted successfully" pod="default/a"
I1207 03:40:18.000000    2345 eviction_manager.go:251] "Eviction manager: synchronize housekeeping"
"""


def test_a_klog_line_gets_the_year_that_puts_it_nearest() -> None:
    kl = parse_line('I1207 03:40:00.900000    2345 eviction_manager.go:251] "x"', T0)
    assert kl is not None and abs(kl.t_wall - (T0 + 0.9)) < 1e-6
    assert kl.source == "eviction_manager.go:251" and kl.severity == "I"
    # a December line read on the 2nd of January is last year's
    jan = time.mktime((2027, 1, 2, 0, 0, 0, 0, 0, -1))
    dec = parse_line('I1231 23:59:00.000000    1 a.go:1] "x"', jan)
    assert dec is not None and time.localtime(dec.t_wall).tm_year == 2026
    assert parse_line("not klog", T0) is None


def test_each_sync_starts_and_decides() -> None:
    syncs = eviction_syncs(LOG, T0 - 5, T0 + 60)
    assert [round(s.start_wall - T0, 3) for s in syncs] == [0.9, 13.8, 18.0]
    assert [None if s.decided_wall is None else round(s.decided_wall - T0, 3) for s in syncs] == [
        3.25,
        16.1,
        None,
    ]
    assert [s.ranked for s in syncs] == [False, True, False]
    assert len(eviction_syncs(LOG, T0 - 20, T0 + 60)) == 4


def test_only_the_last_kubelet_processs_syncs_are_kept() -> None:
    # the log read back from before a scenario: the previous scenario's kubelet (pid 1111) synced
    # 4 s before the running one (2345) started, whose loop alone gives the phase (CI of stop 27:
    # "quiet" syncs 7.8, 4.1 and 1.1 s apart were three processes)
    earlier = """\
I1207 03:39:40.000000    1111 eviction_manager.go:251] "Eviction manager: synchronize housekeeping"
I1207 03:39:46.000000    1111 eviction_manager.go:251] "Eviction manager: synchronize housekeeping"
I1207 03:39:50.100000    1111 eviction_manager.go:366] "Eviction manager: no resources are starved"
"""
    syncs = eviction_syncs(earlier + LOG, T0 - 30, T0 + 60)
    assert [round(s.start_wall - T0, 3) for s in syncs] == [-10.0, 0.9, 13.8, 18.0]
    assert {s.pid for s in syncs} == {2345}
    # the earlier process's late line does not decide the running one's sync
    assert syncs[0].decided_wall is not None and round(syncs[0].decided_wall - T0, 3) == -9.6
    # only an earlier process in the window: its syncs are the last ones there
    assert [s.pid for s in eviction_syncs(earlier, T0 - 30, T0 + 60)] == [1111, 1111]


def _evicted_at(t: float, syncs: list[tuple[float, float | None]] | None) -> bool:
    pred = WorkloadPrediction(
        name="a",
        outcome="evicted",
        earliest_s=10.0,
        latest_s=12.0,
        mechanism="kubelet eviction",
        alternatives=[Alternative("evicted", 10.0, 12.0, "kubelet eviction", 1.0)],
    )
    obs = Outcome(
        workload="a", outcome="evicted", t_mono=None, victim=False, evidence=[], sources=[], disagreements=[]
    )
    v = judge("s", pred, obs, t, slack_s=1.0, interval_s=0.5, eviction_syncs=syncs)
    return bool(v.time_ok)


def test_an_eviction_at_the_kubelets_late_sync_is_on_time_and_not_later() -> None:
    # the model's window 10..12 s (+-1.5 s); the real loop drifted: its first sync from 8.5 s
    # started at 13.8 s and decided at 16.1 s
    syncs = [(0.9, 3.25), (13.8, 16.1), (18.0, None)]
    assert first_sync_from(syncs, 8.5) == (13.8, 16.1)
    assert not _evicted_at(16.5, None)
    assert _evicted_at(16.5, syncs)
    assert not _evicted_at(18.5, syncs)  # the next sync is not the first one in the window
    assert not _evicted_at(7.0, syncs)  # never earlier than the window
