"""The prediction again, as the workloads really ran (``model.schedule``)."""

from __future__ import annotations

import json
from typing import Any

from harness.config.suite import Scenario, Workload
from harness.launch.base import EventSink, Handle
from harness.model import housekeeping as hk
from harness.model.predict import Prediction, WorkloadPrediction, predict_scenario
from harness.model.schedule import SLOW_FRACTION, Schedule, schedule_from_lines
from harness.progress import Progress


def predict_as_run(
    sc: Scenario,
    planned: Prediction,
    handles: dict[str, Handle],
    t0_mono: float,
    kubelet: bool,
    baseline: Any,
    progress: Progress,
    events: EventSink,
    sync_phase_s: float | None = None,
) -> Prediction:
    """The prediction again, with each workload's real start and allocation pace (``model.schedule``).

    The plan assumes every program starts at t = 0 and allocates on schedule; launch latency (a
    pod's sandbox and container) and a host whose page faults cannot keep the pace are facts of
    the host, not of the memory protection under test. Verdicts are judged against this as-run
    prediction; the planned one is kept beside it (``planned_*`` columns).

    ``sync_phase_s`` (with a kubelet: when its first eviction sync after t = 0 began, from its log):
    where the as-run prediction is a race, the same prediction with only that loop phase is kept in
    ``Prediction.synced`` and recorded as a ``synced_prediction`` event: the outcome the model gives
    for the loop phase the kubelet really had."""
    schedules = as_run_schedules(sc, handles, t0_mono, progress, events)
    if not schedules:
        return planned
    recorded = recorded_housekeeping(handles, t0_mono, events) if kubelet else []
    pred = predict_scenario(
        sc, kubelet=kubelet, baseline=baseline, schedules=schedules, housekeeping=recorded
    )
    if kubelet and sync_phase_s is not None and any(wp.race for wp in pred.workloads):
        pred.synced = predict_scenario(
            sc,
            kubelet=True,
            baseline=baseline,
            schedules=schedules,
            housekeeping=recorded,
            sync_phase_s=sync_phase_s,
        )
        pred.synced_phase_s = sync_phase_s
        events.add(
            "harness",
            "synced_prediction",
            scenario=sc.name,
            phase_s=round(sync_phase_s, 3),
            detail=json.dumps(
                {
                    w.name: {"outcome": w.label, "earliest_s": w.earliest_s, "latest_s": w.latest_s}
                    for w in pred.synced.workloads
                }
            ),
        )
    for r in recorded:
        detail = json.dumps({w: [round(t, 3) for t in ts] for w, ts in r.times.items()})
        events.add("harness", "as_run_housekeeping", scenario=sc.name, basis=r.label, detail=detail)
    workloads = {w.name: w for w in sc.workloads}
    for wp in pred.workloads:
        before = planned.workload(wp.name)
        wp.planned_outcome = before.label
        wp.planned_earliest_s, wp.planned_latest_s = before.earliest_s, before.latest_s
        sched = schedules.get(wp.name)
        if sched is not None:
            _as_run_workload(sc, wp, sched, workloads[wp.name], handles, progress, events)
    return pred


def as_run_schedules(
    sc: Scenario, handles: dict[str, Handle], t0_mono: float, progress: Progress, events: EventSink
) -> dict[str, Schedule]:
    """Each workload's schedule from its program's lines; empty (judge on the plan) when there is
    none, or when a program ran but left no lines (the others' timeline alone would be judged with
    the as-run slack while this one's memory still follows the plan)."""
    schedules = {}
    for w in sc.workloads:
        h = handles.get(w.name)
        if h is None:
            continue
        sched = schedule_from_lines(
            list(h.lines),
            t0_mono,
            interval_s=w.leak.interval_s,
            chunk_bytes=w.leak.chunk_bytes,
            planned_start_s=w.leak.start_delay_s,
        )
        if sched is not None:
            schedules[w.name] = sched
        elif h.pids or h.container_id:
            progress.say(f"  note: {w.name}: no lines from its program; judged on the planned timeline")
            events.add("harness", "as_run_incomplete", workload=w.name, scenario=sc.name)
            return {}
    return schedules


def _as_run_workload(
    sc: Scenario,
    wp: WorkloadPrediction,
    sched: Schedule,
    w: Workload,
    handles: dict[str, Handle],
    progress: Progress,
    events: EventSink,
) -> None:
    """Mark one workload's prediction as run, and say where its leak was slower than asked (a host
    deviation) or the as-run outcome differs from the plan."""
    wp.basis = "as-run"
    wp.launch_s = round(sched.launch_s, 4)
    wp.max_chunk_s = round(sched.max_chunk_s(), 4)
    wp.alloc_rate_bytes_per_s = got = sched.rate_bytes_per_s()
    events.add("harness", "as_run", workload=wp.name, scenario=sc.name, detail=json.dumps(sched.to_dict()))
    asked = w.leak.rate_bytes_per_s
    if got is not None and asked != float("inf") and got < SLOW_FRACTION * asked:
        dev = (
            f"the leak allocated {got / 2**20:.0f} MiB/s of the {asked / 2**20:.0f} MiB/s asked "
            f"(a chunk took up to {sched.max_chunk_s():.2f} s, interval {w.leak.interval_s:g} s): "
            + ("this host's file writes" if w.leak.mode == "pagecache" else "this host's page faults")
            + " are slower than the schedule; judged on the as-run timeline"
        )
        handles[wp.name].deviations.append(dev)
        events.add("harness", "host_deviation", workload=wp.name, detail=dev)
        progress.say(f"  note: {wp.name}: {dev}")
    if wp.planned_outcome != wp.label:
        progress.say(
            f"  note: {wp.name}: as run (started at t={sched.start_s:.2f}s) the model predicts "
            f"{wp.outcome}{' (race)' if wp.race else ''}, planned {wp.planned_outcome}"
        )


def recorded_housekeeping(handles: dict[str, Handle], t0_mono: float, events: EventSink) -> list[hk.Schedule]:
    """When each pod's stats were taken, from the run's ``/stats/summary`` polls: the kubelet ranked
    pods on these (``model.housekeeping``), so the as-run prediction uses them instead of the
    planned samples (two schedules: the stamps are whole seconds). Empty when the run recorded no
    pod or container stats."""
    pods = {h.pod.name: w for w, h in handles.items() if h.pod is not None}
    if not pods or not events.events:
        return []
    first = events.events[0]
    t0_wall = t0_mono + (float(first["t_wall"]) - float(first["t_mono"]))
    since = [e for e in events.events if float(e["t_mono"]) >= t0_mono]
    schedules, _ = hk.from_summaries(since, pods, t0_wall)
    return schedules
