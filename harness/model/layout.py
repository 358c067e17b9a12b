"""Where each workload of a scenario lives on the modelled node: cgroup paths, memory limits and
oom_score_adj, as the kubelet (or the suite, for host and container workloads) sets them.

Backends build this tree (``node_layout``); the simulator (``model.predict``) starts every timeline
from it (``place_workloads``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.config.kubelet import KubeletConfiguration
from harness.config.node import SUPPORTED_MINORS, NodeFacts
from harness.config.pod import Pod
from harness.config.suite import Scenario, Workload
from harness.errors import HarnessError
from harness.model import cgroups as cg
from harness.model import node as nodemodel
from harness.model import oom, qos


@dataclass
class PlacedWorkload:
    """A workload's static place on the node (the same on every simulated timeline)."""

    spec: Workload
    pod: Pod | None
    cgroups: list[str]  # path from node root down to the workload's own cgroup
    oom_score_adj: int  # what the kernel uses on this host
    asked_oom_score_adj: int  # what the kubelet (or the suite) asks for
    qos: str | None
    heap_cap_bytes: int | None = None
    oom_group: bool = False
    # its container's (v2 memory.swap.max, v1 memory.memsw.limit_in_bytes) as the kubelet asks (model.swap)
    swap: tuple[int | None, int | None] = (None, None)


def _workload_cgroups(w: Workload, pod: Pod | None, qos: str | None) -> list[str]:
    if w.placement == "pod" and pod is not None:
        tier = {"Guaranteed": None, "Burstable": "burstable", "BestEffort": "besteffort"}[qos or "BestEffort"]
        parts = ["kubepods"] + ([f"kubepods/{tier}"] if tier else [])
        podcg = f"{parts[-1]}/pod{pod.uid}"
        return ["", *parts, podcg, f"{podcg}/{pod.spec.containers[0].name}"]
    if w.placement == "container":
        return ["", f"containers/{w.name}"]
    return ["", f"system/{w.name}"]


def place_workloads(
    scenario: Scenario, profile: KubeletConfiguration, facts: NodeFacts, kubelet: bool
) -> tuple[dict[str, PlacedWorkload], dict[str, int | None], list[str], dict[str, Any]]:
    minor = facts.kubelet_minor
    alloc = nodemodel.node_allocatable(profile, facts)
    notes: list[str] = []
    limits: dict[str, int | None] = {"": facts.memory_capacity_bytes}
    kubepods_limit = alloc.kubepods_memory_limit if profile.cgroups_per_qos else None
    limits["kubepods"] = kubepods_limit
    pods: list[Pod] = []
    ws: dict[str, PlacedWorkload] = {}
    for w in scenario.workloads:
        pod = w.to_pod() if w.placement == "pod" else None
        q = qos.pod_qos(pod, profile, minor) if pod else None
        if pod:
            pods.append(pod)
            adj = oom.container_oom_score_adj(
                pod, pod.spec.containers[0].name, facts.memory_capacity_bytes, profile, minor
            )
        else:
            adj = w.oom_score_adj
        eff_adj = adj
        if adj < 0 and not facts.negative_oom_score_adj:
            eff_adj = 0
            notes.append(
                f"{w.name}: oom_score_adj {adj} cannot be written on this host (no CAP_SYS_RESOURCE); "
                "the kernel will use 0"
            )
        ws[w.name] = PlacedWorkload(
            spec=w,
            pod=pod,
            cgroups=_workload_cgroups(w, pod, q),
            oom_score_adj=eff_adj,
            asked_oom_score_adj=adj,
            qos=q,
        )
    swaps: dict[str, tuple[int | None, int | None]] = {}
    if pods:
        for v in cg.qos_cgroups(profile, facts, pods):
            limits[v.path] = v.memory_limit_bytes
        for pod in pods:
            pv = cg.pod_cgroup(pod, profile, facts)
            limits[pv.path] = pv.memory_limit_bytes
            for cv in cg.container_cgroups(pod, profile, facts):
                limits[cv.path] = cv.memory_limit_bytes
                swaps[cv.path] = (cv.swap_max_bytes, cv.memsw_limit_bytes)
    group = oom.container_oom_group(profile, facts)
    for s in ws.values():
        own = s.cgroups[-1]
        if s.spec.placement == "container":
            limits[own] = s.spec.memory_limit_bytes or None
        elif s.spec.placement == "host":
            limits[own] = None
        s.oom_group = group and s.spec.placement == "pod"
        if s.spec.placement == "pod":
            s.swap = swaps.get(own, (None, None))
        if s.spec.leak.heap_cap_percent is not None:
            lim = limits.get(own)
            if lim:
                s.heap_cap_bytes = lim * s.spec.leak.heap_cap_percent // 100
            else:
                notes.append(f"{s.spec.name}: heap cap set but its cgroup has no memory limit; cap inactive")
    node_info = {
        "capacity_bytes": alloc.memory_capacity,
        "allocatable_bytes": alloc.allocatable_memory,
        "kubepods_limit_bytes": kubepods_limit,
        "kubelet": kubelet,
    }
    return ws, limits, notes, node_info


@dataclass
class WorkloadLayout:
    name: str
    placement: str
    cgroup: str  # relative to the node root, e.g. "kubepods/burstable/pod<uid>/leaker"
    pod_cgroup: str | None
    qos: str | None
    oom_score_adj: int  # what the kubelet/runtime (or the suite, for host workloads) asks for
    effective_oom_score_adj: int  # what the kernel will use on this host
    memory_limit_bytes: int | None
    oom_group: bool
    # the container's swap files as the kubelet asks for them (model.swap); None = not written
    swap_max_bytes: int | None = None  # cgroup v2 memory.swap.max
    memsw_limit_bytes: int | None = None  # cgroup v1 memory.memsw.limit_in_bytes


@dataclass
class NodeLayout:
    """The cgroup tree the harness builds for a scenario and the model's values in it."""

    limits: dict[str, int | None]  # cgroup path relative to the node root ("" = node) -> memory limit
    workloads: dict[str, WorkloadLayout]
    notes: list[str]
    node: dict[str, Any]

    @property
    def swap(self) -> dict[str, tuple[int | None, int | None]]:
        """Own cgroup of each pod workload -> (v2 memory.swap.max, v1 memory.memsw.limit_in_bytes)."""
        return {
            w.cgroup: (w.swap_max_bytes, w.memsw_limit_bytes)
            for w in self.workloads.values()
            if w.swap_max_bytes is not None or w.memsw_limit_bytes is not None
        }


def node_layout(scenario: Scenario, *, kubelet: bool = False) -> NodeLayout:
    """Cgroup paths, memory limits and oom_score_adj of every workload of a scenario."""
    assert scenario.profile is not None and scenario.node is not None, "load the suite with load_suite()"
    ws, limits, notes, node_info = place_workloads(scenario, scenario.profile, scenario.node, kubelet)
    out: dict[str, WorkloadLayout] = {}
    for name, s in ws.items():
        out[name] = WorkloadLayout(
            name=name,
            placement=s.spec.placement,
            cgroup=s.cgroups[-1],
            pod_cgroup=s.cgroups[-2] if s.spec.placement == "pod" else None,
            qos=s.qos,
            oom_score_adj=s.asked_oom_score_adj,
            effective_oom_score_adj=s.oom_score_adj,
            memory_limit_bytes=limits.get(s.cgroups[-1]),
            oom_group=s.oom_group,
            swap_max_bytes=s.swap[0],
            memsw_limit_bytes=s.swap[1],
        )
    return NodeLayout(limits=limits, workloads=out, notes=notes, node=node_info)


@dataclass(frozen=True)
class ModelLimit:
    """The model's memory limit of one sampled cgroup (None: no limit), and whether the model gives
    the same on every kubelet version it covers, on the same node."""

    value: int | None
    same_in_every_version: bool


def sampled_limits(scenario: Scenario, *, kubelet: bool = False) -> dict[str, ModelLimit]:
    """The model's limit of kubepods and of each workload's own cgroup (the sampler's names), with
    whether it depends on the kubelet's version (``config.node.SUPPORTED_MINORS``; a version whose
    layout cannot be computed counts as differing). ``compare`` tells a host difference from a
    kubelet change with it: a value that differs between two runs, each its own model's, and that
    no kubelet version changes, comes from the nodes."""
    assert scenario.node is not None
    own = node_layout(scenario, kubelet=kubelet)

    def limits(layout: NodeLayout) -> dict[str, int | None]:
        out = {w: wl.memory_limit_bytes for w, wl in layout.workloads.items()}
        if "kubepods" in layout.limits:
            out["kubepods"] = layout.limits["kubepods"]
        return out

    mine = limits(own)
    same = dict.fromkeys(mine, True)
    for minor in SUPPORTED_MINORS:
        node = scenario.node.model_copy(update={"kubelet_version": f"1.{minor}"})
        try:
            other = limits(node_layout(scenario.model_copy(update={"node": node}), kubelet=kubelet))
        except (HarnessError, ValueError):  # this version refuses the profile: not the same
            other = {}
        for k, v in mine.items():
            if k not in other or other[k] != v:
                same[k] = False
    return {k: ModelLimit(v, same[k]) for k, v in mine.items()}
