"""The kubelet's swap limits written by the harness for the backends that emulate it (model.swap)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from harness.config.suite import load_suite
from harness.host.cgroups import CgroupTree
from harness.model.layout import node_layout

REPO = Path(__file__).resolve().parents[2]
MiB = 1 << 20


@pytest.mark.integration
def test_tree_writes_the_models_swap_limit_in_the_real_cgroup() -> None:
    tree = CgroupTree(f"harness/test-swap-{uuid.uuid4().hex[:8]}")
    swap_file = "memory.memsw.limit_in_bytes" if tree.version == 1 else "memory.swap.max"
    try:
        tree.create(
            {"": 256 * MiB, "kubepods/podx/c": 64 * MiB, "kubepods/podx/d": None},
            swap={"kubepods/podx/c": (0, 64 * MiB), "kubepods/podx/d": (0, None)},
        )
        if not (tree.abs("kubepods/podx/c") / swap_file).exists():
            pytest.fail(
                f"{swap_file} missing: this kernel has no swap accounting (the model's swapController)"
            )
        assert (tree.abs("kubepods/podx/c") / swap_file).read_text().strip() == (
            str(64 * MiB) if tree.version == 1 else "0"
        )
        # v1: no memory limit, nothing written (the file keeps the kernel's unlimited value); v2: 0
        d = (tree.abs("kubepods/podx/d") / swap_file).read_text().strip()
        assert d == "0" if tree.version == 2 else int(d) > 1 << 60
    finally:
        assert tree.remove() == []


@pytest.mark.integration
def test_every_pod_workload_of_the_local_suite_gets_no_swap() -> None:
    """NoSwap (the default): v1 memsw = the container's memory limit, v2 memory.swap.max = 0."""
    suite = load_suite(REPO / "suites" / "local.yaml")
    tree = CgroupTree("harness/x")
    for sc in suite.scenarios:
        layout = node_layout(sc)
        for w in layout.workloads.values():
            if w.placement != "pod":
                assert (w.swap_max_bytes, w.memsw_limit_bytes) == (None, None)
                continue
            if tree.version == 2:
                assert w.swap_max_bytes == 0, (sc.name, w.name)
            else:
                assert w.memsw_limit_bytes == w.memory_limit_bytes, (sc.name, w.name)
