"""The topology manager's admit handler with the memory manager (Static) as a hint provider, and the
CPU manager's hints (kubelet-memory-spec.md §7, §6.6; k8s pkg/kubelet/cm/topologymanager/scope_container.go,
scope_pod.go ``Admit``, scope.go ``admitPolicyNone``).

It joins ``model.topology`` (hints, merge, policy) and ``model.memorymanager`` (state, allocation), which
do not know each other.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from harness import quantity
from harness.config.kubelet import KubeletConfiguration
from harness.config.node import NodeFacts
from harness.config.pod import Container, Pod
from harness.model import memorymanager as mm
from harness.model import qos, versions
from harness.model.memorymanager import MemoryManagerState
from harness.model.topology import (
    POLICY_NONE,
    TOPOLOGY_AFFINITY_ERROR,
    TOPOLOGY_AFFINITY_MESSAGE,
    TopologyHint,
    admit_hint,
    merge,
)


@dataclass
class AdmissionResult:
    admitted: bool
    reason: str
    message: str
    hints: dict[str, Any] = field(default_factory=dict)
    numa_affinity: list[int] | None = None


def _cpu_hints(
    pod: Pod, container: Container | None, profile: KubeletConfiguration, facts: NodeFacts, qos_class: str
) -> dict[str, list[TopologyHint] | None] | None:
    """CPU manager hints (static policy), simplified: Guaranteed + integer CPU request.

    Assumes no exclusive CPUs are assigned yet and reserved CPUs are the lowest ids
    (§8). ``preferred`` = minimal number of NUMA nodes whose CPUs can hold the request.
    """
    if profile.cpu_manager_policy != "static" or qos_class != "Guaranteed":
        return None
    cs = [container] if container is not None else list(pod.spec.containers)
    millis = 0
    for c in cs:
        if c is None:
            continue
        v = c.resources.requests.get("cpu", c.resources.limits.get("cpu"))
        millis += quantity.to_millis(v) if v is not None else 0
    if millis == 0 or millis % 1000:
        return None
    need = millis // 1000
    reserved_m = sum(
        quantity.to_millis(r["cpu"]) for r in (profile.kube_reserved, profile.system_reserved) if "cpu" in r
    )
    all_cpus = sorted(c for n in facts.numa_nodes for c in n.cpus)
    reserved = set(all_cpus[: -(-reserved_m // 1000)])
    nodes = sorted(n.id for n in facts.numa_nodes)
    by_node = {n.id: [c for c in n.cpus if c not in reserved] for n in facts.numa_nodes}
    total_by_node = {n.id: len(n.cpus) for n in facts.numa_nodes}
    hints: list[tuple[frozenset[int], int]] = []
    min_size = len(nodes)
    for k in range(1, len(nodes) + 1):
        for mask in itertools.combinations(nodes, k):
            if sum(total_by_node[n] for n in mask) >= need:
                min_size = min(min_size, k)
            if sum(len(by_node[n]) for n in mask) >= need:
                hints.append((frozenset(mask), k))
    return {"cpu": [TopologyHint(m, k == min_size) for m, k in hints]}


def admit_pod(
    pod: Pod,
    profile: KubeletConfiguration,
    facts: NodeFacts,
    state: MemoryManagerState | None,
    qos_class: str | None = None,
) -> tuple[AdmissionResult, MemoryManagerState | None]:
    """The topology-manager admit handler with the memory manager (Static) as hint provider.

    Container scope: for each init then app container, merge hints, reject with
    ``TopologyAffinityError`` if the policy refuses, then ``Allocate``. Pod scope: one merge with
    the pod's requests, the same hint for every container. Policy ``none``: no merge, every
    container is still allocated (scope.go ``admitPolicyNone``). Allocation errors become
    ``UnexpectedAdmissionError``. Returns the result and the new memory-manager state (the input
    state unchanged on rejection; ``None`` when the memory manager is not Static).
    """
    minor = facts.kubelet_minor
    policy = profile.topology_manager_policy
    numa_nodes = sorted(n.id for n in facts.numa_nodes)
    distances = {n.id: n.distances for n in facts.numa_nodes if n.distances} or None
    static = profile.memory_manager_static
    if static and state is None:
        state = mm.initial_state(profile, facts)
    start_state = state
    if qos_class is None:  # the caller may know it (``qos.pod_qos``)
        qos_class = qos.pod_qos(pod, profile, minor)
    pod_level = _pod_level_resources_skip(pod, profile, minor)
    guaranteed = static and qos_class == "Guaranteed" and not pod_level
    containers = list(pod.spec.init_containers) + list(pod.spec.containers)
    result = AdmissionResult(True, "", "")
    reuse = mm.PodReuse()

    def memory_hints(requests: dict[str, int]) -> dict[str, list[TopologyHint] | None] | None:
        if not guaranteed or state is None:
            return None
        return dict(mm.calculate_hints(state, requests, reuse.reusable))

    def reject(reason: str, message: str) -> tuple[AdmissionResult, MemoryManagerState | None]:
        return AdmissionResult(False, reason, message, result.hints, None), start_state

    pod_hint: TopologyHint | None = None
    if policy != POLICY_NONE and profile.topology_manager_scope == "pod":
        providers = [
            None,
            _cpu_hints(pod, None, profile, facts, qos_class),
            memory_hints(mm.pod_requests_for_hints(pod)),
        ]
        pod_hint = merge(policy, providers, numa_nodes, profile.topology_manager_policy_options, distances)
        result.hints["pod"] = pod_hint
        if not admit_hint(policy, pod_hint):
            return reject(TOPOLOGY_AFFINITY_ERROR, TOPOLOGY_AFFINITY_MESSAGE)
    affinity: set[int] = set()
    for c in containers:
        hint: TopologyHint | None = None
        if policy != POLICY_NONE:
            if pod_hint is not None:
                hint = pod_hint
            else:
                providers = [
                    None,
                    _cpu_hints(pod, c, profile, facts, qos_class),
                    memory_hints(mm.container_requests(c)),
                ]
                hint = merge(
                    policy, providers, numa_nodes, profile.topology_manager_policy_options, distances
                )
                result.hints[c.name] = hint
                if not admit_hint(policy, hint):
                    return reject(TOPOLOGY_AFFINITY_ERROR, TOPOLOGY_AFFINITY_MESSAGE)
        if guaranteed and state is not None:
            try:
                state = mm.allocate(
                    state, pod.uid, c.name, mm.container_requests(c), hint, pod=pod, reuse=reuse
                )
            except mm.AdmissionError as err:
                return reject(err.reason, err.message)
            for b in state.entries.get(pod.uid, {}).get(c.name, []):
                affinity.update(b.numa_affinity)
    result.numa_affinity = sorted(affinity) if affinity else None
    return result, state


def _pod_level_resources_skip(pod: Pod, profile: KubeletConfiguration, minor: int) -> bool:
    """Static memory manager skips pods with pod-level resources when the gate is on
    (policy_static.go ``IsPodLevelResourcesSet`` branch, seen in a 1.3x snapshot [version inferred])."""
    if pod.spec.resources is None:
        return False
    return bool(versions.gate_enabled("PodLevelResources", profile, minor))
