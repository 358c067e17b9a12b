"""The kubelet's memory-manager checkpoint against the model's state after the same admissions (S9, S10).

The model admits the running pods in launch order with their real uids (``model.admit.admit_pod``:
topology merge, then staticPolicy.Allocate), and the two states are compared entry by entry.
Each running container's ``cpuset.mems`` must be the NUMA nodes of its memory blocks: the kubelet
passes them to the runtime as ``CpusetMems`` (k8s: pkg/kubelet/cm/internal_container_lifecycle_linux.go
``PreCreateContainer``, from ``memoryManager.GetMemoryNUMANodes``); a container without blocks
gets none and inherits every node of its parent.
"""

from __future__ import annotations

from harness.config.suite import Scenario
from harness.launch.base import NodeObservations
from harness.model.admit import admit_pod
from harness.model.memorymanager import MemoryManagerState, compare_states, initial_state, parse_state_file
from harness.verdict import Verdict


def memory_manager_diffs(sc: Scenario, obs: NodeObservations) -> list[str]:
    assert sc.profile is not None and sc.node is not None
    if obs.memory_manager_state is None:
        return [obs.memory_manager_error or f"cannot read {obs.memory_manager_state_path}"]
    try:
        actual = parse_state_file(obs.memory_manager_state)
    except ValueError as exc:
        return [f"cannot read {obs.memory_manager_state_path}: {exc}"]
    workloads = {w.name: w for w in sc.workloads}
    state = None
    for p in obs.pods:
        if not p.admitted:
            continue
        pod = workloads[p.workload].to_pod(p.namespace).model_copy(deep=True)
        pod.metadata.uid = p.uid
        _, state = admit_pod(pod, sc.profile, sc.node, state)
    if state is None:
        state = initial_state(sc.profile, sc.node)
    return compare_states(state, actual) + cpuset_mems_diffs(sc, obs, state)


def parse_node_list(text: str) -> set[int]:
    """A kernel node list (``cpuset.mems``: "0", "0-1", "0,2-3") as a set."""
    out: set[int] = set()
    for part in text.strip().split(","):
        if "-" in part:
            a, b = part.split("-")
            out.update(range(int(a), int(b) + 1))
        elif part:
            out.add(int(part))
    return out


def cpuset_mems_diffs(sc: Scenario, obs: NodeObservations, state: MemoryManagerState) -> list[str]:
    assert sc.node is not None
    every = {n.id for n in sc.node.numa_nodes} or {0}
    workloads = {w.name: w for w in sc.workloads}
    out = []
    for p in obs.pods:
        if not p.admitted or p.container_id is None:
            continue
        container = workloads[p.workload].to_pod(p.namespace).spec.containers[0].name
        blocks = state.entries.get(p.uid, {}).get(container, [])
        expected = {n for b in blocks for n in b.numa_affinity} or every
        if p.cpuset_mems is None:
            out.append(f"{p.workload}: cpuset.mems unreadable (expected {_fmt(expected)})")
        elif parse_node_list(p.cpuset_mems) != expected:
            out.append(f"{p.workload}: cpuset.mems {p.cpuset_mems}, the model says {_fmt(expected)}")
    return out


def _fmt(nodes: set[int]) -> str:
    return ",".join(str(n) for n in sorted(nodes))


def memory_manager_verdict(sc: Scenario, obs: NodeObservations) -> Verdict:
    diffs = memory_manager_diffs(sc, obs)
    return Verdict.check(
        sc.name,
        "memory-manager-state",
        "state file as modelled",
        "as modelled" if not diffs else f"{len(diffs)} differences",
        not diffs,
        diffs,
    )
