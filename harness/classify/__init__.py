"""One observed outcome per workload, from independent evidence.

Sources: the kernel log (oom-kill records: victim pid, ``oom_memcg`` = the OOM domain,
``task_memcg``), the memory cgroup's OOM-kill counter (``memory.oom_control`` /
``memory.events``), the workload's own output (``heap_cap``, ``max``, ``exit``), the
exit status and the runtime's view (Docker ``State.OOMKilled``, containerd ``/tasks/oom``), and
for pods the kubelet (phase/reason, events). An exit code alone never decides: a SIGKILL without a
kernel record or counter is ``unknown``, explained. Where sources disagree, the disagreement names
them (kmsg, the cgroup counter, Docker or containerd) and says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from harness.config.suite import HEAP_CAP_EXIT_CODE


@dataclass
class OomRecord:
    """An OOM kill as the kernel logged it (from harness.sample.kmsg)."""

    t_mono: float
    pid: int
    comm: str
    oom_memcg: str | None  # the cgroup whose limit was hit ("/" = global)
    task_memcg: str | None  # the victim's cgroup
    oom_score_adj: int | None = None
    anon_rss_bytes: int | None = None
    invoker_pid: int | None = None
    invoker_comm: str | None = None
    constraint: str | None = None


@dataclass
class WorkloadEvidence:
    name: str
    cgroup_abs: str  # absolute path of its own memory cgroup
    cgroup_rel: str  # path as the kernel prints it (relative to the hierarchy root, leading "/")
    own_scope: list[str]  # kernel paths that count as "its own" OOM domain (container, pod)
    pids: list[int]
    leaking: bool  # was still allocating when it died (not at its max)
    exit_code: int | None = None
    signal: int | None = None
    stopped_by_harness: bool = False
    runtime_oom_killed: bool | None = None
    runtime_name: str | None = None  # who reported runtime_oom_killed: "docker", "containerd"
    heap_cap_event: bool = False
    # when the program reported its heap cap, on its own monotonic clock (the host's: containers
    # share the kernel's CLOCK_MONOTONIC); it exits right after, before any runtime or kubelet
    # report of that exit arrives (seconds later on a loaded node)
    t_heap_cap_mono: float | None = None
    reached_max: bool = False
    oom_counter_delta: int | None = None  # own cgroup's oom_kill counter, end - start
    kmsg_kills: list[OomRecord] = field(default_factory=list)
    t_exit_mono: float | None = None
    kubelet_reason: str | None = None  # pod status reason (Evicted, OOMKilled, ...)
    kubelet_phase: str | None = None
    t_kubelet_mono: float | None = None
    admission_reason: str | None = None


@dataclass
class Outcome:
    workload: str
    outcome: str
    t_mono: float | None
    victim: bool
    evidence: list[str]
    sources: list[str]
    disagreements: list[str]
    oom_domain: str | None = None
    exit_code: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RUNTIME_VIEWS = {"docker": "Docker (State.OOMKilled)", "containerd": "containerd (/tasks/oom event)"}


def classify(ev: WorkloadEvidence) -> Outcome:
    evidence: list[str] = []
    sources: list[str] = []
    disagree: list[str] = []
    rt_source = ev.runtime_name or "runtime"
    rt_view = RUNTIME_VIEWS.get(ev.runtime_name or "", "the runtime")

    def out(outcome: str, t: float | None, victim: bool = False, domain: str | None = None) -> Outcome:
        return Outcome(ev.name, outcome, t, victim, evidence, sources, disagree, domain, ev.exit_code)

    if ev.admission_reason:
        evidence.append(f"kubelet rejected the pod at admission: {ev.admission_reason}")
        sources.append("kubelet")
        return out("rejected", ev.t_kubelet_mono)

    kills = [k for k in ev.kmsg_kills if k.pid in ev.pids or (k.task_memcg and k.task_memcg == ev.cgroup_rel)]
    if ev.kubelet_reason == "Evicted":
        sources.append("kubelet")
        if ev.kubelet_phase in (None, "Failed"):
            evidence.append("pod phase Failed, reason Evicted (kubelet)")
        else:
            evidence.append("the kubelet's Evicted event names the pod")
            disagree.append(
                f"pod status says phase {ev.kubelet_phase} without reason Evicted: its container exited 0 "
                "on the eviction's SIGTERM, and since 1.27 the phase follows the exit codes "
                "(kubernetes/kubernetes#118310)"
            )
        if kills:
            disagree.append(
                f"kernel also OOM-killed pid {kills[0].pid} in {kills[0].oom_memcg}: eviction and OOM raced"
            )
        return out("evicted", ev.t_kubelet_mono)

    counter = ev.oom_counter_delta
    if kills:
        k = kills[0]
        sources.append("kmsg")
        evidence.append(
            f"kernel oom-kill of pid {k.pid} ({k.comm}), oom_memcg={k.oom_memcg}, task_memcg={k.task_memcg}"
            + (f", oom_score_adj={k.oom_score_adj}" if k.oom_score_adj is not None else "")
        )
        if counter is not None:
            sources.append("memcg-counter")
            if counter > 0:
                evidence.append(f"its cgroup's oom_kill counter rose by {counter}")
            else:
                disagree.append("kmsg records a kill but the cgroup's oom_kill counter did not rise")
        if ev.runtime_oom_killed is not None:
            sources.append(rt_source)
            if not ev.runtime_oom_killed:
                disagree.append(
                    f"kmsg records the kill but {rt_view} did not report the container as OOM-killed"
                )
        own = k.oom_memcg in ev.own_scope
        domain = k.oom_memcg
        invoker_is_other = k.invoker_pid is not None and k.invoker_pid not in ev.pids
        victim = (not own) and (invoker_is_other or not ev.leaking)
        if victim:
            evidence.append(
                "killed in a wider OOM while not the one allocating"
                + (f" (invoked by pid {k.invoker_pid} {k.invoker_comm})" if k.invoker_pid else "")
            )
        return out("oom_killed" if own else "node_oom_killed", k.t_mono, victim, domain)

    if counter and counter > 0:
        sources.append("memcg-counter")
        evidence.append(f"its cgroup's oom_kill counter rose by {counter}, but the kernel log has no record")
        disagree.append("no kmsg oom-kill record matched its pids or cgroup")
        if ev.runtime_oom_killed is not None:
            sources.append(rt_source)
            if not ev.runtime_oom_killed:
                disagree.append(
                    f"the cgroup counter rose but {rt_view} did not report the container as OOM-killed"
                )
        return out("oom_killed", ev.t_exit_mono)

    if ev.runtime_oom_killed:
        sources.append(rt_source)
        if ev.exit_code == 0 or (ev.stopped_by_harness and ev.exit_code in (0, 143)):
            # cgroup v1: an OOM in an ancestor (kubepods, QoS tier, node) signals the
            # memory.oom_control eventfd of every cgroup below it (linux: mm/memcontrol.c
            # mem_cgroup_oom_notify walks the subtree), and the runtime marks all those
            # containers OOMKilled (Docker) or sends /tasks/oom for them (containerd's shim),
            # killed or not.
            disagree.append(
                f"{rt_view} reports an OOM but the program exited normally, and neither kmsg nor the "
                "cgroup's oom_kill counter shows a kill in its cgroup (an OOM in an ancestor cgroup "
                "notifies every cgroup below it)"
            )
        else:
            evidence.append(f"{rt_view} reports an OOM kill, but neither kmsg nor the counter confirm it")
            disagree.append(f"{rt_view} says OOM-killed; kmsg and the cgroup's oom_kill counter say nothing")
            return out("unknown", ev.t_exit_mono)

    if ev.heap_cap_event or ev.exit_code == HEAP_CAP_EXIT_CODE:
        sources.append("workload")
        evidence.append(f"the program reported its heap cap and exited {ev.exit_code}")
        if ev.exit_code != HEAP_CAP_EXIT_CODE:
            disagree.append(f"heap_cap event but exit code {ev.exit_code}")
        if ev.t_heap_cap_mono is not None:
            return out("runtime_failed", ev.t_heap_cap_mono)
        return out("runtime_failed", ev.t_exit_mono)

    if ev.exit_code is None:
        sources.append("harness")
        evidence.append("still running at the end of the scenario")
        return out("completed", None)
    if ev.stopped_by_harness and ev.exit_code in (0, 143, 137):
        # 137: it did not end on SIGTERM within the grace period and the runtime sent SIGKILL (a
        # task throttled in the kernel, e.g. at memory.high, acts on signals only between stalls)
        sources.append("harness")
        evidence.append(
            "survived until the harness stopped it at the scenario's deadline"
            + (" (it needed SIGKILL)" if ev.exit_code == 137 else "")
        )
        return out("completed", None)
    if ev.exit_code == 0:
        sources.append("workload")
        evidence.append("exited 0" + (" after reaching its maximum" if ev.reached_max else ""))
        return out("completed", ev.t_exit_mono)
    if ev.signal == 9 or ev.exit_code == 137:
        evidence.append("killed by SIGKILL (137) with no OOM record in the kernel log or the cgroup counter")
        return out("unknown", ev.t_exit_mono)
    evidence.append(f"exited {ev.exit_code} on its own")
    sources.append("workload")
    return out("runtime_failed", ev.t_exit_mono)
