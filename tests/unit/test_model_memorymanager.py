"""Memory manager Static policy (spec §6): reservedMemory validation, initial state, hints,
allocation, state file round trip, checksum, restart validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.config.kubelet import KubeletConfiguration
from harness.config.node import NodeFacts
from harness.model import memorymanager as mm
from harness.model.topology import TopologyHint

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "memory_manager"
Mi = 1024 * 1024
Gi = 1024 * Mi
# seeds/000: per-NUMA MemTotal of the node in the website example
SEED_NUMA0 = 134987354112
SEED_NUMA1 = 135286722560


def seed_profile(**kw: Any) -> KubeletConfiguration:
    """seeds/000 config: kube-reserved 4Gi, system-reserved 1Gi, default eviction 100Mi,
    --reserved-memory '0:memory=3Gi;1:memory=2148Mi'."""
    base: dict[str, Any] = {
        "memoryManagerPolicy": "Static",
        "kubeReserved": {"cpu": "4", "memory": "4Gi"},
        "systemReserved": {"cpu": "1", "memory": "1Gi"},
        "reservedMemory": [
            {"numaNode": 0, "limits": {"memory": "3Gi"}},
            {"numaNode": 1, "limits": {"memory": "2148Mi"}},
        ],
    }
    base.update(kw)
    return KubeletConfiguration.model_validate(base)


def seed_facts(minor: int = 31) -> NodeFacts:
    return NodeFacts.model_validate(
        {
            "memoryCapacity": SEED_NUMA0 + SEED_NUMA1,
            "cpus": 8,
            "kubeletVersion": f"1.{minor}",
            "numaNodes": [
                {"id": 0, "memory": SEED_NUMA0, "hugepages": {"1Gi": 0}, "cpus": [0, 1, 2, 3]},
                {"id": 1, "memory": SEED_NUMA1, "hugepages": {"1Gi": 0}, "cpus": [4, 5, 6, 7]},
            ],
        }
    )


def small_2numa(reserved0: str = "1124Mi", reserved1: str = "1Gi") -> tuple[KubeletConfiguration, NodeFacts]:
    prof = KubeletConfiguration.model_validate(
        {
            "memoryManagerPolicy": "Static",
            "systemReserved": {"memory": "2Gi"},
            "reservedMemory": [
                {"numaNode": 0, "limits": {"memory": reserved0}},
                {"numaNode": 1, "limits": {"memory": reserved1}},
            ],
        }
    )
    facts = NodeFacts.model_validate(
        {
            "memoryCapacity": "32Gi",
            "kubeletVersion": "1.31",
            "numaNodes": [
                {"id": 0, "memory": "16Gi", "hugepages": {"2Mi": 512, "1Gi": 1}, "cpus": [0, 1, 2, 3]},
                {"id": 1, "memory": "16Gi", "hugepages": {"2Mi": 512, "1Gi": 1}, "cpus": [4, 5, 6, 7]},
            ],
        }
    )
    return prof, facts


# ------------------------------------------------------------------------------ validation
def test_reserved_memory_spec_example_valid() -> None:
    """4Gi + 1Gi + 100Mi = 5220Mi = 3Gi + 2148Mi: the kubelet starts."""
    assert mm.validate_reserved_memory(seed_profile(), seed_facts()) == []


def test_reserved_memory_mismatch_exact_text() -> None:
    """Forgetting the 100Mi eviction threshold (3Gi + 2Gi = 5Gi) fails with the kubelet's text,
    both quantities printed as BinarySI Quantity strings."""
    p = seed_profile(
        reservedMemory=[
            {"numaNode": 0, "limits": {"memory": "3Gi"}},
            {"numaNode": 1, "limits": {"memory": "2Gi"}},
        ]
    )
    assert mm.validate_reserved_memory(p, seed_facts()) == [
        'the total amount "5Gi" of type "memory" is not equal to the value "5220Mi" '
        "determined by Node Allocatable feature"
    ]


def test_reserved_memory_missing_and_unknown_numa() -> None:
    """Static without reservedMemory: total "0" vs the 100Mi default eviction threshold; a NUMA id
    the machine lacks is its own error; policy None never validates."""
    p = KubeletConfiguration.model_validate({"memoryManagerPolicy": "Static"})
    assert mm.validate_reserved_memory(p, seed_facts()) == [
        'the total amount "0" of type "memory" is not equal to the value "100Mi" determined by Node Allocatable feature'
    ]
    p = seed_profile(reservedMemory=[{"numaNode": 5, "limits": {"memory": "5220Mi"}}])
    assert mm.validate_reserved_memory(p, seed_facts()) == [
        "the reserved memory configuration references a NUMA node 5 that does not exist on this machine"
    ]
    assert mm.validate_reserved_memory(seed_profile(memoryManagerPolicy="None"), seed_facts()) == []


# ---------------------------------------------------------------------------- initial state
def test_initial_state_seed000() -> None:
    """getDefaultMachineState: allocatable = free = NUMA MemTotal - reserved (3Gi / 2148Mi); the
    numbers equal those of the seeds/000 dump; every node starts alone in its group."""
    st = mm.initial_state(seed_profile(), seed_facts())
    m0, m1 = st.machine_state[0].memory_map["memory"], st.machine_state[1].memory_map["memory"]
    assert (m0.total, m0.system_reserved, m0.allocatable, m0.free) == (
        SEED_NUMA0,
        3 * Gi,
        131766128640,
        131766128640,
    )
    assert (m1.total, m1.system_reserved, m1.allocatable, m1.free) == (
        SEED_NUMA1,
        2148 * Mi,
        133034381312,
        133034381312,
    )
    assert st.machine_state[0].memory_map["hugepages-1Gi"] == mm.MemoryTable(0, 0, 0, 0, 0)
    assert [st.machine_state[n].cells for n in (0, 1)] == [[0], [1]]


def test_initial_state_hugepages_subtracted() -> None:
    """Hugepage totals are removed from the node's regular memory allocatable."""
    prof, facts = small_2numa()
    st = mm.initial_state(prof, facts)
    mem = st.machine_state[0].memory_map["memory"]
    assert mem.allocatable == 16 * Gi - 1124 * Mi - 512 * 2 * Mi - 1 * Gi
    assert st.machine_state[0].memory_map["hugepages-2Mi"].allocatable == 1 * Gi


# ------------------------------------------------------------------------------------ hints
def test_hints_single_numa_preferred() -> None:
    """A 2Gi request fits on each node: hints {0},{1} preferred and {0,1} non-preferred."""
    prof, facts = small_2numa()
    hints = mm.calculate_hints(mm.initial_state(prof, facts), {"memory": 2 * Gi})
    assert hints["memory"] == [
        TopologyHint(frozenset({0}), True),
        TopologyHint(frozenset({1}), True),
        TopologyHint(frozenset({0, 1}), False),
    ]


def test_hints_larger_than_any_node_is_preferred_pair() -> None:
    """150Gi exceeds each node's allocatable: the only mask {0,1} is the minimal one, so preferred."""
    hints = mm.calculate_hints(mm.initial_state(seed_profile(), seed_facts()), {"memory": 150 * Gi})
    assert hints == {"memory": [TopologyHint(frozenset({0, 1}), True)]}


def test_hints_single_node_full_makes_multi_numa_non_preferred() -> None:
    """In the seeds/000 state (group {0,1} holding the 150Gi pod), a 10Gi pod: node 1 alone could
    hold it by allocatable (minAffinitySize = 1) but is in a group, so only {0,1} remains and it
    is NOT preferred -> restricted/single-numa-node reject it."""
    st = mm.parse_state_file((FIX / "seed000_website.json").read_text())
    hints = mm.calculate_hints(st, {"memory": 10 * Gi})
    assert hints == {"memory": [TopologyHint(frozenset({0, 1}), False)]}


def test_hints_none_fit_is_empty_map() -> None:
    """No mask can hold the request: calculateHints returns an empty map (read as 'no preference'
    by the topology manager)."""
    prof, facts = small_2numa()
    assert mm.calculate_hints(mm.initial_state(prof, facts), {"memory": 40 * Gi}) == {}


# ------------------------------------------------------------------------------- allocation
def test_allocate_seed000_reproduces_dump() -> None:
    """Allocating the 150Gi container with no topology hint (policy none) picks {0,1}, fills NUMA 0
    first, then NUMA 1: exactly the seeds/000 machine state and entry."""
    st = mm.initial_state(seed_profile(), seed_facts())
    new = mm.allocate(st, "fa9bdd38-6df9-4cf9-aa67-8c4814da37a8", "guaranteed", {"memory": 150 * Gi}, None)
    seed = mm.parse_state_file((FIX / "seed000_website.json").read_text())
    assert mm.compare_states(seed, new) == []
    assert st.machine_state[0].number_of_assignments == 0  # the input state is not mutated


def test_allocate_hugepages_counts_two_assignments() -> None:
    """memory + hugepages on one node: numberOfAssignments += 2, free/reserved per type."""
    prof, facts = small_2numa()
    st = mm.allocate(
        mm.initial_state(prof, facts),
        "u",
        "c",
        {"memory": 2 * Gi, "hugepages-2Mi": 512 * Mi},
        TopologyHint(frozenset({1}), True),
    )
    n1 = st.machine_state[1]
    assert n1.number_of_assignments == 2 and n1.cells == [1]
    assert (
        n1.memory_map["hugepages-2Mi"].reserved == 512 * Mi
        and n1.memory_map["hugepages-2Mi"].free == 512 * Mi
    )
    assert [b.type for b in st.entries["u"]["c"]] == ["memory", "hugepages-2Mi"]


def test_allocate_errors_exact_text() -> None:
    """Nothing fits -> UnexpectedAdmissionError with the memory manager's default-hint error."""
    prof, facts = small_2numa()
    try:
        mm.allocate(mm.initial_state(prof, facts), "u", "c", {"memory": 40 * Gi}, None)
    except mm.AdmissionError as e:
        assert e.reason == "UnexpectedAdmissionError"
        assert e.message == (
            "Allocate failed due to [memorymanager] failed to get the default NUMA affinity, "
            "no NUMA nodes with enough memory is available, which is unexpected"
        )
    else:
        raise AssertionError("expected AdmissionError")


def test_allocate_extends_narrow_hint() -> None:
    """A merged hint {0} that cannot hold 20Gi is extended to the smallest hint containing it ({0,1})."""
    prof, facts = small_2numa()
    st = mm.allocate(
        mm.initial_state(prof, facts), "u", "c", {"memory": 20 * Gi}, TopologyHint(frozenset({0}), False)
    )
    assert st.entries["u"]["c"][0].numa_affinity == [0, 1]
    assert st.machine_state[0].cells == [0, 1] == st.machine_state[1].cells


def test_remove_container_restores_state() -> None:
    prof, facts = small_2numa()
    st0 = mm.initial_state(prof, facts)
    st1 = mm.allocate(st0, "u", "c", {"memory": 20 * Gi}, None)
    assert mm.compare_states(st0, mm.remove_container(st1, "u", "c")) == []


# ------------------------------------------------------------------------------- state file
def test_state_file_round_trip_and_json_shape() -> None:
    """parse -> to_state_json reproduces the file byte for byte (compact, Go field order, sorted
    map keys, real key 'cells')."""
    text = (FIX / "two_numa_hugepages.json").read_text().strip()
    st = mm.parse_state_file(text)
    assert mm.to_state_json(st) == text
    d = json.loads(text)
    assert list(d) == ["policyName", "machineState", "entries", "checksum"]
    assert list(d["machineState"]["0"]) == ["numberOfAssignments", "memoryMap", "cells"]


def test_checksum_matches_go_spew_fnv32a() -> None:
    """FNV-32a over go-spew's %#v dump: 2415093489 was computed by go-spew v1.1.1 + hash/fnv on the
    state.go struct definitions for this very file (see memorymanager.checksum)."""
    st = mm.parse_state_file((FIX / "two_numa_hugepages.json").read_text())
    assert mm.checksum(st) == 2415093489
    assert json.loads(mm.to_state_json(st))["checksum"] == 2415093489


def test_seed_checksum_not_reproducible() -> None:
    """The website dump's checksum 4142013182 matches neither the 'cells' nor the 'nodes' struct
    (go-spew computes 17296941 / 4089328381): the example was edited or from another struct."""
    st = mm.parse_state_file((FIX / "seed000_website.json").read_text())
    assert st.machine_state[0].cells == [0, 1]  # 'nodes' accepted
    assert mm.checksum(st, "Nodes") == 4089328381
    assert st.checksum == 4142013182 != mm.checksum(st)


def test_compare_states_reports_differences() -> None:
    expected = mm.parse_state_file((FIX / "two_numa_hugepages.json").read_text())
    actual = mm.parse_state_file((FIX / "two_numa_hugepages.json").read_text())
    actual.machine_state[0].memory_map["memory"].free -= 4096
    actual.entries["6f1c2a57-1f3e-4a39-9c1e-2d5b0c9e7a10"]["app"].reverse()  # order is ignored
    assert mm.compare_states(expected, actual) == [
        "NUMA node 0 memory.free: expected 11706302464, got 11706298368"
    ]


def test_validate_restart() -> None:
    """A file written for other reservations makes the kubelet refuse to start; a policy change
    is reported with the configured and stored names."""
    prof, facts = small_2numa()
    st = mm.parse_state_file((FIX / "two_numa_hugepages.json").read_text())
    assert mm.validate_restart(st, prof, facts) is None
    prof2, _ = small_2numa(reserved0="1Gi", reserved1="1124Mi")
    assert (
        mm.validate_restart(st, prof2, facts)
        == "[memorymanager] the expected machine state is different from the real one"
    )
    none = KubeletConfiguration()
    assert mm.validate_restart(st, none, facts) == (
        '[memorymanager] configured policy "None" differs from state checkpoint policy "Static"'
    )
