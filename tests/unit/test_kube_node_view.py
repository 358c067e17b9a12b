"""The node the model sees on a real kubelet: its memory as the kubelet read it when it started."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cluster.ceiling import mem_total
from harness.errors import HostError
from harness.launch.kubernetes.backend import KubernetesBackend

MiB = 1 << 20


class _Cluster:
    """What node_view reads of a cluster: its record and the kubelet's root (checkpoints)."""

    def __init__(self, root: Path, record: dict[str, Any]) -> None:
        self.kubelet_root = root
        self._record = record

    def record(self) -> dict[str, Any]:
        return dict(self._record)


def test_mem_total_is_cadvisors_memtotal_in_bytes(tmp_path: Path) -> None:
    p = tmp_path / "meminfo"
    p.write_text("MemTotal:        4026968 kB\nMemFree:         3000000 kB\nSwapTotal:  0 kB\n")
    assert mem_total(p) == 4026968 * 1024
    (tmp_path / "empty").write_text("MemFree: 1 kB\n")
    with pytest.raises(HostError, match="no MemTotal"):
        mem_total(tmp_path / "empty")


def test_the_capacity_is_the_kubelets_start_value_not_the_hosts_later_read(tmp_path: Path) -> None:
    # MemTotal grew after the kubelet started (memory onlined): the kubelet keeps its start value
    at_start = 4123623424 - 10692 * 1024
    cluster = _Cluster(
        tmp_path,
        {
            "version": "v1.33.4",
            "mem_total_at_kubelet_start": at_start,
            "numa_memory_at_kubelet_start": {"0": 2 << 30},
        },
    )
    view = KubernetesBackend(cluster).node_view({"memoryCapacity": 4123623424})  # type: ignore[arg-type]
    assert view.memory_capacity_bytes == at_start
    assert view.numa_memory_bytes == {"0": 2 << 30}
    assert view.kubelet_version == "1.33"


def test_without_a_start_value_the_hosts_memory_is_the_capacity(tmp_path: Path) -> None:
    # a cluster started before the harness recorded it (or not by this harness)
    cluster = _Cluster(tmp_path, {"version": "1.32.5"})
    view = KubernetesBackend(cluster).node_view({"memoryCapacity": 3000 * MiB})  # type: ignore[arg-type]
    assert view.memory_capacity_bytes == 3000 * MiB
    assert view.kubelet_version == "1.32"
    assert KubernetesBackend(cluster).node_view({}).memory_capacity_bytes is None  # type: ignore[arg-type]


def test_numa_sizes_come_from_the_static_managers_checkpoint_first(tmp_path: Path) -> None:
    (tmp_path / "memory_manager_state").write_text(
        json.dumps(
            {
                "policyName": "Static",
                "machineState": {"0": {"memoryMap": {"memory": {"total": 1900 * MiB}}}},
            }
        )
    )
    cluster = _Cluster(tmp_path, {"numa_memory_at_kubelet_start": {"0": 2000 * MiB}})
    view = KubernetesBackend(cluster).node_view({})  # type: ignore[arg-type]
    assert view.numa_memory_bytes == {"0": 1900 * MiB}


def test_an_empty_v2_cpuset_mems_is_read_as_the_nodes_the_kernel_applies(tmp_path: Path) -> None:
    from harness.launch.kubernetes.backend import _cpuset_mems

    pinned = tmp_path / "kubepods.slice" / "pinned.scope"
    shared = tmp_path / "kubepods.slice" / "shared.scope"
    for d, mems in ((pinned, "0\n"), (shared, "\n")):
        d.mkdir(parents=True)
        (d / "cpuset.mems").write_text(mems)
        (d / "cpuset.mems.effective").write_text("0-1\n")
    assert _cpuset_mems("kubepods.slice/pinned.scope", tmp_path) == "0"
    assert _cpuset_mems("kubepods.slice/shared.scope", tmp_path) == "0-1"
    assert _cpuset_mems("kubepods.slice/gone.scope", tmp_path) is None


def test_the_harness_ceiling_on_kubepods_is_recorded_as_the_kernel_shows_it(
    tmp_path: Path, monkeypatch: Any
) -> None:
    # lab ka: MemTotal 4123615232 -> pod_ceiling 2233624918 written, memory.max read 2233622528
    import harness.launch.kubernetes.backend as backend_mod

    monkeypatch.setattr(backend_mod, "ceiling_mem_total", lambda: 4123615232)
    assert KubernetesBackend(_Cluster(tmp_path, {})).harness_limits() == {"kubepods": 2233622528}  # type: ignore[arg-type]
