"""Topology manager: hint merging, policy admission and the admit path with the memory manager
(kubelet-memory-spec.md §7, §6.6). The admit handler itself is ``model.admit`` (it joins this
module and ``model.memorymanager``).

Upstream (read for this module): k8s pkg/kubelet/cm/topologymanager/policy.go (1.28-1.3x shape:
``mergePermutation``, ``filterProvidersHints``, ``maxOfMinAffinityCounts``, ``HintMerger.compare``,
``HintMerger.Merge``), scope.go ``admitPolicyNone`` (policy ``none`` still calls every provider's
``Allocate``), lifecycle admission helpers (``TopologyAffinityError`` and
``Allocate failed due to %v, which is unexpected``). From memory, not re-read:
policy_single_numa_node.go ``filterSingleNumaHints`` (keep preferred hints that are nil or one NUMA
node), numa_info.go ``Closest`` (average distance over all pairs of the mask) and bitmask.go
``IsNarrowerThan`` (fewer bits, then numerically smaller mask).

Provider order follows container_manager_linux.go (device manager, CPU manager, memory manager);
within a provider, resources are iterated in name order (upstream: Go map order; it only matters
for exact ties).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.config.kubelet import KubeletConfiguration
    from harness.config.node import NodeFacts

POLICY_NONE = "none"
POLICY_BEST_EFFORT = "best-effort"
POLICY_RESTRICTED = "restricted"
POLICY_SINGLE_NUMA_NODE = "single-numa-node"
# k8s: pkg/kubelet/cm/topologymanager/topology_manager.go ``defaultMaxAllowableNUMANodes = 8``
MAX_ALLOWABLE_NUMA_NODES = 8
# k8s: pkg/kubelet/cm/topologymanager/policy_options.go option names
OPTION_PREFER_CLOSEST = "prefer-closest-numa-nodes"
OPTION_MAX_ALLOWABLE = "max-allowable-numa-nodes"
TOPOLOGY_AFFINITY_ERROR = "TopologyAffinityError"
TOPOLOGY_AFFINITY_MESSAGE = "Resources cannot be allocated with Topology locality"
UNEXPECTED_ADMISSION_ERROR = "UnexpectedAdmissionError"


@dataclass(frozen=True)
class TopologyHint:
    """``TopologyHint{NUMANodeAffinity, Preferred}``; ``affinity=None`` = any NUMA node."""

    affinity: frozenset[int] | None
    preferred: bool

    def __repr__(self) -> str:
        aff = "nil" if self.affinity is None else "{" + ",".join(map(str, sorted(self.affinity))) + "}"
        return f"TopologyHint({aff}, preferred={self.preferred})"


def _mask_value(mask: frozenset[int]) -> int:
    return sum(1 << n for n in mask)


def is_narrower_than(a: frozenset[int], b: frozenset[int] | None) -> bool:
    """bitmask ``IsNarrowerThan``: fewer NUMA nodes, or as many and a numerically smaller mask."""
    if b is None:
        return True
    if len(a) == len(b):
        return _mask_value(a) < _mask_value(b)
    return len(a) < len(b)


def _average_distance(mask: frozenset[int], distances: dict[int, list[int]]) -> float:
    """numa_info.go ``CalculateAverageFor``: mean of distance[i][j] over all ordered pairs."""
    nodes = sorted(mask)
    total = sum(distances[i][j] for i in nodes for j in nodes)
    return total / (len(nodes) ** 2) if nodes else 0.0


def _best_mask(
    current: frozenset[int],
    candidate: frozenset[int],
    prefer_closest: bool,
    distances: dict[int, list[int]] | None,
) -> frozenset[int]:
    """``NUMAInfo.Narrowest`` or ``NUMAInfo.Closest`` of two masks."""
    if prefer_closest and distances and len(current) == len(candidate):
        dc, dn = _average_distance(current, distances), _average_distance(candidate, distances)
        if dc != dn:
            return current if dc < dn else candidate
        return current if _mask_value(current) < _mask_value(candidate) else candidate
    return current if is_narrower_than(current, candidate) else candidate


def filter_providers_hints(
    providers_hints: list[dict[str, list[TopologyHint] | None] | None],
) -> list[list[TopologyHint]]:
    """``filterProvidersHints``: no hints -> ``[{nil, true}]``; a resource with ``None`` ->
    ``[{nil, true}]``; with ``[]`` -> ``[{nil, false}]`` (cannot satisfy)."""
    out: list[list[TopologyHint]] = []
    for hints in providers_hints:
        if not hints:
            out.append([TopologyHint(None, True)])
            continue
        for res in sorted(hints):
            h = hints[res]
            if h is None:
                out.append([TopologyHint(None, True)])
            elif len(h) == 0:
                out.append([TopologyHint(None, False)])
            else:
                out.append(list(h))
    return out


def _merge_permutation(default: frozenset[int], permutation: tuple[TopologyHint, ...]) -> TopologyHint:
    """``mergePermutation``: AND of non-nil masks; preferred iff all preferred and all masks equal."""
    preferred = True
    affinity = default
    first: frozenset[int] | None = None
    for h in permutation:
        if h.affinity is not None:
            if first is None:
                first = h.affinity
            elif h.affinity != first:
                preferred = False
            affinity = affinity & h.affinity
        if not h.preferred:
            preferred = False
    return TopologyHint(affinity, preferred)


def _max_of_min_affinity_counts(hints: list[list[TopologyHint]]) -> int:
    best = 0
    for res in hints:
        masks = [h.affinity for h in res if h.affinity is not None]
        if masks:
            narrowest = masks[0]
            for m in masks[1:]:
                if is_narrower_than(m, narrowest):
                    narrowest = m
            best = max(best, len(narrowest))
    return best


def _hint_merge(
    hints: list[list[TopologyHint]],
    numa_nodes: list[int],
    prefer_closest: bool,
    distances: dict[int, list[int]] | None,
) -> TopologyHint:
    """``HintMerger.Merge`` with ``HintMerger.compare`` (the case table of policy.go)."""
    default = frozenset(numa_nodes)
    best_np = _max_of_min_affinity_counts(hints)

    def fit(cur: TopologyHint, cand: TopologyHint) -> TopologyHint:
        assert cur.affinity is not None and cand.affinity is not None
        if cand.affinity == cur.affinity:
            return cur
        return (
            cur
            if _best_mask(cur.affinity, cand.affinity, prefer_closest, distances) == cur.affinity
            else cand
        )

    best: TopologyHint | None = None
    for perm in itertools.product(*hints):  # iterateAllProviderTopologyHints order
        cand = _merge_permutation(default, perm)
        assert cand.affinity is not None
        if len(cand.affinity) == 0:
            continue
        if best is None:
            best = cand
            continue
        assert best.affinity is not None
        best_n, cand_n = len(best.affinity), len(cand.affinity)
        if not best.preferred and cand.preferred:
            best = cand
        elif best.preferred and not cand.preferred:
            pass
        elif best.preferred and cand.preferred:  # noqa: SIM114 (keep policy.go's case table)
            best = fit(best, cand)
        elif best_n > best_np:  # case 1
            best = fit(best, cand)
        elif best_n == best_np:  # case 2
            if cand_n == best_np:
                best = fit(best, cand)
        elif cand_n > best_np:  # case 3a
            pass
        elif cand_n == best_np:  # noqa: SIM114 (case 3b)
            best = cand
        elif cand_n > best_n:  # case 3ca
            best = cand
        elif cand_n < best_n:  # case 3cb
            pass
        else:  # case 3cc
            best = fit(best, cand)
    return best if best is not None else TopologyHint(default, False)


def merge(
    policy: str,
    providers_hints: list[dict[str, list[TopologyHint] | None] | None],
    numa_nodes: list[int],
    options: dict[str, str],
    distances: dict[int, list[int]] | None = None,
) -> TopologyHint:
    """``Policy.Merge`` for ``none`` / ``best-effort`` / ``restricted`` / ``single-numa-node``.

    ``single-numa-node`` keeps only preferred hints that are nil or a single node, ignores
    ``prefer-closest-numa-nodes``, and turns an all-nodes result into ``{nil, preferred}``.
    """
    if policy == POLICY_NONE:
        return TopologyHint(None, False)
    filtered = filter_providers_hints(providers_hints)
    prefer_closest = options.get(OPTION_PREFER_CLOSEST, "false").lower() == "true"
    if policy == POLICY_SINGLE_NUMA_NODE:
        filtered = [
            [h for h in res if h.preferred and (h.affinity is None or len(h.affinity) == 1)]
            for res in filtered
        ]
        best = _hint_merge(filtered, numa_nodes, False, None)
        if best.affinity == frozenset(numa_nodes):
            best = TopologyHint(None, best.preferred)
        return best
    return _hint_merge(filtered, numa_nodes, prefer_closest, distances)


def admit_hint(policy: str, hint: TopologyHint) -> bool:
    """``canAdmitPodResult``: ``restricted``/``single-numa-node`` need a preferred hint."""
    if policy in (POLICY_RESTRICTED, POLICY_SINGLE_NUMA_NODE):
        return hint.preferred
    return True


def validate_options(profile: KubeletConfiguration, facts: NodeFacts) -> list[str]:
    """Start-up checks of the topology manager options (policy_options.go; spec §7.1, §7.5)."""
    errors = []
    for name in profile.topology_manager_policy_options:
        if name not in (OPTION_PREFER_CLOSEST, OPTION_MAX_ALLOWABLE):
            errors.append(f'unknown Topology Manager Policy option: "{name}"')
    limit = int(profile.topology_manager_policy_options.get(OPTION_MAX_ALLOWABLE, MAX_ALLOWABLE_NUMA_NODES))
    if profile.topology_manager_policy != POLICY_NONE and len(facts.numa_nodes) > limit:
        errors.append(f"unsupported on machines with more than {limit} NUMA Nodes")
    return errors
