"""Cgroup conformance (scenario S8): every value the kubelet and the runtime wrote, against the model.

The model (harness.model.cgroups) gives, per level (kubepods, QoS tiers, pod, container), the files
and their contents as the kernel shows them (``expected_files``). This module finds the real
directories (containers are named by the runtime, e.g. the containerd container id on cgroupfs)
and reads each file from its controller's hierarchy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.config.kubelet import KubeletConfiguration
from harness.config.node import NodeFacts
from harness.config.pod import Pod
from harness.config.suite import Scenario
from harness.host.cgroups import CGROUP_ROOT, controller_dirs
from harness.launch.base import NodeObservations
from harness.model.cgroupnames import Driver, container_dir, kubelet_cgroup
from harness.model.cgroups import cgroup_tree, expected_files
from harness.verdict import Verdict


@dataclass
class CgroupCheck:
    level: str
    path: str  # model path, e.g. kubepods/burstable/pod<uid>/<container name>
    real_path: str  # the directory read (container ids substituted)
    file: str
    expected: str
    observed: str | None  # None: file missing
    match: bool
    workload: str | None = None
    # the kubelet's own value when the harness's ceiling replaced it (``observed`` is the harness's);
    # the match is then judged on this value
    kubelet_value: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _controller_of(file: str) -> str:
    return file.split(".", 1)[0]


def check_cgroups(
    profile: KubeletConfiguration,
    facts: NodeFacts,
    pods: list[Pod],
    container_dirs: Mapping[tuple[str, str], str],
    *,
    cgroup_version: int,
    workloads: Mapping[str, str] | None = None,
    root: Path = CGROUP_ROOT,
    driver: Driver = "cgroupfs",
    overwritten: Mapping[str, tuple[str, str]] | None = None,
) -> list[CgroupCheck]:
    """Compare every modelled file of kubepods, the QoS tiers, ``pods`` and their containers.

    ``container_dirs`` maps (pod uid, container name) to the runtime's directory name;
    ``workloads`` maps pod uid to the workload name for the report; ``driver`` says how the kubelet
    named the model's cgroups on the host (``model.cgroupnames``); ``overwritten`` maps a file's path
    to the kubelet's value and the harness's that replaced it (``NodeObservations.overwritten``):
    where the file still holds the harness's value, the kubelet's is the one judged.
    """
    replaced = {os.path.normpath(k): v for k, v in (overwritten or {}).items()}
    ctrl = controller_dirs(root)
    out: list[CgroupCheck] = []
    for v in cgroup_tree(profile, facts, pods):
        real = kubelet_cgroup(v.path, driver)
        if v.level == "container" and v.pod_uid and v.container:
            d = container_dirs.get((v.pod_uid, v.container))
            if d is None:
                continue  # not started (e.g. an init container that already ended)
            real = f"{kubelet_cgroup(v.path.rsplit('/', 1)[0], driver)}/{container_dir(d, driver)}"
        for file, expected in expected_files(v, cgroup_version).items():
            base = ctrl.get(_controller_of(file))
            if base is None:
                continue  # controller not mounted on this host (e.g. hugetlb here)
            try:
                observed: str | None = (base / real / file).read_text().strip()
            except OSError:
                observed = None
            kubelet, harness = replaced.get(os.path.normpath(base / real / file), (None, None))
            if observed != harness:
                kubelet = None  # written again since (by the kubelet): the file is the kubelet's
            out.append(
                CgroupCheck(
                    level=v.level,
                    path=v.path,
                    real_path=str(base / real),
                    file=file,
                    expected=expected,
                    observed=observed,
                    match=(observed if kubelet is None else kubelet) == expected,
                    workload=(workloads or {}).get(v.pod_uid or ""),
                    kubelet_value=kubelet,
                )
            )
    return out


def scenario_conformance(sc: Scenario, obs: NodeObservations, cgroup_version: int) -> list[CgroupCheck]:
    """Every cgroup value of kubepods, the QoS tiers and the scenario's running pods vs the model (S8)."""
    assert sc.profile is not None and sc.node is not None
    workloads = {w.name: w for w in sc.workloads}
    pods = []
    dirs: dict[tuple[str, str], str] = {}
    names: dict[str, str] = {}
    for p in obs.pods:
        if not p.container_id:
            continue
        pod = workloads[p.workload].to_pod(p.namespace).model_copy(deep=True)
        pod.metadata.uid = p.uid
        pods.append(pod)
        dirs[(p.uid, pod.spec.containers[0].name)] = p.container_id
        names[p.uid] = p.workload
    return check_cgroups(
        sc.profile,
        sc.node,
        pods,
        dirs,
        cgroup_version=cgroup_version,
        workloads=names,
        driver=obs.cgroup_driver,
        overwritten=obs.overwritten,
    )


def cgroup_verdict(scenario: str, checks: list[CgroupCheck]) -> Verdict:
    """One verdict for the whole cgroup tree of a scenario (S8)."""
    bad = [c for c in checks if not c.match]
    reasons = [
        f"{c.real_path}/{c.file}: model {c.expected}, observed {c.observed}"
        if c.kubelet_value is None
        else f"{c.real_path}/{c.file}: model {c.expected}, the kubelet wrote {c.kubelet_value} "
        f"(the harness's ceiling {c.observed} is there now)"
        for c in bad
    ]
    if not checks:
        reasons.append("no cgroup file could be compared")
    return Verdict.check(
        scenario,
        "cgroups",
        f"{len(checks)} files as modelled",
        f"{len(checks) - len(bad)} as modelled, {len(bad)} differ",
        bool(checks) and not bad,
        reasons,
    )
