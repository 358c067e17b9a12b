"""One scenario, top to bottom."""

from __future__ import annotations

import itertools
import json
import math
import time

from harness import faults
from harness.classify import Outcome
from harness.config.suite import Scenario
from harness.model.predict import Prediction, predict_scenario
from harness.scenario.asrun import predict_as_run
from harness.scenario.context import LiveScenario, ResolvedScenario, RunContext, ScenarioResult
from harness.scenario.health import note_in_verdicts
from harness.scenario.resolve import after_kubelet_start, resolve
from harness.scenario.steps import (
    classify_workloads,
    kubelet_views,
    launch_workloads,
    new_live,
    observe_node,
    prepare_node,
    teardown,
    wait_for_workloads,
    warm_up,
)
from harness.verdict import Verdict, judge


def run_scenario(spec: Scenario, run: RunContext) -> ScenarioResult:
    """Resolve, predict, launch, sample, classify, judge; tear-down always runs."""
    res = resolve(spec, run)
    plan = predict(res, run)
    announce(res, plan, run)
    live = new_live(res, run)
    result = ScenarioResult(spec.name, plan)
    run.events.add("harness", "scenario_start", scenario=spec.name)
    started = True
    try:
        start, result.verdicts = prepare_node(live, run)
        started = start is None or start.started
        if start is not None and start.started:  # predict again with the node the new kubelet saw
            live.resolved_again(after_kubelet_start(live.resolved, run))
            plan = result.prediction = predict(live.resolved, run)
        if started:
            warm_up(live, run)
            launch_workloads(live, run)
            faults.pause("launched", spec.name, spec.id)  # fault-injection tests only
            result.verdicts += observe_node(live, run)
            wait_for_workloads(live, run)
    finally:
        teardown(live, run)
        run.events.add("harness", "scenario_end", scenario=spec.name)
    if not started:
        return result  # no workload could run on a kubelet that did not start
    syncs = eviction_syncs(live, run) if run.backend.kubelet else None
    result.prediction = predict_as_run(
        live.resolved.scenario,
        plan,
        live.handles,
        live.ctx.t0_mono,
        run.backend.kubelet,
        live.resolved.baseline,
        run.progress,
        run.events,
        sync_phase_s=first_sync_s(syncs),
    )
    result.outcomes = classify_workloads(live, run)
    result.verdicts += judge_workloads(live, run, result.prediction, result.outcomes, syncs)
    if live.host_failures:
        note_in_verdicts(result.verdicts, live.host_failures)
    return result


def predict(res: ResolvedScenario, run: RunContext) -> Prediction:
    """The model's outcome per workload on the planned timeline."""
    return predict_scenario(res.scenario, kubelet=run.backend.kubelet, baseline=res.baseline)


def announce(res: ResolvedScenario, pred: Prediction, run: RunContext) -> None:
    """The node's baseline as an event, and the prediction on the console."""
    if res.baseline is not None:
        run.events.add("harness", "baseline", scenario=res.scenario.name, **vars(res.baseline))
    run.progress.say(
        f"scenario {res.scenario.id or ''} {res.scenario.name}: "
        + "; ".join(f"{w.name} -> {w.outcome}" + (" (race)" if w.race else "") for w in pred.workloads)
    )


def judge_workloads(
    live: LiveScenario,
    run: RunContext,
    pred: Prediction,
    outcomes: list[Outcome],
    syncs: list[tuple[float, float | None]] | None = None,
) -> list[Verdict]:
    """Each outcome against its prediction; the window's slack is the backend's reporting latency
    (as-run) or its launch latency (planned), plus the longest chunk."""
    sc = live.resolved.scenario
    out = []
    views = kubelet_views(live, run, outcomes) if run.backend.kubelet else {}
    # a node run out of memory on purpose: the kernel kills once reclaim gives up, after a thrash
    # of unknown length; its kills are bounded by the recorded stall, else by the scenario's end
    stall_until = (node_stall_end(live) or sc.timeout_s) if sc.exhausts_node else None
    for w, o in zip(sc.workloads, outcomes, strict=True):
        wp = pred.workload(w.name)
        t_obs = (o.t_mono - live.ctx.t0_mono) if o.t_mono is not None else None
        slack = run.backend.observation_slack_s if wp.basis == "as-run" else run.backend.launch_slack_s
        v = judge(
            sc.name,
            wp,
            o,
            t_obs,
            slack_s=slack,
            interval_s=max(w.leak.interval_s, wp.max_chunk_s or 0.0),
            deviations=live.handles[w.name].deviations,
            node_stall_until_s=stall_until,
            eviction_syncs=syncs,
        )
        if pred.synced is not None and wp.race:
            synced = pred.synced.workload(w.name)
            v.synced_outcome = synced.label
            v.reasons.append(
                f"with the kubelet's own loop phase (first sync at {pred.synced_phase_s:.2f} s) the model "
                f"says {synced.label}"
                + ("" if o.outcome in synced.label.split("|") else f", observed {o.outcome}")
            )
        view = views.get(w.name)
        if view is not None:
            v.kubelet_view, v.eviction_stats_age_s = view.text(), view.stats_age_s
            v.reasons.append(view.text())
        run.progress.say(
            f"  {'ok  ' if v.passed else 'FAIL'} {w.name:<14} predicted {v.predicted:<16} observed {o.outcome:<16}"
            + (f" t={t_obs:.2f}s" if t_obs is not None else "")
            + (f"  ({'; '.join(v.reasons)})" if v.reasons else "")
        )
        out.append(v)
    return out


def first_sync_s(syncs: list[tuple[float, float | None]] | None) -> float | None:
    """When the kubelet's first eviction sync at or after t = 0 began (scenario seconds), the loop
    phase the model's ``sync_phase_s`` takes; None without syncs. A scenario that ended before the
    kubelet's next sync (S4, ~4 s) has only syncs before t = 0: the next one is due a whole number
    of monitoring periods (10 s, pkg/kubelet/kubelet.go evictionMonitoringPeriod) after the last."""
    starts = sorted(a for a, _ in syncs or ())
    after = [a for a in starts if a >= 0]
    if after:
        return after[0]
    if not starts:
        return None
    last = starts[-1]
    return last + 10.0 * math.ceil(-last / 10.0)


def eviction_syncs(live: LiveScenario, run: RunContext) -> list[tuple[float, float | None]] | None:
    """The kubelet's eviction syncs during the scenario as its log says (``sample.kubeletlog``),
    in scenario seconds, recorded as one ``kubelet_eviction_syncs`` event."""
    syncs = run.backend.eviction_syncs(live.ctx, time.time())
    if not syncs:
        return None
    wall_to_s = time.monotonic() - time.time() - live.ctx.t0_mono
    out = [
        (s.start_wall + wall_to_s, None if s.decided_wall is None else s.decided_wall + wall_to_s)
        for s in syncs
    ]
    periods = [b[0] - a[0] for a, b in itertools.pairwise(out)]
    run.events.add(
        "harness",
        "kubelet_eviction_syncs",
        scenario=live.resolved.scenario.name,
        # [start, decision, ranked pods] per sync, in scenario seconds
        detail=json.dumps(
            [
                [round(a, 3), None if b is None else round(b, 3), s.ranked]
                for (a, b), s in zip(out, syncs, strict=True)
            ]
        ),
        longest_period_s=round(max(periods), 3) if periods else None,
    )
    return out


def node_stall_end(live: LiveScenario) -> float | None:
    """When the last stall of the node the wait saw ended (``LiveScenario.stalls``; still stalled
    at the end: the wait's end), in scenario seconds; None without one."""
    if not live.stalls:
        return None
    return max(end for _, end in live.stalls) - live.ctx.t0_mono
