"""The oom_score_adj each container of a pod really runs with, against the model (real kubelet).

The kubelet computes a container's oom_score_adj when it creates the container (k8s:
pkg/kubelet/qos/policy.go ``GetContainerOOMScoreAdjust``, passed in the CRI
``LinuxContainerResources.OomScoreAdj``) and the runtime writes it to the container's first
process. The value depends on the kubelet's version: from 1.33 a sidecar (an init container with
``restartPolicy: Always``) gets at most the value of the pod's smallest regular container
(kubernetes PR #128029, KEP-753 update kubernetes/enhancements#4932; modelled in
:func:`harness.model.oom.container_oom_score_adj`). So it is recorded as an observed value like a
cgroup file (``cgroups.parquet``, file ``oom_score_adj``, level ``process``): the verdict compares
it with the model of the run's kubelet version, and ``harness compare`` / ``upgrade-check`` see a
change between two versions as one line, e.g. ``.../sidecar [app]: oom_score_adj 999 -> 979``.

Every container of the pod is read, regular and init (sidecars are in ``initContainerStatuses``),
from its running process: ``<memory root>/<pod cgroup>/<container id>/cgroup.procs`` (cgroupfs
naming, as ``harness/launch/kubernetes/backend.py`` binds a workload's cgroup), then
``/proc/<pid>/oom_score_adj``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.config.kubelet import KubeletConfiguration
from harness.config.node import NodeFacts
from harness.config.pod import Pod
from harness.config.suite import Scenario
from harness.host.cgroups import memory_root as memory_root_of
from harness.launch.base import NodeObservations
from harness.model import cgroupnames as names
from harness.model.cgroupnames import Driver
from harness.model.oom import container_oom_score_adj
from harness.verdict.cgroups import CgroupCheck

FILE = "oom_score_adj"
LEVEL = "process"


def applied_value(expected: int, negative_ok: bool) -> int:
    """What the runtime can apply: containerd's ``restrict_oom_score_adj`` raises a value below its
    own (0 here) to its own when the host refuses negative values (recorded as a host deviation
    by the launcher); the kubelet's choice is what the check is about."""
    return expected if expected >= 0 or negative_ok else 0


def container_oom_scores(
    pod_obj: Mapping[str, Any],
    pod: Pod,
    profile: KubeletConfiguration,
    facts: NodeFacts,
    *,
    memory_root: Path,
    workload: str | None = None,
    proc_root: Path = Path("/proc"),
    driver: Driver = "cgroupfs",
) -> list[CgroupCheck]:
    """One check per running container of ``pod_obj`` (the API server's pod, as a dict).

    ``pod`` is the manifest the model knows (same containers); containers that are not running
    (a regular init container that ended) or whose process is gone are skipped.
    """
    uid = str(pod_obj["metadata"]["uid"])
    status = pod_obj.get("status") or {}
    rel = names.pod_cgroup(uid, str(status.get("qosClass") or ""), driver)
    out: list[CgroupCheck] = []
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    for cs in statuses:
        cid = str(cs.get("containerID") or "").split("://", 1)[-1]
        if not cid or not (cs.get("state") or {}).get("running"):
            continue
        name = str(cs["name"])
        try:
            pid = (
                (memory_root / rel / names.container_dir(cid, driver) / "cgroup.procs").read_text().split()[0]
            )
            observed: str | None = (proc_root / pid / FILE).read_text().strip()
        except (OSError, IndexError):
            continue
        model = container_oom_score_adj(pod, name, facts.memory_capacity_bytes, profile, facts.kubelet_minor)
        expected = str(applied_value(model, facts.negative_oom_score_adj))
        out.append(
            CgroupCheck(
                level=LEVEL,
                path=f"{rel}/{name}",
                real_path=str(proc_root / pid / FILE),
                file=FILE,
                expected=expected,
                observed=observed,
                match=observed == expected,
                workload=workload,
            )
        )
    return out


def scenario_oom_scores(sc: Scenario, obs: NodeObservations, cgroup_version: int) -> list[CgroupCheck]:
    """Every running container's oom_score_adj of the scenario's observed pods vs the model."""
    assert sc.profile is not None and sc.node is not None
    workloads = {w.name: w for w in sc.workloads}
    out: list[CgroupCheck] = []
    for p in obs.pods:
        if not p.api_object.get("metadata"):
            continue
        pod = workloads[p.workload].to_pod(p.namespace).model_copy(deep=True)
        pod.metadata.uid = p.uid
        out += container_oom_scores(
            p.api_object,
            pod,
            sc.profile,
            sc.node,
            memory_root=memory_root_of(cgroup_version),
            workload=p.workload,
            driver=obs.cgroup_driver,
        )
    return out
