"""Run a suite: what is suite-wide (signals, the samplers, run.json, the tables, the active-run
registry). Each scenario is ``harness.scenario.run_scenario``. The whole run is recorded under
``results/<run-id>/`` (see harness.results).
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import __version__
from harness.backends import get_backend
from harness.config.node import detect_local_facts
from harness.config.suite import Scenario, Suite
from harness.errors import HarnessError, HostError, note_run_dir
from harness.host.cgroups import cgroup_version, remove_tree
from harness.host.probes import probe_negative_oom_score_adj
from harness.hostperf import measure_for_run
from harness.launch.base import REPO, Backend, EventSink
from harness.owned import Ledger, run_ledger
from harness.procs import proc_start_time
from harness.progress import Progress
from harness.results import RunStore, git_revision, new_run_id
from harness.sample.cgroupfs import detect_host_layout
from harness.sample.kmsg import KmsgFollower, OomKill
from harness.sample.oomwatch import OomCounterChange, OomWatcher
from harness.sample.sampler import Sampler, finalize
from harness.scenario import RunContext, run_scenario
from harness.scenario.health import as_host_failure, require_healthy
from harness.scenario.steps import WORKDIR
from harness.verdict import Verdict


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


def host_facts(backend: Backend | None = None) -> dict[str, Any]:
    facts = detect_local_facts()
    facts["negativeOomScoreAdj"] = probe_negative_oom_score_adj()
    facts["python"] = platform.python_version()
    facts["cgroupLayout"] = _cgroup_layout()
    if backend is not None:
        facts["engine"] = backend.versions()
    return facts


def _cgroup_layout() -> str:
    try:
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
    """Every scenario of ``suite`` for this backend, one after the other, on one set of samplers."""
    progress = progress or Progress()
    backend = get_backend(backend_name)
    _require_ready(backend)
    scenarios = _scenarios(suite, backend_name, only)
    run_id = new_run_id(suite.name, backend_name)
    results_dir.mkdir(parents=True, exist_ok=True)
    store = RunStore(results_dir, run_id)
    note_run_dir(store.dir)  # an internal error's traceback is saved in the run
    facts = host_facts(backend)
    facts["pageFaults"] = measure_for_run(run_id, progress.say)  # run.json host.pageFaults
    _record_start(store, suite, backend_name, scenarios, facts, labels)
    progress.say(f"harness: run {run_id} ({len(scenarios)} scenarios, backend {backend_name})")
    progress.say(f"harness: results in {store.dir}")
    result = RunResult(run_id, store.dir)
    active = register_active_run(run_id, store.dir)
    ledger = open_run_ledger(run_id)
    events = EventSink(store.progress / "events.jsonl")
    run = RunContext(
        run_id=run_id,
        backend=backend,
        store=store,
        events=events,
        kmsg=KmsgFollower(on_kill=_kill_recorder(events, progress, run_id)),
        watcher=OomWatcher(on_change=_counter_recorder(events)),
        sampler=Sampler(store.progress, rate_hz=sample_hz or suite.sample_hz),
        progress=progress,
        host=facts,
        cgroup_version=cgroup_version(),
        warm_up=warm_up,
    )
    prev_handlers = install_signal_handlers()
    outcomes: list[dict[str, Any]] = []
    t_run = time.monotonic()
    status = "failed"
    try:
        for start in (run.kmsg.start, run.watcher.start, run.sampler.start):
            start()
        previous: str | None = None
        for sc in scenarios:
            require_healthy(run, after=previous, before=sc.name)
            try:
                done = run_scenario(sc, run)
            except HarnessError as exc:
                raise as_host_failure(run, sc.name, exc) from None
            previous = sc.name
            result.predictions += [{"scenario": sc.name, **w.to_dict()} for w in done.prediction.workloads]
            outcomes += [{"scenario": sc.name, **o.to_dict()} for o in done.outcomes]
            result.verdicts += done.verdicts
        require_healthy(run, after=previous, before=None)  # a daemon that died in the last scenario
        status = "complete"
    except (KeyboardInterrupt, Interrupted):
        status = "interrupted"
        progress.say("harness: interrupted: workloads stopped, results flushed, run marked interrupted")
    finally:
        restore_signal_handlers(prev_handlers)
        # a second signal during teardown must not skip the cleanup, the tables or finish()
        with teardown_signals(progress) as seen:
            try:
                _stop_run(run)
            finally:
                _write_results(run, suite.name, result, outcomes, time.monotonic() - t_run)
                if seen and status == "complete":
                    status = "interrupted"
                result.status = status
                store.finish(status)
                close_run_ledger(ledger, run_id)
                active.unlink(missing_ok=True)
    return result


def _require_ready(backend: Backend) -> None:
    failed = [c for c in backend.sanity_checks() if not c.ok]
    if failed:
        c = failed[0]
        raise HostError(
            f"backend {backend.name}: {c.name}: {c.detail}" + (f" (fix: {c.fix})" if c.fix else "")
        )


def _scenarios(suite: Suite, backend_name: str, only: list[str] | None) -> list[Scenario]:
    scenarios = (
        list({id(s): s for n in only for s in suite.select(n)}.values())
        if only
        else [s for s in suite.scenarios if backend_name in s.backends]
    )
    if not scenarios:
        raise HarnessError(f"suite {suite.name} has no scenario for backend {backend_name}")
    return scenarios


def _record_start(
    store: RunStore,
    suite: Suite,
    backend_name: str,
    scenarios: list[Scenario],
    facts: dict[str, Any],
    labels: dict[str, str] | None,
) -> None:
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
        # who writes this run: `harness cleanup` / `runs list` mark it killed once this process is gone
        pid=os.getpid(),
        pid_start=proc_start_time(os.getpid()),
    )


def _kill_recorder(events: EventSink, progress: Progress, run_id: str) -> Callable[[OomKill], None]:
    """Each kernel OOM kill (from /dev/kmsg) as a run event and a progress line."""

    def on_kill(k: OomKill) -> None:
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

    return on_kill


def _counter_recorder(events: EventSink) -> Callable[[OomCounterChange], None]:
    """Each change of a cgroup's OOM counters as a run event."""

    def on_counter(c: OomCounterChange) -> None:
        events.add(
            "memcg", "oom_counter", cgroup=c.cgroup, counter=c.counter, old=c.old, new=c.new, detail=c.source
        )

    return on_counter


def _stop_run(run: RunContext) -> None:
    """Stop the samplers and the backend, whatever fails; remove the run's cgroup tree."""
    for stopper in (run.sampler.stop, run.watcher.stop, run.kmsg.stop, run.backend.close):
        try:
            stopper()
        except Exception as exc:  # keep tearing down
            run.progress.say(f"harness: warning: {exc}")
    with contextlib.suppress(Exception):
        run.sampler.close()
    run.events.close()
    leftover = remove_tree(f"harness/{run.run_id}")
    if not leftover:
        run_ledger(run.run_id).release("cgroup", path=f"harness/{run.run_id}")
    if leftover:
        run.progress.say(
            "harness: warning: could not remove " + "; ".join(leftover) + " (run 'harness cleanup')"
        )


def _write_results(
    run: RunContext, suite_name: str, result: RunResult, outcomes: list[dict[str, Any]], seconds: float
) -> list[str]:
    """The run's tables, JUnit file and verdict counts (results/README.md).

    Each write is guarded: one that fails (a full disk, a bad value) is reported and the others,
    and the caller's ``finish()``, still happen. Returns the names of the writes that failed.
    """
    store = run.store
    vd = [v.to_dict() for v in result.verdicts]
    writes: list[tuple[str, Callable[[], object]]] = [
        ("samples.parquet", lambda: finalize(store.progress, store.dir / "samples.parquet")),
        ("events.parquet", lambda: store.write_table("events", run.events.events)),
        ("predictions.parquet", lambda: store.write_table("predictions", result.predictions)),
        ("outcomes.parquet", lambda: store.write_table("outcomes", outcomes)),
        ("verdicts.parquet", lambda: store.write_table("verdicts", vd)),
        ("junit.xml", lambda: store.write_junit(suite_name, vd, seconds)),
        (
            "run.json counts",
            lambda: store.update(
                host_deviations=sorted({d for v in result.verdicts for d in v.host_deviations}),
                verdicts_passed=sum(v.passed for v in result.verdicts),
                verdicts_total=len(result.verdicts),
            ),
        ),
    ]
    failed = []
    for name, write in writes:
        try:
            write()
        except Exception as exc:  # keep writing the others
            failed.append(name)
            run.progress.say(f"harness: warning: could not write {name}: {type(exc).__name__}: {exc}")
    return failed


ACTIVE_DIR = Path(os.environ.get("HARNESS_ACTIVE_DIR", "/run/harness/active"))


def register_active_run(run_id: str, run_dir: Path) -> Path:
    """Mark a run as in progress (``harness cleanup`` refuses to pull the rug from under it)."""
    ACTIVE_DIR.mkdir(parents=True, exist_ok=True)
    path = ACTIVE_DIR / f"{run_id}.json"
    path.write_text(
        json.dumps({"pid": os.getpid(), "start": proc_start_time(os.getpid()), "dir": str(run_dir)}) + "\n"
    )
    return path


def open_run_ledger(run_id: str) -> Ledger:
    """The run's ledger, with its cgroup root and scratch folder recorded before any is created."""
    led = run_ledger(run_id)
    led.add("cgroup", path=f"harness/{run_id}")
    led.add("dir", path=str(WORKDIR / run_id))
    return led


def close_run_ledger(led: Ledger, run_id: str) -> None:
    """End of the run: release its scratch folder if gone; the ledger goes when nothing is left."""
    if not (WORKDIR / run_id).exists():
        led.release("dir", path=str(WORKDIR / run_id))
    led.finish()


def active_runs() -> list[dict[str, Any]]:
    """Runs whose process is still alive (same pid and start time); stale entries are removed."""
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


def _short_cgroup(path: str, run_id: str) -> str:
    """A harness cgroup path without its run prefix, for progress lines."""
    prefix = f"/harness/{run_id}/"
    if path.startswith(prefix):
        rest = path[len(prefix) :]
        scenario, _, inner = rest.partition("/")
        return f"{inner or 'node'} ({scenario})"
    return path


@contextlib.contextmanager
def teardown_signals(progress: Progress | None = None) -> Iterator[list[int]]:
    """While a run tears down and writes its files, SIGINT/SIGTERM/SIGHUP are noted, not obeyed.

    Before, the run's own handlers were restored first, so a second Ctrl-C or a SIGTERM during
    teardown killed the process half-way: workloads and cgroups left, tables and run.json's
    status never written. The signals seen are yielded; the previous handlers come back at the end.
    """
    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    def note(signum: int, frame: Any) -> None:
        seen.append(signum)
        if progress is not None:
            progress.say(f"harness: signal {signum} during teardown: finishing the teardown first")

    prev = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield seen
    finally:
        for s, h in prev.items():
            signal.signal(s, h)


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
