"""cpuset.mems of each container against the NUMA nodes of its memory-manager blocks (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.node import NodeFacts
from harness.config.suite import load_suite
from harness.launch.base import NodeObservations, ObservedPod
from harness.model.admit import admit_pod
from harness.model.memorymanager import initial_state
from harness.verdict.memorymanager import cpuset_mems_diffs, parse_node_list

ROOT = Path(__file__).resolve().parents[2]
GiB = 1 << 30


@pytest.mark.parametrize(("text", "nodes"), [("0", {0}), ("0-1", {0, 1}), ("0,2-3", {0, 2, 3}), ("", set())])
def test_parse_node_list(text: str, nodes: set[int]) -> None:
    assert parse_node_list(text) == nodes


def _two_node_s9():  # type: ignore[no-untyped-def]
    sc = load_suite(ROOT / "suites" / "kubelet.yaml").scenario("s9-static-pinning")
    assert sc.node is not None
    node = NodeFacts.model_validate(
        {
            "memoryCapacity": 32 * GiB,
            "cpus": 2,
            "numaNodes": [
                {"id": 0, "memory": 16 * GiB, "cpus": [0]},
                {"id": 1, "memory": 16 * GiB, "cpus": [1]},
            ],
        }
    )
    return sc.model_copy(update={"node": node})


def _obs(pinned: str, shared: str) -> NodeObservations:
    return NodeObservations(
        pods=[
            ObservedPod("pinned", "harness", "uid-pinned", "c1", cpuset_mems=pinned),
            ObservedPod("shared", "harness", "uid-shared", "c2", cpuset_mems=shared),
        ]
    )


def test_pinned_container_must_have_its_blocks_nodes_and_the_other_every_node() -> None:
    sc = _two_node_s9()
    # the state after admitting both in launch order, as the verdict does
    state = initial_state(sc.profile, sc.node)  # type: ignore[arg-type]
    for name, uid in (("pinned", "uid-pinned"), ("shared", "uid-shared")):
        w = next(w for w in sc.workloads if w.name == name)
        pod = w.to_pod("harness").model_copy(deep=True)
        pod.metadata.uid = uid
        _, state = admit_pod(pod, sc.profile, sc.node, state)  # type: ignore[arg-type]
    assert cpuset_mems_diffs(sc, _obs("0", "0-1"), state) == []
    assert cpuset_mems_diffs(sc, _obs("0-1", "0-1"), state) == ["pinned: cpuset.mems 0-1, the model says 0"]
    assert cpuset_mems_diffs(sc, _obs("0", "0"), state) == ["shared: cpuset.mems 0, the model says 0,1"]
