"""Property tests (hypothesis) for the invariants of spec §1–§4."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.config.kubelet import KubeletConfiguration
from harness.config.node import NodeFacts
from harness.config.pod import Pod
from harness.model.cgroups import (
    cgroup_tree,
    expected_files,
    milli_cpu_to_shares,
    shares_to_weight_kubelet,
    shares_to_weight_runc,
)
from harness.model.node import node_allocatable
from harness.model.oom import OomCandidate, badness, container_oom_score_adj, select_victim
from harness.model.qos import pod_qos
from harness.model.resources import pod_requests

Mi, Gi = 1 << 20, 1 << 30
DEFAULT = KubeletConfiguration()
MINORS = st.integers(min_value=28, max_value=34)

mib = st.integers(min_value=0, max_value=64 * 1024)  # MiB amounts
millis = st.integers(min_value=0, max_value=8000)


def _res(cpu_req: int, mem_req: int, cpu_lim: int, mem_lim: int) -> dict[str, Any]:
    req: dict[str, str] = {}
    lim: dict[str, str] = {}
    if cpu_req:
        req["cpu"] = f"{cpu_req}m"
    if mem_req:
        req["memory"] = f"{mem_req}Mi"
    if cpu_lim:
        lim["cpu"] = f"{cpu_lim}m"
    if mem_lim:
        lim["memory"] = f"{mem_lim}Mi"
    return {"requests": req, "limits": lim}


@st.composite
def containers(draw: st.DrawFn, n_min: int = 1, n_max: int = 4) -> list[dict[str, Any]]:
    n = draw(st.integers(min_value=n_min, max_value=n_max))
    out = []
    for i in range(n):
        cpu_req, mem_req = draw(millis), draw(mib)
        # limits either absent or >= requests (API validation)
        cpu_lim = draw(st.one_of(st.just(0), st.integers(min_value=max(cpu_req, 1), max_value=16000)))
        mem_lim = draw(st.one_of(st.just(0), st.integers(min_value=max(mem_req, 1), max_value=128 * 1024)))
        out.append({"name": f"c{i}", "resources": _res(cpu_req, mem_req, cpu_lim, mem_lim)})
    return out


def mkpod(ctrs: list[dict[str, Any]], init: list[dict[str, Any]] | None = None, name: str = "p") -> Pod:
    return Pod.model_validate(
        {"metadata": {"name": name}, "spec": {"containers": ctrs, "initContainers": init or []}}
    )


# ---- §1 ---------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    mem_gib=st.integers(min_value=1, max_value=512),
    kube=mib,
    system=mib,
    evict=st.one_of(
        st.integers(min_value=1, max_value=4096).map(lambda v: f"{v}Mi"), st.sampled_from(["5%", "10%"])
    ),
    hp2m=st.integers(min_value=0, max_value=4096),
    enforce=st.booleans(),
    minor=MINORS,
)
def test_allocatable_le_kubepods_le_capacity(
    mem_gib: int, kube: int, system: int, evict: str, hp2m: int, enforce: bool, minor: int
) -> None:
    """allocatable = max(0, cap − sys − kube − evict − hugepages) ≤ kubepods = max(0, cap − sys − kube)
    (or cap when "pods" is not enforced) ≤ capacity = MemTotal."""
    p = KubeletConfiguration.model_validate(
        {
            "kubeReserved": {"memory": f"{kube}Mi"},
            "systemReserved": {"memory": f"{system}Mi"},
            "evictionHard": {"memory.available": evict},
            "enforceNodeAllocatable": ["pods"] if enforce else [],
        }
    )
    f = NodeFacts.model_validate(
        {
            "memoryCapacity": f"{mem_gib}Gi",
            "kubeletVersion": f"1.{minor}",
            "numaNodes": [{"id": 0, "memory": f"{mem_gib}Gi", "hugepages": {"2Mi": hp2m}}],
        }
    )
    na = node_allocatable(p, f)
    assert 0 <= na.allocatable_memory <= na.kubepods_memory_limit <= na.memory_capacity == mem_gib * Gi
    assert bool(na.errors) == (na.reservation.get("memory", 0) > mem_gib * Gi)


# ---- §2 ---------------------------------------------------------------------------------------


@given(
    specs=st.lists(
        st.tuples(st.integers(min_value=1, max_value=8000), st.integers(min_value=1, max_value=64 * 1024)),
        min_size=1,
        max_size=4,
    ),
    with_requests=st.booleans(),
    minor=MINORS,
)
def test_equal_cpu_memory_limits_and_requests_everywhere_is_guaranteed(
    specs: list[tuple[int, int]], with_requests: bool, minor: int
) -> None:
    """Every container has cpu and memory limits equal to its requests (or only limits, which the API
    defaults into requests) → Guaranteed, and every container gets −997."""
    ctrs: list[dict[str, Any]] = [
        {"name": f"c{i}", "resources": _res(c if with_requests else 0, m if with_requests else 0, c, m)}
        for i, (c, m) in enumerate(specs)
    ]
    pod = mkpod(ctrs)
    assert pod_qos(pod, DEFAULT, minor) == "Guaranteed"
    for c in ctrs:
        assert container_oom_score_adj(pod, c["name"], 16 * Gi, DEFAULT, minor) == -997


@given(ctrs=containers(), minor=MINORS)
def test_qos_classification_invariants(ctrs: list[dict[str, Any]], minor: int) -> None:
    """No cpu/memory anywhere ⇔ BestEffort; Guaranteed ⇒ every container has cpu and memory limits
    equal to its (defaulted) requests."""
    pod = mkpod(ctrs)
    q = pod_qos(pod, DEFAULT, minor)
    nothing = all(not c["resources"]["requests"] and not c["resources"]["limits"] for c in ctrs)
    assert (q == "BestEffort") == nothing
    if q == "Guaranteed":
        for c in ctrs:
            lim = c["resources"]["limits"]
            assert "cpu" in lim and "memory" in lim
            for k, v in c["resources"]["requests"].items():
                assert lim[k] == v


@given(ctrs=containers(), cap_gib=st.integers(min_value=1, max_value=1024), minor=MINORS)
def test_burstable_oom_score_adj_range(ctrs: list[dict[str, Any]], cap_gib: int, minor: int) -> None:
    """§3.2: Burstable containers always land in [3, 999]; the other classes use their constants."""
    pod = mkpod(ctrs)
    q = pod_qos(pod, DEFAULT, minor)
    for c in ctrs:
        a = container_oom_score_adj(pod, c["name"], cap_gib * Gi, DEFAULT, minor)
        if q == "Burstable":
            assert 3 <= a <= 999
        else:
            assert a == (-997 if q == "Guaranteed" else 1000)


@given(regular=containers(), init=containers(n_max=3), sidecar_mask=st.lists(st.booleans(), max_size=3))
def test_pod_request_covers_every_phase(
    regular: list[dict[str, Any]], init: list[dict[str, Any]], sidecar_mask: list[bool]
) -> None:
    """§2.3: the pod request is at least the steady state (regular + sidecars) and at least every init
    container plus the sidecars started before it."""
    inits = []
    for i, c in enumerate(init):
        c = {**c, "name": f"i{i}"}
        if i < len(sidecar_mask) and sidecar_mask[i]:
            c["restartPolicy"] = "Always"
        inits.append(c)
    pod = mkpod(regular, inits)

    def mem(c: dict[str, Any]) -> int:
        r = c["resources"]
        q = r["requests"].get("memory") or r["limits"].get("memory")
        return int(q[:-2]) * Mi if q else 0

    total = pod_requests(pod, DEFAULT, 34).get("memory", 0)
    sidecars = 0
    for c in inits:
        if c.get("restartPolicy") == "Always":
            sidecars += mem(c)
            assert total >= sidecars
        else:
            assert total >= mem(c) + sidecars
    assert total >= sum(mem(c) for c in regular) + sidecars


# ---- §3 ---------------------------------------------------------------------------------------


candidates = st.lists(
    st.builds(
        OomCandidate,
        pid=st.integers(min_value=1, max_value=1 << 22),
        name=st.just("t"),
        cgroup=st.just("kubepods"),
        rss_bytes=st.integers(min_value=0, max_value=64 * Gi),
        oom_score_adj=st.integers(min_value=-1000, max_value=1000),
    ),
    max_size=8,
)


@given(cands=candidates, totalpages=st.integers(min_value=1, max_value=1 << 26))
def test_victim_has_maximal_badness(cands: list[OomCandidate], totalpages: int) -> None:
    v = select_victim(cands, totalpages)
    scores = [badness(c, totalpages) for c in cands]
    killable = [s for s in scores if s is not None]
    if not killable:
        assert v is None
        return
    assert v is not None
    best = max(killable)
    assert badness(v, totalpages) == best
    # later-iterated wins ties: the victim is the last candidate with the best score
    last = max(i for i, s in enumerate(scores) if s == best)
    assert v is cands[last]


# ---- §4 ---------------------------------------------------------------------------------------


@given(m=st.integers(min_value=0, max_value=10**7))
def test_shares_and_weights_in_kernel_ranges(m: int) -> None:
    s = milli_cpu_to_shares(m)
    assert 2 <= s <= 262144
    assert 1 <= shares_to_weight_kubelet(s) <= 10000
    assert 1 <= shares_to_weight_runc(s, "1.3.2") <= 10000
    assert milli_cpu_to_shares(m + 1) >= s


@settings(max_examples=50, deadline=None)
@given(
    pods=st.lists(containers(), min_size=1, max_size=3),
    cg=st.sampled_from([1, 2]),
    page=st.sampled_from([4096, 65536]),
)
def test_memory_files_are_page_multiples(pods: list[list[dict[str, Any]]], cg: int, page: int) -> None:
    """Every memory file reads back as a multiple of the page size, or the unlimited marker."""
    f = NodeFacts.model_validate({"memoryCapacity": "64Gi", "cgroupVersion": cg, "pageSize": page})
    p = KubeletConfiguration.model_validate({"featureGates": {"MemoryQoS": True}})
    objs = [mkpod(c, name=f"p{i}") for i, c in enumerate(pods)]
    for v in cgroup_tree(p, f, objs):
        for name, content in expected_files(v, cg, page).items():
            if (
                name in ("memory.limit_in_bytes", "memory.max", "memory.min", "memory.high")
                and content != "max"
            ):
                assert int(content) % page == 0
