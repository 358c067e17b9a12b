"""oom_score_adj, kernel badness, victim selection and memory.oom.group (spec §3)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.config.kubelet import KubeletConfiguration
from harness.config.node import NodeFacts
from harness.config.pod import Pod
from harness.model.oom import (
    OomCandidate,
    badness,
    container_oom_group,
    container_oom_score_adj,
    oom_kill_set,
    oom_score,
    select_victim,
)

Mi, Gi = 1 << 20, 1 << 30
DEFAULT = KubeletConfiguration()
CAP16 = 16 * Gi


def ctr(name: str, req: dict[str, Any] | None = None, lim: dict[str, Any] | None = None, **kw: Any) -> dict:
    return {"name": name, "resources": {"requests": req or {}, "limits": lim or {}}, **kw}


def mkpod(
    containers: list[dict], init: list[dict] | None = None, meta: dict | None = None, **spec: Any
) -> Pod:
    return Pod.model_validate(
        {
            "metadata": {"name": "p", **(meta or {})},
            "spec": {"containers": containers, "initContainers": init or [], **spec},
        }
    )


def adj(
    pod: Pod, name: str = "a", cap: int = CAP16, minor: int = 34, prof: KubeletConfiguration = DEFAULT
) -> int:
    return container_oom_score_adj(pod, name, cap, prof, minor)


def test_spec_example_1gi_request_on_16gi() -> None:
    """§3.2: 1000 − (1000 × 1Gi) / 16Gi = 1000 − 62 (62.5 truncated) = 938."""
    assert adj(mkpod([ctr("a", req={"memory": "1Gi"})])) == 938


def test_go_int64_division_truncates() -> None:
    """req 1 byte on a 3-byte node: 1000 − 1000/3 = 1000 − 333 = 667 (not 666.67 rounded)."""
    assert adj(mkpod([ctr("a", req={"memory": "1"})]), cap=3) == 667


def test_guaranteed_besteffort_constants() -> None:
    g = mkpod([ctr("a", lim={"cpu": "1", "memory": "1Gi"})])
    be = mkpod([ctr("a")])
    assert adj(g) == -997
    assert adj(be) == 1000


def test_node_critical_pod_gets_minus_997_whatever_its_qos() -> None:
    """IsNodeCriticalPod: critical (static pod here) and priorityClassName system-node-critical."""
    static = {"annotations": {"kubernetes.io/config.source": "file"}}
    pod = mkpod([ctr("a")], meta=static, priorityClassName="system-node-critical")
    assert adj(pod) == -997
    # same pod without the class: BestEffort
    assert adj(mkpod([ctr("a")], meta=static)) == 1000


def test_burstable_clamps() -> None:
    """A request ≥ MemTotal gives ≤ 0 → clamped to 1000 + (−997) = 3; no memory request → 1000 → 999."""
    assert adj(mkpod([ctr("a", req={"memory": "32Gi"})])) == 3
    assert adj(mkpod([ctr("a", req={"cpu": "100m"})])) == 999


def test_memory_capacity_is_memtotal_not_allocatable() -> None:
    """The formula uses the capacity passed in: 8Gi request on 16Gi → 500; on a 10Gi "allocatable" it
    would be 200 — the caller must pass MemTotal."""
    pod = mkpod([ctr("a", req={"memory": "8Gi"})])
    assert adj(pod) == 500
    assert adj(pod, cap=10 * Gi) == 200


def sidecar_pod() -> Pod:
    return mkpod(
        [ctr("a", req={"memory": "4Gi"}), ctr("b", req={"memory": "2Gi"})],
        init=[ctr("s", req={"memory": "100Mi"}, restartPolicy="Always")],
    )


def test_sidecar_never_scores_above_smallest_regular_container_from_132() -> None:
    """PR #128029: sidecar 100Mi would give 1000 − 6 = 994, but is capped by the smallest regular
    container (2Gi → 1000 − 125 = 875). In v1.32.5's policy.go behind the SidecarContainers gate
    (on by default), in 1.33 without it; the real 1.32.5 kubelet applies it. Before 1.32 the plain
    formula applies."""
    pod = sidecar_pod()
    assert adj(pod, "s", minor=33) == 875
    assert adj(pod, "s", minor=32) == 875
    assert adj(pod, "s", minor=31) == 994
    assert adj(pod, "b", minor=33) == 875


def test_pod_level_requests_add_the_remaining_share() -> None:
    """§3.2 pod-level: pod request 3Gi, containers 1Gi + 0 → rem = 2Gi / 2 = 1Gi per container;
    container a: 1000 − 1000·2Gi/16Gi = 875; container b: 1000 − 1000·1Gi/16Gi = 938."""
    pod = mkpod(
        [ctr("a", req={"memory": "1Gi"}), ctr("b")],
        resources={"requests": {"memory": "3Gi"}},
    )
    assert adj(pod, "a") == 875
    assert adj(pod, "b") == 938
    # 1.33 default: gate off, pod-level ignored → a: 938, b: no request → 999
    assert adj(pod, "a", minor=33) == 938
    assert adj(pod, "b", minor=33) == 999


def test_container_oom_score_adj_rejects_non_positive_capacity() -> None:
    with pytest.raises(ValueError):
        adj(mkpod([ctr("a", req={"memory": "1Gi"})]), cap=0)


# ---- kernel ---------------------------------------------------------------------------------


def test_badness_points() -> None:
    """§3.3: rss 1000 pages + swap 10 pages + pgtables 8 KiB (2 pages) + adj 500 × (1_000_000 // 1000)."""
    c = OomCandidate(
        1, "x", "a", rss_bytes=1000 * 4096, swap_bytes=10 * 4096, pgtables_bytes=8192, oom_score_adj=500
    )
    assert badness(c, totalpages=1_000_000) == 1012 + 500_000
    # totalpages/1000 is an integer division first: 1999 pages → factor 1
    assert badness(c, totalpages=1999) == 1012 + 500


def test_badness_unkillable() -> None:
    assert badness(OomCandidate(1, "x", "", rss_bytes=1 << 30, oom_score_adj=-1000), 1000) is None
    assert badness(OomCandidate(1, "init", "", rss_bytes=1 << 30, unkillable=True), 1000) is None


def test_negative_adj_can_make_points_negative_and_still_selectable() -> None:
    """oom_evaluate_task starts from LONG_MIN, so a lone task with negative points is still chosen."""
    c = OomCandidate(1, "kubelet", "", rss_bytes=4096 * 100, oom_score_adj=-999)
    assert badness(c, totalpages=1_000_000) == 100 - 999_000
    assert select_victim([c], 1_000_000) is c


def test_select_victim_ties_go_to_the_later_task() -> None:
    a = OomCandidate(1, "a", "x", rss_bytes=4096 * 50)
    b = OomCandidate(2, "b", "x", rss_bytes=4096 * 50)
    small = OomCandidate(3, "c", "x", rss_bytes=4096 * 10)
    assert select_victim([a, b, small], 1000) is b
    assert select_victim([b, a], 1000) is a


def test_oom_score_adj_beats_rss_across_pods() -> None:
    """Global OOM (§3.4): a BestEffort process (adj 1000) using 100 MiB beats a Guaranteed one (−997)
    using 4 GiB on a 16 GiB node: 25600 + 1000·4194 vs 1048576 − 997·4194."""
    total = 16 * Gi // 4096
    be = OomCandidate(1, "be", "kubepods/besteffort/pod1/c", rss_bytes=100 * Mi, oom_score_adj=1000)
    g = OomCandidate(2, "g", "kubepods/pod2/c", rss_bytes=4 * Gi, oom_score_adj=-997)
    assert select_victim([be, g], total) is be
    assert oom_score(be, total) > oom_score(g, total)


def test_select_victim_none_when_all_unkillable() -> None:
    assert select_victim([OomCandidate(1, "x", "", rss_bytes=1, oom_score_adj=-1000)], 1000) is None


def group_candidates() -> list[OomCandidate]:
    return [
        OomCandidate(10, "app", "kubepods/burstable/podA/app", rss_bytes=Gi),
        OomCandidate(11, "helper", "kubepods/burstable/podA/app", rss_bytes=Mi),
        OomCandidate(12, "pinned", "kubepods/burstable/podA/app", rss_bytes=Mi, oom_score_adj=-1000),
        OomCandidate(20, "side", "kubepods/burstable/podA/side", rss_bytes=Mi),
        OomCandidate(30, "other", "kubepods/burstable/podB/c", rss_bytes=Mi),
    ]


def test_oom_group_kills_the_whole_container_except_minus_1000() -> None:
    """memory.oom.group=1 on the container cgroup: victim + every task of that cgroup except adj −1000."""
    cands = group_candidates()
    groups = {"kubepods/burstable/podA/app", "kubepods/burstable/podA/side"}
    killed = oom_kill_set(cands[0], cands, groups, "kubepods/burstable/podA/app")
    assert [c.pid for c in killed] == [10, 11]


def test_oom_group_uses_highest_ancestor_up_to_the_domain() -> None:
    """With oom.group also on the pod cgroup and a pod-level OOM, the pod cgroup is the group: every
    container of the pod dies; a domain below the pod stops the climb at the container."""
    cands = group_candidates()
    groups = {"kubepods/burstable/podA", "kubepods/burstable/podA/app"}
    killed = oom_kill_set(cands[0], cands, groups, "kubepods/burstable/podA")
    assert [c.pid for c in killed] == [10, 11, 20]
    killed_global = oom_kill_set(cands[0], cands, groups, "")
    assert [c.pid for c in killed_global] == [10, 11, 20]
    killed_ctr = oom_kill_set(cands[0], cands, groups, "kubepods/burstable/podA/app")
    assert [c.pid for c in killed_ctr] == [10, 11]


def test_no_oom_group_kills_only_the_victim() -> None:
    cands = group_candidates()
    assert oom_kill_set(cands[0], cands, set(), "") == [cands[0]]


@pytest.mark.parametrize(
    ("cg", "minor", "single", "expected"),
    [
        (1, 34, None, False),
        (2, 28, None, True),
        (2, 31, True, True),  # field did not exist before 1.32: always group-kill on v2
        (2, 32, None, True),
        (2, 32, False, True),
        (2, 32, True, False),
    ],
)
def test_container_oom_group(cg: int, minor: int, single: bool | None, expected: bool) -> None:
    prof = KubeletConfiguration.model_validate({} if single is None else {"singleProcessOOMKill": single})
    f = NodeFacts.model_validate(
        {"memoryCapacity": "8Gi", "cgroupVersion": cg, "kubeletVersion": f"1.{minor}"}
    )
    assert container_oom_group(prof, f) is expected
