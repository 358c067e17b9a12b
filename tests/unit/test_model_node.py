"""Node allocatable, kubepods limits, startup validation and the version/gate table (spec §0, §1)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.config.kubelet import KubeletConfiguration
from harness.config.node import NodeFacts
from harness.model import versions
from harness.model.node import GoQuantity, go_quantity, node_allocatable

Ki, Mi, Gi = 1 << 10, 1 << 20, 1 << 30


def profile(**kw: Any) -> KubeletConfiguration:
    return KubeletConfiguration.model_validate(kw)


def facts(mem: int | str, **kw: Any) -> NodeFacts:
    return NodeFacts.model_validate({"memoryCapacity": mem, **kw})


def spec_13_example() -> tuple[KubeletConfiguration, NodeFacts]:
    p = profile(
        kubeReserved={"memory": "1Gi"},
        systemReserved={"memory": "500Mi"},
        evictionHard={"memory.available": "100Mi"},
    )
    f = facts("16Gi", numaNodes=[{"id": 0, "memory": "16Gi", "hugepages": {"2Mi": 512}}])
    return p, f


def test_spec_13_allocatable_subtracts_reserved_eviction_and_hugepages() -> None:
    """§1.3 worked example: 16384 − 1024 − 500 − 100 − 1024 (512 × 2Mi hugepages) = 13736Mi."""
    p, f = spec_13_example()
    na = node_allocatable(p, f)
    assert na.allocatable_memory == 13736 * Mi
    assert na.reservation == {"memory": (1024 + 500 + 100) * Mi}
    # hugepage allocatable = its capacity (nothing reserved for it)
    assert na.allocatable["hugepages-2Mi"] == 1 * Gi
    assert na.errors == []


def test_spec_15_kubepods_limit_keeps_eviction_and_hugepages() -> None:
    """§1.5: kubepods = capacity − system − kube reserved = 16384 − 1024 − 500 = 14860Mi; the 100Mi
    eviction threshold and the hugepages are NOT removed (getNodeAllocatableAbsoluteImpl)."""
    p, f = spec_13_example()
    na = node_allocatable(p, f)
    assert na.kubepods_memory_limit == 14860 * Mi
    assert na.memory_capacity == 16 * Gi


def test_seed_aks_7gib_node() -> None:
    """seeds/003: the DS2_v2 AKS node reports 7120616 KiB MemTotal, kube-reserved 1638Mi, no
    system-reserved; ``cat memory.limit_in_bytes`` on kubepods gives 5573943296, and with
    eviction-hard 1000Mi kubectl shows allocatable 4419304 KiB (with 750Mi: "4565 MiB")."""
    f = facts(7120616 * Ki)
    p = profile(kubeReserved={"memory": "1638Mi"}, evictionHard={"memory.available": "1000Mi"})
    na = node_allocatable(p, f)
    assert na.kubepods_memory_limit == 5573943296
    assert na.allocatable_memory == 4419304 * Ki
    p750 = profile(kubeReserved={"memory": "1638Mi"}, evictionHard={"memory.available": "750Mi"})
    assert node_allocatable(p750, f).allocatable_memory // Mi == 4565


def test_percentage_eviction_threshold_reserves_int64_of_capacity_times_fraction() -> None:
    """hardEvictionReservation: ``int64(capacity × float32(0.1))``; float32(0.1) is slightly above 0.1,
    so the result is the float product truncated, not 16Gi // 10."""
    f = facts("16Gi")
    na = node_allocatable(profile(evictionHard={"memory.available": "10%"}), f)
    import numpy as np

    expected = int(float(16 * Gi) * float(np.float32(10) / np.float32(100)))
    assert na.reservation["memory"] == expected
    assert na.allocatable_memory == 16 * Gi - expected


def test_soft_thresholds_reserve_nothing() -> None:
    """§1.2: only hard thresholds reserve; an explicit empty evictionHard leaves only the soft one."""
    p = profile(
        evictionHard={"nodefs.available": "10%"},
        evictionSoft={"memory.available": "1Gi"},
        evictionSoftGracePeriod={"memory.available": "1m"},
    )
    na = node_allocatable(p, facts("8Gi"))
    assert "memory" not in na.reservation
    assert na.allocatable_memory == 8 * Gi


def test_without_pods_enforcement_kubepods_gets_raw_capacity() -> None:
    """§1.5: if enforceNodeAllocatable lacks "pods", the kubepods limits are the internal capacity."""
    p = profile(kubeReserved={"memory": "1Gi", "cpu": "500m", "pid": "1000"}, enforceNodeAllocatable=[])
    f = facts("8Gi", cpus=4, pidMax=32768)
    na = node_allocatable(p, f)
    assert na.kubepods_limits == {"memory": 8 * Gi, "cpu": 4000, "pid": 32768}
    # but allocatable still drops the reservation
    assert na.allocatable_memory == 8 * Gi - 1 * Gi - 100 * Mi
    assert na.allocatable["cpu"] == 3500


def test_kubepods_cpu_and_pid_limits_subtract_reservations() -> None:
    p = profile(kubeReserved={"cpu": "500m", "pid": "1000"}, systemReserved={"cpu": "1"})
    na = node_allocatable(p, facts("8Gi", cpus=4, pidMax=32768))
    assert na.kubepods_limits["cpu"] == 2500
    assert na.kubepods_limits["pid"] == 31768
    # pid is internal capacity only: not part of status.allocatable nor of the reservation
    assert "pid" not in na.allocatable and "pid" not in na.reservation


def test_reservation_larger_than_capacity_gives_the_kubelet_error_text() -> None:
    """validateNodeAllocatable prints Quantity values with %v (Go struct form); the reservation is
    NewQuantity(0, DecimalSI) + 500Mi + 1Gi + 100Mi, which takes BinarySI from the first non-zero term."""
    p = profile(kubeReserved={"memory": "1Gi"}, systemReserved={"memory": "500Mi"})
    na = node_allocatable(p, facts("1Gi"))
    assert na.errors == [
        'invalid Node Allocatable configuration. Resource "memory" has a reservation of '
        "{{1702887424 0} {<nil>}  BinarySI} but capacity of {{1073741824 0} {<nil>}  BinarySI}. "
        "Expected capacity >= reservation."
    ]
    # allocatable is clamped at 0
    assert na.allocatable_memory == 0
    assert na.kubepods_memory_limit == 0


def test_validation_joins_all_failing_resources_in_one_error() -> None:
    p = profile(kubeReserved={"memory": "2Gi", "cpu": "3"})
    na = node_allocatable(p, facts("1Gi", cpus=2))
    assert len(na.errors) == 1
    msg = na.errors[0]
    assert msg.startswith('invalid Node Allocatable configuration. Resource "cpu" has a reservation of ')
    assert "{{3 0} {<nil>}  DecimalSI} but capacity of {{2000 -3} {<nil>}  DecimalSI}" in msg
    assert 'Resource "memory"' in msg


def test_go_quantity_parse_and_add() -> None:
    """ParseQuantity fast path keeps (mantissa, scale); Add aligns to the smaller scale."""
    assert go_quantity("1G") == GoQuantity(1, 9, "DecimalSI")
    assert go_quantity("500m") == GoQuantity(500, -3, "DecimalSI")
    assert go_quantity("1.5G") == GoQuantity(15, 8, "DecimalSI")
    assert go_quantity("100Mi") == GoQuantity(100 * Mi, 0, "BinarySI")
    s = GoQuantity(0, 0, "DecimalSI").add(GoQuantity()).add(go_quantity("1G")).add(go_quantity("100Mi"))
    assert s == GoQuantity(1_000_000_000 + 100 * Mi, 0, "DecimalSI")
    assert s.go_v() == "{{1104857600 0} {<nil>}  DecimalSI}"


# ---- §0 version matrix -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gate", "minor", "expected"),
    [
        ("SidecarContainers", 28, False),
        ("SidecarContainers", 29, True),
        ("PodLevelResources", 31, False),
        ("PodLevelResources", 33, False),
        ("PodLevelResources", 34, True),
        ("MemoryQoS", 34, False),
        ("QOSReserved", 30, False),
        ("MemoryManager", 28, True),
        ("DisableCPUQuotaWithExclusiveCPUs", 32, False),
        ("DisableCPUQuotaWithExclusiveCPUs", 33, True),
        ("NoSuchGate", 34, False),
    ],
)
def test_gate_defaults_follow_spec_table(gate: str, minor: int, expected: bool) -> None:
    assert versions.gate_enabled(gate, profile(), minor) is expected


def test_profile_feature_gates_override_defaults_only_where_the_gate_exists() -> None:
    p = profile(featureGates={"MemoryQoS": True, "PodLevelResources": True, "SidecarContainers": False})
    assert versions.gate_enabled("MemoryQoS", p, 30)
    assert versions.gate_enabled("PodLevelResources", p, 32)
    assert not versions.gate_enabled("PodLevelResources", p, 31)  # gate does not exist before 1.32
    assert not versions.gate_enabled("SidecarContainers", p, 30)


def test_hard_eviction_grace_override() -> None:
    """PR #124063: 0 s up to 1.30, 1 s from 1.31."""
    assert [versions.hard_eviction_grace_override_s(m) for m in range(28, 35)] == [0, 0, 0, 1, 1, 1, 1]
