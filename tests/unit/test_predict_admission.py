"""The model's admission in the kubelet's handler order (eviction Admit, topology/memory manager,
resource fit), and cgroup conformance reading real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.kubelet import parse_profile
from harness.config.node import NodeFacts
from harness.config.suite import Scenario, Workload
from harness.model.predict import predict_scenario
from harness.verdict.cgroups import CgroupCheck, cgroup_verdict, check_cgroups

GI = 1 << 30


def _profile(**extra: object) -> object:
    return parse_profile(
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "kubeReserved": {"memory": "512Mi"},
            "systemReserved": {"memory": "1Gi"},
            "evictionHard": {"memory.available": "512Mi"},
            **extra,
        }
    )


def _facts(numa: list[int]) -> NodeFacts:
    return NodeFacts.model_validate(
        {
            "memoryCapacity": sum(numa),
            "cpus": 4,
            "cgroupVersion": 2,
            "kubeletVersion": "1.33",
            "numaNodes": [
                {
                    "id": i,
                    "memory": m,
                    "cpus": [2 * i, 2 * i + 1],
                    "distances": [10 if j == i else 20 for j in range(len(numa))],
                }
                for i, m in enumerate(numa)
            ],
        }
    )


def _scenario(profile: object, facts: NodeFacts, *workloads: dict[str, object]) -> Scenario:
    sc = Scenario(name="adm", timeout="5s", workloads=[Workload.model_validate(w) for w in workloads])
    sc.profile = profile  # type: ignore[assignment]
    sc.node = facts
    return sc


def _guaranteed(name: str, mem: str) -> dict[str, object]:
    r = {"memory": mem, "cpu": "1"}
    return {
        "name": name,
        "resources": {"requests": r, "limits": r},
        "leak": {"chunk": "1Mi", "interval": "100ms", "max": "1Mi"},
    }


STATIC = {
    "memoryManagerPolicy": "Static",
    "reservedMemory": [
        {"numaNode": 0, "limits": {"memory": "1Gi"}},
        {"numaNode": 1, "limits": {"memory": "1Gi"}},
    ],
}


def test_pod_that_fits_only_across_numa_nodes_is_a_topology_affinity_error() -> None:
    facts = _facts([8 * GI, 8 * GI])
    prof = _profile(topologyManagerPolicy="single-numa-node", **STATIC)
    p = predict_scenario(_scenario(prof, facts, _guaranteed("big", "10Gi")), kubelet=True)
    w = p.workload("big")
    assert w.outcome == "rejected"
    assert "TopologyAffinityError" in w.mechanism


def test_same_pod_is_admitted_when_the_topology_manager_does_not_align() -> None:
    facts = _facts([8 * GI, 8 * GI])
    p = predict_scenario(_scenario(_profile(**STATIC), facts, _guaranteed("big", "10Gi")), kubelet=True)
    assert p.workload("big").outcome != "rejected"


def test_a_pod_no_numa_combination_fits_fails_allocate() -> None:
    facts = _facts([4 * GI])
    prof = _profile(
        topologyManagerPolicy="single-numa-node",
        memoryManagerPolicy="Static",
        reservedMemory=[{"numaNode": 0, "limits": {"memory": "2Gi"}}],
    )
    w = predict_scenario(_scenario(prof, facts, _guaranteed("big", "3Gi")), kubelet=True).workload("big")
    assert w.outcome == "rejected"
    assert w.mechanism.startswith("UnexpectedAdmissionError")


def test_requests_beyond_allocatable_are_out_of_memory_for_the_later_pod_only() -> None:
    facts = _facts([8 * GI])  # allocatable = 8Gi - 512Mi - 1Gi - 512Mi = 6Gi
    sc = _scenario(_profile(), facts, _guaranteed("first", "4Gi"), _guaranteed("second", "4Gi"))
    p = predict_scenario(sc, kubelet=True)
    assert p.workload("first").outcome != "rejected"
    second = p.workload("second")
    assert second.outcome == "rejected" and second.mechanism.startswith("OutOfmemory")


def test_without_a_kubelet_nothing_is_rejected() -> None:
    facts = _facts([8 * GI])
    sc = _scenario(_profile(), facts, _guaranteed("first", "4Gi"), _guaranteed("second", "4Gi"))
    assert predict_scenario(sc, kubelet=False).workload("second").outcome != "rejected"


def test_cgroup_conformance_reads_each_controller_and_reports_a_difference(tmp_path: Path) -> None:
    facts = NodeFacts.model_validate(
        {"memoryCapacity": 8 * GI, "cpus": 2, "cgroupVersion": 1, "kubeletVersion": "1.33"}
    )
    prof = _profile()
    w = Workload.model_validate(_guaranteed("g", "256Mi"))
    pod = w.to_pod("harness")
    pod.metadata.uid = "u1"
    root = tmp_path / "cgroup"
    from harness.model.cgroups import cgroup_tree, expected_files

    # write what the model expects, in v1 layout (memory/ and cpu,cpuacct/ hierarchies)
    for v in cgroup_tree(prof, facts, [pod]):
        path = v.path if v.level != "container" else v.path.rsplit("/", 1)[0] + "/cid123"
        for f, val in expected_files(v, 1).items():
            ctrl = {"memory": "memory", "cpu": "cpu,cpuacct", "pids": "pids"}.get(f.split(".")[0])
            if ctrl is None:
                continue
            d = root / ctrl / path
            d.mkdir(parents=True, exist_ok=True)
            (root / ctrl / "cgroup.procs").touch()  # what marks a mounted hierarchy
            (d / f).write_text(val + "\n")
    checks = check_cgroups(prof, facts, [pod], {("u1", "g"): "cid123"}, cgroup_version=1, root=root)
    assert checks and all(c.match for c in checks)
    assert {c.level for c in checks} == {"kubepods", "qos", "pod", "container"}
    target = next(c for c in checks if c.level == "container" and c.file == "memory.limit_in_bytes")
    Path(target.real_path, "memory.limit_in_bytes").write_text("1\n")
    bad = [
        c
        for c in check_cgroups(prof, facts, [pod], {("u1", "g"): "cid123"}, cgroup_version=1, root=root)
        if not c.match
    ]
    assert [(c.level, c.file, c.observed) for c in bad] == [("container", "memory.limit_in_bytes", "1")]


def test_a_kubepods_limit_the_harness_ceiling_replaced_is_judged_on_the_kubelets_value(
    tmp_path: Path,
) -> None:
    """A 4 GiB lab VM: the harness's ceiling is 10.4 MiB under the kubelet's kubepods limit (CI of
    stop 27, L7: "model 2244554752, observed 2233614336"); the kubelet's write is what is judged."""
    facts = NodeFacts.model_validate(
        {"memoryCapacity": 8 * GI, "cpus": 2, "cgroupVersion": 1, "kubeletVersion": "1.33"}
    )
    prof = _profile()
    root = tmp_path / "cgroup"
    kp = root / "memory" / "kubepods"
    kp.mkdir(parents=True)
    (root / "memory" / "cgroup.procs").touch()
    checks = check_cgroups(prof, facts, [], {}, cgroup_version=1, root=root)
    limit = next(c for c in checks if c.level == "kubepods" and c.file == "memory.limit_in_bytes")
    kubelets = limit.expected
    limit_file = kp / "memory.limit_in_bytes"
    limit_file.write_text("2233614336\n")  # the harness's ceiling

    def judged(overwritten: dict[str, tuple[str, str]]) -> CgroupCheck:
        out = check_cgroups(prof, facts, [], {}, cgroup_version=1, root=root, overwritten=overwritten)
        return next(c for c in out if c.level == "kubepods" and c.file == "memory.limit_in_bytes")

    plain = judged({})
    assert not plain.match and plain.kubelet_value is None
    ok = judged({str(root / "memory" / "." / "kubepods" / "memory.limit_in_bytes"): (kubelets, "2233614336")})
    assert ok.match and ok.kubelet_value == kubelets and ok.observed == "2233614336"
    # the kubelet wrote a value the model does not give: a difference, naming both values
    wrong = judged({str(limit_file): ("999", "2233614336")})
    assert not wrong.match
    v = cgroup_verdict("s", [wrong])
    assert "the kubelet wrote 999" in v.reasons[0] and "2233614336" in v.reasons[0]
    # the file was written again since (it no longer holds the harness's value): the file is judged
    limit_file.write_text(kubelets + "\n")
    again = judged({str(limit_file): ("999", "2233614336")})
    assert again.match and again.kubelet_value is None


@pytest.mark.parametrize("missing", ["pids"])
def test_an_unmounted_controller_is_skipped_not_failed(tmp_path: Path, missing: str) -> None:
    facts = NodeFacts.model_validate(
        {"memoryCapacity": 8 * GI, "cpus": 2, "cgroupVersion": 1, "kubeletVersion": "1.33"}
    )
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "cgroup.procs").touch()
    checks = check_cgroups(_profile(), facts, [], {}, cgroup_version=1, root=tmp_path)
    assert checks and all(c.file.startswith("memory.") for c in checks)


def test_cgroup_conformance_finds_the_systemd_drivers_slices_and_scopes(tmp_path: Path) -> None:
    """cgroup v2 with cgroupDriver systemd: kubepods.slice/kubepods-pod<uid_>.slice/
    cri-containerd-<id>.scope hold what the model names kubepods/pod<uid>/<container>."""
    from harness.model.cgroupnames import container_dir, kubelet_cgroup
    from harness.model.cgroups import cgroup_tree, expected_files

    facts = NodeFacts.model_validate(
        {"memoryCapacity": 8 * GI, "cpus": 2, "cgroupVersion": 2, "kubeletVersion": "1.33"}
    )
    prof = _profile()
    pod = Workload.model_validate(_guaranteed("g", "256Mi")).to_pod("harness")
    pod.metadata.uid = "u-1-2"
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    for v in cgroup_tree(prof, facts, [pod]):
        if v.level == "container":
            rel = (
                f"{kubelet_cgroup(v.path.rsplit('/', 1)[0], 'systemd')}/{container_dir('cid123', 'systemd')}"
            )
        else:
            rel = kubelet_cgroup(v.path, "systemd")
        d = root / rel
        d.mkdir(parents=True, exist_ok=True)
        for f, val in expected_files(v, 2).items():
            (d / f).write_text(val + "\n")
    assert (root / "kubepods.slice/kubepods-podu_1_2.slice/cri-containerd-cid123.scope/memory.max").exists()
    checks = check_cgroups(
        prof, facts, [pod], {("u-1-2", "g"): "cid123"}, cgroup_version=2, root=root, driver="systemd"
    )
    assert checks and all(c.match for c in checks)
    assert {c.level for c in checks} == {"kubepods", "qos", "pod", "container"}
    # the cgroupfs names are not there: every file of the same tree is missing
    fs = check_cgroups(prof, facts, [pod], {("u-1-2", "g"): "cid123"}, cgroup_version=2, root=root)
    assert fs and not any(c.match for c in fs)
