"""Run a suite: predict, launch, sample, classify, compare, store, tear down.

One scenario is an ordered list of steps; tear-down always runs. The whole run is
recorded under ``results/<run-id>/`` (see harness.results).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import __version__
from harness.classify import OomRecord, Outcome, WorkloadEvidence, classify
from harness.config.suite import Scenario, Suite
from harness.errors import HarnessError
from harness.launch.base import REPO, Backend, EventSink, Handle, ScenarioContext
from harness.launch.cgrouptree import CgroupTree, cgroup_version
from harness.model.predict import Prediction, node_layout, predict_scenario
from harness.quantity import format_mib
from harness.results import RunStore, git_revision, new_run_id
from harness.verdict import LAUNCH_SLACK_S, OBSERVATION_SLACK_S, Verdict, judge


def get_backend(name: str) -> Backend:
    if name == "process":
        from harness.launch.process import ProcessBackend

        return ProcessBackend()
    if name == "docker":
        from harness.launch.docker import DockerBackend

        return DockerBackend()
    if name == "kubernetes":
        from harness.launch.kubernetes import KubernetesBackend

        return KubernetesBackend()
    if name == "containerd":
        from harness.launch.containerd import ContainerdBackend

        return ContainerdBackend()
    raise HarnessError(f"unknown backend {name!r} (process, docker, containerd, kubernetes)")


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    verdicts: list[Verdict] = field(default_factory=list)
    status: str = "running"
    predictions: list[dict[str, Any]] = field(default_factory=list)  # as judged (as-run where known)

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)


class Progress:
    """Live progress on stderr: scenario, workload memory, events."""

    def __init__(self, stream: Any = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self._last = 0.0

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=self.stream, flush=True)

    def tick(self, scenario: str, t: float, handles: dict[str, Handle], force: bool = False) -> None:
        now = time.monotonic()
        if self.quiet or (not force and now - self._last < 1.0):
            return
        self._last = now
        parts = []
        for name, h in handles.items():
            state = "" if h.exit is None else f" exit {h.exit.exit_code}"
            parts.append(f"{name} {format_mib(h.allocated)}{state}")
        self.say(f"  [{scenario} t={t:5.1f}s] " + " | ".join(parts))


def host_facts(backend: Backend | None = None) -> dict[str, Any]:
    from harness.config.node import detect_local_facts
    from harness.launch.process import probe_negative_oom_score_adj

    facts = detect_local_facts()
    facts["negativeOomScoreAdj"] = probe_negative_oom_score_adj()
    facts["python"] = platform.python_version()
    facts["cgroupLayout"] = _cgroup_layout()
    if backend is not None and hasattr(backend, "versions"):
        facts["engine"] = backend.versions()
    return facts


def _cgroup_layout() -> str:
    try:
        from harness.sample.cgroupfs import detect_host_layout

        return str(detect_host_layout().layout)
    except Exception:  # pragma: no cover - informational only
        return "unknown"


class Interrupted(Exception):
    """SIGTERM/SIGHUP during a run (raised by the handlers of install_signal_handlers)."""


def run_suite(
    suite: Suite,
    backend_name: str,
    results_dir: Path,
    *,
    only: list[str] | None = None,
    progress: Progress | None = None,
    sample_hz: float | None = None,
    labels: dict[str, str] | None = None,
    warm_up: str = "auto",
) -> RunResult:
    from harness.sample.cgroupfs import CgroupPaths
    from harness.sample.kmsg import KmsgFollower
    from harness.sample.oomwatch import OomWatcher
    from harness.sample.sampler import Sampler, finalize

    progress = progress or Progress()
    backend = get_backend(backend_name)
    failed_checks = [c for c in backend.sanity_checks() if not c.ok]
    if failed_checks:
        c = failed_checks[0]
        raise HarnessError(
            f"backend {backend_name}: {c.name}: {c.detail}" + (f" (fix: {c.fix})" if c.fix else "")
        )
    scenarios = [s for s in suite.scenarios if backend_name in s.backends]
    if only:
        scenarios = [suite.scenario(n) for n in only]
    if not scenarios:
        raise HarnessError(f"suite {suite.name} has no scenario for backend {backend_name}")

    run_id = new_run_id(suite.name, backend_name)
    results_dir.mkdir(parents=True, exist_ok=True)
    store = RunStore(results_dir, run_id)
    facts = host_facts(backend)
    from harness.hostperf import measure_for_run  # hook: page-fault rates, run.json host.pageFaults

    facts["pageFaults"] = measure_for_run(run_id, progress.say)
    version = cgroup_version()
    store.update(
        suite=suite.name,
        suite_file=suite.source,
        backend=backend_name,
        scenarios=[s.name for s in scenarios],
        harness_version=__version__,
        git_revision=git_revision(REPO),
        host=facts,
        profile={s.name: s.profile.to_yaml_dict() for s in scenarios if s.profile},
        node={s.name: s.node.model_dump(by_alias=True) for s in scenarios if s.node},
        command=sys.argv,
        labels=dict(labels or {}),
    )
    progress.say(f"harness: run {run_id} ({len(scenarios)} scenarios, backend {backend_name})")
    progress.say(f"harness: results in {store.dir}")
    result = RunResult(run_id, store.dir)
    active = register_active_run(run_id, store.dir)
    events = EventSink(store.progress / "events.jsonl")
    vstr = "v1" if version == 1 else "v2"

    def on_kill(k: Any) -> None:
        domain = k.oom_memcg or "the whole node"
        progress.say(
            f"  event: kernel oom-kill of pid {k.pid} ({k.comm}, oom_score_adj {k.oom_score_adj}) "
            f"at the limit of {_short_cgroup(domain, run_id)}"
        )
        events.add(
            "kmsg",
            "oom_kill",
            pid=k.pid,
            comm=k.comm,
            oom_memcg=k.oom_memcg,
            task_memcg=k.task_memcg,
            oom_score_adj=k.oom_score_adj,
            anon_rss=k.anon_rss,
            constraint=k.constraint,
            invoker_pid=k.invoker_pid,
            invoker_comm=k.invoker_comm,
            t_kernel_mono=k.t_mono,
        )

    def on_counter(c: Any) -> None:
        events.add(
            "memcg", "oom_counter", cgroup=c.cgroup, counter=c.counter, old=c.old, new=c.new, detail=c.source
        )

    kmsg = KmsgFollower(on_kill=on_kill)
    watcher = OomWatcher(on_change=on_counter)
    sampler = Sampler(store.progress, rate_hz=sample_hz or suite.sample_hz)
    prev_handlers = install_signal_handlers()
    all_predictions = result.predictions
    all_outcomes: list[dict[str, Any]] = []
    t_run = time.monotonic()
    status = "failed"
    try:
        kmsg.start()
        watcher.start()
        sampler.start()
        for sc in scenarios:
            pred, outs, verdicts = _run_scenario(
                sc,
                backend,
                run_id,
                events,
                kmsg,
                watcher,
                sampler,
                CgroupPaths,
                vstr,
                version,
                progress,
                facts,
                store,
                warm_up,
            )
            all_predictions += [{"scenario": sc.name, **w.to_dict()} for w in pred.workloads]
            all_outcomes += [{"scenario": sc.name, **o.to_dict()} for o in outs]
            result.verdicts += verdicts
        status = "complete"
    except (KeyboardInterrupt, Interrupted):
        status = "interrupted"
        progress.say("harness: interrupted: workloads stopped, results flushed, run marked interrupted")
    finally:
        restore_signal_handlers(prev_handlers)
        for stopper in (sampler.stop, watcher.stop, kmsg.stop, backend.close):
            try:
                stopper()
            except Exception as exc:  # keep tearing down
                progress.say(f"harness: warning: {exc}")
        with contextlib.suppress(Exception):
            sampler.close()
        events.close()
        from harness.launch.cgrouptree import remove_tree

        leftover = remove_tree(f"harness/{run_id}")
        if leftover:
            progress.say(
                "harness: warning: could not remove " + "; ".join(leftover) + " (run 'harness cleanup')"
            )
        try:
            finalize(store.progress, store.dir / "samples.parquet")
        except Exception as exc:
            progress.say(f"harness: warning: could not write samples.parquet: {exc}")
        store.write_table("events", events.events)
        store.write_table("predictions", all_predictions)
        store.write_table("outcomes", all_outcomes)
        vd = [v.to_dict() for v in result.verdicts]
        store.write_table("verdicts", vd)
        store.write_junit(suite.name, vd, time.monotonic() - t_run)
        result.status = status
        deviations = sorted({d for v in result.verdicts for d in v.host_deviations})
        store.update(
            host_deviations=deviations,
            verdicts_passed=sum(v.passed for v in result.verdicts),
            verdicts_total=len(result.verdicts),
        )
        store.finish(status)
        active.unlink(missing_ok=True)
    return result


ACTIVE_DIR = Path(os.environ.get("HARNESS_ACTIVE_DIR", "/run/harness/active"))


def register_active_run(run_id: str, run_dir: Path) -> Path:
    """Mark a run as in progress (``harness cleanup`` refuses to pull the rug from under it)."""
    from harness.procs import proc_start_time

    ACTIVE_DIR.mkdir(parents=True, exist_ok=True)
    path = ACTIVE_DIR / f"{run_id}.json"
    path.write_text(
        json.dumps({"pid": os.getpid(), "start": proc_start_time(os.getpid()), "dir": str(run_dir)}) + "\n"
    )
    return path


def active_runs() -> list[dict[str, Any]]:
    """Runs whose process is still alive (same pid and start time); stale entries are removed."""
    from harness.procs import proc_start_time

    out = []
    for f in sorted(ACTIVE_DIR.glob("*.json")) if ACTIVE_DIR.is_dir() else []:
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if proc_start_time(int(rec.get("pid", 0))) == rec.get("start") and rec.get("start") is not None:
            out.append({"run_id": f.stem, **rec})
        else:
            f.unlink(missing_ok=True)
    return out


def _run_scenario(
    sc: Scenario,
    backend: Backend,
    run_id: str,
    events: EventSink,
    kmsg: Any,
    watcher: Any,
    sampler: Any,
    CgroupPaths: Any,
    vstr: str,
    version: int,
    progress: Progress,
    facts: dict[str, Any],
    store: RunStore,
    warm_up: str = "auto",
) -> tuple[Prediction, list[Outcome], list[Verdict]]:
    assert sc.node is not None
    kubelet = backend.name == "kubernetes"
    if not facts.get("negativeOomScoreAdj", True):
        sc.node.negative_oom_score_adj = False
    if kubelet:
        # the model predicts the real node: this host's memory and the cluster's kubelet version
        _real_node(sc, backend, facts)
    baseline = backend.baseline() if kubelet and hasattr(backend, "baseline") else None
    if baseline is not None and sc.pressure_margin:
        sc.profile = _pressure_profile(sc, baseline, store.dir / "profiles")
        progress.say(
            f"  node-pressure threshold from the idle node: evictionHard memory.available="
            f"{(sc.profile.eviction_hard or {}).get('memory.available')} ({sc.profile.source})"
        )
    pred = predict_scenario(sc, kubelet=kubelet, baseline=baseline)
    if baseline is not None:
        events.add("harness", "baseline", scenario=sc.name, **vars(baseline))
    layout = node_layout(sc, kubelet=kubelet)
    tree = CgroupTree(f"harness/{run_id}/{sc.name}", version)
    workdir = Path(os.environ.get("HARNESS_WORKDIR", "/var/tmp/harness")) / run_id / sc.name
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = ScenarioContext(
        run_id=run_id,
        scenario=sc,
        layout=layout,
        tree=tree,
        events=events,
        workdir=workdir,
        negative_oom_score_adj=bool(facts.get("negativeOomScoreAdj", True)),
    )
    progress.say(
        f"scenario {sc.id or ''} {sc.name}: "
        + "; ".join(f"{w.name} -> {w.outcome}" + (" (race)" if w.race else "") for w in pred.workloads)
    )
    handles: dict[str, Handle] = {}
    cgroup_verdict: Verdict | None = None
    start_verdict: Verdict | None = None
    mm_verdict: Verdict | None = None
    keys: list[str] = []
    before: dict[str, int] = {}
    events.add("harness", "scenario_start", scenario=sc.name)
    refused = None
    try:
        try:
            backend.prepare(ctx)
        except HarnessError as exc:
            from harness.launch.kubernetes import KubeletRefused

            if not isinstance(exc, KubeletRefused):
                raise
            refused = exc.start  # the kubelet refused the scenario's profile
        start_verdict = _kubelet_start_verdict(sc, getattr(backend, "last_start", None), refused)
        if start_verdict is not None:
            progress.say(
                f"  {'ok  ' if start_verdict.passed else 'FAIL'} kubelet start: predicted {start_verdict.predicted}, "
                f"observed {start_verdict.observed}"
            )
        if refused is not None:
            raise _KubeletRefused()
        if kubelet and getattr(backend, "last_start", None) is not None:
            # the kubelet was restarted for this scenario: predict again with what it saw at its start
            _real_node(sc, backend, facts)
            pred = predict_scenario(sc, kubelet=True, baseline=baseline)
        from harness.hostperf import warm_up_scenario  # hook: touch and release the scenario's memory

        warm = warm_up_scenario(ctx, warm_up, facts.get("pageFaults"), progress.say)
        if warm is not None:
            events.add("harness", "warm_up", scenario=sc.name, detail=json.dumps(warm))
            store.update(warm_up={**store.meta.get("warm_up", {}), sc.name: warm})
        for name, rel in backend.node_cgroups(ctx):
            k = f"{sc.name}/{name}"
            sampler.register(k, CgroupPaths(rel, vstr))
            keys.append(k)
        ctx.t0_mono = time.monotonic()
        for w in sc.workloads:
            h = backend.launch(ctx, w, layout.workloads[w.name])
            handles[w.name] = h
            rel = _rel_of(h.cgroup_abs, version)
            k = f"{sc.name}/{w.name}"
            try:
                sampler.register(k, CgroupPaths(rel, vstr))
                watcher.add(k, CgroupPaths(rel, vstr))
                keys.append(k)
                before[w.name] = _oom_kill_count(h.cgroup_abs, version) or 0
            except OSError as exc:
                events.add("harness", "sample_error", workload=w.name, detail=str(exc))
        if sc.check_cgroups and hasattr(backend, "conformance"):
            checks = backend.conformance(ctx, handles)
            store.add_rows("cgroups", [{"scenario": sc.name, **c.to_dict()} for c in checks])
            cgroup_verdict = _cgroup_verdict(sc.name, checks)
            progress.say(
                f"  cgroups: {sum(c.match for c in checks)}/{len(checks)} files as the model says"
                + ("" if cgroup_verdict.passed else ": " + "; ".join(cgroup_verdict.reasons[:5]))
            )
        if (
            sc.profile is not None
            and sc.profile.memory_manager_static
            and hasattr(backend, "memory_manager_diffs")
        ):
            diffs = backend.memory_manager_diffs(ctx, handles)
            mm_verdict = Verdict.check(
                sc.name,
                "memory-manager-state",
                "state file as modelled",
                "as modelled" if not diffs else f"{len(diffs)} differences",
                not diffs,
                diffs,
            )
            progress.say(f"  {'ok  ' if not diffs else 'FAIL'} memory manager state: {mm_verdict.observed}")
        deadline = ctx.t0_mono + sc.timeout_s
        while time.monotonic() < deadline:
            for h in handles.values():
                backend.poll(ctx, h)
            if all(h.exit is not None for h in handles.values()):
                break
            progress.tick(sc.name, time.monotonic() - ctx.t0_mono, handles)
            time.sleep(0.05)
        for h in handles.values():
            if h.exit is None:
                backend.stop(ctx, h)
                backend.poll(ctx, h)
        # give the kernel log and counters a moment to arrive
        time.sleep(0.3)
        progress.tick(sc.name, time.monotonic() - ctx.t0_mono, handles, force=True)
        after = {n: _oom_kill_count(h.cgroup_abs, version) for n, h in handles.items()}
    except _KubeletRefused:
        after = {}
    finally:
        for k in keys:
            sampler.unregister(k)
            with contextlib.suppress(Exception):
                watcher.remove(k)
        failed = backend.teardown(ctx)
        if failed:
            events.add("harness", "cleanup_failed", scenario=sc.name, detail="; ".join(failed))
        _rmtree(workdir)
        events.add("harness", "scenario_end", scenario=sc.name)

    outcomes: list[Outcome] = []
    verdicts: list[Verdict] = [v for v in (start_verdict, cgroup_verdict, mm_verdict) if v is not None]
    if refused is not None:
        return pred, outcomes, verdicts  # no workload could run on a kubelet that did not start
    pred = _as_run(sc, pred, handles, ctx.t0_mono, kubelet, baseline, progress, events)
    kills = kmsg.kills
    counter_changes = [e for e in events.events if e["source"] == "memcg"]
    for w in sc.workloads:
        h = handles[w.name]
        wl = layout.workloads[w.name]
        own_cg = _kernel_path(h.cgroup_abs, version)
        own_scope = [own_cg]
        if h.extra.get("pod_cgroup_abs"):  # the kubelet's real pod cgroup
            own_scope.append(_kernel_path(Path(h.extra["pod_cgroup_abs"]), version))
        elif wl.pod_cgroup is not None:
            own_scope.append(_kernel_path(tree.abs(wl.pod_cgroup), version))
        k = f"{sc.name}/{w.name}"
        delta_events = sum(
            e["new"] - e["old"] for e in counter_changes if e["cgroup"] == k and e["counter"] == "oom_kill"
        )
        a = after.get(w.name)
        delta_file = (a - before.get(w.name, 0)) if a is not None else None
        delta = max(delta_events, delta_file or 0) if (delta_file is not None or delta_events) else None
        reached_max = h.last_event("max") is not None
        ev = WorkloadEvidence(
            name=w.name,
            cgroup_abs=str(h.cgroup_abs),
            cgroup_rel=own_cg,
            own_scope=own_scope,
            pids=list(h.pids),
            leaking=not reached_max,
            exit_code=h.exit.exit_code if h.exit else None,
            signal=h.exit.signal if h.exit else None,
            stopped_by_harness=bool(h.exit and h.exit.stopped_by_harness),
            runtime_oom_killed=h.exit.runtime_oom_killed if h.exit else None,
            runtime_name=backend.name if h.exit and h.exit.runtime_oom_killed is not None else None,
            heap_cap_event=h.last_event("heap_cap") is not None,
            reached_max=reached_max,
            oom_counter_delta=delta,
            kmsg_kills=[
                OomRecord(
                    t_mono=k2.t_mono if k2.t_mono is not None else (k2.t_mono_received or 0.0),
                    pid=k2.pid,
                    comm=k2.comm,
                    oom_memcg=k2.oom_memcg,
                    task_memcg=k2.task_memcg,
                    oom_score_adj=k2.oom_score_adj,
                    anon_rss_bytes=k2.anon_rss,
                    invoker_pid=k2.invoker_pid,
                    invoker_comm=k2.invoker_comm,
                    constraint=k2.constraint,
                )
                for k2 in kills
                if k2.pid in h.pids or (k2.task_memcg and k2.task_memcg.rstrip("/") == own_cg)
            ],
            t_exit_mono=h.exit.t_mono if h.exit else None,
            kubelet_reason=h.extra.get("kubelet_reason"),
            kubelet_phase=h.extra.get("kubelet_phase"),
            t_kubelet_mono=h.extra.get("t_kubelet_mono"),
            admission_reason=h.extra.get("admission_reason"),
        )
        o = classify(ev)
        outcomes.append(o)
        wp = pred.workload(w.name)
        t_obs = (o.t_mono - ctx.t0_mono) if o.t_mono is not None else None
        as_run = wp.basis == "as-run"
        v = judge(
            sc.name,
            wp,
            o,
            t_obs,
            slack_s=(OBSERVATION_SLACK_S if as_run else LAUNCH_SLACK_S).get(backend.name, 1.0),
            interval_s=max(w.leak.interval_s, wp.max_chunk_s or 0.0),
            deviations=h.deviations,
        )
        verdicts.append(v)
        mark = "ok  " if v.passed else "FAIL"
        progress.say(
            f"  {mark} {w.name:<14} predicted {v.predicted:<16} observed {o.outcome:<16}"
            + (f" t={t_obs:.2f}s" if t_obs is not None else "")
            + (f"  ({'; '.join(v.reasons)})" if v.reasons else "")
        )
    return pred, outcomes, verdicts


def _as_run(
    sc: Scenario,
    planned: Prediction,
    handles: dict[str, Handle],
    t0_mono: float,
    kubelet: bool,
    baseline: Any,
    progress: Progress,
    events: EventSink,
) -> Prediction:
    """The prediction again, with each workload's real start and allocation pace (``model.schedule``).

    The plan assumes every program starts at t = 0 and allocates on schedule; launch latency (a
    pod's sandbox and container) and a host whose page faults cannot keep the pace are facts of
    the host, not of the memory protection under test. Verdicts are judged against this as-run
    prediction; the planned one is kept beside it (``planned_*`` columns)."""
    from harness.model.schedule import SLOW_FRACTION, schedule_from_lines

    workloads = {w.name: w for w in sc.workloads}
    schedules = {}
    for w in workloads.values():
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
            # its program ran but its lines are missing: the others' timeline alone would be judged
            # with the as-run slack while this one's memory still follows the plan
            progress.say(f"  note: {w.name}: no lines from its program; judged on the planned timeline")
            events.add("harness", "as_run_incomplete", workload=w.name, scenario=sc.name)
            return planned
    if not schedules:
        return planned
    pred = predict_scenario(sc, kubelet=kubelet, baseline=baseline, schedules=schedules)
    for wp in pred.workloads:
        before = planned.workload(wp.name)
        wp.planned_outcome = before.label
        wp.planned_earliest_s, wp.planned_latest_s = before.earliest_s, before.latest_s
        sched = schedules.get(wp.name)
        if sched is None:
            continue
        wp.basis = "as-run"
        wp.launch_s = round(sched.launch_s, 4)
        wp.max_chunk_s = round(sched.max_chunk_s(), 4)
        wp.alloc_rate_bytes_per_s = sched.rate_bytes_per_s()
        w = workloads[wp.name]
        asked = w.leak.rate_bytes_per_s
        got = wp.alloc_rate_bytes_per_s
        events.add(
            "harness", "as_run", workload=wp.name, scenario=sc.name, detail=json.dumps(sched.to_dict())
        )
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
    return pred


class _KubeletRefused(Exception):
    pass


def _kubelet_start_verdict(sc: Scenario, started: Any, refused: Any) -> Verdict | None:
    """Kubelet start with the scenario's profile vs the model's startup validation (S9)."""
    from harness.launch.kubernetes import predicted_start_errors

    if started is None and refused is None:
        return None
    assert sc.profile is not None
    errors = predicted_start_errors(sc.profile, sc.node)
    predicted = "refuses to start" if errors else "starts"
    observed = "refuses to start" if refused is not None else "starts"
    reasons: list[str] = []
    match = predicted == observed
    if refused is not None:
        line = refused.error or refused.log_tail
        if errors and not any(e in line.replace("\\", "") for e in errors):  # klog escapes quotes
            match = False
            reasons.append(f"the kubelet's error is not the model's: model {errors[0]!r}, kubelet {line!r}")
        elif errors:
            reasons.append(f"kubelet: {line}")
    elif errors:
        reasons.append(f"the model expected the kubelet to refuse: {errors[0]}")
    return Verdict.check(
        sc.name,
        "kubelet-start",
        predicted,
        observed,
        match,
        reasons,
        observed_t_s=started.seconds if started is not None else refused.seconds,
    )


def _cgroup_verdict(scenario: str, checks: list[Any]) -> Verdict:
    """One verdict for the whole cgroup tree of a scenario (S8)."""
    bad = [c for c in checks if not c.match]
    reasons = [f"{c.real_path}/{c.file}: model {c.expected}, observed {c.observed}" for c in bad]
    if not checks:
        reasons.append("no cgroup file could be compared")
    return Verdict.check(
        scenario,
        "cgroups",
        f"{len(checks)} files as modelled",
        f"{len(checks) - len(bad)} as modelled, {len(bad)} differ",
        bool(checks) and not bad,
        reasons,
    )


def _pressure_profile(sc: Scenario, baseline: Any, out_dir: Path) -> Any:
    """The scenario's profile with evictionHard memory.available = available now - pressureMargin.

    available = capacity - root working set, as the eviction manager computes memory.available
    (pkg/kubelet/eviction/helpers.go makeSignalObservations); rounded down to MiB.
    """
    import yaml

    from harness import quantity
    from harness.config.kubelet import load_profile

    assert sc.profile is not None and sc.node is not None and sc.pressure_margin
    available = sc.node.memory_capacity_bytes - int(baseline.root_working_set)
    threshold_mib = (available - quantity.to_bytes(sc.pressure_margin)) >> 20
    if threshold_mib <= 0:
        raise HarnessError(
            f"scenario {sc.name}: memory.available is {available >> 20} MiB, less than pressureMargin "
            f"{sc.pressure_margin}: the host is too busy for this scenario"
        )
    data = yaml.safe_load(Path(sc.profile.source).read_text())
    data.setdefault("evictionHard", {})["memory.available"] = f"{threshold_mib}Mi"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{sc.name}.yaml"
    path.write_text(
        f"# {sc.profile.source} with evictionHard memory.available = {available >> 20}Mi available at the\n"
        f"# scenario's start - pressureMargin {sc.pressure_margin} (harness/run.py _pressure_profile)\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
    return load_profile(path)


def _real_node(sc: Scenario, backend: Backend, facts: dict[str, Any]) -> None:
    """On a real kubelet the node is this host, whatever the suite says, at the cluster's version."""
    assert sc.node is not None
    sc.node.memory_capacity_bytes = int(facts.get("memoryCapacity") or sc.node.memory_capacity_bytes)
    numa: dict[str, int] = getattr(backend, "numa_memory", dict)()
    for n in sc.node.numa_nodes:
        if str(n.id) in numa:
            n.memory_bytes = numa[str(n.id)]
    kv = getattr(backend, "kubelet_version", lambda: None)()
    if kv:
        sc.node.kubelet_version = ".".join(str(kv).lstrip("v").split(".")[:2])


def _short_cgroup(path: str, run_id: str) -> str:
    """A harness cgroup path without its run prefix, for progress lines."""
    prefix = f"/harness/{run_id}/"
    if path.startswith(prefix):
        rest = path[len(prefix) :]
        scenario, _, inner = rest.partition("/")
        return f"{inner or 'node'} ({scenario})"
    return path


def _rel_of(abs_path: Path, version: int) -> str:
    from harness.launch.cgrouptree import memory_root

    return str(abs_path.relative_to(memory_root(version)))


def _kernel_path(abs_path: Path, version: int) -> str:
    """A cgroup as the kernel prints it in oom-kill lines: "/" + path below the hierarchy root."""
    return "/" + _rel_of(abs_path, version)


def _oom_kill_count(cg: Path, version: int) -> int | None:
    """The cgroup's oom_kill counter (v1 memory.oom_control, v2 memory.events), None if gone."""
    from harness.sample.cgroupfs import parse_memory_events, parse_oom_control

    try:
        if version == 1:
            return parse_oom_control((cg / "memory.oom_control").read_text()).oom_kill
        return parse_memory_events((cg / "memory.events").read_text()).oom_kill
    except OSError:
        return None


def _rmtree(p: Path) -> None:
    import shutil

    shutil.rmtree(p, ignore_errors=True)
    with contextlib.suppress(OSError):
        p.parent.rmdir()


def install_signal_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(f"signal {signum}")

    prev: dict[int, Any] = {}
    for s in (signal.SIGTERM, signal.SIGHUP):
        prev[s] = signal.signal(s, handler)
    return prev


def restore_signal_handlers(prev: dict[int, Any]) -> None:
    for s, h in prev.items():
        signal.signal(s, h)
