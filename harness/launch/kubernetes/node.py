"""The node as the kubelet sees it: what it already uses, and each NUMA node's size at its start."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from harness.host.cgroups import cgroup_version, memory_root
from harness.model.predict import Baseline
from harness.sample.cgroupfs import parse_memory_stat, v2_root_usage
from harness.sample.procfs import parse_meminfo, zoneinfo_low_pages


def baseline(
    kubepods: str = "kubepods",
    root: Path | None = None,
    meminfo: Path = Path("/proc/meminfo"),
    zoneinfo: Path = Path("/proc/zoneinfo"),
) -> Baseline:
    """What the node already uses before a scenario, as cAdvisor computes it for the kubelet:
    working set = usage - total_inactive_file (cadvisor container/libcontainer/handler.go
    setMemoryStats; the eviction manager's memory.available = capacity - root working set).

    The cgroup v2 root has no ``memory.current``: its usage is ``anon + file`` of its
    ``memory.stat`` (runc / opencontainers-cgroups fs2/memory.go ``rootStatsFromMeminfo``, which
    cAdvisor calls for the root), ``sample.cgroupfs.v2_root_usage``. ``root`` is the memory
    hierarchy (the host's when None; then the node's global OOM point comes from ``meminfo``, and
    the point where the kernel starts to reclaim the root's page cache from ``meminfo`` and
    ``zoneinfo``: ``Baseline.root_free_before_reclaim``)."""
    mem = root if root is not None else memory_root(cgroup_version())
    out = {}
    files = {}
    for name, d in (("root", mem), ("kubepods", mem / kubepods)):
        try:
            if (d / "memory.usage_in_bytes").exists():
                usage = int((d / "memory.usage_in_bytes").read_text())
                stat = parse_memory_stat((d / "memory.stat").read_text())
                inactive = stat.get("total_inactive_file", 0)
                active = stat.get("total_active_file", 0)
            else:
                stat = parse_memory_stat((d / "memory.stat").read_text())
                current = d / "memory.current"
                usage = int(current.read_text()) if current.exists() else v2_root_usage(stat)
                inactive = stat.get("inactive_file", 0)
                active = stat.get("active_file", 0)
        except (OSError, ValueError):
            usage, inactive, active = 0, 0, 0
        out[name] = (usage, max(0, usage - inactive))
        files[name] = (active, inactive)
    whole_node = root is None
    return Baseline(
        root_working_set=out["root"][1],
        kubepods_working_set=out["kubepods"][1],
        root_usage=out["root"][0],
        kubepods_usage=out["kubepods"][0],
        # the kubelet's node is the whole machine: its global OOM comes when what the kernel
        # calls available is gone (Baseline.root_unavailable)
        root_unavailable=unavailable(meminfo) if whole_node else None,
        root_active_file=files["root"][0],
        root_inactive_file=files["root"][1],
        root_free_before_reclaim=free_before_reclaim(meminfo, zoneinfo) if whole_node else None,
    )


def free_before_reclaim(
    meminfo: Path = Path("/proc/meminfo"), zoneinfo: Path = Path("/proc/zoneinfo")
) -> int | None:
    """``MemFree`` less every zone's low watermark, in bytes: what allocations take before the
    kernel reclaims page cache (None when either file cannot say)."""
    try:
        free = parse_meminfo(meminfo.read_text(), ("MemFree",)).get("MemFree")
        low = zoneinfo_low_pages(zoneinfo.read_text())
    except (OSError, ValueError):
        return None
    if free is None or low == 0:
        return None
    return max(0, free - low * os.sysconf("SC_PAGE_SIZE"))


def unavailable(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """``MemTotal - MemAvailable`` in bytes (None when /proc/meminfo cannot say)."""
    try:
        kv = parse_meminfo(meminfo.read_text(), ("MemTotal", "MemAvailable"))
    except (OSError, ValueError):
        return None
    if len(kv) != 2:
        return None
    return kv["MemTotal"] - kv["MemAvailable"]


def memory_capacity(cluster: Any) -> int | None:
    """The node's memory capacity as the running kubelet computed it: MemTotal read once when it
    started (pkg/kubelet/kubelet.go setCachedMachineInfo, cm.CapacityFromMachineInfo; the kubelet
    never re-reads it). The harness reads it just before each kubelet start (equal to cAdvisor's
    ``MemoryCapacity`` in the kubelet's log on lab ka), so that a host whose MemTotal moves later
    (memory onlined or ballooned) keeps the kubelet's value. None before a kubelet started by this
    harness."""
    with contextlib.suppress(TypeError, ValueError):
        v = cluster.record().get("mem_total_at_kubelet_start")
        return int(v) if v else None
    return None


def numa_memory(cluster: Any) -> dict[str, int]:
    """Each NUMA node's memory as the running kubelet saw it at its start: from its memory
    manager's checkpoint when there is one (machineState.<node>.memoryMap.memory.total, exactly
    what cAdvisor reported to it), else from the harness's read just before the kubelet started
    (on this VM memory is onlined over time, so later reads differ)."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        state = json.loads((cluster.kubelet_root / "memory_manager_state").read_text())
        if state.get("policyName") == "Static" and state.get("machineState"):
            return {str(n): int(v["memoryMap"]["memory"]["total"]) for n, v in state["machineState"].items()}
    return {str(k): int(v) for k, v in (cluster.record().get("numa_memory_at_kubelet_start") or {}).items()}
