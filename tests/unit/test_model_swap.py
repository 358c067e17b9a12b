"""The swap rules of kuberuntime_container_linux.go (model.swap), against cases read from upstream."""

from __future__ import annotations

from typing import Any

import pytest

from harness.config.kubelet import KubeletConfiguration
from harness.config.node import NodeFacts
from harness.config.pod import Pod
from harness.model.cgroups import container_cgroups, expected_files

Mi, Gi = 1 << 20, 1 << 30


def prof(behavior: str = "", **kw: Any) -> KubeletConfiguration:
    return KubeletConfiguration.model_validate({"memorySwap": {"swapBehavior": behavior}, **kw})


def facts(**kw: Any) -> NodeFacts:
    base = {"memoryCapacity": "4Gi", "swap": "2Gi", "cpus": 2, "cgroupVersion": 2, "kubeletVersion": "1.33"}
    return NodeFacts.model_validate({**base, **kw})


def pod(*containers: tuple[dict[str, str], dict[str, str]], **spec: Any) -> Pod:
    cs = [
        {"name": f"c{i}", "resources": {"requests": r, "limits": lim}}
        for i, (r, lim) in enumerate(containers)
    ]
    return Pod.model_validate({"metadata": {"name": "p", "uid": "uid-p"}, "spec": {"containers": cs, **spec}})


def swap_files(p: Pod, profile: KubeletConfiguration, node: NodeFacts) -> list[dict[str, str]]:
    return [
        {k: v for k, v in expected_files(c, node.cgroup_version).items() if "swap" in k or "memsw" in k}
        for c in container_cgroups(p, profile, node)
    ]


BURSTABLE = pod(({"memory": "1Gi"}, {"memory": "2Gi"}))
GUARANTEED = pod(({"memory": "1Gi", "cpu": "1"}, {"memory": "1Gi", "cpu": "1"}))
BESTEFFORT = pod(({}, {}))


@pytest.mark.parametrize(
    "p", [BURSTABLE, GUARANTEED, BESTEFFORT], ids=["burstable", "guaranteed", "besteffort"]
)
@pytest.mark.parametrize("behavior", ["", "NoSwap"])
def test_noswap_on_v2_writes_zero_for_every_container(p: Pod, behavior: str) -> None:
    """ConfigureNoSwap on v2: Unified[memory.swap.max] = "0", limited or not."""
    assert swap_files(p, prof(behavior), facts()) == [{"memory.swap.max": "0"}]


def test_noswap_on_v1_is_memsw_equal_to_the_limit_and_absent_without_one() -> None:
    """ConfigureNoSwap on v1: MemorySwapLimitInBytes = MemoryLimitInBytes; 0 (no limit) is not written."""
    v1 = facts(cgroupVersion=1)
    assert swap_files(BURSTABLE, prof(), v1) == [{"memory.memsw.limit_in_bytes": str(2 * Gi)}]
    assert swap_files(BESTEFFORT, prof(), v1) == [{}]
    # LimitedSwap needs v2: NoSwap on v1
    assert swap_files(BURSTABLE, prof("LimitedSwap"), v1) == [{"memory.memsw.limit_in_bytes": str(2 * Gi)}]


def test_limitedswap_gives_a_burstable_container_its_request_share() -> None:
    """calcSwapForBurstablePods: int(request / MemoryCapacity * SwapCapacity); 1Gi of 4Gi with 2Gi swap."""
    assert swap_files(BURSTABLE, prof("LimitedSwap"), facts()) == [{"memory.swap.max": str(512 * Mi)}]
    # a request that is not a page multiple: truncated to bytes, then read back in whole pages
    odd = pod(({"memory": "100M"}, {}))
    share = int(100_000_000 / (4 * Gi) * (3 * Gi))
    assert swap_files(odd, prof("LimitedSwap"), facts(swap="3Gi")) == [
        {"memory.swap.max": str(share // 4096 * 4096)}
    ]


@pytest.mark.parametrize(
    ("p", "why"),
    [
        (GUARANTEED, "Guaranteed"),
        (BESTEFFORT, "BestEffort"),
        (
            pod(({"memory": "1Gi"}, {"memory": "1Gi"}), ({"cpu": "1"}, {})),
            "request == limit in a Burstable pod",
        ),
        (pod(({"cpu": "500m"}, {})), "no memory request or limit"),
        (pod(({"memory": "1Gi"}, {"memory": "2Gi"}), priorityClassName="system-node-critical"), "critical"),
        (pod(({"memory": "5Gi"}, {})), "request above MemoryCapacity"),
    ],
)
def test_limitedswap_refuses_everything_else(p: Pod, why: str) -> None:
    assert all(f == {"memory.swap.max": "0"} for f in swap_files(p, prof("LimitedSwap"), facts())), why


def test_limitedswap_needs_the_nodeswap_gate() -> None:
    """NodeSwap: beta off in 1.28/1.29, on from 1.30 (kube_features.go); a profile can turn it off."""
    off = prof("LimitedSwap", featureGates={"NodeSwap": False})
    assert swap_files(BURSTABLE, off, facts()) == [{"memory.swap.max": "0"}]


def test_nothing_without_a_swap_controller_or_before_1_30() -> None:
    assert swap_files(BURSTABLE, prof("LimitedSwap"), facts(swapController=False)) == [{}]
    assert swap_files(BURSTABLE, prof(), facts(kubeletVersion="1.29")) == [{}]


def test_unlimitedswap_is_refused_as_input() -> None:
    with pytest.raises(ValueError, match="swapBehavior"):
        prof("UnlimitedSwap")


def test_profile_round_trips_memory_swap() -> None:
    assert prof("LimitedSwap").to_yaml_dict()["memorySwap"] == {"swapBehavior": "LimitedSwap"}
    assert "memorySwap" not in KubeletConfiguration.model_validate({}).to_yaml_dict()


def test_pid_capacity_is_the_smaller_of_pid_max_and_threads_max() -> None:
    """pidlimit_linux.go Stats: MaxPID = min(pid_max, threads-max); a 4 GiB VM: 4194304 vs 31276."""
    from harness.model.node import internal_capacity

    assert internal_capacity(facts(pidMax=4194304, threadsMax=31276))["pid"] == 31276
    assert internal_capacity(facts(pidMax=32768, threadsMax=192736))["pid"] == 32768
    assert internal_capacity(facts(pidMax=32768))["pid"] == 32768


def test_container_hugetlb_limits_only_where_the_runtime_applies_them() -> None:
    """containerd's CRI default disable_hugetlb_controller = true: container hugetlb files stay max."""
    node = facts(numaNodes=[{"id": 0, "memory": "4Gi", "hugepages": {"2Mi": 0}}])
    (c,) = container_cgroups(BURSTABLE, prof(), node)
    assert c.hugetlb_limits == {}
    (c,) = container_cgroups(
        BURSTABLE,
        prof(),
        facts(numaNodes=[{"id": 0, "memory": "4Gi", "hugepages": {"2Mi": 0}}], runtimeHugetlb=True),
    )
    assert c.hugetlb_limits == {"hugepages-2Mi": 0}
