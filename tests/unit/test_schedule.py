"""As-run predictions (harness.model.schedule): the workload's reported start and pace replace the plan."""

from __future__ import annotations

from typing import Any

import pytest

from harness.model.predict import predict_scenario
from harness.model.schedule import ProcSchedule, schedule_from_lines
from tests.unit.test_predict import SMALL, scenario

MI = 1 << 20


def lines(
    t0_mono: float, start: float, done: list[float], interval: float, proc: int = 0
) -> list[dict[str, Any]]:
    """Leak JSON lines as workloads/leak.c prints them: times in ns of CLOCK_MONOTONIC."""
    out: list[dict[str, Any]] = [
        {"event": "start", "proc": proc, "mono_ns": int((t0_mono + start) * 1e9), "start_delay_ms": 0}
    ]
    for k, d in enumerate(done):
        out.append(
            {
                "event": "chunk",
                "proc": proc,
                "mono_ns": int((t0_mono + d) * 1e9),
                "deadline_ns": int((t0_mono + start + k * interval) * 1e9),
            }
        )
    return out


def test_reported_chunks_began_when_due_or_when_the_previous_one_was_done() -> None:
    p = ProcSchedule(start_s=1.0, interval_s=0.1, due_s=[1.0, 1.1, 1.2], done_s=[1.02, 1.3, 1.5])
    assert p.began(0) == pytest.approx(1.0)
    assert p.began(1) == pytest.approx(1.1)  # due 1.1, previous done 1.02
    assert p.began(2) == pytest.approx(1.3)  # due 1.2, previous done 1.3: behind schedule
    assert p.began(3) == pytest.approx(1.5)  # the first unreported chunk: when the last was done
    assert p.durations() == pytest.approx([0.02, 0.2, 0.2])
    assert p.lag_s() == pytest.approx(0.3)


@pytest.mark.parametrize("durations", [[0.2] * 6, [0.01] * 6, [0.05, 0.3, 0.02, 0.3, 0.3]])
def test_unreported_chunks_follow_the_recent_pace_closed_form_equals_the_recurrence(
    durations: list[float],
) -> None:
    interval = 0.1
    due, done, t = [], [], 0.0
    for k, d in enumerate(durations):
        began = max(k * interval, t)
        due.append(k * interval)
        t = began + d
        done.append(t)
    p = ProcSchedule(start_s=0.0, interval_s=interval, due_s=due, done_s=done)
    pace = p.pace_s()
    t = p.began(len(done))
    for n in range(len(done) + 1, len(done) + 40):
        t = max(n * interval, t + pace)  # chunk n begins when due or when n-1 is done
        assert p.began(n) == pytest.approx(t)


def test_schedule_from_lines_times_are_relative_to_the_scenario_start() -> None:
    sched = schedule_from_lines(
        lines(1000.0, 2.5, [2.6, 2.9], 0.1), 1000.0, interval_s=0.1, chunk_bytes=64 * MI, planned_start_s=0.0
    )
    assert sched is not None
    assert sched.launch_s == pytest.approx(2.5)
    assert sched.max_chunk_s() == pytest.approx(0.3)  # chunk 1 was due at 2.6, began 2.6, done 2.9
    assert sched.rate_bytes_per_s() == pytest.approx(2 * 64 * MI / 0.4)
    assert schedule_from_lines([{"event": "exit", "mono_ns": 5}], 0.0, interval_s=0.1, chunk_bytes=1) is None


def test_as_run_prediction_moves_the_kill_by_the_launch_latency_and_the_slow_pace() -> None:
    """S1 on a plan: 8Mi every 100ms against a 128Mi limit, killed in chunk 15 at t=1.5s. As run:
    the program started 2 s late and each chunk took 0.3 s, so chunk 15 began at 2 + 15*0.3 = 6.5 s."""
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
    planned = predict_scenario(sc, kubelet=False).workload("leaker")
    assert planned.earliest_s == pytest.approx(1.5)
    # five chunks reported (the rest never printed: a slow host that was stopped early)
    start = 2.0
    done = [start + 0.3 * (k + 1) for k in range(5)]
    sched = schedule_from_lines(lines(50.0, start, done, 0.1), 50.0, interval_s=0.1, chunk_bytes=8 * MI)
    assert sched is not None
    as_run = predict_scenario(sc, kubelet=False, schedules={"leaker": sched}).workload("leaker")
    assert as_run.outcome == "oom_killed"
    assert as_run.earliest_s == pytest.approx(start + 15 * 0.3)


def test_as_run_pace_can_turn_a_race_into_an_eviction() -> None:
    """A leak fast enough to beat the kubelet's 10 s loop to the kubepods limit on its plan, but
    running at an eightieth of its pace on the host: the kubelet has the time to evict."""
    sc = scenario(
        [{"name": "fast", "resources": {}, "leak": {"chunk": "64Mi", "interval": "50ms"}}],
        SMALL,
        timeout="300s",
    )
    planned = predict_scenario(sc, kubelet=True).workload("fast")
    assert planned.outcome == "node_oom_killed"  # 1.25 GiB/s: 0.2 s from threshold to limit
    # 64Mi per 4 s = 16 MiB/s: 16 s across the 256Mi between the threshold and the limit
    done = [4.0 * (k + 1) for k in range(4)]
    sched = schedule_from_lines(lines(0.0, 0.0, done, 0.05), 0.0, interval_s=0.05, chunk_bytes=64 * MI)
    assert sched is not None
    as_run = predict_scenario(sc, kubelet=True, schedules={"fast": sched}).workload("fast")
    assert as_run.outcome == "evicted" and not as_run.race


def test_a_program_that_ran_without_lines_keeps_the_whole_scenario_on_the_plan() -> None:
    """One workload's schedule alone must not move the scenario to the as-run slack while another
    program that ran (it has a pid) left no lines: its memory would still follow the plan."""
    from pathlib import Path

    from harness.launch.base import EventSink, Handle
    from harness.progress import Progress
    from harness.scenario.asrun import predict_as_run as _as_run

    sc = scenario(
        [
            {"name": "a", "resources": {}, "leak": {"chunk": "8Mi", "interval": "100ms", "max": "64Mi"}},
            {"name": "b", "resources": {}, "leak": {"chunk": "8Mi", "interval": "100ms", "max": "64Mi"}},
        ],
        SMALL,
    )
    planned = predict_scenario(sc, kubelet=False)
    handles = {
        n: Handle(workload=n, backend="process", cgroup=n, cgroup_abs=Path("/nonexistent")) for n in "ab"
    }
    handles["a"].lines = lines(10.0, 0.5, [0.6, 0.7], 0.1)
    events = EventSink(None)
    args = (sc, planned, handles, 10.0, False, None, Progress(quiet=True), events)
    assert _as_run(*args).workload("a").basis == "as-run"  # b never started: nothing to miss
    handles["b"].pids = [4242]
    assert _as_run(*args) is planned
    assert [e["workload"] for e in events.events if e["kind"] == "as_run_incomplete"] == ["b"]
