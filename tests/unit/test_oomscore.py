"""Recording each container's oom_score_adj (S12): the read path and the version-dependent model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.config.kubelet import load_profile
from harness.config.node import NodeFacts
from harness.config.pod import load_pods
from harness.model.cgroupnames import pod_cgroup as _pod_cgroup
from harness.verdict.oomscore import applied_value, container_oom_scores

REPO = Path(__file__).resolve().parents[2]
MEMTOTAL = 25276510208  # this host's MemTotal (tests/fixtures/runs/*kubelet*/run.json)
UID = "8c636f80-d933-400b-950d-967f31ade9bb"


def _facts(version: str) -> NodeFacts:
    return NodeFacts.model_validate(
        {"memoryCapacity": MEMTOTAL, "kubeletVersion": version, "negativeOomScoreAdj": False}
    )


def _pod() -> Any:
    (pod,) = load_pods(REPO / "suites" / "pods" / "sidecar.yaml")
    return pod


def _node(tmp: Path, values: dict[str, int]) -> tuple[dict[str, Any], Path, Path]:
    """A pod as the API server reports it, plus its containers' cgroups and /proc entries."""
    mem, proc = tmp / "memory", tmp / "proc"
    statuses: dict[str, list[dict[str, Any]]] = {"initContainerStatuses": [], "containerStatuses": []}
    for i, (name, adj) in enumerate(values.items()):
        cid = f"{i:064x}"
        d = mem / _pod_cgroup(UID, "Burstable", "cgroupfs") / cid
        d.mkdir(parents=True)
        (d / "cgroup.procs").write_text(f"{100 + i}\n{200 + i}\n")
        (proc / str(100 + i)).mkdir(parents=True)
        (proc / str(100 + i) / "oom_score_adj").write_text(f"{adj}\n")
        kind = "initContainerStatuses" if name == "sidecar" else "containerStatuses"
        statuses[kind].append(
            {"name": name, "containerID": f"containerd://{cid}", "state": {"running": {"startedAt": "x"}}}
        )
    obj = {"metadata": {"uid": UID}, "status": {"qosClass": "Burstable", **statuses}}
    return obj, mem, proc


@pytest.mark.parametrize(
    ("version", "sidecar"), [("1.31.9", 999), ("1.32.5", 979), ("1.33.4", 979), ("1.34.1", 979)]
)
def test_the_sidecar_rule_by_version(tmp_path: Path, version: str, sidecar: int) -> None:
    """From 1.33 (kubernetes PR #128029) a sidecar gets at most the smallest regular container's value."""
    profile = load_profile(REPO / "profiles" / "cluster-default.yaml")
    obj, mem, proc = _node(tmp_path, {"sidecar": sidecar, "app": 979})
    checks = container_oom_scores(
        obj, _pod(), profile, _facts(version), memory_root=mem, proc_root=proc, workload="app"
    )
    got = {c.path.rsplit("/", 1)[1]: (c.expected, c.observed, c.match) for c in checks}
    assert got == {"sidecar": (str(sidecar), str(sidecar), True), "app": ("979", "979", True)}
    assert checks[0].path == f"kubepods/burstable/pod{UID}/sidecar" and checks[0].file == "oom_score_adj"
    assert checks[0].real_path == str(proc / "100" / "oom_score_adj")


def test_a_version_mismatch_is_a_failed_check_and_gone_processes_are_skipped(tmp_path: Path) -> None:
    profile = load_profile(REPO / "profiles" / "cluster-default.yaml")
    obj, mem, proc = _node(tmp_path, {"sidecar": 999, "app": 979})
    (proc / "101" / "oom_score_adj").unlink()  # the app's process is gone
    (checks,) = [
        container_oom_scores(obj, _pod(), profile, _facts("1.33.4"), memory_root=mem, proc_root=proc)
    ]
    assert [(c.path.rsplit("/", 1)[1], c.expected, c.observed, c.match) for c in checks] == [
        ("sidecar", "979", "999", False)
    ]


def test_negative_values_are_expected_as_the_host_applies_them() -> None:
    assert applied_value(-997, negative_ok=False) == 0
    assert applied_value(-997, negative_ok=True) == -997
    assert applied_value(979, negative_ok=False) == 979
    assert _pod_cgroup(UID, "Guaranteed", "cgroupfs") == f"kubepods/pod{UID}"
