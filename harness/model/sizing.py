"""Workload sizes derived from the node as the kubelet sees it (``memoryFromNode``).

A scenario that names an outcome (S10: the memory manager refuses a pod NUMA node 0 cannot hold;
its twin without the memory manager admits a pod that fits allocatable) must exercise it on any
host: a fixed 8Gi pod was admitted on a fresh machine whose node 0 held all its memory. The size
is an expression over

- ``allocatable``: the node's allocatable memory (k8s: pkg/kubelet/cm/node_container_manager_linux.go
  status.allocatable: capacity - kubeReserved - systemReserved - evictionHard; ``model.node``);
- ``numa0Free`` (``numa1Free``, ... for each NUMA node): what the Static memory manager can give
  from that NUMA node, its memory minus its ``reservedMemory`` (k8s: pkg/kubelet/cm/memorymanager/policy_static.go
  ``getDefaultMachineState``: Allocatable = TotalMemSize - SystemReserved); without the Static
  policy, the node's memory.

plus or minus a quantity; a result that is not positive is an error naming the scenario.
"""

from __future__ import annotations

import re

from harness import quantity
from harness.config.kubelet import KubeletConfiguration
from harness.config.node import NodeFacts
from harness.config.suite import Scenario
from harness.errors import HarnessError
from harness.model.node import node_allocatable

_EXPR = re.compile(r"^\s*(allocatable|numa\d+Free)\s*(?:([+-])\s*([0-9.]+[A-Za-z]*))?\s*$")


def node_bases(profile: KubeletConfiguration, facts: NodeFacts) -> dict[str, int]:
    alloc = node_allocatable(profile, facts).allocatable.get("memory", 0)
    nodes = {n.id: n.memory_bytes for n in facts.numa_nodes} or {0: facts.memory_capacity_bytes}
    out = {"allocatable": int(alloc)}
    for nid, mem in nodes.items():
        if profile.memory_manager_policy == "Static":
            mem -= sum(
                quantity.to_bytes(r.limits["memory"])
                for r in profile.reserved_memory
                if r.numa_node == nid and "memory" in r.limits
            )
        out[f"numa{nid}Free"] = int(mem)
    return out


def evaluate(expr: str, bases: dict[str, int]) -> int:
    m = _EXPR.match(expr)
    if m is None:
        raise ValueError(f"invalid memoryFromNode {expr!r}")
    base, sign, q = m.groups()
    if base not in bases:
        raise ValueError(
            f"memoryFromNode {expr!r}: this node has no {base[:-4]} (it has {', '.join(sorted(bases))})"
        )
    v = bases[base]
    if q:
        v = v + quantity.to_bytes(q) if sign == "+" else v - quantity.to_bytes(q)
    return v


def size_workloads(sc: Scenario) -> Scenario:
    """A copy of the scenario with every ``memoryFromNode`` resolved into the workload's memory
    request (and limit where it has one, so a Guaranteed pod stays Guaranteed), in whole MiB."""
    if not any(w.memory_from_node for w in sc.workloads):
        return sc
    assert sc.profile is not None and sc.node is not None, "load the suite with load_suite()"
    bases = node_bases(sc.profile, sc.node)
    workloads = []
    for w in sc.workloads:
        if not w.memory_from_node:
            workloads.append(w)
            continue
        try:
            v = evaluate(w.memory_from_node, bases)
        except ValueError as exc:
            raise HarnessError(f"scenario {sc.name}: workload {w.name}: {exc}") from None
        if v <= 0:
            have = ", ".join(f"{k} {b >> 20} MiB" for k, b in bases.items())
            raise HarnessError(
                f"scenario {sc.name}: workload {w.name}: memoryFromNode {w.memory_from_node!r} is "
                f"{v >> 20} MiB on this node ({have}): this host cannot run the scenario"
            )
        mem = f"{v >> 20}Mi"
        res = w.resources.model_copy(deep=True)
        res.requests["memory"] = mem
        if "memory" in res.limits:
            res.limits["memory"] = mem
        workloads.append(w.model_copy(update={"resources": res}))
    return sc.model_copy(update={"workloads": workloads})
