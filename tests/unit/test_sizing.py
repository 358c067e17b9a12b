"""Sizes from the node (``memoryFromNode``): S10 exercises its outcomes on any host."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.kubelet import KubeletConfiguration
from harness.config.node import NodeFacts
from harness.config.suite import load_suite
from harness.errors import HarnessError
from harness.model.predict import predict_scenario
from harness.model.sizing import evaluate, node_bases, size_workloads

ROOT = Path(__file__).resolve().parents[2]
GI, MI = 1 << 30, 1 << 20


def s10(name: str, numa0: int, memtotal: int) -> object:
    sc = load_suite(ROOT / "suites" / "kubelet.yaml").scenario(name)
    assert sc.node is not None
    node = sc.node.model_copy(deep=True)
    node.memory_capacity_bytes = memtotal
    node.numa_nodes = node.numa_nodes[:1]
    node.numa_nodes[0].memory_bytes = numa0
    node.kubelet_version = "1.33"
    return sc.model_copy(update={"node": node})


def test_evaluate() -> None:
    assert evaluate("allocatable - 512Mi", {"allocatable": 4 * GI, "numa0Free": 0}) == 4 * GI - 512 * MI
    assert evaluate("numa0Free+256Mi", {"allocatable": 0, "numa0Free": GI}) == GI + 256 * MI
    with pytest.raises(ValueError):
        evaluate("capacity", {})


@pytest.mark.parametrize(("numa0", "memtotal"), [(24 * GI, 24 * GI), (16 * GI, 24 * GI), (64 * GI, 64 * GI)])
def test_s10_rejects_and_admits_on_any_host(numa0: int, memtotal: int) -> None:
    """A fresh host with all memory in node 0, a VM whose node 0 onlined less, a large host: the
    single-numa-node pod is refused by the memory manager, its twin without it is admitted."""
    single = size_workloads(s10("s10-single-numa-node", numa0, memtotal))  # type: ignore[arg-type]
    p = predict_scenario(single, kubelet=True)
    assert p.workload("big").outcome == "rejected"
    assert "UnexpectedAdmissionError" in p.workload("big").mechanism
    big = single.workloads[0].resources
    assert big.requests["memory"] == big.limits["memory"] == f"{(numa0 - 9728 * MI + 256 * MI) >> 20}Mi"
    none = size_workloads(s10("s10-no-numa-alignment", numa0, memtotal))  # type: ignore[arg-type]
    assert predict_scenario(none, kubelet=True).workload("big").outcome == "completed"


def test_a_host_too_small_is_a_clear_error() -> None:
    with pytest.raises(
        HarnessError, match=r"s10-no-numa-alignment: workload big: memoryFromNode .* this host cannot"
    ):
        size_workloads(s10("s10-no-numa-alignment", 9 * GI, 9 * GI))  # type: ignore[arg-type]


def test_every_numa_node_has_its_free_base() -> None:
    """numa<N>Free per NUMA node: its memory minus its reservedMemory (Static policy only)."""
    facts = NodeFacts.model_validate(
        {"memoryCapacity": 4 * GI, "numaNodes": [{"id": 0, "memory": 2 * GI}, {"id": 1, "memory": 2 * GI}]}
    )
    static = KubeletConfiguration.model_validate(
        {
            "memoryManagerPolicy": "Static",
            "kubeReserved": {"memory": "256Mi"},
            "systemReserved": {"memory": "1536Mi"},
            "evictionHard": {"memory.available": "512Mi"},
            "reservedMemory": [
                {"numaNode": 0, "limits": {"memory": "1280Mi"}},
                {"numaNode": 1, "limits": {"memory": "1024Mi"}},
            ],
        }
    )
    bases = node_bases(static, facts)
    assert (bases["numa0Free"], bases["numa1Free"]) == (768 * MI, 1024 * MI)
    assert node_bases(KubeletConfiguration(), facts)["numa1Free"] == 2 * GI
    assert evaluate("numa1Free - 128Mi", bases) == 896 * MI
    with pytest.raises(ValueError, match="no numa2"):
        evaluate("numa2Free", bases)
