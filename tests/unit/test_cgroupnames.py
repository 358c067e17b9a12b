"""The kubelet's cgroup names by driver (model.cgroupnames), against upstream's own examples."""

from __future__ import annotations

import pytest

from harness.model.cgroupnames import container_dir, expand_slice, kubelet_cgroup, pod_cgroup


def test_expand_slice_as_runc_does() -> None:
    """libcontainer/cgroups/systemd ExpandSlice cases (its unit test table)."""
    assert expand_slice("-.slice") == ""
    assert expand_slice("test.slice") == "test.slice"
    assert expand_slice("test-a.slice") == "test.slice/test-a.slice"
    assert expand_slice("test-a-b.slice") == "test.slice/test-a.slice/test-a-b.slice"
    for bad in ("test-a-.slice", "-test.slice", "test--a.slice", "test/a.slice", "test.scope"):
        with pytest.raises(ValueError):
            expand_slice(bad)


def test_the_kubelets_own_example() -> None:
    """cgroup_manager_linux.go ToSystemd: {"kubepods", "burstable", "pod1234-abcd-5678-efgh"}."""
    assert kubelet_cgroup("kubepods/burstable/pod1234-abcd-5678-efgh", "systemd") == (
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_abcd_5678_efgh.slice"
    )
    assert kubelet_cgroup("kubepods", "systemd") == "kubepods.slice"
    assert kubelet_cgroup("kubepods/burstable", "cgroupfs") == "kubepods/burstable"
    assert kubelet_cgroup("", "systemd") == ""


def test_pods_and_containers() -> None:
    uid = "8c636f80-d933-400b-950d-967f31ade9bb"
    assert pod_cgroup(uid, "Guaranteed", "systemd") == (
        "kubepods.slice/kubepods-pod8c636f80_d933_400b_950d_967f31ade9bb.slice"
    )
    assert pod_cgroup(uid, "BestEffort", "cgroupfs") == f"kubepods/besteffort/pod{uid}"
    assert container_dir("abc", "systemd") == "cri-containerd-abc.scope"
    assert container_dir("abc", "cgroupfs") == "abc"
