"""Cgroup conformance (scenario S8): every value the kubelet and the runtime wrote, against the model.

The model (harness.model.cgroups) gives, per level (kubepods, QoS tiers, pod, container), the files
and their contents as the kernel shows them (``expected_files``). This module finds the real
directories (containers are named by the runtime, e.g. the containerd container id on cgroupfs)
and reads each file from its controller's hierarchy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.config.kubelet import KubeletConfiguration
from harness.config.node import NodeFacts
from harness.config.pod import Pod
from harness.host.cgroups import CGROUP_ROOT, hierarchies
from harness.model.cgroups import cgroup_tree, expected_files


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def controller_dirs(root: Path = CGROUP_ROOT) -> dict[str, Path]:
    """Controller name -> hierarchy directory (v1 ``cpu,cpuacct`` serves cpu and cpuacct; v2: every
    controller is in the unified root)."""
    hs = hierarchies(root)
    if hs == [root]:
        return dict.fromkeys(("memory", "cpu", "pids", "hugetlb"), root)
    out: dict[str, Path] = {}
    for d in hs:
        for c in d.name.split(","):
            out.setdefault(c, d)
    return out


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
) -> list[CgroupCheck]:
    """Compare every modelled file of kubepods, the QoS tiers, ``pods`` and their containers.

    ``container_dirs`` maps (pod uid, container name) to the runtime's directory name;
    ``workloads`` maps pod uid to the workload name for the report.
    """
    ctrl = controller_dirs(root)
    out: list[CgroupCheck] = []
    for v in cgroup_tree(profile, facts, pods):
        real = v.path
        if v.level == "container" and v.pod_uid and v.container:
            d = container_dirs.get((v.pod_uid, v.container))
            if d is None:
                continue  # not started (e.g. an init container that already ended)
            real = f"{v.path.rsplit('/', 1)[0]}/{d}"
        for file, expected in expected_files(v, cgroup_version).items():
            base = ctrl.get(_controller_of(file))
            if base is None:
                continue  # controller not mounted on this host (e.g. hugetlb here)
            try:
                observed: str | None = (base / real / file).read_text().strip()
            except OSError:
                observed = None
            out.append(
                CgroupCheck(
                    level=v.level,
                    path=v.path,
                    real_path=str(base / real),
                    file=file,
                    expected=expected,
                    observed=observed,
                    match=observed == expected,
                    workload=(workloads or {}).get(v.pod_uid or ""),
                )
            )
    return out
