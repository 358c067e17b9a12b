"""Cgroup values at every level and the files the kernel shows (spec §1.5, §4)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.config.kubelet import KubeletConfiguration
from harness.config.node import NodeFacts
from harness.config.pod import Pod
from harness.model.cgroups import (
    HUGEPAGES_UNBOUNDED,
    CgroupValues,
    cgroup_tree,
    container_cgroups,
    expected_files,
    kubepods_cgroup,
    memory_high,
    milli_cpu_to_quota,
    milli_cpu_to_shares,
    pod_cgroup,
    qos_cgroups,
    shares_to_weight_kubelet,
    shares_to_weight_runc,
)

Mi, Gi = 1 << 20, 1 << 30
UNLIMITED_V1 = "9223372036854771712"


def prof(**kw: Any) -> KubeletConfiguration:
    return KubeletConfiguration.model_validate(kw)


def facts(**kw: Any) -> NodeFacts:
    return NodeFacts.model_validate({"memoryCapacity": "16Gi", "cpus": 4, **kw})


def ctr(name: str, req: dict[str, Any] | None = None, lim: dict[str, Any] | None = None, **kw: Any) -> dict:
    return {"name": name, "resources": {"requests": req or {}, "limits": lim or {}}, **kw}


def mkpod(name: str, containers: list[dict], **spec: Any) -> Pod:
    return Pod.model_validate(
        {"metadata": {"name": name, "uid": f"uid-{name}"}, "spec": {"containers": containers, **spec}}
    )


GUAR = mkpod("g", [ctr("c", lim={"cpu": "2", "memory": "1Gi"})])
BURST = mkpod("b", [ctr("c", req={"cpu": "250m", "memory": "1Gi"}, lim={"memory": "2Gi"})])
BEST = mkpod("e", [ctr("c")])


# ---- §4.6 conversions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("m", "shares"), [(0, 2), (1, 2), (100, 102), (1000, 1024), (250, 256), (10**6, 262144)]
)
def test_milli_cpu_to_shares(m: int, shares: int) -> None:
    """MilliCPUToShares: 0 → 2, m·1024/1000 truncated, clamped to [2, 262144]."""
    assert milli_cpu_to_shares(m) == shares


@pytest.mark.parametrize(
    ("m", "quota"), [(0, 0), (1, 1000), (5, 1000), (250, 25000), (1000, 100000), (2500, 250000)]
)
def test_milli_cpu_to_quota(m: int, quota: int) -> None:
    """MilliCPUToQuota: 0 → 0, m·period/1000, minimum 1000 µs."""
    assert milli_cpu_to_quota(m, 100000) == quota


def test_weights() -> None:
    """Kubelet linear mapping: 2 → 1, 1024 → 39, 262144 → 10000; runc ≥ 1.3.2 quadratic: 1024 → 100."""
    assert [shares_to_weight_kubelet(s) for s in (2, 1024, 262144)] == [1, 39, 10000]
    assert [shares_to_weight_runc(s, "1.1.12") for s in (2, 1024, 262144)] == [1, 39, 10000]
    assert [shares_to_weight_runc(s, "1.3.2") for s in (2, 1024, 262144)] == [1, 100, 10000]
    assert shares_to_weight_runc(1024, "v1.4.0-rc.1") == 100
    assert shares_to_weight_runc(102, "1.3.0") == 4 and shares_to_weight_runc(102, "1.3.3") == 17


def test_memory_high_spec_example() -> None:
    """§4.7: req 1Gi, limit 2Gi, factor 0.9, 4 KiB pages → floor(1.9Gi / 4096) · 4096 = 2040107008."""
    assert memory_high(Gi, 2 * Gi, 0, 0.9, 4096) == 2040107008
    assert memory_high(Gi, Gi, 0, 0.9, 4096) is None  # Guaranteed: request == limit
    assert memory_high(0, 0, 8 * Gi, 0.9, 4096) is None  # BestEffort: req == limit == 0 (known gap)
    # no limit: anchored on allocatable = 8Gi → 1Gi + 7Gi·0.9
    assert memory_high(Gi, 0, 8 * Gi, 0.9, 4096) == (int((Gi + 7 * Gi * 0.9) // 4096)) * 4096


# ---- kubepods / QoS ---------------------------------------------------------------------------


def test_kubepods_values() -> None:
    """§4.2: memory = cap − reserved (16Gi − 1Gi), shares = MilliCPUToShares(4000 − 500) = 3584,
    pids = pid_max − reserved, hugetlb unbounded in steady state (QoS manager updates kubepods)."""
    p = prof(kubeReserved={"memory": "1Gi", "cpu": "500m", "pid": "100"})
    f = facts(pidMax=10000, numaNodes=[{"id": 0, "memory": "16Gi", "hugepages": {"2Mi": 4}}])
    v = kubepods_cgroup(p, f)
    assert (v.memory_limit_bytes, v.cpu_shares, v.pids_max) == (15 * Gi, 3584, 9900)
    assert v.cpu_weight == shares_to_weight_kubelet(3584)
    assert v.hugetlb_limits == {"hugepages-2Mi": HUGEPAGES_UNBOUNDED}
    assert v.cpu_quota_us is None


def test_qos_tiers_default() -> None:
    """§4.3: burstable shares = MilliCPUToShares(Σ Burstable cpu requests = 250m) = 256; besteffort 2;
    no memory limits without QOSReserved."""
    b, be = qos_cgroups(prof(), facts(), [GUAR, BURST, BEST])
    assert (b.path, b.cpu_shares, b.memory_limit_bytes) == ("kubepods/burstable", 256, None)
    assert (be.path, be.cpu_shares, be.memory_limit_bytes) == ("kubepods/besteffort", 2, None)


def test_qos_reserved_limits() -> None:
    """§4.3 QOSReserved 50%: allocatable = 16Gi − 1Gi = 15Gi; burstable = 15Gi − 1Gi·50% = 14.5Gi;
    besteffort = 14.5Gi − 1Gi·50% = 14Gi."""
    p = prof(
        kubeReserved={"memory": "1Gi"}, qosReserved={"memory": "50%"}, featureGates={"QOSReserved": True}
    )
    b, be = qos_cgroups(p, facts(), [GUAR, BURST, BEST])
    assert b.memory_limit_bytes == 15 * Gi - Gi // 2
    assert be.memory_limit_bytes == 14 * Gi
    # without the gate the setting is ignored
    p_off = prof(kubeReserved={"memory": "1Gi"}, qosReserved={"memory": "50%"})
    assert qos_cgroups(p_off, facts(), [GUAR, BURST])[0].memory_limit_bytes is None


def test_memory_qos_min_on_v2_only() -> None:
    """§4.3/§4.2: memory.min burstable = Σ Burstable requests (1Gi); kubepods = Guaranteed + Burstable (2Gi)."""
    p = prof(featureGates={"MemoryQoS": True})
    pods = [GUAR, BURST, BEST]
    b, _ = qos_cgroups(p, facts(cgroupVersion=2), pods)
    assert b.memory_min_bytes == Gi
    assert kubepods_cgroup(p, facts(cgroupVersion=2), pods).memory_min_bytes == 2 * Gi
    b1, _ = qos_cgroups(p, facts(cgroupVersion=1), pods)
    assert b1.memory_min_bytes is None


# ---- pod level --------------------------------------------------------------------------------


def test_guaranteed_pod_cgroup() -> None:
    """§4.4 Guaranteed: directly under kubepods; shares 2048, quota 200000/100000, memory 1Gi."""
    v = pod_cgroup(GUAR, prof(), facts())
    assert v.path == "kubepods/poduid-g"
    assert (v.cpu_shares, v.cpu_quota_us, v.cpu_period_us, v.memory_limit_bytes) == (2048, 200000, 100000, Gi)


def test_burstable_pod_cgroup_only_sets_declared_limits() -> None:
    """Burstable: memory limit declared (2Gi) but no cpu limit → no quota/period."""
    v = pod_cgroup(BURST, prof(), facts())
    assert v.path == "kubepods/burstable/poduid-b"
    assert (v.cpu_shares, v.cpu_quota_us, v.cpu_period_us, v.memory_limit_bytes) == (256, None, None, 2 * Gi)
    two = mkpod("b2", [ctr("a", lim={"memory": "1Gi"}, req={"cpu": "1"}), ctr("b", req={"memory": "1Gi"})])
    assert pod_cgroup(two, prof(), facts()).memory_limit_bytes is None


def test_besteffort_pod_cgroup_and_pids_and_quota_disabled() -> None:
    v = pod_cgroup(BEST, prof(podPidsLimit=1024), facts())
    assert (v.path, v.cpu_shares, v.memory_limit_bytes, v.pids_max) == (
        "kubepods/besteffort/poduid-e",
        2,
        None,
        1024,
    )
    g = pod_cgroup(GUAR, prof(cpuCFSQuota=False), facts())
    assert g.cpu_quota_us == -1


def test_pod_hugetlb_from_requests_and_zero_for_other_sizes() -> None:
    f = facts(numaNodes=[{"id": 0, "memory": "16Gi", "hugepages": {"2Mi": 512, "1Gi": 2}}])
    pod = mkpod("h", [ctr("c", lim={"cpu": "1", "memory": "1Gi", "hugepages-2Mi": "64Mi"})])
    assert pod_cgroup(pod, prof(), f).hugetlb_limits == {"hugepages-2Mi": 64 * Mi, "hugepages-1Gi": 0}


# ---- container level ----------------------------------------------------------------------------


def test_container_values_v2() -> None:
    """§4.5: limit 2Gi, shares 256 → runc 1.1.5 weight 1 + 254·9999/262142 = 10, period 100000 with no
    quota (0 is not written), oom.group on v2."""
    [c] = container_cgroups(BURST, prof(), facts(cgroupVersion=2, runcVersion="1.1.5"))
    assert c.path == "kubepods/burstable/poduid-b/c"
    assert (c.memory_limit_bytes, c.cpu_shares, c.cpu_weight) == (2 * Gi, 256, 10)
    assert (c.cpu_quota_us, c.cpu_period_us, c.oom_group) == (None, 100000, True)
    assert expected_files(c, 2)["cpu.max"] == "max 100000"


def test_container_memory_qos() -> None:
    p = prof(featureGates={"MemoryQoS": True})
    pod = mkpod("q", [ctr("c", req={"memory": "1Gi"}, lim={"memory": "2Gi"})])
    [c] = container_cgroups(pod, p, facts(cgroupVersion=2))
    assert (c.memory_min_bytes, c.memory_high_bytes) == (Gi, 2040107008)
    files = expected_files(c, 2)
    assert files["memory.high"] == "2040107008" and files["memory.min"] == str(Gi)
    [c1] = container_cgroups(pod, p, facts(cgroupVersion=1))
    assert c1.memory_high_bytes is None and c1.oom_group is None


def test_exclusive_cpus_disable_quota_from_133() -> None:
    """DisableCPUQuotaWithExclusiveCPUs (β on 1.33): static CPU manager + Guaranteed + integer cpu → −1."""
    p = prof(cpuManagerPolicy="static")
    [c33] = container_cgroups(GUAR, p, facts(kubeletVersion="1.33"))
    [c32] = container_cgroups(GUAR, p, facts(kubeletVersion="1.32"))
    assert c33.cpu_quota_us == -1 and c32.cpu_quota_us == 200000
    assert expected_files(c33, 1)["cpu.cfs_quota_us"] == "-1"


def test_sidecars_get_container_cgroups_plain_inits_do_not() -> None:
    pod = mkpod(
        "s",
        [ctr("main", req={"memory": "1Gi"})],
        initContainers=[ctr("side", restartPolicy="Always"), ctr("setup")],
    )
    names = [c.container for c in container_cgroups(pod, prof(), facts())]
    assert names == ["side", "main"]


def test_pod_level_limit_falls_back_to_containers_without_limits() -> None:
    pod = mkpod(
        "pl",
        [ctr("a"), ctr("b", lim={"memory": "512Mi"})],
        resources={"limits": {"memory": "1Gi", "cpu": "1"}},
    )
    a, b = container_cgroups(pod, prof(), facts(kubeletVersion="1.34"))
    assert a.memory_limit_bytes == Gi and b.memory_limit_bytes == 512 * Mi
    assert a.cpu_shares == 1024  # no cpu request: shares from the (pod-level) limit
    a33, _ = container_cgroups(pod, prof(), facts(kubeletVersion="1.33"))
    assert a33.memory_limit_bytes is None and a33.cpu_shares == 2


# ---- tree and files -----------------------------------------------------------------------------


def test_tree_order_and_disabled_cgroups_per_qos() -> None:
    tree = cgroup_tree(prof(), facts(), [GUAR, BURST])
    assert [v.level for v in tree] == ["kubepods", "qos", "qos", "pod", "container", "pod", "container"]
    assert cgroup_tree(prof(cgroupsPerQOS=False, enforceNodeAllocatable=[]), facts(), [GUAR]) == []


def test_expected_files_v1_and_v2() -> None:
    v = CgroupValues(
        level="pod", path="x", memory_limit_bytes=None, cpu_shares=2, cpu_weight=1, pids_max=None
    )
    assert expected_files(v, 1) == {"memory.limit_in_bytes": UNLIMITED_V1, "cpu.shares": "2"}
    assert expected_files(v, 2) == {"memory.max": "max", "cpu.weight": "1"}
    v2 = CgroupValues(
        level="container", path="y", memory_limit_bytes=1000 * 4096 + 123, cpu_shares=1024, cpu_weight=39,
        cpu_quota_us=50000, cpu_period_us=100000, pids_max=-1, oom_group=True,
        hugetlb_limits={"hugepages-2Mi": 3 * Mi},
    )  # fmt: skip
    assert expected_files(v2, 1) == {
        "memory.limit_in_bytes": str(1000 * 4096),  # rounded down to pages
        "cpu.shares": "1024",
        "cpu.cfs_period_us": "100000",
        "cpu.cfs_quota_us": "50000",
        "pids.max": "max",
        "hugetlb.2MB.limit_in_bytes": str(2 * Mi),  # rounded down to huge pages
    }
    assert expected_files(v2, 2) == {
        "memory.max": str(1000 * 4096),
        "cpu.weight": "39",
        "cpu.max": "50000 100000",
        "pids.max": "max",
        "hugetlb.2MB.max": str(2 * Mi),
        "memory.oom.group": "1",
    }


def test_seed_kubepods_limit_file_v1() -> None:
    """seeds/003: ``cat /sys/fs/cgroup/memory/kubepods/memory.limit_in_bytes`` → 5573943296."""
    f = NodeFacts.model_validate({"memoryCapacity": 7120616 * 1024, "cgroupVersion": 1})
    v = kubepods_cgroup(
        prof(kubeReserved={"memory": "1638Mi"}, evictionHard={"memory.available": "750Mi"}), f
    )
    assert expected_files(v, 1)["memory.limit_in_bytes"] == "5573943296"
