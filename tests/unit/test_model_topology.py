"""Topology manager (spec §7): merge per policy, admission, and the admit path with the memory
manager for container and pod scope."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.config.kubelet import KubeletConfiguration
from harness.config.node import NodeFacts
from harness.config.pod import Pod, parse_pod
from harness.model import admit
from harness.model import memorymanager as mm
from harness.model import topology as tm
from harness.model.topology import TopologyHint as H

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "memory_manager"
Gi = 1024**3
N01 = [0, 1]


def f(*nodes: int) -> frozenset[int]:
    return frozenset(nodes)


# ---------------------------------------------------------------------------------- merge
def test_merge_no_preference_is_all_nodes_preferred() -> None:
    """Providers without hints are 'don't care' {nil, true}: the merge is {all nodes, preferred}
    for best-effort/restricted, turned into {nil, preferred} by single-numa-node."""
    assert tm.merge("best-effort", [None, {}], N01, {}) == H(f(0, 1), True)
    assert tm.merge("restricted", [None], N01, {}) == H(f(0, 1), True)
    assert tm.merge("single-numa-node", [None], N01, {}) == H(None, True)
    assert tm.merge("none", [{"memory": [H(f(1), True)]}], N01, {}) == H(None, False)


def test_merge_and_of_providers() -> None:
    """Permutations are ANDed; the result is preferred only if every hint is preferred and all
    masks are equal; preferred narrower masks win."""
    cpu = {"cpu": [H(f(0), True), H(f(1), True), H(f(0, 1), False)]}
    mem = {"memory": [H(f(1), True), H(f(0, 1), False)]}
    for policy in ("best-effort", "restricted", "single-numa-node"):
        assert tm.merge(policy, [cpu, mem], N01, {}) == H(f(1), True)


def test_merge_empty_list_means_cannot_satisfy() -> None:
    """A resource with an empty hint list is {nil, false}: restricted gets a non-preferred hint
    and rejects; best-effort admits it anyway."""
    hints = [{"memory": []}]
    h = tm.merge("restricted", hints, N01, {})
    assert h == H(f(0, 1), False)
    assert not tm.admit_hint("restricted", h) and tm.admit_hint("best-effort", h)


def test_merge_single_numa_node_drops_multi_node_hints() -> None:
    """single-numa-node keeps only preferred single-node or nil hints; a provider whose only hint
    is {0,1} leaves nothing -> {nil, false} -> rejected. restricted admits the preferred {0,1}."""
    hints = [{"memory": [H(f(0, 1), True)]}]
    assert tm.merge("single-numa-node", hints, N01, {}) == H(None, False)
    assert not tm.admit_hint("single-numa-node", H(None, False))
    h = tm.merge("restricted", hints, N01, {})
    assert h == H(f(0, 1), True) and tm.admit_hint("restricted", h)


def test_merge_non_preferred_case_table() -> None:
    """Both non-preferred: move toward BestNonPreferredAffinityCount (max over providers of their
    narrowest hint = 2 here), so {0,1} beats {0} even though {0} is narrower."""
    hints = [{"a": [H(f(0), False), H(f(0, 1), False)]}, {"b": [H(f(0, 1), False)]}]
    assert tm.merge("best-effort", hints, [0, 1, 2], {}) == H(f(0, 1), False)


def test_prefer_closest_numa_nodes() -> None:
    """With prefer-closest-numa-nodes, among equally wide preferred masks the one with the smaller
    average distance wins ({0,2} here); without it the numerically smaller mask ({0,1})."""
    dist = {0: [10, 30, 12, 30], 1: [30, 10, 30, 12], 2: [12, 30, 10, 30], 3: [30, 12, 30, 10]}
    hints = [{"memory": [H(f(0, 1), True), H(f(0, 2), True)]}]
    assert tm.merge("best-effort", hints, [0, 1, 2, 3], {}, dist) == H(f(0, 1), True)
    opts = {"prefer-closest-numa-nodes": "true"}
    assert tm.merge("best-effort", hints, [0, 1, 2, 3], opts, dist) == H(f(0, 2), True)


# ---------------------------------------------------------------------- admit_pod (wiring)
def _seed(policy: str, scope: str = "container") -> tuple[KubeletConfiguration, NodeFacts]:
    prof = KubeletConfiguration.model_validate(
        {
            "memoryManagerPolicy": "Static",
            "topologyManagerPolicy": policy,
            "topologyManagerScope": scope,
            "kubeReserved": {"cpu": "4", "memory": "4Gi"},
            "systemReserved": {"cpu": "1", "memory": "1Gi"},
            "reservedMemory": [
                {"numaNode": 0, "limits": {"memory": "3Gi"}},
                {"numaNode": 1, "limits": {"memory": "2148Mi"}},
            ],
        }
    )
    facts = NodeFacts.model_validate(
        {
            "memoryCapacity": 134987354112 + 135286722560,
            "cpus": 8,
            "kubeletVersion": "1.31",
            "numaNodes": [
                {"id": 0, "memory": 134987354112, "hugepages": {"1Gi": 0}, "cpus": [0, 1, 2, 3]},
                {"id": 1, "memory": 135286722560, "hugepages": {"1Gi": 0}, "cpus": [4, 5, 6, 7]},
            ],
        }
    )
    return prof, facts


def _guaranteed(name: str, mem: str, uid: str = "", **extra: Any) -> Pod:
    res = {"limits": {"cpu": "2", "memory": mem}, "requests": {"cpu": "2", "memory": mem}}
    meta: dict[str, Any] = {"name": name}
    if uid:
        meta["uid"] = uid
    return parse_pod({"metadata": meta, "spec": {"containers": [{"name": name, "resources": res}], **extra}})


SEED_UID = "fa9bdd38-6df9-4cf9-aa67-8c4814da37a8"


def test_guaranteed_larger_than_any_numa_rejected_by_single_numa_node() -> None:
    """150Gi > each node's allocatable: the only memory hint is {0,1}; single-numa-node drops it
    -> TopologyAffinityError with the exact message; the state is unchanged."""
    prof, facts = _seed("single-numa-node")
    res, st = admit.admit_pod(_guaranteed("guaranteed", "150Gi", SEED_UID), prof, facts, None)
    assert (res.admitted, res.reason, res.message) == (
        False,
        "TopologyAffinityError",
        "Resources cannot be allocated with Topology locality",
    )
    assert st is not None and st.entries == {}


@pytest.mark.parametrize("policy", ["none", "best-effort", "restricted"])
def test_guaranteed_larger_than_any_numa_admitted_otherwise(policy: str) -> None:
    """none (no merge, default hint), best-effort and restricted ({0,1} is preferred) admit it and
    the resulting state equals the seeds/000 dump."""
    prof, facts = _seed(policy)
    res, st = admit.admit_pod(_guaranteed("guaranteed", "150Gi", SEED_UID), prof, facts, None)
    assert res.admitted and res.numa_affinity == [0, 1]
    seed = mm.parse_state_file((FIX / "seed000_website.json").read_text())
    assert st is not None and mm.compare_states(seed, st) == []


@pytest.mark.parametrize(
    ("policy", "admitted"), [("best-effort", True), ("restricted", False), ("single-numa-node", False)]
)
def test_small_pod_after_group_exists(policy: str, admitted: bool) -> None:
    """seeds/000 state + a 10Gi Guaranteed pod: only the non-preferred {0,1} hint exists
    (node 1 alone could hold it by allocatable) -> restricted/single-numa-node reject."""
    prof, facts = _seed(policy)
    state = mm.parse_state_file((FIX / "seed000_website.json").read_text())
    res, st = admit.admit_pod(_guaranteed("small", "10Gi"), prof, facts, state)
    assert res.admitted is admitted
    if admitted:
        assert st is not None and res.numa_affinity == [0, 1]
        assert st.machine_state[1].memory_map["memory"].free == 103739236352 - 10 * Gi
    else:
        assert res.reason == "TopologyAffinityError"


def test_burstable_pod_not_pinned() -> None:
    """Non-Guaranteed pods get no memory-manager hints or blocks: admitted, no affinity."""
    prof, facts = _seed("single-numa-node")
    pod = parse_pod(
        {
            "metadata": {"name": "b"},
            "spec": {"containers": [{"name": "b", "resources": {"requests": {"memory": "200Gi"}}}]},
        }
    )
    res, st = admit.admit_pod(pod, prof, facts, None)
    assert res.admitted and res.numa_affinity is None and st is not None and st.entries == {}


def test_unexpected_admission_error_when_nothing_fits() -> None:
    """Nothing fits anywhere: the memory manager returns no hints ('no preference'), the topology
    manager admits, and Allocate fails -> UnexpectedAdmissionError with the wrapped message."""
    prof, facts = _seed("single-numa-node")
    res, _ = admit.admit_pod(_guaranteed("huge", "300Gi"), prof, facts, None)
    assert res.reason == "UnexpectedAdmissionError"
    assert res.message.startswith(
        "Allocate failed due to [memorymanager] failed to get the default NUMA affinity"
    )
    assert res.message.endswith(", which is unexpected")


def test_pod_scope_one_alignment_for_all_containers() -> None:
    """Pod scope: hints from the pod's total (2 x 60Gi = 120Gi fits on one node) -> both
    containers pinned to the same single node; container scope would still place each on {0}."""
    prof, facts = _seed("single-numa-node", scope="pod")
    res_spec = {"limits": {"cpu": "1", "memory": "60Gi"}, "requests": {"cpu": "1", "memory": "60Gi"}}
    pod = parse_pod(
        {
            "metadata": {"name": "two"},
            "spec": {
                "containers": [{"name": "a", "resources": res_spec}, {"name": "b", "resources": res_spec}]
            },
        }
    )
    res, st = admit.admit_pod(pod, prof, facts, None)
    assert res.admitted and res.hints["pod"] == H(f(0), True) and res.numa_affinity == [0]
    assert st is not None and st.machine_state[0].number_of_assignments == 2
    # 2 x 80Gi = 160Gi does not fit on one node: pod scope rejects under single-numa-node
    big = {"limits": {"cpu": "1", "memory": "80Gi"}, "requests": {"cpu": "1", "memory": "80Gi"}}
    pod2 = parse_pod(
        {
            "metadata": {"name": "two-big"},
            "spec": {"containers": [{"name": "a", "resources": big}, {"name": "b", "resources": big}]},
        }
    )
    assert admit.admit_pod(pod2, prof, facts, None)[0].reason == "TopologyAffinityError"
    prof_c, _ = _seed("single-numa-node", scope="container")
    res_c, _ = admit.admit_pod(pod2, prof_c, facts, None)
    assert res_c.admitted and res_c.hints == {"a": H(f(0), True), "b": H(f(1), True)}


def test_init_container_memory_is_reused() -> None:
    """A regular init container's 50Gi block on {0} is reused by the app container on the same
    mask: node 0 reserves max(50Gi, 60Gi) = 60Gi, not 110Gi, and the init block shrinks to 0."""
    prof, facts = _seed("single-numa-node")
    r50 = {"limits": {"cpu": "1", "memory": "50Gi"}, "requests": {"cpu": "1", "memory": "50Gi"}}
    r60 = {"limits": {"cpu": "1", "memory": "60Gi"}, "requests": {"cpu": "1", "memory": "60Gi"}}
    pod = parse_pod(
        {
            "metadata": {"name": "init", "uid": "u-init"},
            "spec": {
                "initContainers": [{"name": "i", "resources": r50}],
                "containers": [{"name": "a", "resources": r60}],
            },
        }
    )
    res, st = admit.admit_pod(pod, prof, facts, None)
    assert res.admitted and st is not None
    assert st.machine_state[0].memory_map["memory"].reserved == 60 * Gi
    assert st.entries["u-init"]["i"][0].size == 0


def test_validate_options() -> None:
    prof = KubeletConfiguration.model_validate(
        {"topologyManagerPolicy": "restricted", "topologyManagerPolicyOptions": {"foo": "1"}}
    )
    _, facts = _seed("restricted")
    assert tm.validate_options(prof, facts) == ['unknown Topology Manager Policy option: "foo"']
