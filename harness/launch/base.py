"""What every backend provides: start, watch, stop and remove workloads; and, as typed optional hooks
with defaults, what only some backends can tell (a real node's view, a kubelet's start, what the
kubelet created). The pipeline (``harness.scenario``) calls every hook on every backend; a backend
that has nothing to say returns the default."""

from __future__ import annotations

import json
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar

from harness.config.suite import Scenario, Workload
from harness.host.cgroups import CgroupTree
from harness.model.cgroupnames import Driver
from harness.model.layout import NodeLayout, WorkloadLayout
from harness.model.predict import Baseline
from harness.sample.kubeletlog import EvictionSync

REPO = Path(__file__).resolve().parents[2]
LABEL = "io.harness.managed"
LABEL_RUN = "io.harness.run"
LABEL_WORKLOAD = "io.harness.workload"
# The leak program's lines that become run events (every line stays in Handle.lines).
LEAK_MILESTONES = ("start", "max", "heap_cap", "exit", "error")


def leak_binary() -> Path:
    """The static leak program (``make -C workloads``); HARNESS_LEAK_BIN overrides."""
    return Path(os.environ.get("HARNESS_LEAK_BIN", REPO / "workloads" / "build" / "leak"))


@dataclass
class Check:
    """One sanity check of a backend (``harness doctor``)."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass
class ExitInfo:
    t_mono: float
    t_wall: float
    exit_code: int | None  # 0..255 (shell convention: 128+signal when killed)
    signal: int | None  # the signal that killed it, if known
    runtime_oom_killed: bool | None = None  # Docker State.OOMKilled, containerd /tasks/oom
    stopped_by_harness: bool = False


@dataclass
class PodRef:
    """The pod a workload runs in on a real kubelet (known once its container runs)."""

    name: str
    uid: str
    qos: str  # guaranteed, burstable, besteffort
    cgroup_abs: Path  # the kubelet's pod cgroup in the memory hierarchy


@dataclass
class KubeletView:
    """What the kubelet said about a workload's pod: its status and its events."""

    phase: str | None = None
    reason: str | None = None  # pod status reason or event reason: Evicted, OOMKilled, ...
    message: str | None = None
    admission_reason: str | None = None  # "<reason>: <message>" when refused at admission
    t_mono: float | None = None  # when the harness first saw the kubelet's word


@dataclass
class OomScoreAdjTiming:
    """When a runtime without an oom_score_adj option had the value written (containerd via ctr)."""

    set_mono: float
    after_start_s: float  # since the harness asked for the task
    after_run_s: float  # since the task was running
    after_program_start_s: float | None = None  # since the program's own start line (once seen)


@dataclass(frozen=True)
class NodeView:
    """How the node a backend runs on differs from the suite's modelled node (a real kubelet: this
    host's memory, each NUMA node as the kubelet saw it at its start, the kubelet's version)."""

    memory_capacity_bytes: int | None = None
    numa_memory_bytes: Mapping[str, int] = field(default_factory=dict)
    kubelet_version: str | None = None  # "1.33"


@dataclass(frozen=True)
class KubeletStart:
    """A kubelet (re)started for a scenario's profile: it runs, or it refused (scenario S9)."""

    started: bool
    seconds: float
    error: str = ""  # the kubelet's own error line when it refused
    log_tail: str = ""


@dataclass(frozen=True)
class ObservedPod:
    """A pod the kubelet admitted, as the verdicts need it: the workload's spec with these ids."""

    workload: str
    namespace: str
    uid: str
    container_id: str | None  # the runtime's directory name of its container (None: never ran)
    admitted: bool = True
    api_object: Mapping[str, Any] = field(default_factory=dict)  # the pod as the API server has it now
    # its container's cpuset.mems as the kernel shows it (e.g. "0-1"); None when unreadable
    cpuset_mems: str | None = None


@dataclass
class NodeObservations:
    """What the kubelet created for a scenario's pods, for the verdicts to judge (S8, S9)."""

    pods: list[ObservedPod] = field(default_factory=list)
    memory_manager_state: str | None = None  # the checkpoint file's text, None when unreadable
    memory_manager_state_path: str = ""
    memory_manager_error: str = ""
    cgroup_driver: Driver = "cgroupfs"  # how the kubelet named its cgroups (model.cgroupnames)
    # files whose kubelet value the harness's ceiling replaced: path -> (the kubelet's, the harness's)
    overwritten: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass
class Handle:
    workload: str
    backend: str
    cgroup: str  # node-relative model path, e.g. "kubepods/burstable/pod<uid>/leaker"
    cgroup_abs: Path  # the workload's own memory cgroup on this host
    pids: list[int] = field(default_factory=list)
    t_start_mono: float = 0.0
    t_start_wall: float = 0.0
    container_id: str | None = None
    asked_oom_score_adj: int | None = None
    applied_oom_score_adj: int | None = None
    deviations: list[str] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)  # the leak program's JSON events
    exit: ExitInfo | None = None
    stop_requested: bool = False
    pod: PodRef | None = None  # a real kubelet's pod (kubernetes backend)
    kubelet: KubeletView = field(default_factory=KubeletView)
    oom_score_adj_timing: OomScoreAdjTiming | None = None

    def last_event(self, kind: str) -> dict[str, Any] | None:
        for ev in reversed(self.lines):
            if ev.get("event") == kind:
                return ev
        return None

    @property
    def allocated(self) -> int:
        for ev in reversed(self.lines):
            if "allocated" in ev:
                return int(ev["allocated"])
        return 0

    def take_line(self, line: str) -> dict[str, Any] | None:
        """One line of the leak program's output: parsed, stamped with its receive time and kept
        in ``lines``; None when it is not one of the program's JSON events."""
        ev = parse_leak_line(line)
        if ev is not None:
            ev["t_mono_recv"] = time.monotonic()
            self.lines.append(ev)
        return ev

    def add_milestone(self, events: EventSink, ev: dict[str, Any], **fields: Any) -> None:
        """A leak program milestone (``LEAK_MILESTONES``) as a run event; ``fields`` override the
        event's own pid, allocated, resident and detail (its message)."""
        if ev.get("event") not in LEAK_MILESTONES:
            return
        row = {
            "workload": self.workload,
            "pid": ev.get("pid"),
            "allocated": ev.get("allocated"),
            "resident": ev.get("resident"),
            "detail": ev.get("message"),
        }
        row.update(fields)
        events.add("workload", str(ev["event"]), **row)


class EventSink:
    """Appends run events to ``progress/events.jsonl`` (flushed per event) and keeps them."""

    def __init__(self, path: Path | None) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._f: IO[str] | None = open(path, "a", buffering=1) if path else None  # noqa: SIM115

    def add(self, source: str, kind: str, **fields: Any) -> dict[str, Any]:
        ev = {"t_mono": time.monotonic(), "t_wall": time.time(), "source": source, "kind": kind, **fields}
        with self._lock:
            self.events.append(ev)
            if self._f:
                self._f.write(json.dumps(ev, default=str) + "\n")
        return ev

    def close(self) -> None:
        if self._f:
            self._f.close()
            self._f = None


@dataclass
class ScenarioContext:
    run_id: str
    scenario: Scenario
    layout: NodeLayout
    tree: CgroupTree
    events: EventSink
    workdir: Path  # scratch space on disk (page-cache files), removed at teardown
    negative_oom_score_adj: bool = True
    t0_mono: float = 0.0


class Backend(ABC):
    name: ClassVar[str] = "?"
    # A real kubelet decides admission and evictions (the model predicts with its eviction manager).
    kubelet: ClassVar[bool] = False
    # Seconds added on both sides of a predicted window. Planned timeline: how late workloads start
    # after the scenario's t = 0 plus one leak interval of quantisation. As-run timeline (each
    # program's real start and pace are known, ``model.schedule``): only how late the backend
    # reports what happened.
    launch_slack_s: ClassVar[float] = 1.0
    observation_slack_s: ClassVar[float] = 1.0

    @abstractmethod
    def sanity_checks(self) -> list[Check]: ...

    def versions(self) -> dict[str, Any]:
        """Versions of the engine, runtime or kubelet, for run.json."""
        return {}

    def node_view(self, host: Mapping[str, Any]) -> NodeView | None:
        """The real node where it differs from the suite's (None: the suite's node is the node);
        ``host`` is this host's facts as the run recorded them at its start."""
        return None

    def baseline(self) -> Baseline | None:
        """Memory the node already uses before a scenario (None: an empty, harness-made node)."""
        return None

    def prepare(self, ctx: ScenarioContext) -> KubeletStart | None:
        """Make the node ready for the scenario: by default build its cgroup tree with the model's
        limits. A backend that (re)starts a kubelet returns how that went (a refusal is an outcome)."""
        ctx.tree.create(ctx.layout.limits, swap=ctx.layout.swap)
        return None

    def eviction_syncs(self, ctx: ScenarioContext, until_wall: float) -> list[EvictionSync] | None:
        """The kubelet's eviction syncs since the scenario's start, from its log (None: no kubelet,
        or its log does not say)."""
        return None

    def observe_node(self, ctx: ScenarioContext, handles: Mapping[str, Handle]) -> NodeObservations | None:
        """What the kubelet created for the running workloads (None: no kubelet here)."""
        return None

    @abstractmethod
    def launch(self, ctx: ScenarioContext, workload: Workload, layout: WorkloadLayout) -> Handle: ...

    @abstractmethod
    def poll(self, ctx: ScenarioContext, handle: Handle) -> ExitInfo | None:
        """The workload's exit, once it has exited (None while running)."""

    @abstractmethod
    def stop(self, ctx: ScenarioContext, handle: Handle, timeout: float = 5.0) -> None: ...

    def launch_many(
        self,
        ctx: ScenarioContext,
        items: Sequence[tuple[Workload, WorkloadLayout]],
        on_started: Callable[[Handle], None],
    ) -> list[Handle]:
        """Start several workloads at once (a scenario with ``launch: parallel``); ``on_started`` is
        called with each handle as soon as it runs. By default one after the other, as ``launch``."""
        out = []
        for w, layout in items:
            h = self.launch(ctx, w, layout)
            on_started(h)
            out.append(h)
        return out

    def stop_many(self, ctx: ScenarioContext, handles: Sequence[Handle], timeout: float = 5.0) -> None:
        """Stop several workloads at once (``launch: parallel``); by default one after the other."""
        for h in handles:
            self.stop(ctx, h, timeout)

    def harness_limits(self) -> dict[str, int]:
        """Memory limits the harness itself may write over the kubelet's on the sampled cgroups
        (name -> bytes as the kernel shows them); compare counts such a value as the host's."""
        return {}

    def node_cgroups(self, ctx: ScenarioContext) -> list[tuple[str, str]]:
        """Node-level cgroups to sample, as (name, path below the memory hierarchy root)."""
        out = [("node", ctx.tree.rel(""))]
        if "kubepods" in ctx.layout.limits:
            out.append(("kubepods", ctx.tree.rel("kubepods")))
        return out

    def teardown(self, ctx: ScenarioContext) -> list[str]:
        """Remove everything of the scenario; returns what could not be removed."""
        return ctx.tree.remove()

    def close(self) -> None:
        """End of the run: release what the backend started (e.g. an engine)."""
        return None

    def health(self) -> list[str]:
        """What is wrong with the node's daemons now (empty: healthy), one line each, e.g. "containerd
        does not answer on /run/...". Checked between scenarios (harness.scenario.health)."""
        return []

    @classmethod
    def cleanup_all(cls) -> list[str]:
        """Remove what this backend left behind from any earlier run (by label/prefix)."""
        return []


def applied_oom_score_adj(asked: int, negative_ok: bool) -> tuple[int, str | None]:
    """What can be written on this host, and the deviation to record if it differs.

    Without CAP_SYS_RESOURCE the kernel refuses an oom_score_adj below the task's
    ``oom_score_adj_min`` (0 for a fresh task): linux fs/proc/base.c ``__set_oom_adj``.
    """
    if asked < 0 and not negative_ok:
        return 0, (
            f"oom_score_adj {asked} cannot be written on this host (no CAP_SYS_RESOURCE); "
            "the workload runs with 0"
        )
    return asked, None


def parse_leak_line(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None
