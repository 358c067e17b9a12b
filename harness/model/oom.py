"""oom_score_adj and the kernel OOM killer (kubelet-memory-spec.md §3).

* ``container_oom_score_adj`` — k8s: pkg/kubelet/qos/policy.go ``GetContainerOOMScoreAdjust`` and
  pkg/kubelet/qos/helpers.go ``minRegularContainerMemory`` / ``remainingPodMemReqPerContainer``
  (verified against a 1.33+ snapshot: node-critical check, −997, pod-level ``rem`` term, sidecar cap).
* ``badness`` / ``select_victim`` / ``oom_kill_set`` — linux: mm/oom_kill.c ``oom_badness``,
  ``oom_evaluate_task``, ``oom_kill_process`` and mm/memcontrol.c ``mem_cgroup_get_oom_group``
  (kernels ≥ 5.9 shape, spec §3.3/§3.4).
* ``container_oom_group`` — k8s: pkg/kubelet/kuberuntime/kuberuntime_container_linux.go
  ``calculateLinuxResources`` (verified 1.3x: ``isCgroup2UnifiedMode() && !ptr.Deref(singleProcessOOMKill, true)``,
  with the config defaulted to ``false`` on cgroup v2 by the kubelet).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from harness.config.kubelet import KubeletConfiguration
from harness.config.node import NodeFacts
from harness.config.pod import Pod
from harness.model.qos import BESTEFFORT, GUARANTEED, pod_qos
from harness.model.resources import MEMORY, PodView, aggregate_container, pod_view, to_int
from harness.model.versions import gate_enabled, sidecar_oom_score_rule, single_process_oom_kill_configurable

# k8s: pkg/kubelet/qos/policy.go
KUBELET_OOM_SCORE_ADJ = -999  # KubeletOOMScoreAdj
KUBE_PROXY_OOM_SCORE_ADJ = -999  # KubeProxyOOMScoreAdj
GUARANTEED_OOM_SCORE_ADJ = -997  # guaranteedOOMScoreAdj (was -998 before the node-critical change)
BESTEFFORT_OOM_SCORE_ADJ = 1000  # besteffortOOMScoreAdj
# containerd: internal/cri/server/podsandbox (defaultSandboxOOMAdj) — the pause process
SANDBOX_OOM_SCORE_ADJ = -998
# linux: include/uapi/linux/oom.h OOM_SCORE_ADJ_MIN / OOM_SCORE_ADJ_MAX
OOM_SCORE_ADJ_MIN = -1000
OOM_SCORE_ADJ_MAX = 1000


def _go_div(a: int, b: int) -> int:
    """Go int64 division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _remaining_pod_mem_req_per_container(view: PodView) -> int:
    """helpers.go ``remainingPodMemReqPerContainer``: (pod memory request − aggregate container
    memory request) / (number of containers + init containers), Go int64 division."""
    pod_req = (view.pod_requests or {}).get(MEMORY)
    if pod_req is None or pod_req == 0:
        return 0
    n = len(view.containers) + len(view.init_containers)
    aggr = aggregate_container(view, "requests").get(MEMORY)
    remaining = to_int(MEMORY, pod_req) - (to_int(MEMORY, aggr) if aggr is not None else 0)
    return _go_div(remaining, n)


def container_oom_score_adj(
    pod: Pod,
    container_name: str,
    memory_capacity: int,
    profile: KubeletConfiguration,
    kubelet_minor: int,
) -> int:
    """oom_score_adj the kubelet gives a container (§3.1/§3.2).

    ``memory_capacity`` is ``machineInfo.MemoryCapacity`` = MemTotal (NOT allocatable).
    """
    if memory_capacity <= 0:
        raise ValueError("memory_capacity must be positive")
    if pod.is_node_critical:
        return GUARANTEED_OOM_SCORE_ADJ
    qos = pod_qos(pod, profile, kubelet_minor)
    if qos == GUARANTEED:
        return GUARANTEED_OOM_SCORE_ADJ
    if qos == BESTEFFORT:
        return BESTEFFORT_OOM_SCORE_ADJ

    view = pod_view(pod, profile, kubelet_minor)
    container = view.find(container_name)
    req = to_int(MEMORY, container.requests.get(MEMORY, Decimal(0)))
    pod_level = gate_enabled("PodLevelResources", profile, kubelet_minor) and view.pod_level_requests_set
    rem = _remaining_pod_mem_req_per_container(view) if pod_level else 0
    adj = 1000 - _go_div(1000 * (req + rem), memory_capacity)

    if container.is_sidecar and sidecar_oom_score_rule(profile, kubelet_minor):
        # minRegularContainerMemory: smallest request among spec.containers (not init containers)
        min_req = min(to_int(MEMORY, c.requests.get(MEMORY, Decimal(0))) for c in view.containers)
        if pod_level:
            min_req += rem
        adj = min(adj, 1000 - _go_div(1000 * min_req, memory_capacity))

    # "A guaranteed pod using 100% of memory can have an OOM score of 10": burstable >= 1000 + (-997)
    if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ:
        return 1000 + GUARANTEED_OOM_SCORE_ADJ
    # "Give burstable pods a higher chance of survival over besteffort pods."
    if adj == BESTEFFORT_OOM_SCORE_ADJ:
        return adj - 1
    return adj


@dataclass
class OomCandidate:
    pid: int
    name: str
    cgroup: str  # e.g. "kubepods/burstable/pod<uid>/<container>"; "" = root cgroup
    rss_bytes: int
    swap_bytes: int = 0
    pgtables_bytes: int = 0
    oom_score_adj: int = 0
    unkillable: bool = False  # kthread, init, MMF_OOM_SKIP, in_vfork


def badness(c: OomCandidate, totalpages: int, page_size: int = 4096) -> int | None:
    """``oom_badness``: points in pages, None for LONG_MIN (never selected).

    points = rss pages + swap entries + pgtables_bytes / PAGE_SIZE, then
    ``adj *= totalpages / 1000`` (integer division first) and ``points += adj``.
    """
    if c.unkillable or c.oom_score_adj == OOM_SCORE_ADJ_MIN:
        return None
    points = c.rss_bytes // page_size + c.swap_bytes // page_size + c.pgtables_bytes // page_size
    return points + c.oom_score_adj * (totalpages // 1000)


def oom_score(c: OomCandidate, totalpages: int, page_size: int = 4096) -> int:
    """``/proc/<pid>/oom_score`` display value (proc_oom_score, ≥5.9): ``1000 + points*1000/totalpages``,
    0 for unkillable tasks. Display only; selection uses raw points."""
    points = badness(c, totalpages, page_size)
    if points is None:
        return 0
    return 1000 + _go_div(points * 1000, totalpages)


def select_victim(
    candidates: list[OomCandidate], totalpages: int, page_size: int = 4096
) -> OomCandidate | None:
    """``select_bad_process``/``oom_evaluate_task``: highest points; ``points >= chosen`` replaces,
    so on ties the later-iterated candidate wins. None when every candidate is unkillable."""
    chosen: OomCandidate | None = None
    chosen_points = 0
    for c in candidates:
        points = badness(c, totalpages, page_size)
        if points is None:
            continue
        if chosen is not None and points < chosen_points:
            continue
        chosen, chosen_points = c, points
    return chosen


def _ancestors(path: str) -> list[str]:
    """The cgroup itself and its ancestors, deepest first, excluding the root ("")."""
    parts = [p for p in path.strip("/").split("/") if p]
    return ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]


def _is_descendant(path: str, ancestor: str) -> bool:
    path, ancestor = path.strip("/"), ancestor.strip("/")
    return ancestor == "" or path == ancestor or path.startswith(ancestor + "/")


def oom_group_of(victim: OomCandidate, oom_group_cgroups: set[str], oom_domain: str) -> str | None:
    """``mem_cgroup_get_oom_group``: the highest memcg with ``memory.oom.group=1`` on the way from the
    victim's memcg up to (and including) the OOM domain; never the root; None if the victim sits in
    the root or outside the domain."""
    groups = {g.strip("/") for g in oom_group_cgroups}
    if not victim.cgroup.strip("/") or not _is_descendant(victim.cgroup, oom_domain):
        return None
    found: str | None = None
    domain = oom_domain.strip("/")
    for cg in _ancestors(victim.cgroup):
        if cg in groups:
            found = cg
        if cg == domain:
            break
    return found


def oom_kill_set(
    victim: OomCandidate,
    candidates: list[OomCandidate],
    oom_group_cgroups: set[str],
    oom_domain: str,
) -> list[OomCandidate]:
    """Tasks killed by ``oom_kill_process``: the victim, then (memory.oom.group, cgroup v2 only —
    pass an empty set on v1) every other task in the oom group's subtree except those with
    ``oom_score_adj == -1000``."""
    group = oom_group_of(victim, oom_group_cgroups, oom_domain)
    killed = [victim]
    if group is None:
        return killed
    for c in candidates:
        if c is victim or c.pid == victim.pid:
            continue
        if c.oom_score_adj == OOM_SCORE_ADJ_MIN:
            continue
        if _is_descendant(c.cgroup, group):
            killed.append(c)
    return killed


def container_oom_group(profile: KubeletConfiguration, facts: NodeFacts) -> bool:
    """Whether the kubelet asks for ``memory.oom.group=1`` on every container (§3.5).

    cgroup v1: never. cgroup v2: always in 1.28–1.31 (PR kubernetes#117793); from 1.32 unless
    ``singleProcessOOMKill: true`` (PR kubernetes#126096; nil defaults to false on v2).
    """
    if facts.cgroup_version != 2:
        return False
    if not single_process_oom_kill_configurable(facts.kubelet_minor):
        return True
    return profile.single_process_oom_kill is not True
