"""Cgroup values written by the kubelet and the runtime (kubelet-memory-spec.md §4).

Levels and sources (each verified against a 1.3x snapshot unless flagged):

* ``kubepods`` — k8s: pkg/kubelet/cm/node_container_manager_linux.go ``enforceNodeAllocatableCgroups``
  / ``getCgroupConfig``: memory, cpu.shares = MilliCPUToShares(cpu), pids, hugetlb; no CFS quota.
  The QoS manager's ``UpdateCgroups`` (k8s: pkg/kubelet/cm/qos_container_manager_linux.go) also
  updates this cgroup — it *is* the "Guaranteed" QoS config — every minute: hugetlb limits become
  ``1 << 62`` for every page size (``setHugePagesConfig`` covers all three configs) and, with
  MemoryQoS on v2, ``memory.min`` = Σ requests of Guaranteed + Burstable pods. The steady state is
  modelled, so kubepods hugetlb = ``1 << 62`` (NOTE: spec §4.2 lists "capacity − reserved", which is
  only the value written at start-up before the first QoS update).
* QoS tiers — ``qos_container_manager_linux.go`` ``setCPUCgroupConfig`` (burstable shares from Σ cpu
  requests of Burstable pods, besteffort 2), ``setHugePagesUnbounded`` (1 << 62), ``setMemoryReserve``
  (QOSReserved), ``setMemoryQoS`` (memory.min).
* pod — k8s: pkg/kubelet/cm/helpers_linux.go ``ResourceConfigForPod`` (verified 1.3x snapshot with
  pod-level resources); pids from pod_container_manager_linux.go (``podPidsLimit > 0``) [inferred];
  hugetlb page sizes not requested are written as 0 by cgroup_manager_linux.go ``toResources``
  [inferred].
* container — k8s: pkg/kubelet/kuberuntime/kuberuntime_container_linux.go
  ``generateLinuxContainerResources`` / ``calculateLinuxResources`` / ``GetHugepageLimitsFromResources``
  (verified 1.33+ snapshot), applied by containerd/runc: a zero CRI ``cpu_quota`` is not written
  (containerd ``WithResources``), so the kernel default (-1 / ``max``) stays.

Paths use cgroupfs naming relative to the cgroup root: ``kubepods``, ``kubepods/burstable``,
``kubepods/burstable/pod<uid>``, ``kubepods/burstable/pod<uid>/<container name>`` (the real
container directory is named by the runtime, e.g. ``cri-containerd-<id>.scope``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from harness import quantity
from harness.config.kubelet import KubeletConfiguration
from harness.config.node import NodeFacts
from harness.config.pod import Pod
from harness.model.node import HUGEPAGES_PREFIX, node_allocatable
from harness.model.oom import container_oom_group
from harness.model.qos import BESTEFFORT, BURSTABLE, GUARANTEED, QOSClass, pod_qos
from harness.model.resources import (
    CPU,
    MEMORY,
    ContainerView,
    limits_declared,
    pod_limits_exact,
    pod_requests,
    pod_requests_exact,
    pod_view,
    to_int,
)
from harness.model.swap import container_swap
from harness.model.versions import gate_enabled

CgroupLevel = Literal["kubepods", "qos", "pod", "container"]

# k8s: pkg/kubelet/cm/helpers_linux.go (kernel limits, kernel/sched/sched.h MIN_SHARES/MAX_SHARES)
MIN_SHARES = 2
MAX_SHARES = 262144
SHARES_PER_CPU = 1024
MILLI_CPU_TO_CPU = 1000
QUOTA_PERIOD = 100000  # 100 ms, helpers_linux.go QuotaPeriod
MIN_QUOTA_PERIOD = 1000  # 1 ms, helpers_linux.go MinQuotaPeriod (kernel/sched/core.c)
# qos_container_manager_linux.go setHugePagesUnbounded: int64(1 << 62)
HUGEPAGES_UNBOUNDED = 1 << 62
# linux: include/linux/page_counter.h PAGE_COUNTER_MAX = LONG_MAX / PAGE_SIZE (64-bit)
LONG_MAX = (1 << 63) - 1
KUBEPODS = "kubepods"  # node_container_manager_linux.go defaultNodeAllocatableCgroupName


@dataclass
class CgroupValues:
    level: CgroupLevel
    path: str
    memory_limit_bytes: int | None = None  # None = not written (kernel default: unlimited)
    cpu_shares: int | None = None  # the v1 value (on v2 the input of the weight conversion)
    cpu_weight: int | None = None  # cgroup v2 only
    cpu_quota_us: int | None = None  # None = not written; -1 = written as unlimited
    cpu_period_us: int | None = None
    pids_max: int | None = None
    memory_min_bytes: int | None = None  # v2 MemoryQoS
    memory_high_bytes: int | None = None  # v2 MemoryQoS (containers)
    oom_group: bool | None = None  # v2 memory.oom.group written by the runtime
    swap_max_bytes: int | None = None  # v2 memory.swap.max written for the container (model.swap)
    memsw_limit_bytes: int | None = None  # v1 memory.memsw.limit_in_bytes (model.swap)
    hugetlb_limits: dict[str, int] = field(default_factory=dict)  # "hugepages-2Mi" -> bytes
    qos: QOSClass | None = None
    pod_uid: str | None = None
    container: str | None = None


# ---------------------------------------------------------------------------------------------
# conversions (spec §4.6)


def milli_cpu_to_shares(m: int) -> int:
    """helpers_linux.go ``MilliCPUToShares``: 0 → 2; ``m*1024/1000`` clamped to [2, 262144]."""
    if m == 0:
        return MIN_SHARES
    shares = (m * SHARES_PER_CPU) // MILLI_CPU_TO_CPU
    return max(MIN_SHARES, min(MAX_SHARES, shares))


def milli_cpu_to_quota(m: int, period_us: int) -> int:
    """helpers_linux.go ``MilliCPUToQuota``: 0 → 0; ``m*period/1000``, at least 1000 µs.

    (The kubelet forces ``period_us`` to 100000 unless the CPUCFSQuotaPeriod gate is on; callers pass
    the effective period.)
    """
    if m == 0:
        return 0
    return max(MIN_QUOTA_PERIOD, (m * period_us) // MILLI_CPU_TO_CPU)


def shares_to_weight_kubelet(s: int) -> int:
    """k8s: pkg/kubelet/cm/cgroup_v2_manager_linux.go ``CpuSharesToCpuWeight`` (linear):
    ``1 + ((shares − 2) * 9999) / 262142`` — used for kubepods, QoS and pod cgroups."""
    return 1 + ((s - 2) * 9999) // 262142


def _version_tuple(v: str) -> tuple[int, int, int]:
    m = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", v.strip())
    if not m:
        raise ValueError(f"invalid runtime version {v!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def shares_to_weight_runc(s: int, runc_version: str) -> int:
    """cpu.weight runc writes for a container's CRI ``cpu_shares`` on cgroup v2.

    runc < 1.3.2: opencontainers/cgroups ``ConvertCPUSharesToCgroupV2Value`` linear formula.
    runc ≥ 1.3.2 (and 1.4.0-rc.1+): quadratic fit ``ceil(10^((l² + 125 l)/612 − 7/34))``, l = log2(shares),
    clamped to [1, 10000] (runc PRs #4772/#4785, kubernetes issue #131216; copy in k8s: test/e2e_node).
    """
    if s == 0:
        return 0
    if _version_tuple(runc_version) < RUNC_NEW_CONVERSION:
        return 1 + ((s - 2) * 9999) // 262142
    if s <= 2:
        return 1
    if s >= MAX_SHARES:
        return 10000
    lg = math.log2(s)
    return math.ceil(10 ** ((lg * lg + 125 * lg) / 612.0 - 7.0 / 34.0))


# crun >= 1.23 converts with the same quadratic formula as runc >= 1.3.2 (containers/crun PR #1767
# "cgroup: change conversion from CPU shares to weight", issue #1721, released in crun 1.23)
CRUN_NEW_CONVERSION = (1, 23, 0)
# runc 1.3.2 (opencontainers/runc PR #4785, libcontainer/cgroups ``ConvertCPUSharesToCgroupV2Value``)
RUNC_NEW_CONVERSION = (1, 3, 2)


def container_cpu_weight(s: int, facts: NodeFacts) -> int:
    """cpu.weight the node's OCI runtime writes for a container's CRI ``cpu_shares`` (cgroup v2).

    The kubelet's own cgroups (kubepods, QoS, pod) use ``shares_to_weight_kubelet``; containers are
    created by the runtime: runc below 1.3.2 and crun below 1.23 keep the linear formula, newer
    ones the quadratic fit (``shares_to_weight_runc``)."""
    if facts.oci_runtime == "crun":
        new = _version_tuple(facts.crun_version) >= CRUN_NEW_CONVERSION
        return shares_to_weight_runc(s, "1.3.2" if new else "1.1.0")
    return shares_to_weight_runc(s, facts.runc_version)


def _hugepage_unit(resource: str) -> str:
    """``hugepages-2Mi`` → ``2MB`` (k8s: pkg/apis/core/v1/helper ``HugePageUnitSizeFromByteSize``)."""
    size = quantity.to_bytes(resource.removeprefix(HUGEPAGES_PREFIX))
    units = ["B", "KB", "MB", "GB", "TB", "PB"]
    i = 0
    while size >= 1024 and size % 1024 == 0 and i < len(units) - 1:
        size //= 1024
        i += 1
    return f"{size}{units[i]}"


def _host_hugepage_sizes(facts: NodeFacts) -> list[str]:
    """Page sizes libcontainer ``HugePageSizes()`` would list: those the facts know about."""
    return sorted(facts.hugepages_capacity)


def _weight(shares: int | None, facts: NodeFacts) -> int | None:
    if facts.cgroup_version != 2 or shares is None:
        return None
    return shares_to_weight_kubelet(shares)


def _memory_qos(profile: KubeletConfiguration, facts: NodeFacts) -> bool:
    return gate_enabled("MemoryQoS", profile, facts.kubelet_minor) and facts.cgroup_version == 2


def _qos_memory_requests(
    profile: KubeletConfiguration, facts: NodeFacts, pods: list[Pod]
) -> dict[QOSClass, int]:
    """``getQoSMemoryRequests``: Σ PodRequests(memory) per class (BestEffort skipped)."""
    out: dict[QOSClass, int] = {GUARANTEED: 0, BURSTABLE: 0}
    minor = facts.kubelet_minor
    for p in pods:
        q = pod_qos(p, profile, minor)
        if q == BESTEFFORT:
            continue
        out[q] += pod_requests(p, profile, minor).get(MEMORY, 0)
    return out


def _go_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


# ---------------------------------------------------------------------------------------------
# levels


def kubepods_cgroup(
    profile: KubeletConfiguration, facts: NodeFacts, pods: list[Pod] | None = None
) -> CgroupValues:
    """The node-allocatable cgroup in steady state (§1.5, §4.2). ``pods`` only feeds MemoryQoS."""
    na = node_allocatable(profile, facts)
    lim = na.kubepods_limits
    shares = milli_cpu_to_shares(lim[CPU])
    v = CgroupValues(
        level="kubepods",
        path=KUBEPODS,
        memory_limit_bytes=lim["memory"],
        cpu_shares=shares,
        cpu_weight=_weight(shares, facts),
        pids_max=lim.get("pid"),
    )
    if profile.cgroups_per_qos:
        v.hugetlb_limits = {size: HUGEPAGES_UNBOUNDED for size in _host_hugepage_sizes(facts)}
    else:
        v.hugetlb_limits = {k: val for k, val in lim.items() if k.startswith(HUGEPAGES_PREFIX)}
    if _memory_qos(profile, facts) and pods is not None:
        reqs = _qos_memory_requests(profile, facts, pods)
        total = reqs[GUARANTEED] + reqs[BURSTABLE]
        if total > 0:
            v.memory_min_bytes = total
    return v


def qos_cgroups(profile: KubeletConfiguration, facts: NodeFacts, pods: list[Pod]) -> list[CgroupValues]:
    """``kubepods/burstable`` and ``kubepods/besteffort`` after ``UpdateCgroups`` (§4.3)."""
    minor = facts.kubelet_minor
    burstable_cpu = sum(
        pod_requests(p, profile, minor).get(CPU, 0) for p in pods if pod_qos(p, profile, minor) == BURSTABLE
    )
    hugetlb = {size: HUGEPAGES_UNBOUNDED for size in _host_hugepage_sizes(facts)}
    b_shares = milli_cpu_to_shares(burstable_cpu)
    burstable = CgroupValues(
        level="qos",
        path=f"{KUBEPODS}/burstable",
        cpu_shares=b_shares,
        cpu_weight=_weight(b_shares, facts),
        hugetlb_limits=dict(hugetlb),
        qos=BURSTABLE,
    )
    besteffort = CgroupValues(
        level="qos",
        path=f"{KUBEPODS}/besteffort",
        cpu_shares=MIN_SHARES,
        cpu_weight=_weight(MIN_SHARES, facts),
        hugetlb_limits=dict(hugetlb),
        qos=BESTEFFORT,
    )
    reqs = _qos_memory_requests(profile, facts, pods)
    if _memory_qos(profile, facts) and reqs[BURSTABLE] > 0:
        burstable.memory_min_bytes = reqs[BURSTABLE]
    pct_text = profile.qos_reserved.get("memory")
    if gate_enabled("QOSReserved", profile, minor) and pct_text is not None:
        pct = int(str(pct_text).rstrip("%"))
        allocatable = node_allocatable(profile, facts).allocatable_absolute.get(MEMORY, 0)
        if allocatable > 0:
            # setMemoryReserve (Go int64 arithmetic)
            b_limit = allocatable - _go_div(reqs[GUARANTEED] * pct, 100)
            be_limit = b_limit - _go_div(reqs[BURSTABLE] * pct, 100)
            burstable.memory_limit_bytes = b_limit
            besteffort.memory_limit_bytes = be_limit
    return [burstable, besteffort]


def pod_cgroup_path(pod: Pod, qos: QOSClass) -> str:
    parent = KUBEPODS if qos == GUARANTEED else f"{KUBEPODS}/{qos.lower()}"
    return f"{parent}/pod{pod.uid}"


def _effective_period(profile: KubeletConfiguration, minor: int) -> int:
    return profile.cfs_period_us if gate_enabled("CPUCFSQuotaPeriod", profile, minor) else QUOTA_PERIOD


def pod_cgroup(pod: Pod, profile: KubeletConfiguration, facts: NodeFacts) -> CgroupValues:
    """``ResourceConfigForPod`` (§4.4)."""
    minor = facts.kubelet_minor
    view = pod_view(pod, profile, minor)
    qos = pod_qos(pod, profile, minor)
    reqs = pod_requests_exact(view)
    limits = pod_limits_exact(view)
    cpu_declared, mem_declared = limits_declared(pod, profile, minor)
    cpu_req = to_int(CPU, reqs.get(CPU, Decimal(0)))
    cpu_lim = to_int(CPU, limits.get(CPU, Decimal(0)))
    mem_lim = to_int(MEMORY, limits.get(MEMORY, Decimal(0)))
    shares = milli_cpu_to_shares(cpu_req)
    # ResourceConfigForPod(pod, enforceCPULimits=cpuCFSQuota, cpuPeriod=config period, ...):
    # MilliCPUToQuota forces 100000 without the CPUCFSQuotaPeriod gate, CPUPeriod is the config value
    period = profile.cfs_period_us
    quota = milli_cpu_to_quota(cpu_lim, _effective_period(profile, minor))
    if not profile.cpu_cfs_quota:
        quota = -1
    v = CgroupValues(level="pod", path=pod_cgroup_path(pod, qos), qos=qos, pod_uid=pod.uid)
    if qos == GUARANTEED:
        v.cpu_shares, v.cpu_quota_us, v.cpu_period_us, v.memory_limit_bytes = shares, quota, period, mem_lim
    elif qos == BURSTABLE:
        v.cpu_shares = shares
        if cpu_declared:
            v.cpu_quota_us, v.cpu_period_us = quota, period
        if mem_declared:
            v.memory_limit_bytes = mem_lim
    else:
        v.cpu_shares = MIN_SHARES
    v.cpu_weight = _weight(v.cpu_shares, facts)
    # HugePageLimits(reqs), and 0 for every host page size not requested
    hugetlb = {size: 0 for size in _host_hugepage_sizes(facts)}
    for k, val in reqs.items():
        if k.startswith(HUGEPAGES_PREFIX):
            hugetlb[k] = hugetlb.get(k, 0) + to_int(k, val)
    v.hugetlb_limits = hugetlb
    if _memory_qos(profile, facts):
        mem_req = to_int(MEMORY, reqs.get(MEMORY, Decimal(0)))
        if mem_req > 0:
            v.memory_min_bytes = mem_req
    if profile.pod_pids_limit > 0:
        v.pids_max = profile.pod_pids_limit
    return v


def memory_high(request: int, limit: int, allocatable: int, factor: float, page_size: int) -> int | None:
    """MemoryQoS ``memory.high`` of a container (§4.7, 1.27+ formula), None when not set.

    ``int64(math.Floor(req + (limit|allocatable − req) * factor) / pageSize) * pageSize``; set only if
    request != limit, the result is non-zero and above the request.
    """
    if request == limit:
        return None
    high = 0
    if limit != 0:
        high = (
            int(math.floor(float(request) + (float(limit) - float(request)) * factor) / page_size) * page_size
        )
    elif allocatable > 0:
        high = (
            int(math.floor(float(request) + (float(allocatable) - float(request)) * factor) / page_size)
            * page_size
        )
    if high != 0 and high > request:
        return high
    return None


def _has_exclusive_cpus(c: ContainerView, qos: QOSClass, profile: KubeletConfiguration) -> bool:
    """CPU manager static policy assigns exclusive CPUs to containers of Guaranteed pods with an
    integer cpu request (k8s: pkg/kubelet/cm/cpumanager/policy_static.go ``guaranteedCPUs``)."""
    if profile.cpu_manager_policy != "static" or qos != GUARANTEED:
        return False
    millis = to_int(CPU, c.requests.get(CPU, Decimal(0)))
    return millis > 0 and millis % 1000 == 0


def container_cgroups(
    pod: Pod, profile: KubeletConfiguration, facts: NodeFacts, include_init: bool = False
) -> list[CgroupValues]:
    """Values the runtime applies to each long-running container (regular containers and sidecars;
    run-to-completion init containers are gone in steady state) (§4.5, §4.7, §3.5).

    ``include_init``: also the run-to-completion init containers, first, with the values they run
    with (their own limits: kuberuntime ``generateContainerConfig`` treats an init container like any
    other; k8s: pkg/kubelet/kuberuntime/kuberuntime_container_linux.go ``generateLinuxContainerResources``)."""
    minor = facts.kubelet_minor
    view = pod_view(pod, profile, minor)
    qos = pod_qos(pod, profile, minor)
    parent = pod_cgroup_path(pod, qos)
    pod_level = view.pod_level_resources_set
    oom_group = container_oom_group(profile, facts)
    mem_qos = _memory_qos(profile, facts)
    allocatable = node_allocatable(profile, facts).allocatable_absolute.get(MEMORY, 0)
    out: list[CgroupValues] = []
    running = [c for c in view.init_containers if c.is_sidecar or include_init] + list(view.containers)
    for c in running:
        cpu_lim_q = c.limits.get(CPU, Decimal(0))
        mem_lim_q = c.limits.get(MEMORY, Decimal(0))
        if pod_level:  # getCPULimit / getMemoryLimit: pod-level limit when the container has none
            if cpu_lim_q == 0:
                cpu_lim_q = (view.pod_limits or {}).get(CPU, Decimal(0))
            if mem_lim_q == 0:
                mem_lim_q = (view.pod_limits or {}).get(MEMORY, Decimal(0))
        cpu_lim = to_int(CPU, cpu_lim_q)
        mem_lim = to_int(MEMORY, mem_lim_q)
        if CPU in c.requests:
            shares = milli_cpu_to_shares(to_int(CPU, c.requests[CPU]))
        else:  # request absent: shares from the (possibly pod-level) limit, 0 → 2
            shares = milli_cpu_to_shares(cpu_lim)
        v = CgroupValues(
            level="container",
            path=f"{parent}/{c.name}",
            memory_limit_bytes=mem_lim or None,
            cpu_shares=shares,
            cpu_weight=container_cpu_weight(shares, facts) if facts.cgroup_version == 2 else None,
            oom_group=True if oom_group else None,
            qos=qos,
            pod_uid=pod.uid,
            container=c.name,
        )
        if profile.cpu_cfs_quota:
            period = _effective_period(profile, minor)
            quota = milli_cpu_to_quota(cpu_lim, period)
            if gate_enabled("DisableCPUQuotaWithExclusiveCPUs", profile, minor) and _has_exclusive_cpus(
                c, qos, profile
            ):
                quota = -1
            v.cpu_period_us = period
            v.cpu_quota_us = quota if quota != 0 else None  # containerd does not write a zero quota
        # GetHugepageLimitsFromResources: every host page size, container limit or 0, applied only
        # where the runtime writes them (containerd: disable_hugetlb_controller = false; its default
        # is true, internal/cri/config/config_unix.go DefaultConfig, so the files keep "max")
        if facts.runtime_hugetlb:
            v.hugetlb_limits = {
                size: to_int(size, c.limits.get(size, Decimal(0))) for size in _host_hugepage_sizes(facts)
            }
        sw = container_swap(pod, c, profile, facts, mem_lim)
        v.swap_max_bytes, v.memsw_limit_bytes = sw.swap_max_bytes, sw.memsw_limit_bytes
        if mem_qos:
            req = to_int(MEMORY, c.requests.get(MEMORY, Decimal(0)))
            own_lim = to_int(MEMORY, c.limits.get(MEMORY, Decimal(0)))  # container-level only
            if req != 0:
                v.memory_min_bytes = req
            v.memory_high_bytes = memory_high(
                req, own_lim, allocatable, profile.memory_throttling_factor, facts.page_size
            )
        out.append(v)
    return out


def cgroup_tree(profile: KubeletConfiguration, facts: NodeFacts, pods: list[Pod]) -> list[CgroupValues]:
    """kubepods, the QoS tiers, then every pod cgroup followed by its containers.

    Empty when ``cgroupsPerQOS`` is false (no kubepods hierarchy; pod cgroups are not created).
    """
    if not profile.cgroups_per_qos:
        return []
    out = [kubepods_cgroup(profile, facts, pods), *qos_cgroups(profile, facts, pods)]
    for p in pods:
        out.append(pod_cgroup(p, profile, facts))
        out.extend(container_cgroups(p, profile, facts))
    return out


# ---------------------------------------------------------------------------------------------
# files as the kernel shows them


def _round_down(v: int, unit: int) -> int:
    return (v // unit) * unit


def expected_files(v: CgroupValues, cgroup_version: int, page_size: int = 4096) -> dict[str, str]:
    """File name → content the kernel shows for the values the kubelet/runtime set at this level.

    Memory limits and memory.min/high are stored in pages (linux: mm/page_counter.c
    ``page_counter_memparse``), so they read back rounded down to ``page_size``; an unset memory limit
    reads ``PAGE_COUNTER_MAX * PAGE_SIZE`` (v1, 9223372036854771712 with 4 KiB pages) or ``max`` (v2).
    Hugetlb limits are stored in huge pages (linux: mm/hugetlb_cgroup.c).
    CPU quota files appear only where a CFS period is written; an absent or -1 quota reads ``-1``
    (v1) / ``max <period>`` (v2).
    """
    if cgroup_version not in (1, 2):
        raise ValueError("cgroup_version must be 1 or 2")
    files: dict[str, str] = {}
    unlimited_v1 = str(_round_down(LONG_MAX, page_size))
    mem = v.memory_limit_bytes
    if cgroup_version == 1:
        files["memory.limit_in_bytes"] = unlimited_v1 if mem is None else str(_round_down(mem, page_size))
        if v.cpu_shares is not None:
            files["cpu.shares"] = str(v.cpu_shares)
        if v.cpu_period_us is not None:
            files["cpu.cfs_period_us"] = str(v.cpu_period_us)
            q = v.cpu_quota_us
            files["cpu.cfs_quota_us"] = str(q) if q is not None and q > 0 else "-1"
        if v.pids_max is not None:
            files["pids.max"] = "max" if v.pids_max < 0 else str(v.pids_max)
        for size, limit in v.hugetlb_limits.items():
            hp = _hugepage_bytes(size)
            files[f"hugetlb.{_hugepage_unit(size)}.limit_in_bytes"] = str(_round_down(limit, hp))
        if v.memsw_limit_bytes is not None:
            files["memory.memsw.limit_in_bytes"] = str(_round_down(v.memsw_limit_bytes, page_size))
        return files
    files["memory.max"] = "max" if mem is None else str(_round_down(mem, page_size))
    if v.cpu_weight is not None:
        files["cpu.weight"] = str(v.cpu_weight)
    if v.cpu_period_us is not None:
        q = v.cpu_quota_us
        files["cpu.max"] = f"{q if q is not None and q > 0 else 'max'} {v.cpu_period_us}"
    if v.pids_max is not None:
        files["pids.max"] = "max" if v.pids_max < 0 else str(v.pids_max)
    for size, limit in v.hugetlb_limits.items():
        hp = _hugepage_bytes(size)
        files[f"hugetlb.{_hugepage_unit(size)}.max"] = str(_round_down(limit, hp))
    if v.memory_min_bytes is not None:
        files["memory.min"] = str(_round_down(v.memory_min_bytes, page_size))
    if v.memory_high_bytes is not None:
        files["memory.high"] = str(_round_down(v.memory_high_bytes, page_size))
    if v.oom_group is not None:
        files["memory.oom.group"] = "1" if v.oom_group else "0"
    if v.swap_max_bytes is not None:  # stored in pages like memory.max (mm/page_counter.c)
        files["memory.swap.max"] = str(_round_down(v.swap_max_bytes, page_size))
    return files


def _hugepage_bytes(resource: str) -> int:
    return quantity.to_bytes(resource.removeprefix(HUGEPAGES_PREFIX))
