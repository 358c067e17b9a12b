"""The steps of one scenario between resolve and judge: the node, the workloads, the wait, the
tear-down, and the evidence each workload leaves for the classifier."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path

from harness.classify import OomRecord, Outcome, WorkloadEvidence, classify
from harness.host.cgroups import CgroupTree, memory_root
from harness.hostperf import warm_up_scenario
from harness.launch.base import Handle, KubeletStart, ScenarioContext
from harness.model.layout import sampled_limits
from harness.quantity import format_mib
from harness.sample.cgroupfs import CgroupPaths, parse_memory_events, parse_oom_control
from harness.sample.sampler import read_progress
from harness.scenario.context import LiveScenario, ResolvedScenario, RunContext
from harness.scenario.health import record_failure
from harness.verdict import Verdict
from harness.verdict.cgroups import cgroup_verdict, scenario_conformance
from harness.verdict.kubelet import kubelet_start_verdict
from harness.verdict.kubeletview import EvictionView, eviction_view
from harness.verdict.memorymanager import memory_manager_verdict
from harness.verdict.oomscore import scenario_oom_scores

# How often the wait step asks the backend whether its daemons live (each check may run a command,
# e.g. `ctr version`, so not at every 50 ms poll), and after a failed check how soon it asks again:
# only a second failure in a row ends the scenario (a healthz slower than its 2 s timeout on a busy
# host is not a dead kubelet).
HEALTH_EVERY_S = 2.0
HEALTH_CONFIRM_S = 1.0

# Scratch space of the workloads (page-cache files), per run and scenario; removed at tear-down.
WORKDIR = Path(os.environ.get("HARNESS_WORKDIR", "/var/tmp/harness"))


def new_live(res: ResolvedScenario, run: RunContext) -> LiveScenario:
    sc = res.scenario
    workdir = WORKDIR / run.run_id / sc.name
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = ScenarioContext(
        run_id=run.run_id,
        scenario=sc,
        layout=res.layout,
        tree=CgroupTree(f"harness/{run.run_id}/{sc.name}", run.cgroup_version),
        events=run.events,
        workdir=workdir,
        negative_oom_score_adj=bool(run.host.get("negativeOomScoreAdj", True)),
    )
    return LiveScenario(resolved=res, ctx=ctx, workdir=workdir)


def prepare_node(live: LiveScenario, run: RunContext) -> tuple[KubeletStart | None, list[Verdict]]:
    """The backend makes the node ready; a kubelet (re)started for the profile is judged at once."""
    start = run.backend.prepare(live.ctx)
    if start is None:
        return None, []
    sc = live.resolved.scenario
    assert sc.profile is not None and sc.node is not None
    v = kubelet_start_verdict(sc.name, sc.profile, sc.node, start)
    run.progress.say(
        f"  {'ok  ' if v.passed else 'FAIL'} kubelet start: predicted {v.predicted}, observed {v.observed}"
    )
    return start, [v]


def warm_up(live: LiveScenario, run: RunContext) -> None:
    """Touch and release the memory the scenario will need, inside its own node cgroup, where this
    host's fresh memory faults in slower than the leaks ask (``harness.hostperf``); recorded."""
    sc = live.resolved.scenario
    warm = warm_up_scenario(live.ctx, run.warm_up, run.host.get("pageFaults"), run.progress.say)
    if warm is not None:
        run.events.add("harness", "warm_up", scenario=sc.name, detail=json.dumps(warm))
        run.store.update(warm_up={**run.store.meta.get("warm_up", {}), sc.name: warm})


def launch_workloads(live: LiveScenario, run: RunContext) -> None:
    """Sample the node's cgroups, then start every workload and sample its own cgroup too."""
    sc, ctx = live.resolved.scenario, live.ctx
    for name, rel in run.backend.node_cgroups(ctx):
        key = f"{sc.name}/{name}"
        run.sampler.register(key, CgroupPaths(rel, _vstr(run)))
        live.sampled.append(key)
    # the model's limit of each sampled cgroup, for compare (model.layout.sampled_limits)
    # and the value the harness itself may write there (its ceiling on kubepods), else null
    limits = sampled_limits(sc, kubelet=run.backend.kubelet)
    own = run.backend.harness_limits()
    run.events.add(
        "harness",
        "expected_limits",
        scenario=sc.name,
        detail=json.dumps({k: [v.value, v.same_in_every_version, own.get(k)] for k, v in limits.items()}),
    )
    ctx.t0_mono = time.monotonic()

    def started(h: Handle) -> None:
        live.handles[h.workload] = h
        key = f"{sc.name}/{h.workload}"
        paths = CgroupPaths(_rel(h.cgroup_abs, run), _vstr(run))
        try:
            run.sampler.register(key, paths)
            run.watcher.add(key, paths)
            live.sampled.append(key)
            live.oom_kills_before[h.workload] = oom_kill_count(h.cgroup_abs, run.cgroup_version) or 0
        except OSError as exc:
            run.events.add("harness", "sample_error", workload=h.workload, detail=str(exc))

    items = [(w, live.resolved.layout.workloads[w.name]) for w in sc.workloads]
    if sc.launch == "parallel":
        run.backend.launch_many(ctx, items, started)
    else:
        for w, layout in items:
            started(run.backend.launch(ctx, w, layout))
    # in the scenario's order (the parallel launch fills the dict as pods start)
    live.handles = {w.name: live.handles[w.name] for w in sc.workloads}


def observe_node(live: LiveScenario, run: RunContext) -> list[Verdict]:
    """What the kubelet created, judged against the model: every cgroup file (S8) and the
    memory manager's checkpoint (S9, S10), where the scenario asks for them."""
    sc = live.resolved.scenario
    wants_cgroups = sc.check_cgroups
    wants_mm = sc.profile is not None and sc.profile.memory_manager_static
    if not (wants_cgroups or wants_mm):
        return []
    obs = run.backend.observe_node(live.ctx, live.handles)
    if obs is None:
        return []
    out = []
    if wants_cgroups:
        # every cgroup file, and every container's applied oom_score_adj (sidecars: 1.33+)
        checks = scenario_conformance(sc, obs, run.cgroup_version) + scenario_oom_scores(
            sc, obs, run.cgroup_version
        )
        run.store.add_rows("cgroups", [{"scenario": sc.name, **c.to_dict()} for c in checks])
        v = cgroup_verdict(sc.name, checks)
        run.progress.say(
            f"  cgroups: {sum(c.match for c in checks)}/{len(checks)} files as the model says"
            + ("" if v.passed else ": " + "; ".join(v.reasons[:5]))
        )
        out.append(v)
    if wants_mm:
        v = memory_manager_verdict(sc, obs)
        run.progress.say(f"  {'ok  ' if v.passed else 'FAIL'} memory manager state: {v.observed}")
        out.append(v)
    return out


def wait_for_workloads(live: LiveScenario, run: RunContext) -> None:
    """Poll until every workload ended or the scenario's timeout; stop what still runs. The node's
    daemons are checked first and every ``HEALTH_EVERY_S``: when one is down at two checks in a row
    (``live.host_failures``) the wait ends and nothing is stopped through the dead daemon (the tear-down and ``harness
    cleanup`` remove what is left)."""
    ctx, handles = live.ctx, live.handles
    sc = live.resolved.scenario
    deadline = ctx.t0_mono + sc.timeout_s
    next_health, suspect = 0.0, False
    stalled: float | None = None  # when the current stall began
    while time.monotonic() < deadline:
        if time.monotonic() >= next_health:
            problems = run.backend.health()
            if problems and suspect and sc.exhausts_node and not any("not running" in p for p in problems):
                # a node run out of memory on purpose thrashes: its daemons stop answering for a
                # while (the kubelet too, as seed 003 saw); recorded, and the scenario goes on
                if stalled is None:
                    run.events.add("harness", "node_stalled", scenario=sc.name, detail="; ".join(problems))
                    stalled = time.monotonic()
            elif problems and suspect:  # twice in a row: a dead daemon, not one slow answer
                live.host_failures = record_failure(run, sc.name, problems)
                break
            elif not problems and stalled is not None:
                run.events.add("harness", "node_answers_again", scenario=sc.name)
                live.stalls.append((stalled, time.monotonic()))
                stalled = None
            suspect = bool(problems)
            next_health = time.monotonic() + (HEALTH_CONFIRM_S if problems else HEALTH_EVERY_S)
        for h in handles.values():
            run.backend.poll(ctx, h)
        if all(h.exit is not None for h in handles.values()):
            break
        _tick(live, run)
        time.sleep(0.05)
    if stalled is not None:  # still stalled when the wait ended
        live.stalls.append((stalled, time.monotonic()))
    running = [] if live.host_failures else [h for h in handles.values() if h.exit is None]
    if live.resolved.scenario.launch == "parallel":
        run.backend.stop_many(ctx, running)
        for h in running:
            run.backend.poll(ctx, h)
    for h in running:
        if h.exit is None:
            run.backend.stop(ctx, h)
            run.backend.poll(ctx, h)
    time.sleep(0.3)  # give the kernel log and counters a moment to arrive
    _tick(live, run, force=True)
    live.oom_kills_after = {n: oom_kill_count(h.cgroup_abs, run.cgroup_version) for n, h in handles.items()}


def teardown(live: LiveScenario, run: RunContext) -> None:
    """Always: stop sampling, remove everything of the scenario, say what could not be removed."""
    for key in live.sampled:
        run.sampler.unregister(key)
        with contextlib.suppress(Exception):
            run.watcher.remove(key)
    failed = run.backend.teardown(live.ctx)
    if failed:
        run.events.add(
            "harness", "cleanup_failed", scenario=live.resolved.scenario.name, detail="; ".join(failed)
        )
    shutil.rmtree(live.workdir, ignore_errors=True)
    with contextlib.suppress(OSError):
        live.workdir.parent.rmdir()


def classify_workloads(live: LiveScenario, run: RunContext) -> list[Outcome]:
    """Each workload's outcome from independent evidence (``harness.classify``)."""
    return [classify(evidence(live, run, w.name)) for w in live.resolved.scenario.workloads]


def evidence(live: LiveScenario, run: RunContext, name: str) -> WorkloadEvidence:
    """What the kernel log, the cgroup's OOM counter, the program, the runtime and the kubelet say."""
    sc = live.resolved.scenario
    h = live.handles[name]
    wl = live.resolved.layout.workloads[name]
    own_cg = _kernel_path(h.cgroup_abs, run)
    own_scope = [own_cg]
    if h.pod is not None:  # the kubelet's real pod cgroup
        own_scope.append(_kernel_path(h.pod.cgroup_abs, run))
    elif wl.pod_cgroup is not None:
        own_scope.append(_kernel_path(live.ctx.tree.abs(wl.pod_cgroup), run))
    key = f"{sc.name}/{name}"
    delta_events = sum(
        e["new"] - e["old"]
        for e in run.events.events
        if e["source"] == "memcg" and e["cgroup"] == key and e["counter"] == "oom_kill"
    )
    after = live.oom_kills_after.get(name)
    delta_file = (after - live.oom_kills_before.get(name, 0)) if after is not None else None
    delta = max(delta_events, delta_file or 0) if (delta_file is not None or delta_events) else None
    reached_max = h.last_event("max") is not None
    cap = h.last_event("heap_cap")
    t_cap = int(cap["mono_ns"]) / 1e9 if cap is not None and cap.get("mono_ns") else None
    return WorkloadEvidence(
        name=name,
        cgroup_abs=str(h.cgroup_abs),
        cgroup_rel=own_cg,
        own_scope=own_scope,
        pids=list(h.pids),
        leaking=not reached_max,
        exit_code=h.exit.exit_code if h.exit else None,
        signal=h.exit.signal if h.exit else None,
        stopped_by_harness=bool(h.exit and h.exit.stopped_by_harness),
        runtime_oom_killed=h.exit.runtime_oom_killed if h.exit else None,
        runtime_name=run.backend.name if h.exit and h.exit.runtime_oom_killed is not None else None,
        heap_cap_event=cap is not None,
        t_heap_cap_mono=t_cap,
        reached_max=reached_max,
        oom_counter_delta=delta,
        kmsg_kills=[
            OomRecord(
                t_mono=k.t_mono if k.t_mono is not None else (k.t_mono_received or 0.0),
                pid=k.pid,
                comm=k.comm,
                oom_memcg=k.oom_memcg,
                task_memcg=k.task_memcg,
                oom_score_adj=k.oom_score_adj,
                anon_rss_bytes=k.anon_rss,
                invoker_pid=k.invoker_pid,
                invoker_comm=k.invoker_comm,
                constraint=k.constraint,
            )
            for k in run.kmsg.kills
            if k.pid in h.pids or (k.task_memcg and k.task_memcg.rstrip("/") == own_cg)
        ],
        t_exit_mono=h.exit.t_mono if h.exit else None,
        kubelet_reason=h.kubelet.reason,
        kubelet_phase=h.kubelet.phase,
        t_kubelet_mono=h.kubelet.t_mono,
        admission_reason=h.kubelet.admission_reason,
    )


def kubelet_views(live: LiveScenario, run: RunContext, outcomes: list[Outcome]) -> dict[str, EvictionView]:
    """Per evicted workload, the kubelet's view at its eviction (``verdict.kubeletview``)."""
    sc = live.resolved.scenario
    evicted = [
        w.name
        for w, o in zip(sc.workloads, outcomes, strict=True)
        if o.outcome == "evicted" and live.handles[w.name].pod is not None
    ]
    if not evicted:
        return {}
    run.sampler.flush()
    samples = read_progress(run.sampler.progress_dir)
    out = {}
    for name in evicted:
        pod = live.handles[name].pod
        assert pod is not None
        mine = samples[samples["key"] == f"{sc.name}/{name}"]
        series = list(zip(mine["t_wall"].tolist(), mine["working_set"].tolist(), strict=True))
        view = eviction_view(name, pod.name, run.events.events, series)
        if view is not None:
            out[name] = view
            run.events.add("harness", "kubelet_view", scenario=sc.name, **view.to_dict())
    return out


def oom_kill_count(cg: Path, version: int) -> int | None:
    """The cgroup's oom_kill counter (v1 memory.oom_control, v2 memory.events), None if gone."""
    try:
        if version == 1:
            return parse_oom_control((cg / "memory.oom_control").read_text()).oom_kill
        return parse_memory_events((cg / "memory.events").read_text()).oom_kill
    except OSError:
        return None


def _tick(live: LiveScenario, run: RunContext, force: bool = False) -> None:
    states = {
        n: format_mib(h.allocated) + ("" if h.exit is None else f" exit {h.exit.exit_code}")
        for n, h in live.handles.items()
    }
    run.progress.tick(live.resolved.scenario.name, time.monotonic() - live.ctx.t0_mono, states, force=force)


def _vstr(run: RunContext) -> str:
    return "v1" if run.cgroup_version == 1 else "v2"


def _rel(abs_path: Path, run: RunContext) -> str:
    return str(abs_path.relative_to(memory_root(run.cgroup_version)))


def _kernel_path(abs_path: Path, run: RunContext) -> str:
    """A cgroup as the kernel prints it in oom-kill lines: "/" + path below the hierarchy root."""
    return "/" + _rel(abs_path, run)
