"""harness fuzz, pure parts: the generator (determinism, validity, coverage), batching and the model's
admission order, and the comparator with its reproducers (fed a node state in a temp dir)."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.config import podschema
from harness.config.errors import load_yaml_mapping
from harness.config.kubelet import KubeletConfiguration, load_profile
from harness.config.node import NodeFacts
from harness.config.pod import parse_pod
from harness.config.suite import load_suite
from harness.fuzz.compare import (
    Admission,
    Difference,
    PodResult,
    compare_admission,
    compare_batch,
    write_reproducers,
)
from harness.fuzz.generate import (
    FuzzPod,
    generate_pods,
    generate_profiles,
    pod_level_allowed,
)
from harness.fuzz.plan import plan_batches, predict_admissions
from harness.model.cgroups import cgroup_tree, expected_files
from harness.model.fit import insufficient
from harness.model.node import node_allocatable
from harness.model.oom import container_oom_score_adj
from harness.model.qos import pod_qos

REPO = Path(__file__).resolve().parents[2]
GI = 1 << 30
MEMTOTAL = 25276510208  # this host's MemTotal (tests/unit/test_oomscore.py)


def _facts(version: str = "1.33", negative: bool = False) -> NodeFacts:
    return NodeFacts.model_validate(
        {
            "memoryCapacity": MEMTOTAL,
            "cpus": 2,
            "cgroupVersion": 1,
            "kubeletVersion": version,
            "negativeOomScoreAdj": negative,
        }
    )


def _profile(tmp: Path, seed: int = 3) -> tuple[KubeletConfiguration, Path]:
    base = load_yaml_mapping(REPO / "profiles" / "cluster-default.yaml")
    (prof,) = generate_profiles(seed, 1, base)
    path = tmp / "profile.yaml"
    path.write_text(yaml.safe_dump(prof))
    return load_profile(path), path


def test_the_same_seed_gives_the_same_pods_and_profiles() -> None:
    a = generate_pods(5, 40, prefix="fuzz-5")
    b = generate_pods(5, 40, prefix="fuzz-5")
    assert [p.manifest for p in a] == [p.manifest for p in b]
    assert [p.priority for p in a] == [p.priority for p in b]
    c = generate_pods(6, 40, prefix="fuzz-5")
    assert [p.manifest for p in a] != [p.manifest for p in c]
    base = load_yaml_mapping(REPO / "profiles" / "cluster-default.yaml")
    assert generate_profiles(5, 3, base) == generate_profiles(5, 3, base)
    assert generate_profiles(5, 3, base) != generate_profiles(9, 3, base)


@pytest.mark.parametrize("seed", [1, 7, 42])
def test_every_generated_pod_passes_the_pod_schema(seed: int) -> None:
    for fp in generate_pods(seed, 150, prefix=f"fuzz-{seed}", pod_level_resources=True):
        assert podschema.unknown_fields(fp.manifest) == []
        assert podschema.pod_requests_above_limits(fp.manifest) == []
        parse_pod(fp.manifest, fp.name)  # raises on any error
        spec = fp.manifest["spec"]
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            assert c["image"] and c["imagePullPolicy"] == "Never"


def test_the_draw_covers_qos_classes_init_sidecars_priorities_and_oversized_pods() -> None:
    prof = KubeletConfiguration()
    pods = generate_pods(1, 200, prefix="fuzz-1")
    qos = collections.Counter(pod_qos(fp.pod(), prof, 33) for fp in pods)
    assert set(qos) == {"BestEffort", "Burstable", "Guaranteed"}
    assert min(qos.values()) >= 30
    features = collections.Counter(f for fp in pods for f in fp.features)
    for f in ("init", "sidecar", "node-critical", "cluster-critical", "priority"):
        assert features[f] >= 5, f
    assert features["oversized-memory"] + features["oversized-cpu"] >= 5
    sidecars = [
        c for fp in pods for c in fp.manifest["spec"].get("initContainers", []) if c.get("restartPolicy")
    ]
    assert sidecars and all(c["restartPolicy"] == "Always" for c in sidecars)
    # odd but valid quantities are drawn
    text = yaml.safe_dump([fp.manifest for fp in pods])
    for q in ("1000m", "129Mi", "1.5Gi", "100M"):
        assert q in text
    # a harness PriorityClass value is what the model reads as spec.priority
    fp = next(p for p in pods if p.priority is not None)
    assert fp.pod().spec.priority == fp.priority and "priority" not in fp.manifest["spec"]


def test_pod_level_resources_only_where_the_version_and_gate_allow(tmp_path: Path) -> None:
    prof = KubeletConfiguration()
    assert not pod_level_allowed(prof, 33)  # alpha in 1.33: off by default (API server too)
    assert pod_level_allowed(prof, 34)  # beta in 1.34: on
    off = KubeletConfiguration.model_validate({"featureGates": {"PodLevelResources": False}})
    assert not pod_level_allowed(off, 34)
    assert not any("resources" in fp.manifest["spec"] for fp in generate_pods(2, 200, prefix="x"))
    with_level = generate_pods(2, 200, prefix="x", pod_level_resources=True)
    assert any("resources" in fp.manifest["spec"] for fp in with_level)


def test_generated_profiles_load_and_leave_a_small_node(tmp_path: Path) -> None:
    base = load_yaml_mapping(REPO / "profiles" / "cluster-default.yaml")
    for i, prof in enumerate(generate_profiles(11, 8, base)):
        path = tmp_path / f"p{i}.yaml"
        path.write_text(yaml.safe_dump(prof))
        na = node_allocatable(load_profile(path), _facts())
        assert not na.errors
        assert 1 * GI < na.allocatable["memory"] < 6 * GI
        assert na.kubepods_limits["memory"] < 6 * GI  # far below the harness's ceiling


def test_batches_fit_the_node_and_oversized_pods_are_predicted_refused(tmp_path: Path) -> None:
    prof, _ = _profile(tmp_path)
    alloc = node_allocatable(prof, _facts()).allocatable
    fps = generate_pods(7, 80, prefix="fuzz-7")
    pods = [fp.pod() for fp in fps]
    batches = plan_batches(pods, alloc, prof, 33, max_pods=10)
    assert sorted(i for b in batches for i in b) == list(range(80))
    assert all(1 <= len(b) <= 10 for b in batches)
    refused = 0
    for b in batches:
        fitting = [pods[i] for i in b if not insufficient(pods[i], [], alloc, prof, 33)]
        for r in ("memory", "cpu"):
            total = sum(
                insufficient(p, [], {r: 0}, prof, 33)[0].requested
                if insufficient(p, [], {r: 0}, prof, 33)
                else 0
                for p in fitting
            )
            assert total <= alloc[r]
        for i, adm in zip(b, predict_admissions([pods[i] for i in b], alloc, prof, 33), strict=True):
            alone = insufficient(pods[i], [], alloc, prof, 33)
            assert adm.admitted == (not alone)
            if alone:
                refused += 1
                # the first resource short beside the admitted batch-mates (cpu is checked first)
                want = {"UnexpectedAdmissionError"} if pods[i].is_critical else {"OutOfcpu", "OutOfmemory"}
                assert adm.reason in want and (pods[i].is_critical or alone[0].reason in want)
    assert refused >= 3


def test_admission_comparison() -> None:
    ok = Admission(True)
    oom = Admission(
        False, "OutOfmemory", "Node didn't have enough resource: memory, requested: 1, used: 0, capacity: 0"
    )
    assert compare_admission(ok, ok) == []
    assert compare_admission(oom, Admission(False, "OutOfmemory", "Pod was rejected: " + oom.message)) == []
    assert [w for w, _, _ in compare_admission(ok, oom)] == ["admitted"]
    assert [w for w, _, _ in compare_admission(oom, Admission(False, "OutOfcpu", "x"))] == [
        "reason",
        "message",
    ]


def _node_state(
    tmp: Path, fps: list[FuzzPod], prof: KubeletConfiguration, facts: NodeFacts
) -> tuple[dict[str, dict[str, Any]], Path, Path]:
    """What a kubelet that agrees with the model leaves: API pods, cgroup v1 files, /proc entries."""
    root, proc = tmp / "cgroup", tmp / "proc"
    objs: dict[str, dict[str, Any]] = {}
    models = []
    pid = 100
    for n, fp in enumerate(fps):
        pod = fp.pod().model_copy(deep=True)
        pod.metadata.uid = f"uid-{n}"
        pod.metadata.namespace = "harness"
        models.append(pod)
        qos = pod_qos(pod, prof, facts.kubelet_minor)
        rel = f"kubepods/pod{pod.uid}" if qos == "Guaranteed" else f"kubepods/{qos.lower()}/pod{pod.uid}"
        statuses: dict[str, list[dict[str, Any]]] = {"initContainerStatuses": [], "containerStatuses": []}
        for key, cs in (
            ("initContainerStatuses", pod.spec.init_containers),
            ("containerStatuses", pod.spec.containers),
        ):
            for c in cs:
                cid = f"{pid:064x}"
                running = key == "containerStatuses" or c.is_sidecar
                state = {"running": {"startedAt": "t"}} if running else {"terminated": {"exitCode": 0}}
                statuses[key].append({"name": c.name, "containerID": f"containerd://{cid}", "state": state})
                if running:
                    d = root / "memory" / rel / cid
                    d.mkdir(parents=True, exist_ok=True)
                    (d / "cgroup.procs").write_text(f"{pid}\n")
                    (proc / str(pid)).mkdir(parents=True)
                    adj = container_oom_score_adj(
                        pod, c.name, facts.memory_capacity_bytes, prof, facts.kubelet_minor
                    )
                    (proc / str(pid) / "oom_score_adj").write_text(f"{max(adj, 0)}\n")
                pid += 1
        objs[fp.name] = {"metadata": {"uid": pod.uid}, "status": {"qosClass": qos, **statuses}}
    cids = {
        (o["metadata"]["uid"], s["name"]): s["containerID"].split("://")[1]
        for o in objs.values()
        for s in o["status"]["initContainerStatuses"] + o["status"]["containerStatuses"]
        if "running" in s["state"]
    }
    for v in cgroup_tree(prof, facts, models):
        path = v.path
        if v.level == "container":
            if (v.pod_uid, v.container) not in cids:
                continue
            path = v.path.rsplit("/", 1)[0] + "/" + cids[(v.pod_uid, v.container)]
        for f, val in expected_files(v, 1).items():
            ctrl = {"memory": "memory", "cpu": "cpu,cpuacct", "pids": "pids"}.get(f.split(".")[0])
            if ctrl is None:
                continue
            (root / ctrl / path).mkdir(parents=True, exist_ok=True)
            (root / ctrl / "cgroup.procs").touch()
            (root / ctrl / path / f).write_text(val + "\n")
    return objs, root, proc


def test_a_node_that_differs_from_the_model_is_reported_with_a_reproducer(tmp_path: Path) -> None:
    prof, prof_path = _profile(tmp_path)
    facts = _facts()
    every = generate_pods(1, 60, prefix="fuzz-1")
    # a Burstable pod with a sidecar, a node-critical pod and a Guaranteed pod, all admitted
    pick = [
        next(fp for fp in every if "sidecar" in fp.features and pod_qos(fp.pod(), prof, 33) == "Burstable"),
        next(fp for fp in every if "node-critical" in fp.features and not fp.oversized),
        next(fp for fp in every if pod_qos(fp.pod(), prof, 33) == "Guaranteed" and not fp.oversized),
    ]
    pick = [fp for i, fp in enumerate(pick) if fp not in pick[:i]]
    results = [
        PodResult(fp.name, fp.index, 0, 0, "", fp.features, Admission(True), Admission(True)) for fp in pick
    ]
    objs, root, proc = _node_state(tmp_path / "node", pick, prof, facts)

    # a kubelet that agrees: no difference, every file and container compared
    tier, tier_files = compare_batch(
        pick, results, objs, prof, facts, cgroup_version=1, cgroup_root=root, proc_root=proc
    )
    assert tier == [] and tier_files > 0
    assert all(r.differences == [] and r.files > 0 and r.oom_scores > 0 for r in results)
    # the node-critical pod asks -997: this host applies 0 (a host deviation, not a difference)
    assert any("-997" in h for r in results for h in r.host_deviations)

    # the kubelet wrote another memory limit and another oom_score_adj for the first pod
    first = objs[pick[0].name]
    cid = first["status"]["containerStatuses"][0]["containerID"].split("://")[1]
    qos = first["status"]["qosClass"].lower()
    cdir = root / "memory" / "kubepods" / qos / f"pod{first['metadata']['uid']}" / cid
    limit = cdir / "memory.limit_in_bytes"
    assert limit.exists()
    limit.write_text("12345\n")
    pid = (cdir / "cgroup.procs").read_text().split()[0]
    (proc / pid / "oom_score_adj").write_text("7\n")
    results = [
        PodResult(fp.name, fp.index, 0, 0, "", fp.features, Admission(True), Admission(True)) for fp in pick
    ]
    tier, _ = compare_batch(
        pick, results, objs, prof, facts, cgroup_version=1, cgroup_root=root, proc_root=proc
    )
    diffs = results[0].differences
    kinds = {d.kind for d in diffs}
    assert kinds == {"oom_score_adj", "cgroup"}
    assert any(d.where.endswith("memory.limit_in_bytes") and d.observed == "12345" for d in diffs)
    assert all(r.differences == [] for r in results[1:])

    out = tmp_path / "out"
    paths = write_reproducers(out, "fuzz-1-profile-0-batch-0", pick, results, tier, prof_path, 0, 0)
    assert paths == [out / "reproducers" / pick[0].name / "suite.yaml"]
    assert all(d.reproducer == str(paths[0]) for d in diffs)
    # harness run accepts it: one scenario, the pod as its one workload, checkCgroups on the kubernetes backend
    suite = load_suite(paths[0])
    (sc,) = suite.scenarios
    assert sc.check_cgroups and sc.backends == ["kubernetes"]
    (w,) = sc.workloads
    assert w.pod_manifest is not None
    assert [c.name for c in w.pod_manifest.spec.containers] == [
        c["name"] for c in pick[0].manifest["spec"]["containers"]
    ]
    assert sc.profile is not None and sc.profile.model_dump() == prof.model_dump()
    assert "oom_score_adj" in sc.description


def test_an_admission_difference_reproducer_holds_the_pods_admitted_before_it(tmp_path: Path) -> None:
    _, prof_path = _profile(tmp_path)
    fps = generate_pods(7, 4, prefix="fuzz-7")
    refused = Admission(False, "OutOfcpu", "Node didn't have enough resource: cpu")
    results = [
        PodResult(fp.name, fp.index, 0, 0, "", fp.features, Admission(True), obs)
        for fp, obs in zip(fps, [Admission(True), refused, Admission(True), Admission(True)], strict=True)
    ]
    results[2].differences = [Difference("admission", "admitted", "admitted", refused.text(), fps[2].name)]
    (path,) = write_reproducers(tmp_path / "out", "b", fps, results, [], prof_path, 1, 3)
    suite = load_suite(path)
    # the first pod (admitted before it) then the pod itself; the refused second pod is left out
    assert [w.name for w in suite.scenarios[0].workloads] == ["p0", "p2"]
    assert (results[2].differences[0].profile, results[2].differences[0].batch) == (1, 3)
