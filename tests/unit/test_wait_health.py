"""The wait step's daemon checks (``harness.scenario.steps.wait_for_workloads``) against a scripted
backend: a daemon down at two checks in a row ends the wait, is recorded once and stops nothing
through it; one slow answer does not end a scenario."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from harness.launch.base import ExitInfo, Handle
from harness.scenario import steps
from harness.scenario.pipeline import node_stall_end


class _Backend:
    name = "scripted"

    def __init__(self, health: list[list[str]], exit_after_s: float | None = None) -> None:
        self.answers = list(health)
        self.exit_after_s = exit_after_s
        self.checks = 0
        self.stopped: list[str] = []
        self.t0 = time.monotonic()

    def health(self) -> list[str]:
        self.checks += 1
        return self.answers.pop(0) if self.answers else []

    def poll(self, ctx: Any, h: Handle) -> ExitInfo | None:
        if (
            h.exit is None
            and self.exit_after_s is not None
            and time.monotonic() - self.t0 > self.exit_after_s
        ):
            h.exit = ExitInfo(time.monotonic(), time.time(), 0, None)
        return h.exit

    def stop(self, ctx: Any, h: Handle) -> None:
        self.stopped.append(h.workload)
        h.exit = ExitInfo(time.monotonic(), time.time(), 143, 15, stopped_by_harness=True)


class _Events:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, source: str, kind: str, **kw: Any) -> None:
        self.rows.append({"source": source, "kind": kind, **kw})


def _live_and_run(backend: _Backend, timeout_s: float, exhausts_node: bool = False) -> tuple[Any, Any]:
    h = Handle(workload="leaker", backend="scripted", cgroup="x", cgroup_abs=Path("/nonexistent/cgroup"))
    sc = SimpleNamespace(name="s1", timeout_s=timeout_s, launch="serial", exhausts_node=exhausts_node)
    live = SimpleNamespace(
        resolved=SimpleNamespace(scenario=sc),
        ctx=SimpleNamespace(t0_mono=time.monotonic()),
        handles={"leaker": h},
        host_failures=[],
        stalls=[],
        oom_kills_after={},
    )
    said: list[str] = []
    run = SimpleNamespace(
        backend=backend,
        events=_Events(),
        progress=SimpleNamespace(say=said.append, tick=lambda *a, **k: None),
        cgroup_version=1,
        said=said,
    )
    return live, run


def test_a_daemon_down_twice_in_a_row_ends_the_wait_and_stops_nothing_through_it() -> None:
    dead = ["containerd does not answer on /run/x.sock"]
    backend = _Backend([[], dead, dead])
    live, run = _live_and_run(backend, timeout_s=30)
    t0 = time.monotonic()
    steps.wait_for_workloads(live, run)
    assert time.monotonic() - t0 < 10, "the wait ended at the second failed check, not the timeout"
    assert live.host_failures == dead and backend.checks == 3
    assert backend.stopped == [], "nothing is stopped through a dead daemon"
    assert live.handles["leaker"].exit is None  # judged on the evidence so far
    failures = [r for r in run.events.rows if r["kind"] == "host_failure"]
    assert len(failures) == 1 and failures[0]["scenario"] == "s1" and "containerd" in failures[0]["detail"]
    assert any("the node failed during scenario s1" in s for s in run.said)


def test_one_failed_check_is_not_a_dead_daemon() -> None:
    backend = _Backend([[], ["the kubelet's healthz does not answer"], []], exit_after_s=4.5)
    live, run = _live_and_run(backend, timeout_s=30)
    steps.wait_for_workloads(live, run)
    assert live.host_failures == [] and backend.checks >= 3
    assert not [r for r in run.events.rows if r["kind"] == "host_failure"]
    assert live.handles["leaker"].exit is not None and backend.stopped == []


def test_a_healthy_node_waits_to_the_timeout_and_stops_what_still_runs() -> None:
    backend = _Backend([])
    live, run = _live_and_run(backend, timeout_s=2.5)
    steps.wait_for_workloads(live, run)
    assert live.host_failures == [] and backend.stopped == ["leaker"]
    assert 1 <= backend.checks <= 3  # first at once, then every HEALTH_EVERY_S (not at every poll)


def test_a_node_run_out_of_memory_on_purpose_may_stall_but_not_lose_a_daemon() -> None:
    """exhaustsNode: the thrashing node's daemons stop answering for a while (recorded, the wait goes
    on); a daemon that is gone still ends the wait."""
    stall = ["the kubelet's healthz does not answer (log x)"]
    backend = _Backend([[], stall, stall, stall, []], exit_after_s=9.0)
    live, run = _live_and_run(backend, timeout_s=30, exhausts_node=True)
    steps.wait_for_workloads(live, run)
    assert live.host_failures == [] and live.handles["leaker"].exit is not None
    kinds = [r["kind"] for r in run.events.rows]
    assert kinds.count("node_stalled") == 1 and kinds.count("node_answers_again") == 1
    assert "host_failure" not in kinds
    # the wait keeps the stall, and the judge's bound is its end (pipeline.node_stall_end)
    ((start, end),) = live.stalls
    assert live.ctx.t0_mono < start < end
    assert node_stall_end(live) == end - live.ctx.t0_mono
    # a node still stalled when its workloads ended: the stall is closed at the wait's end
    backend = _Backend([[], stall, stall, stall, stall, stall, stall], exit_after_s=4.0)
    live, run = _live_and_run(backend, timeout_s=30, exhausts_node=True)
    steps.wait_for_workloads(live, run)
    ((start, end),) = live.stalls
    assert start < end <= time.monotonic()
    assert [r["kind"] for r in run.events.rows].count("node_answers_again") == 0
    no_stall, _ = _live_and_run(_Backend([]), timeout_s=1)
    assert node_stall_end(no_stall) is None
    dead = ["kubelet is not running (pid file x, log y)"]
    backend = _Backend([[], dead, dead])
    live, run = _live_and_run(backend, timeout_s=30, exhausts_node=True)
    steps.wait_for_workloads(live, run)
    assert live.host_failures == dead
