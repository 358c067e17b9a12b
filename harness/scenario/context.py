"""The typed objects the scenario steps pass along."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.classify import Outcome
from harness.config.suite import Scenario
from harness.launch.base import Backend, EventSink, Handle, ScenarioContext
from harness.model.layout import NodeLayout
from harness.model.predict import Baseline, Prediction
from harness.progress import Progress
from harness.results import RunStore
from harness.sample.kmsg import KmsgFollower
from harness.sample.oomwatch import OomWatcher
from harness.sample.sampler import Sampler
from harness.verdict import Verdict


@dataclass
class RunContext:
    """What every scenario of a run shares: the backend, the run's sinks and samplers, the host."""

    run_id: str
    backend: Backend
    store: RunStore
    events: EventSink
    kmsg: KmsgFollower
    watcher: OomWatcher
    sampler: Sampler
    progress: Progress
    host: dict[str, Any]  # this host's facts, as recorded in run.json
    cgroup_version: int
    warm_up: str = "auto"  # auto | on | off (harness.hostperf.warm_up_scenario)


@dataclass(frozen=True)
class ResolvedScenario:
    """The suite's scenario as it runs here: ``scenario`` is a new object whose node is the backend's
    node (a real kubelet's memory, NUMA sizes and version; this host's oom_score_adj limits) and
    whose profile is derived where the scenario asks (pressureMargin)."""

    scenario: Scenario
    baseline: Baseline | None
    layout: NodeLayout


@dataclass
class LiveScenario:
    """A scenario while it runs: its backend context, workloads and sampled cgroups."""

    resolved: ResolvedScenario
    ctx: ScenarioContext
    workdir: Path
    handles: dict[str, Handle] = field(default_factory=dict)
    sampled: list[str] = field(default_factory=list)  # sampler keys
    oom_kills_before: dict[str, int] = field(default_factory=dict)
    oom_kills_after: dict[str, int | None] = field(default_factory=dict)
    host_failures: list[str] = field(default_factory=list)  # a daemon that died during the scenario
    # an exhaustsNode scenario's stalls of the node as the wait saw them: (start, end) in
    # CLOCK_MONOTONIC, a stall still on when the wait ended closed at that end
    stalls: list[tuple[float, float]] = field(default_factory=list)

    def resolved_again(self, resolved: ResolvedScenario) -> None:
        """The scenario resolved again (the node a restarted kubelet saw): the one place where the
        pipeline's view and the backend's context change together."""
        self.resolved = resolved
        self.ctx.scenario = resolved.scenario


@dataclass
class ScenarioResult:
    name: str
    prediction: Prediction  # as judged: as-run where the programs' lines allowed it
    outcomes: list[Outcome] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
