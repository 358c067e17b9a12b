"""The containerd backend itself (the package's docstring says how tasks are run, labelled and watched)."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import __version__
from harness.config.suite import Workload
from harness.engines.containerd import (
    ContainerdHandle,
    ContainerdInstance,
    answers,
    ctr,
    default_instance,
    engine_owner,
    ensure_containerd,
    server_version,
    stop_if_unused,
    which,
)
from harness.errors import HarnessError, HostError
from harness.host.cgroups import iter_pids, memory_root
from harness.host.probes import probe_negative_oom_score_adj
from harness.images import LEAK_IMAGE, build_image, import_into_containerd, workload_binary
from harness.launch.base import (
    LABEL,
    LABEL_RUN,
    LABEL_WORKLOAD,
    Backend,
    Check,
    EventSink,
    ExitInfo,
    Handle,
    KubeletStart,
    OomScoreAdjTiming,
    ScenarioContext,
    applied_oom_score_adj,
)
from harness.launch.containerd.args import ctr_run_args
from harness.launch.containerd.events import CtrEvent, EventFollower, parse_rfc3339, wall_to_mono
from harness.launch.containerd.names import (
    CONTAINER_PREFIX,
    EVENT_TOPICS,
    IMAGE_CACHE,
    LABEL_SCENARIO,
    NAMESPACE,
    check_namespace,
    container_id,
    run_prefix,
)
from harness.launch.containerd.oomadj import read_oom_score_adj, write_oom_score_adj
from harness.model.layout import WorkloadLayout
from harness.owned import add_user, remove_user, run_ledger, sweep, sweep_host
from harness.procs import read_pid


@dataclass
class _Task:
    cid: str
    workload: str
    scenario: str
    handle: Handle | None = None
    log: Path | None = None
    exit_event: CtrEvent | None = None
    oom_events: list[CtrEvent] = field(default_factory=list)
    reader_stop: threading.Event = field(default_factory=threading.Event)
    reader: threading.Thread | None = None


def binary_checks() -> list[Check]:
    """containerd, ctr, the runc shim and runc on PATH (shared by the backend and ``harness doctor``)."""
    checks = []
    for exe, pkg in (
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("containerd-shim-runc-v2", "containerd"),
        ("runc", "runc"),
    ):
        path = which(exe)
        checks.append(
            Check(f"{exe} binary", path is not None, path or f"Debian package {pkg}", "run scripts/setup.sh")
        )
    return checks


class ContainerdBackend(Backend):
    name = "containerd"
    launch_slack_s = 2.0  # ctr run: container, snapshot, shim, task start
    observation_slack_s = 1.0  # /tasks/oom and /tasks/exit through ctr events

    def __init__(self, instance: Any = None, namespace: str = NAMESPACE) -> None:

        self.namespace = check_namespace(namespace)
        self.instance = instance or default_instance()
        self.engine: Any = None
        self.follower: EventFollower | None = None
        self._sink: EventSink | None = None
        self._prefix: str | None = None
        self._tasks: dict[str, _Task] = {}  # container id -> task (this run)
        self._lock = threading.Lock()
        self._image_ready = False

    # -- engine and image
    def _connect(self) -> Any:
        if self.engine is None:
            self.engine = ensure_containerd(self.instance, on_demand_start=True)
            add_user(engine_owner(self.instance))
        return self.engine

    def _ctr(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:

        return ctr(self.instance, *args, namespace=self.namespace, timeout=timeout, check=check)

    def image(self) -> str:
        """The leak image in the namespace, imported (once per engine) if missing."""

        self._connect()
        if self._image_ready:
            return LEAK_IMAGE
        if LEAK_IMAGE not in self._ctr("images", "ls", "-q").stdout.split():
            IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
            tar = build_image(
                workload_binary("leak"),
                LEAK_IMAGE,
                ["/leak"],
                IMAGE_CACHE / f"leak-{__version__}.oci.tar",
                "oci",
            )
            import_into_containerd(self.instance.address, self.namespace, tar)
        self._image_ready = True
        return LEAK_IMAGE

    def versions(self) -> dict[str, Any]:

        out: dict[str, Any] = {"namespace": self.namespace, "socket": self.instance.address}
        try:
            out["containerd"] = server_version(self.instance)
        except HarnessError as exc:
            out["error"] = str(exc)
        runc = which("runc")
        if runc:
            r = subprocess.run([runc, "--version"], capture_output=True, text=True)
            out["runc"] = (r.stdout.splitlines() or ["?"])[0].removeprefix("runc version ").strip()
        return out

    def sanity_checks(self) -> list[Check]:

        checks = binary_checks()
        if not all(c.ok for c in checks):
            return checks
        try:
            self._connect()

            checks.append(
                Check(
                    "engine",
                    True,
                    f"containerd {server_version(self.instance)} on {self.instance.address}",
                )
            )
            checks.append(Check("namespace", True, f"{self.namespace} (k8s.io is refused)"))

            checks.append(
                Check(
                    "oom_score_adj",
                    True,
                    "written to each task's processes right after start (ctr has no flag); "
                    + (
                        "negative values too"
                        if probe_negative_oom_score_adj()
                        else "negative values refused here (no CAP_SYS_RESOURCE): clamped to 0, "
                        "recorded as host deviations"
                    ),
                )
            )
            checks.append(Check("leak image", bool(self.image()), f"{self.image()} in {self.namespace}"))
        except HarnessError as exc:
            checks.append(
                Check(
                    "engine",
                    False,
                    str(exc).splitlines()[0],
                    f"see the containerd log {self.instance.log_path}",
                )
            )
        return checks

    # -- events
    def _start_events(self, ctx: ScenarioContext) -> None:
        if self._prefix is None:
            self._prefix = run_prefix(ctx.run_id)
        self._sink = ctx.events
        if self.follower is not None and self.follower.running:
            return
        if self.follower is not None:
            ctx.events.add(
                "harness", "warning", detail="ctr events exited; restarted (events may be missing)"
            )
        self.follower = EventFollower(self.instance.address, self.namespace, self._on_event)
        self.follower.start()

    def _on_event(self, ev: CtrEvent) -> None:
        cid = ev.container_id
        if not cid or self._prefix is None or not cid.startswith(self._prefix):
            return  # another run's container in the same namespace
        with self._lock:
            task = self._tasks.get(cid)
            if task is not None:
                if ev.topic == "/tasks/exit" and task.exit_event is None:
                    task.exit_event = ev
                elif ev.topic == "/tasks/oom":
                    task.oom_events.append(ev)
        if ev.topic not in EVENT_TOPICS or self._sink is None:
            return
        p = ev.payload
        exited = parse_rfc3339(str(p["exited_at"])) if p.get("exited_at") else None
        self._sink.add(
            "containerd",
            ev.topic.rsplit("/", 1)[-1],
            workload=task.workload if task else None,
            scenario=task.scenario if task else None,
            container_id=cid,
            pid=p.get("pid"),
            exit_code=p.get("exit_status", 0) if ev.topic in ("/tasks/exit", "/tasks/delete") else None,
            t_runtime_wall=ev.t_wall,
            t_runtime_mono=wall_to_mono(ev.t_wall),
            detail=json.dumps({"topic": ev.topic, "namespace": ev.namespace, "exited_at": exited}),
        )

    # -- scenario
    def prepare(self, ctx: ScenarioContext) -> KubeletStart | None:
        self._ready(ctx)
        return super().prepare(ctx)

    def _ready(self, ctx: ScenarioContext) -> None:
        """Engine, image and event follower; :meth:`launch` works without :meth:`prepare` (e.g. for the
        host workloads of another backend, which builds the cgroup tree itself)."""
        self._connect()
        self._image = self.image()
        self._start_events(ctx)

    def launch(self, ctx: ScenarioContext, workload: Workload, layout: WorkloadLayout) -> Handle:
        self._ready(ctx)
        asked = layout.oom_score_adj
        applied, deviation = applied_oom_score_adj(asked, ctx.negative_oom_score_adj)
        argv = ["/leak", *workload.leak.leak_args()]
        if workload.leak.mode == "pagecache":
            argv.append(f"--file=/{workload.name}.dat")  # in the container's own snapshot (a disk fs)
        cid = container_id(ctx.run_id, ctx.scenario.name, workload.name)
        cg_rel = ctx.tree.rel(layout.cgroup)
        h = Handle(
            workload=workload.name,
            backend=self.name,
            cgroup=layout.cgroup,
            cgroup_abs=memory_root(ctx.tree.version) / cg_rel,
            container_id=cid,
            asked_oom_score_adj=asked,
            applied_oom_score_adj=applied,
        )
        if deviation:
            h.deviations.append(deviation)
            ctx.events.add("harness", "host_deviation", workload=workload.name, detail=deviation)
        task = _Task(
            cid, workload.name, ctx.scenario.name, handle=h, log=ctx.workdir / f"{workload.name}.log"
        )
        with self._lock:
            self._tasks[cid] = task
        pidfile = ctx.workdir / f"{workload.name}.pid"
        limit = layout.memory_limit_bytes if workload.placement != "host" else None
        args = ctr_run_args(
            self._image,
            cid,
            argv,
            cgroup="/" + cg_rel,
            labels={
                LABEL: "true",
                LABEL_RUN: ctx.run_id,
                LABEL_WORKLOAD: workload.name,
                LABEL_SCENARIO: ctx.scenario.name,
            },
            log=task.log or ctx.workdir / "x.log",
            pidfile=pidfile,
            runc_root=self.instance.runc_root,
            memory_limit=limit,
        )
        run_ledger(ctx.run_id).add("containerd-container", **self._ledger_key(cid, ctx.run_id))
        h.t_start_mono = time.monotonic()
        h.t_start_wall = time.time()
        try:
            try:
                self._ctr(*args, timeout=60)
            except HarnessError as exc:
                if "not found" not in str(exc) or "image" not in str(exc):
                    raise
                self._image_ready = False  # removed under us: import it again, once
                self.image()
                self._ctr(*args, timeout=60)
        except HarnessError as exc:
            raise HostError(f"containerd could not start {workload.name}: {exc}") from None
        t_ran = time.monotonic()
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            raise HostError(f"ctr run wrote no pid for {workload.name} ({pidfile})") from None
        h.pids = [pid]
        if workload.placement == "pod":  # ctr sets no swap limit: write what the kubelet would
            ctx.tree.set_swap(
                layout.cgroup, layout.swap_max_bytes if ctx.tree.version == 2 else layout.memsw_limit_bytes
            )
        self._set_oom_score_adj(ctx, h, applied, t_ran)
        ctx.events.add(
            "harness", "launched", workload=workload.name, pid=pid, cgroup=str(h.cgroup_abs), detail=cid
        )
        task.reader = threading.Thread(target=self._reader, args=(ctx, task), daemon=True)
        task.reader.start()
        return h

    def _set_oom_score_adj(self, ctx: ScenarioContext, h: Handle, value: int, t_ran: float) -> None:
        """Give the task (init and anything it forked) the model's oom_score_adj; verify it."""
        pids = sorted({*h.pids, *iter_pids(h.cgroup_abs)})
        done, errors = write_oom_score_adj(pids, value)
        t_set = time.monotonic()
        got = read_oom_score_adj(h.pids[0])
        h.oom_score_adj_timing = OomScoreAdjTiming(
            set_mono=t_set, after_start_s=t_set - h.t_start_mono, after_run_s=t_set - t_ran
        )
        ctx.events.add(
            "harness",
            "oom_score_adj_set",
            workload=h.workload,
            pid=h.pids[0],
            oom_score_adj=got,
            detail=json.dumps(
                {"pids": done, "errors": errors, "after_ctr_run_s": round(t_set - t_ran, 6), "asked": value}
            ),
        )
        if errors or (got is not None and got != value):
            msg = f"oom_score_adj {value} could not be set on every process ({'; '.join(errors) or got})"
            h.deviations.append(msg)
            ctx.events.add("harness", "host_deviation", workload=h.workload, detail=msg)

    def _reader(self, ctx: ScenarioContext, task: _Task) -> None:
        """Follow the task's log file (written by the shim) for the leak program's JSON lines."""
        h, path = task.handle, task.log
        assert h is not None and path is not None
        f = None
        buf = b""
        idle_after_exit = 0
        while True:
            if f is None:
                try:
                    f = open(path, "rb")  # noqa: SIM115 - closed below
                except FileNotFoundError:
                    if task.reader_stop.wait(0.02):
                        return
                    continue
            chunk = f.read(65536)
            if chunk:
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self._line(ctx, h, line)
                continue
            # EOF: wait for more unless the task is over and its output drained
            if task.exit_event is not None or task.reader_stop.is_set():
                idle_after_exit += 1
                if idle_after_exit > 10 or task.reader_stop.is_set():
                    break
            if task.reader_stop.wait(0.02):
                idle_after_exit = 100
        if buf.strip():
            self._line(ctx, h, buf)
        f.close()

    @staticmethod
    def _line(ctx: ScenarioContext, h: Handle, raw: bytes) -> None:
        ev = h.take_line(raw.decode(errors="replace"))
        if ev is None:
            return
        detail = ev.get("message")
        timing = h.oom_score_adj_timing
        if ev.get("event") == "start" and timing is not None and "mono_ns" in ev:
            # CLOCK_MONOTONIC in both: how long the program ran before its oom_score_adj was set
            # (negative: set before the program's first line)
            lag = timing.set_mono - int(ev["mono_ns"]) / 1e9
            timing.after_program_start_s = lag
            detail = json.dumps({"oom_score_adj_set_after_program_start_s": round(lag, 6)})
        h.add_milestone(ctx.events, ev, pid=h.pids[0] if h.pids else None, detail=detail)

    def _exit_info(self, task: _Task) -> ExitInfo | None:
        ev = task.exit_event
        if ev is None:
            return None
        h = task.handle
        code = int(ev.payload.get("exit_status", 0))  # protobuf JSON leaves out a zero status
        exited = parse_rfc3339(str(ev.payload.get("exited_at", ""))) or ev.t_wall
        return ExitInfo(
            t_mono=min(wall_to_mono(exited), time.monotonic()),
            t_wall=exited,
            exit_code=code,
            signal=code - 128 if code > 128 else None,
            runtime_oom_killed=bool(task.oom_events),
            stopped_by_harness=bool(h and h.stop_requested),
        )

    def poll(self, ctx: ScenarioContext, handle: Handle) -> ExitInfo | None:
        if handle.exit:
            return handle.exit
        task = self._tasks.get(handle.container_id or "")
        if task is None:
            return None
        if task.exit_event is None and (self.follower is None or not self.follower.running):
            self._start_events(ctx)
            self._reconcile([task])
        info = self._exit_info(task)
        if info is None:
            return None
        handle.exit = info
        ctx.events.add(
            "runtime",
            "exit",
            workload=handle.workload,
            pid=handle.pids[0] if handle.pids else None,
            exit_code=info.exit_code,
            detail=json.dumps(
                {
                    "containerd_oom_events": len(task.oom_events),
                    "exited_at": task.exit_event.payload.get("exited_at") if task.exit_event else None,
                }
            ),
        )
        return info

    def _reconcile(self, tasks: list[_Task]) -> None:
        """Exit statuses the event stream missed: ``ctr task ls`` then ``ctr task delete`` (its warning)."""
        r = self._ctr("tasks", "ls", check=False)
        stopped = {ln.split()[0] for ln in r.stdout.splitlines()[1:] if ln.split()[-1:] == ["STOPPED"]}
        for t in tasks:
            if t.exit_event is not None or t.cid not in stopped:
                continue
            d = self._ctr("tasks", "delete", t.cid, check=False)
            m = re.search(r"exit code (\d+)", d.stderr)
            t.exit_event = CtrEvent(
                time.time(),
                self.namespace,
                "/tasks/exit",
                {"container_id": t.cid, "exit_status": int(m.group(1)) if m else 0, "reconciled": True},
            )

    def stop(self, ctx: ScenarioContext, handle: Handle, timeout: float = 5.0) -> None:
        task = self._tasks.get(handle.container_id or "")
        if task is None or task.exit_event is not None:
            return
        handle.stop_requested = True
        self._ctr("tasks", "kill", "--signal", "SIGTERM", task.cid, check=False)
        deadline = time.monotonic() + timeout
        while task.exit_event is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if task.exit_event is None:
            self._ctr("tasks", "kill", "--all", "--signal", "SIGKILL", task.cid, check=False)
            deadline = time.monotonic() + 5
            while task.exit_event is None and time.monotonic() < deadline:
                time.sleep(0.02)
            if task.exit_event is None:
                self._reconcile([task])

    def _ledger_key(self, cid: str, run_id: str) -> dict[str, Any]:
        """How a run's ledger names one of its containers (harness.owned): the instance, namespace,
        id and run (removed after a kill only while its run label still says so)."""
        inst = self.instance
        return {
            "root": str(inst.root),
            "state": str(inst.state),
            "socket": str(inst.socket),
            "namespace": self.namespace,
            "id": cid,
            "run": run_id,
        }

    def teardown(self, ctx: ScenarioContext) -> list[str]:
        mine = [t for t in self._tasks.values() if t.scenario == ctx.scenario.name]
        if mine and self.engine is not None and not answers(self.instance):
            # containerd died under the scenario: every ctr call would wait for its dial timeout;
            # the ledger keeps the containers for `harness cleanup` (which starts containerd again)
            failed = [f"containerd task {t.cid}: not removed, containerd does not answer" for t in mine]
        else:
            failed = self._remove([t.cid for t in mine])
        led = run_ledger(ctx.run_id)
        for t in mine:
            if not any(t.cid in f for f in failed):
                led.release("containerd-container", **self._ledger_key(t.cid, ctx.run_id))
        for t in mine:
            t.reader_stop.set()
            if t.reader is not None:
                t.reader.join(timeout=2)
            # an OOM notification that arrived after the exit was polled still counts
            h = t.handle
            if h is not None and h.exit is not None and t.oom_events:
                h.exit.runtime_oom_killed = True
            with self._lock:
                self._tasks.pop(t.cid, None)
        return failed + ctx.tree.remove()

    def _remove(self, cids: list[str]) -> list[str]:
        """Kill and delete the tasks, then the containers with their snapshots."""
        return remove_containers(self.instance, self.namespace, cids) if cids else []

    def health(self) -> list[str]:
        if self.engine is None or answers(self.instance):
            return []
        return [f"containerd does not answer on {self.instance.socket} (log {self.instance.log_path})"]

    def close(self) -> None:
        """End of the run: stop ``ctr events`` (by pid); this run stops using the engine, and the
        last user of an engine started on demand stops it (never under another run)."""
        if self.follower is not None:
            self.follower.stop()
            self.follower = None
        if self.engine is not None:
            remove_user(engine_owner(self.instance))
            failed = stop_if_unused(self.engine)
            if failed:
                raise HostError("containerd engine: " + "; ".join(failed))

    # -- leftovers
    @classmethod
    def cleanup_all(cls) -> list[str]:
        """Remove the tasks and containers (with their snapshots) that runs no longer alive recorded
        in their ledgers (harness.owned), in whichever instance they were (this backend's or the
        cluster's, never ``k8s.io``), then those runs' cgroups. A foreign task, container or cgroup
        is never touched. The imported images stay (a cache, as with Docker)."""
        started: dict[str, ContainerdHandle] = {}

        def remove(e: dict[str, Any]) -> str | None:
            sock = str(e.get("socket"))
            try:
                inst = ContainerdInstance(
                    root=Path(str(e["root"])), state=Path(str(e["state"])), socket=Path(sock)
                )
                ns = check_namespace(str(e.get("namespace")))
            except (KeyError, HarnessError) as exc:
                return f"bad ledger entry {e}: {exc}"
            meta = inst.root / "io.containerd.metadata.v1.bolt" / "meta.db"
            if not answers(inst):
                if not meta.exists():
                    return None  # never started: nothing of it can exist
                try:
                    started[sock] = ensure_containerd(inst, on_demand_start=True)
                except HarnessError as exc:
                    return f"containerd {sock}: {str(exc).splitlines()[0]}"
            cid = str(e.get("id"))
            labels = ctr(inst, "containers", "info", cid, namespace=ns, check=False)
            if labels.returncode != 0:
                return None  # no such container (a snapshot of a half-made one is removed below)
            with contextlib.suppress(ValueError):
                info = json.loads(labels.stdout)
                if (info.get("Labels") or {}).get(LABEL_RUN) != e.get("run"):
                    return None  # the id belongs to something else now: not ours
            left = remove_containers(inst, ns, [cid])
            return "; ".join(left) or None

        failed = sweep({"containerd-container": remove})
        for h in started.values():
            failed += stop_if_unused(h)
        inst = default_instance()
        if (
            not failed
            and answers(inst)
            and not ctr(inst, "containers", "ls", "-q", namespace=NAMESPACE).stdout.split()
        ):
            # the backend's own instance, started on demand by a run that was killed: nobody uses it
            # and nothing runs in it (stop_if_unused checks users and who started it)
            failed += stop_if_unused(ContainerdHandle(inst, pid=read_pid(inst.pidfile_path)))
        return failed + sweep_host()


def remove_containers(inst: Any, namespace: str, cids: list[str]) -> list[str]:
    """Kill and delete these tasks, then the containers with their snapshots; returns what stayed."""

    def run(*a: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return ctr(inst, *a, namespace=namespace, check=False, timeout=timeout)

    failed: list[str] = []
    running = set(run("tasks", "ls", "-q").stdout.split()) & set(cids)
    for cid in running:
        run("tasks", "kill", "--all", "--signal", "SIGKILL", cid)
    if running:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rows = [ln.split() for ln in run("tasks", "ls").stdout.splitlines()[1:]]
            if not any(r and r[0] in running and r[-1] == "RUNNING" for r in rows):
                break
            time.sleep(0.05)
    present_tasks = set(run("tasks", "ls", "-q").stdout.split()) & set(cids)
    if present_tasks:
        r = run("tasks", "delete", "--force", *sorted(present_tasks))
        left = set(run("tasks", "ls", "-q").stdout.split()) & set(cids)
        failed += [f"containerd task {c}: {r.stderr.strip()[-300:]}" for c in sorted(left)]
    present = set(run("containers", "ls", "-q").stdout.split()) & set(cids)
    if present:
        r = run("containers", "delete", *sorted(present))
        left = set(run("containers", "ls", "-q").stdout.split()) & set(cids)
        failed += [f"containerd container {c}: {r.stderr.strip()[-300:]}" for c in sorted(left)]
    return failed


def cleanup_namespace(inst: Any, namespace: str = NAMESPACE, *, images: bool = False) -> list[str]:
    """Delete every task, container and container snapshot in ``namespace`` (and its images and the
    namespace itself with ``images``); returns what stayed."""

    check_namespace(namespace)

    def run(*a: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return ctr(inst, *a, namespace=namespace, check=check, timeout=timeout)

    failed: list[str] = []
    containers = run("containers", "ls", "-q").stdout.split()
    tasks = run("tasks", "ls", "-q").stdout.split()
    for cid in tasks:
        run("tasks", "kill", "--all", "--signal", "SIGKILL", cid)
    if tasks:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            states = [ln.split() for ln in run("tasks", "ls").stdout.splitlines()[1:]]
            if all(s[-1] != "RUNNING" for s in states if s):
                break
            time.sleep(0.05)
        run("tasks", "delete", "--force", *tasks)
    if containers:
        run("containers", "delete", *containers)
    # snapshots of containers that never got (or lost) their container record
    snaps = [ln.split() for ln in run("snapshots", "ls").stdout.splitlines()[1:]]
    for s in snaps:
        if s and s[0].startswith(CONTAINER_PREFIX) and s[-1].lower() == "active":
            run("snapshots", "rm", s[0])
    if images:
        refs = run("images", "ls", "-q").stdout.split()
        if refs:
            run("images", "rm", "--sync", *refs)
    failed += [f"containerd task {t} ({namespace})" for t in run("tasks", "ls", "-q").stdout.split()]
    failed += [
        f"containerd container {c} ({namespace})" for c in run("containers", "ls", "-q").stdout.split()
    ]
    failed += [
        f"containerd snapshot {key} ({namespace})" for key in active_snapshots(inst, namespace, images=images)
    ]
    if images and not failed:
        run("namespaces", "remove", namespace)
    return failed


def active_snapshots(inst: Any, namespace: str = NAMESPACE, *, images: bool = False) -> list[str]:
    """Keys of the snapshots left in ``namespace``: containers' (Active) ones, or all with ``images``."""

    rows = [ln.split() for ln in ctr(inst, "snapshots", "ls", namespace=namespace).stdout.splitlines()[1:]]
    return [r[0] for r in rows if r and (images or r[-1].lower() != "committed")]
