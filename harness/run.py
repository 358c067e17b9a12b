"""Run a suite: predict, launch, sample, classify, compare, store, tear down.

One scenario is an ordered list of steps; tear-down always runs. The whole run is
recorded under ``results/<run-id>/`` (see harness.results).
"""

from __future__ import annotations

import contextlib
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
from harness.verdict import LAUNCH_SLACK_S, Verdict, judge


def get_backend(name: str) -> Backend:
    if name == "process":
        from harness.launch.process import ProcessBackend

        return ProcessBackend()
    if name == "docker":
        from harness.launch.docker import DockerBackend

        return DockerBackend()
    if name == "containerd":
        raise HarnessError("the containerd backend is not available yet; use process or docker")
    raise HarnessError(f"unknown backend {name!r} (process, docker, containerd)")


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    verdicts: list[Verdict] = field(default_factory=list)
    status: str = "running"

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


class _Interrupted(Exception):
    pass


def run_suite(
    suite: Suite,
    backend_name: str,
    results_dir: Path,
    *,
    only: list[str] | None = None,
    progress: Progress | None = None,
    sample_hz: float | None = None,
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
    )
    progress.say(f"harness: run {run_id} ({len(scenarios)} scenarios, backend {backend_name})")
    progress.say(f"harness: results in {store.dir}")
    result = RunResult(run_id, store.dir)
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
    prev_handlers = _install_signal_handlers()
    all_predictions: list[dict[str, Any]] = []
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
            )
            all_predictions += [{"scenario": sc.name, **w.to_dict()} for w in pred.workloads]
            all_outcomes += [{"scenario": sc.name, **o.to_dict()} for o in outs]
            result.verdicts += verdicts
        status = "complete"
    except (KeyboardInterrupt, _Interrupted):
        status = "interrupted"
        progress.say("harness: interrupted: workloads stopped, results flushed, run marked interrupted")
    finally:
        _restore_signal_handlers(prev_handlers)
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
    return result


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
) -> tuple[Prediction, list[Outcome], list[Verdict]]:
    assert sc.node is not None
    kubelet = backend.name == "kubernetes"
    if not facts.get("negativeOomScoreAdj", True):
        sc.node.negative_oom_score_adj = False
    pred = predict_scenario(sc, kubelet=kubelet)
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
    keys: list[str] = []
    before: dict[str, int] = {}
    events.add("harness", "scenario_start", scenario=sc.name)
    try:
        backend.prepare(ctx)
        for rel, name in (("", "node"), ("kubepods", "kubepods")):
            if rel == "" or rel in layout.limits:
                k = f"{sc.name}/{name}"
                sampler.register(k, CgroupPaths(tree.rel(rel), vstr))
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
    verdicts: list[Verdict] = []
    kills = kmsg.kills
    counter_changes = [e for e in events.events if e["source"] == "memcg"]
    for w in sc.workloads:
        h = handles[w.name]
        wl = layout.workloads[w.name]
        own_cg = _kernel_path(h.cgroup_abs, version)
        own_scope = [own_cg]
        if wl.pod_cgroup is not None:
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
        )
        o = classify(ev)
        outcomes.append(o)
        wp = pred.workload(w.name)
        t_obs = (o.t_mono - ctx.t0_mono) if o.t_mono is not None else None
        v = judge(
            sc.name,
            wp,
            o,
            t_obs,
            slack_s=LAUNCH_SLACK_S.get(backend.name, 1.0),
            interval_s=w.leak.interval_s,
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


def _install_signal_handlers() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, frame: Any) -> None:
        raise _Interrupted(f"signal {signum}")

    prev: dict[int, Any] = {}
    for s in (signal.SIGTERM, signal.SIGHUP):
        prev[s] = signal.signal(s, handler)
    return prev


def _restore_signal_handlers(prev: dict[int, Any]) -> None:
    for s, h in prev.items():
        signal.signal(s, h)
