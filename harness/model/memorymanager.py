"""Memory manager, ``Static`` policy (kubelet-memory-spec.md §6).

Upstream (read for this module, 1.3x snapshots): k8s pkg/kubelet/cm/memorymanager/
``memory_manager.go`` (``validateReservedMemory``, ``getTotalMemoryTypeReserved``,
``convertReserved``), ``policy_static.go`` (``NewPolicyStatic``, ``getDefaultMachineState``,
``calculateHints``, ``Allocate``, ``updateMachineState``, ``getDefaultHint``,
``extendTopologyManagerHint``, ``findBestHint``, ``isAffinityViolatingNUMAAllocations``,
``validateState``/``areMachineStatesEqual``, init-container reusable memory), ``state/state.go``
and ``state/checkpoint.go`` (JSON field names, ``MemoryManagerCheckpoint``).

Go map iteration makes two things order-free upstream: the order of blocks in a container entry
(``requestedResources`` is a map) and which of several reservedMemory mismatches is reported. The
model uses ``memory`` first, then hugepages sorted by name, and reports every mismatch.
"""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from harness import quantity
from harness.model import node as node_model  # lazy: written concurrently
from harness.model.thresholds import format_go_quantity, quantity_format
from harness.model.topology import TopologyHint, is_narrower_than

if TYPE_CHECKING:
    from harness.config.kubelet import KubeletConfiguration
    from harness.config.node import NodeFacts
    from harness.config.pod import Container, Pod

POLICY_STATIC = "Static"
# k8s: pkg/kubelet/cm/memorymanager/memory_manager.go ``memoryManagerStateFileName``
STATE_FILE = "/var/lib/kubelet/memory_manager_state"

ERR_NO_DEFAULT_HINT = (
    "[memorymanager] failed to get the default NUMA affinity, no NUMA nodes with enough memory is available"
)
ERR_NO_DEFAULT_PREFERRED = "[memorymanager] failed to find the default preferred hint"
ERR_NO_EXTEND = "[memorymanager] failed to find NUMA nodes to extend the current topology hint"
ERR_NO_EXTENDED_PREFERRED = "[memorymanager] failed to find the extended preferred hint"
ERR_VIOLATES = "[memorymanager] preferred hint violates NUMA node allocation"
ERR_NO_SYSTEM_RESERVED = "[memorymanager] you should specify the system reserved memory"
ERR_STATE_DIFFERENT = "[memorymanager] the expected machine state is different from the real one"


class AdmissionError(Exception):
    """A pod admission failure: ``reason`` and ``message`` as in the pod status."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


def unexpected_admission_error(err: str) -> AdmissionError:
    """k8s pkg/kubelet/lifecycle (admission) ``UnexpectedAdmissionError`` (verified text)."""
    return AdmissionError("UnexpectedAdmissionError", f"Allocate failed due to {err}, which is unexpected")


@dataclass
class MemoryTable:
    total: int
    system_reserved: int
    allocatable: int
    reserved: int
    free: int


@dataclass
class NUMANodeState:
    memory_map: dict[str, MemoryTable]
    number_of_assignments: int
    cells: list[int]


@dataclass
class Block:
    numa_affinity: list[int]
    type: str
    size: int


@dataclass
class MemoryManagerState:
    policy_name: str
    machine_state: dict[int, NUMANodeState]
    entries: dict[str, dict[str, list[Block]]] = field(default_factory=dict)
    checksum: int | None = None  # as read from a file; recomputed by to_state_json


def memory_type_order(name: str) -> tuple[int, str]:
    return (0 if name == "memory" else 1, name)


# ---------------------------------------------------------------- reservedMemory validation
def _hugepage_resource(size: str) -> str:
    """``hugepages-<size>`` with the size in canonical BinarySI form (``2048Ki`` -> ``2Mi``)."""
    return "hugepages-" + quantity.format_binary_si(quantity.to_bytes(size))


def _sum_with_format(items: list[tuple[Decimal, str]]) -> tuple[Decimal, str]:
    """Go ``Quantity.Add`` chain: a zero receiver takes the format of what is added to it."""
    total, fmt = Decimal(0), "DecimalSI"
    for v, f in items:
        if total == 0:
            fmt = f
        total += v
    return total, fmt


def _node_reservation_format(profile: KubeletConfiguration, resource: str) -> str:
    """Format of ``GetNodeAllocatableReservation()[r]``: system-reserved, kube-reserved, then the
    hard-eviction reservation (always BinarySI: ``NewQuantity(.., BinarySI)``) are added to a zero
    quantity (k8s pkg/kubelet/cm/node_container_manager_linux.go)."""
    for src in (profile.system_reserved, profile.kube_reserved):
        if resource in src and quantity.parse(src[resource]) != 0:
            return quantity_format(str(src[resource]))
    return "BinarySI"


def validate_reserved_memory(profile: KubeletConfiguration, facts: NodeFacts) -> list[str]:
    """Errors the kubelet stops with when Static is configured (§6.2); [] when valid or policy None.

    Rule: for every memory type in reservedMemory or in the node reservation (memory and
    hugepages only), ``Σ_NUMA reservedMemory[type] == kube + system reserved + hard eviction``.
    Upstream returns the first mismatch of a Go map walk; all mismatches are listed here.

    >>> # kube 4Gi + system 1Gi + eviction 100Mi = 5220Mi = 3Gi + 2148Mi: valid (see tests)
    """
    if not profile.memory_manager_static:
        return []

    numa_ids = {n.id for n in facts.numa_nodes}
    errors: list[str] = []
    totals: dict[str, list[tuple[Decimal, str]]] = {}
    for r in profile.reserved_memory:
        if r.numa_node not in numa_ids:
            return [
                f"the reserved memory configuration references a NUMA node {r.numa_node} "
                "that does not exist on this machine"
            ]
        for name, q in r.limits.items():
            # getTotalMemoryTypeReserved: q.Add(runningTotal) keeps q's own format unless q is 0
            totals.setdefault(name, []).insert(0, (quantity.parse(q), quantity_format(str(q))))
    reservation = node_model.node_allocatable(profile, facts).reservation
    types = set(totals) | {k for k in reservation if k == "memory" or k.startswith("hugepages-")}
    for t in sorted(types, key=memory_type_order):
        got, got_fmt = _sum_with_format(totals.get(t, []))
        want = Decimal(reservation.get(t, 0))
        if got != want:
            errors.append(
                f'the total amount "{format_go_quantity(got, got_fmt)}" of type "{t}" is not equal to '
                f'the value "{format_go_quantity(want, _node_reservation_format(profile, t))}" '
                "determined by Node Allocatable feature"
            )
    if errors:
        return errors
    for r in profile.reserved_memory:
        for q in r.limits.values():
            d = quantity.parse(q)
            if d != d.to_integral_value():
                return ["could not covert a variable of type Quantity to int64"]  # sic, upstream typo
    if (
        sum(quantity.to_bytes(r.limits["memory"]) for r in profile.reserved_memory if "memory" in r.limits)
        <= 0
    ):
        return [ERR_NO_SYSTEM_RESERVED]
    return []


# ---------------------------------------------------------------------------- machine state
def system_reserved_by_numa(profile: KubeletConfiguration, facts: NodeFacts) -> dict[int, dict[str, int]]:
    """``convertReserved``: NUMA id -> memory type -> bytes (later entries overwrite)."""
    out: dict[int, dict[str, int]] = {n.id: {} for n in facts.numa_nodes}
    for r in profile.reserved_memory:
        for name, q in r.limits.items():
            out.setdefault(r.numa_node, {})[name] = quantity.to_bytes(q)
    return out


def initial_state(profile: KubeletConfiguration, facts: NodeFacts) -> MemoryManagerState:
    """``getDefaultMachineState`` (§6.3).

    For each hugepage size of a NUMA node (cAdvisor lists every size the kernel supports, also with
    0 pages; list them in the facts to reproduce a real file): total = pages x size,
    allocatable = free = total - reserved. Memory: total = the node's MemTotal, allocatable = free =
    total - reserved - Σ hugepage totals of that node.
    """
    reserved = system_reserved_by_numa(profile, facts)
    machine: dict[int, NUMANodeState] = {}
    for n in sorted(facts.numa_nodes, key=lambda n: n.id):
        mm: dict[str, MemoryTable] = {}
        hp_total = 0
        for size, count in n.hugepages.items():
            name = _hugepage_resource(size)
            total = quantity.to_bytes(size) * count
            sr = reserved.get(n.id, {}).get(name, 0)
            mm[name] = MemoryTable(total, sr, total - sr, 0, total - sr)
            hp_total += total
        sr = reserved.get(n.id, {}).get("memory", 0)
        alloc = n.memory_bytes - sr - hp_total
        mm["memory"] = MemoryTable(n.memory_bytes, sr, alloc, 0, alloc)
        machine[n.id] = NUMANodeState(mm, 0, [n.id])
    return MemoryManagerState(POLICY_STATIC, machine, {})


# ------------------------------------------------------------------------------------ hints
def container_requests(container: Container) -> dict[str, int]:
    """``getRequestedResources``: memory and hugepages-* requests (requests default to limits)."""
    res = container.resources
    out: dict[str, int] = {}
    for name in {*res.requests, *res.limits}:
        if name == "memory" or name.startswith("hugepages-"):
            out[name] = quantity.to_bytes(res.requests.get(name, res.limits.get(name, 0)))
    return out


def pod_requests_for_hints(pod: Pod) -> dict[str, int]:
    """``getPodRequestedResources``: max(app + sidecars, max over init of init + sidecars so far)."""
    init_max: dict[str, int] = {}
    sidecars: dict[str, int] = {}
    for c in pod.spec.init_containers:
        for name, q in container_requests(c).items():
            init_max.setdefault(name, 0)
            if c.is_sidecar:
                sidecars[name] = sidecars.get(name, 0) + q
            elif sidecars.get(name, 0) + q > init_max[name]:
                init_max[name] = sidecars.get(name, 0) + q
    app: dict[str, int] = {}
    for c in pod.spec.containers:
        for name, q in container_requests(c).items():
            app[name] = app.get(name, 0) + q
    return {name: max(v + sidecars.get(name, 0), init_max.get(name, 0)) for name, v in app.items()}


def _table(state: MemoryManagerState, node: int, name: str) -> MemoryTable:
    # upstream dereferences a nil *MemoryTable here (a type the node lacks); treat it as empty
    return state.machine_state[node].memory_map.get(name) or MemoryTable(0, 0, 0, 0, 0)


def _masks(nodes: list[int]) -> list[tuple[int, ...]]:
    """``bitmask.IterateBitMasks``: all non-empty subsets, by size, then lexicographically."""
    return [m for k in range(1, len(nodes) + 1) for m in itertools.combinations(nodes, k)]


def calculate_hints(
    state: MemoryManagerState,
    requests: dict[str, int],
    reusable: dict[frozenset[int], dict[str, int]] | None = None,
) -> dict[str, list[TopologyHint]]:
    """``calculateHints`` (§6.5). Returns ``{}`` when no mask fits (the topology manager then reads
    the memory manager as having *no preference*).

    ``preferred`` = the mask has the minimal size among masks whose **allocatable** covers the
    request; a single node that could hold the request but is full therefore makes every
    remaining multi-NUMA hint non-preferred.
    """
    requests = {k: v for k, v in requests.items() if k == "memory" or k.startswith("hugepages-")}
    nodes = sorted(state.machine_state)
    min_size = len(nodes)
    found: list[tuple[int, ...]] = []
    for mask in _masks(nodes):
        if any(sum(_table(state, n, t).allocatable for n in mask) < q for t, q in requests.items()):
            continue
        min_size = min(min_size, len(mask))
        single = len(mask) == 1
        if single and len(state.machine_state[mask[0]].cells) > 1:
            continue
        if not single and any(
            state.machine_state[n].number_of_assignments > 0
            and (len(state.machine_state[n].cells) == 1 or sorted(state.machine_state[n].cells) != list(mask))
            for n in mask
        ):
            continue
        reuse = (reusable or {}).get(frozenset(mask), {})
        if any(
            sum(_table(state, n, t).free for n in mask) + reuse.get(t, 0) < q for t, q in requests.items()
        ):
            continue
        found.append(mask)
    return {
        t: [TopologyHint(frozenset(m), len(m) == min_size) for m in found]
        for t in sorted(requests, key=memory_type_order)
        if found
    }


def find_best_hint(hints: list[TopologyHint]) -> TopologyHint:
    """``findBestHint``: preferred first, then narrower (fewer nodes, then lower node ids)."""
    best: TopologyHint | None = None
    for h in hints:
        if best is None or best.affinity is None:
            best = h
            continue
        if h.preferred and not best.preferred:
            best = h
            continue
        if (
            h.preferred == best.preferred
            and h.affinity is not None
            and is_narrower_than(h.affinity, best.affinity)
        ):
            best = h
    assert best is not None
    return best


def _satisfies(state: MemoryManagerState, mask: frozenset[int], requests: dict[str, int]) -> bool:
    """``isAffinitySatisfyRequest``: Σ free over the mask covers every type."""
    return all(sum(_table(state, n, t).free for n in mask) >= q for t, q in requests.items())


def _violates(state: MemoryManagerState, mask: frozenset[int]) -> bool:
    """``isAffinityViolatingNUMAAllocations``."""
    if len(mask) == 1:
        return False
    for n in mask:
        ns = state.machine_state[n]
        if ns.number_of_assignments == 0:
            continue
        if len(ns.cells) == 1 or sorted(ns.cells) != sorted(mask):
            return True
    return False


@dataclass
class PodReuse:
    """Memory of regular init containers that later containers of the same pod reuse
    (``initContainersReusableMemory``), keyed by NUMA mask then type."""

    reusable: dict[frozenset[int], dict[str, int]] = field(default_factory=dict)


def _update_machine_state(state: MemoryManagerState, bits: list[int], name: str, size: int) -> None:
    """``updateMachineState``: every node of the mask counts an assignment and joins the group;
    bytes are taken node by node in mask order."""
    for n in bits:
        ns = state.machine_state[n]
        ns.number_of_assignments += 1
        ns.cells = list(bits)
        if size == 0:
            continue
        t = ns.memory_map.get(name)
        if t is None or t.free <= 0:
            continue
        take = min(t.free, size)
        t.reserved += take
        t.free -= take
        size -= take


def allocate(
    state: MemoryManagerState,
    pod_uid: str,
    container_name: str,
    requests: dict[str, int],
    hint: TopologyHint | None,
    *,
    pod: Pod | None = None,
    reuse: PodReuse | None = None,
) -> MemoryManagerState:
    """``staticPolicy.Allocate`` for a container of a Guaranteed pod (§6.6); returns a new state.

    ``hint`` is the topology manager's hint for the container (``None`` = nothing stored, as with
    policy ``none``). Raises :class:`AdmissionError` (``UnexpectedAdmissionError``) with the
    kubelet's message on failure. ``pod``/``reuse`` enable init-container memory reuse.
    """
    requests = {k: v for k, v in requests.items() if k == "memory" or k.startswith("hugepages-")}
    if state.entries.get(pod_uid, {}).get(container_name) is not None:
        return state
    new = copy.deepcopy(state)
    best = hint if hint is not None else TopologyHint(None, False)
    reusable = reuse.reusable if reuse else None
    if best.affinity is None:
        hints = calculate_hints(new, requests, reusable)
        if not hints:
            raise unexpected_admission_error(ERR_NO_DEFAULT_HINT)
        default = find_best_hint(hints["memory"] if "memory" in hints else next(iter(hints.values())))
        if not default.preferred and best.preferred:
            raise unexpected_admission_error(ERR_NO_DEFAULT_PREFERRED)
        best = default
    assert best.affinity is not None
    if not _satisfies(new, best.affinity, requests):
        hints = calculate_hints(new, requests, reusable)
        cands = [
            h
            for h in hints.get("memory", next(iter(hints.values()), []))
            if h.affinity is not None and best.affinity <= h.affinity
        ]
        if not cands:
            raise unexpected_admission_error(ERR_NO_EXTEND)
        ext = find_best_hint(cands)
        if not ext.preferred and best.preferred:
            raise unexpected_admission_error(ERR_NO_EXTENDED_PREFERRED)
        best = ext
    assert best.affinity is not None
    if _violates(new, best.affinity):
        raise unexpected_admission_error(ERR_VIOLATES)
    bits = sorted(best.affinity)
    blocks = []
    for name in sorted(requests, key=memory_type_order):
        size = requests[name]
        blocks.append(Block(list(bits), name, size))
        reusable_now = (reusable or {}).get(best.affinity, {}).get(name, 0)
        _update_machine_state(new, bits, name, 0 if reusable_now >= size else size - reusable_now)
    new.entries.setdefault(pod_uid, {})[container_name] = blocks
    if pod is not None and reuse is not None:
        _update_reuse(new, pod, container_name, blocks, reuse)
    return new


def _update_reuse(
    state: MemoryManagerState, pod: Pod, container_name: str, blocks: list[Block], reuse: PodReuse
) -> None:
    """``updatePodReusableMemory`` + ``updateInitContainersMemoryBlocks``."""
    init_names = [c.name for c in pod.spec.init_containers]
    is_regular_init = any(c.name == container_name and not c.is_sidecar for c in pod.spec.init_containers)
    if is_regular_init:
        for b in blocks:
            slot = reuse.reusable.setdefault(frozenset(b.numa_affinity), {})
            slot[b.type] = max(slot.get(b.type, 0), b.size)
    else:
        for b in blocks:
            slot = reuse.reusable.get(frozenset(b.numa_affinity), {})
            if slot.get(b.type, 0):
                slot[b.type] = 0 if b.size >= slot[b.type] else slot[b.type] - b.size
    entries = state.entries.get(pod.uid, {})
    for b in blocks:
        left = b.size
        for c in pod.spec.init_containers:
            if c.name == container_name or left == 0:
                break
            if c.is_sidecar or c.name not in init_names:
                continue
            for ib in entries.get(c.name, []):
                if ib.size == 0 or ib.type != b.type or sorted(ib.numa_affinity) != sorted(b.numa_affinity):
                    continue
                take = min(ib.size, left)
                ib.size -= take
                left -= take


def remove_container(state: MemoryManagerState, pod_uid: str, container_name: str) -> MemoryManagerState:
    """``staticPolicy.RemoveContainer``: release the blocks; a node with no assignment left leaves
    its group."""
    blocks = state.entries.get(pod_uid, {}).get(container_name)
    if blocks is None:
        return state
    new = copy.deepcopy(state)
    del new.entries[pod_uid][container_name]
    if not new.entries[pod_uid]:
        del new.entries[pod_uid]
    for b in blocks:
        left = b.size
        for n in b.numa_affinity:
            ns = new.machine_state[n]
            ns.number_of_assignments -= 1
            if ns.number_of_assignments == 0:
                ns.cells = [n]
            if left == 0:
                continue
            t = ns.memory_map[b.type]
            give = min(t.reserved, left)
            t.free += give
            t.reserved -= give
            left -= give
    return new


# ------------------------------------------------------------------------- state file (JSON)
def _parse_table(d: dict[str, Any]) -> MemoryTable:
    return MemoryTable(
        int(d.get("total", 0)),
        int(d.get("systemReserved", 0)),
        int(d.get("allocatable", 0)),
        int(d.get("reserved", 0)),
        int(d.get("free", 0)),
    )


def parse_state_file(text: str) -> MemoryManagerState:
    """Parse ``/var/lib/kubelet/memory_manager_state`` (1.28-1.34 "v1" checkpoint shape).

    Accepts the website's ``nodes`` spelling for ``cells`` (the real key is ``cells``).
    """
    d = json.loads(text)
    machine = {}
    for k, v in d.get("machineState", {}).items():
        cells = v.get("cells", v.get("nodes", [int(k)]))
        machine[int(k)] = NUMANodeState(
            {name: _parse_table(t) for name, t in v.get("memoryMap", {}).items()},
            int(v.get("numberOfAssignments", 0)),
            [int(c) for c in cells],
        )
    entries = {
        pod: {
            c: [Block([int(x) for x in b["numaAffinity"]], b["type"], int(b["size"])) for b in blocks]
            for c, blocks in containers.items()
        }
        for pod, containers in (d.get("entries") or {}).items()
    }
    return MemoryManagerState(d.get("policyName", ""), machine, entries, d.get("checksum"))


def _table_json(t: MemoryTable) -> dict[str, int]:
    return {
        "total": t.total,
        "systemReserved": t.system_reserved,
        "allocatable": t.allocatable,
        "reserved": t.reserved,
        "free": t.free,
    }


def to_state_json(state: MemoryManagerState) -> str:
    """The checkpoint as ``json.Marshal`` writes it: struct field order, map keys sorted as
    strings, ``entries`` omitted when empty, compact separators.

    The checksum is :func:`checksum` (see its docstring for what was verified).
    """
    machine = {
        str(n): {
            "numberOfAssignments": ns.number_of_assignments,
            "memoryMap": {name: _table_json(ns.memory_map[name]) for name in sorted(ns.memory_map)},
            "cells": ns.cells,
        }
        for n, ns in sorted(state.machine_state.items(), key=lambda kv: str(kv[0]))
    }
    doc: dict[str, Any] = {"policyName": state.policy_name, "machineState": machine}
    if state.entries:
        doc["entries"] = {
            pod: {
                c: [{"numaAffinity": b.numa_affinity, "type": b.type, "size": b.size} for b in blocks]
                for c, blocks in sorted(containers.items())
            }
            for pod, containers in sorted(state.entries.items())
        }
    doc["checksum"] = checksum(state)
    return json.dumps(doc, separators=(",", ":"))


def _spew_dump(state: MemoryManagerState, cells_field: str = "Cells") -> str:
    """go-spew ``%#v`` (``SortKeys``, ``SpewKeys``, ``DisableMethods``) of the checkpoint with
    ``Checksum = 0``, the text ``hashutil.DeepHashObject`` / ``dump.ForHash`` feed to FNV-32a.

    Format checked against go-spew v1.1.1 run on the same Go struct definitions (state.go /
    checkpoint.go): map keys are bare, pointers inside maps print as ``<*>``, nested values after
    the first level carry no type annotation.
    """

    def table(t: MemoryTable) -> str:
        return (
            f"<*>{{TotalMemSize:(uint64){t.total} SystemReserved:(uint64){t.system_reserved} "
            f"Allocatable:(uint64){t.allocatable} Reserved:(uint64){t.reserved} Free:(uint64){t.free}}}"
        )

    def ints(xs: list[int]) -> str:
        return "([]int)[" + " ".join(str(x) for x in xs) + "]"

    nodes = []
    for n in sorted(state.machine_state):
        ns = state.machine_state[n]
        mm = " ".join(f"{k}:{table(ns.memory_map[k])}" for k in sorted(ns.memory_map))
        nodes.append(
            f"{n}:<*>{{NumberOfAssignments:(int){ns.number_of_assignments} "
            f"MemoryMap:(map[v1.ResourceName]*state.MemoryTable)map[{mm}] {cells_field}:{ints(ns.cells)}}}"
        )
    pods = []
    for pod in sorted(state.entries):
        cs = []
        for c in sorted(state.entries[pod]):
            bs = " ".join(
                f"{{NUMAAffinity:{ints(b.numa_affinity)} Type:(v1.ResourceName){b.type} Size:(uint64){b.size}}}"
                for b in state.entries[pod][c]
            )
            cs.append(f"{c}:[{bs}]")
        pods.append(f"{pod}:map[{' '.join(cs)}]")
    return (
        f"(*state.MemoryManagerCheckpoint){{PolicyName:(string){state.policy_name} "
        f"MachineState:(state.NUMANodeMap)map[{' '.join(nodes)}] "
        f"Entries:(state.ContainerMemoryAssignments)map[{' '.join(pods)}] Checksum:(checksum.Checksum)0}}"
    )


def checksum(state: MemoryManagerState, cells_field: str = "Cells") -> int:
    """FNV-32a over the spew ``%#v`` dump of the checkpoint with ``Checksum = 0``.

    Upstream: k8s pkg/kubelet/checkpointmanager/checksum/checksum.go (``fnv.New32a`` +
    ``hashutil.DeepHashObject``) and state/checkpoint.go ``MarshalCheckpoint``. The dump text
    reproduces go-spew's ``%#v`` for these struct types; see the unit tests for what it was
    checked against.
    """
    h = 0x811C9DC5  # FNV-32 offset basis (hash/fnv)
    for byte in _spew_dump(state, cells_field).encode():
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF  # FNV-32 prime
    return h


def compare_states(expected: MemoryManagerState, actual: MemoryManagerState) -> list[str]:
    """Human-readable differences (empty when equal). Block order inside an entry is ignored
    (upstream writes it in Go map order)."""
    diffs: list[str] = []
    if expected.policy_name != actual.policy_name:
        diffs.append(f"policyName: expected {expected.policy_name!r}, got {actual.policy_name!r}")
    for n in sorted(set(expected.machine_state) | set(actual.machine_state)):
        e, a = expected.machine_state.get(n), actual.machine_state.get(n)
        if e is None or a is None:
            diffs.append(f"NUMA node {n}: {'missing' if a is None else 'unexpected'} in actual state")
            continue
        if e.number_of_assignments != a.number_of_assignments:
            diffs.append(
                f"NUMA node {n}: numberOfAssignments expected {e.number_of_assignments}, got {a.number_of_assignments}"
            )
        if sorted(e.cells) != sorted(a.cells):
            diffs.append(f"NUMA node {n}: cells expected {sorted(e.cells)}, got {sorted(a.cells)}")
        for t in sorted(set(e.memory_map) | set(a.memory_map), key=memory_type_order):
            et, at = e.memory_map.get(t), a.memory_map.get(t)
            if et is None or at is None:
                diffs.append(
                    f"NUMA node {n} {t}: {'missing' if at is None else 'unexpected'} in actual state"
                )
                continue
            for f in ("total", "system_reserved", "allocatable", "reserved", "free"):
                if getattr(et, f) != getattr(at, f):
                    diffs.append(f"NUMA node {n} {t}.{f}: expected {getattr(et, f)}, got {getattr(at, f)}")

    def norm(blocks: list[Block]) -> list[tuple[tuple[int, ...], str, int]]:
        return sorted((tuple(sorted(b.numa_affinity)), b.type, b.size) for b in blocks)

    for pod in sorted(set(expected.entries) | set(actual.entries)):
        ec, ac = expected.entries.get(pod, {}), actual.entries.get(pod, {})
        for c in sorted(set(ec) | set(ac)):
            if c not in ac:
                diffs.append(f"entry {pod}/{c}: missing in actual state")
            elif c not in ec:
                diffs.append(f"entry {pod}/{c}: unexpected in actual state")
            elif norm(ec[c]) != norm(ac[c]):
                diffs.append(f"entry {pod}/{c}: expected blocks {norm(ec[c])}, got {norm(ac[c])}")
    return diffs


def validate_restart(
    state: MemoryManagerState, profile: KubeletConfiguration, facts: NodeFacts
) -> str | None:
    """What the kubelet says at start with this checkpoint (§6.7), or None when it starts.

    ``validateState``: replay every entry onto the default machine state and compare totals,
    system reserved, allocatable, assignments, cells and per-group free/reserved sums.
    """
    configured = POLICY_STATIC if profile.memory_manager_static else "None"
    if state.policy_name != configured:
        return f'[memorymanager] configured policy "{configured}" differs from state checkpoint policy "{state.policy_name}"'
    if not profile.memory_manager_static:
        return None
    expected = initial_state(profile, facts)
    if not state.machine_state:
        return (
            "[memorymanager] machine state can not be empty when it has memory assignments"
            if state.entries
            else None
        )
    for pod, containers in state.entries.items():
        for cname, blocks in containers.items():
            for b in blocks:
                for n in b.numa_affinity:
                    if n not in expected.machine_state:
                        return f"[memorymanager] (pod: {pod}, container: {cname}) the memory assignment uses the NUMA that does not exist"
                    if b.type not in expected.machine_state[n].memory_map:
                        return f"[memorymanager] (pod: {pod}, container: {cname}) the memory assignment uses memory resource that does not exist"
                _update_machine_state(expected, list(b.numa_affinity), b.type, b.size)
    if not _machine_states_equal(state, expected):
        return ERR_STATE_DIFFERENT
    return None


def _machine_states_equal(s1: MemoryManagerState, s2: MemoryManagerState) -> bool:
    """``areMachineStatesEqual``: free/reserved are compared as sums over each node's group."""
    m1, m2 = s1.machine_state, s2.machine_state
    if set(m1) != set(m2):
        return False
    for n, a in m1.items():
        b = m2[n]
        if a.number_of_assignments != b.number_of_assignments or sorted(a.cells) != sorted(b.cells):
            return False
        if set(a.memory_map) != set(b.memory_map):
            return False
        for t, ta in a.memory_map.items():
            tb = b.memory_map[t]
            if (ta.total, ta.system_reserved, ta.allocatable) != (
                tb.total,
                tb.system_reserved,
                tb.allocatable,
            ):
                return False
            free1 = sum(m1[c].memory_map[t].free for c in a.cells)
            free2 = sum(m2[c].memory_map[t].free for c in a.cells)
            res1 = sum(m1[c].memory_map[t].reserved for c in a.cells)
            res2 = sum(m2[c].memory_map[t].reserved for c in a.cells)
            if free1 != free2 or res1 != res2:
                return False
    return True
