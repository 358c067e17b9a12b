"""What the model predicts for a fuzz pod against what the kubelet did, and the reproducer of each
difference (pure: the observations are passed in; writing a reproducer only writes files).

Per pod: admission (admitted or refused, and the refusal's reason and message, k8s
pkg/kubelet/lifecycle/predicate.go; the kubelet prefixes the message with ``Pod was rejected: ``,
pkg/kubelet/kubelet.go ``rejectPod``), every cgroup file the model predicts for the pod and its
containers (``verdict.cgroups.check_cgroups``) and every running container's oom_score_adj
(``verdict.oomscore.container_oom_scores``, where a negative value this host cannot apply counts as
applied at 0: a host deviation, not a difference). The kubepods and QoS-tier files depend on every pod
of a batch, so they are the batch's checks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.config.kubelet import KubeletConfiguration
from harness.config.node import NodeFacts
from harness.config.pod import Pod
from harness.fuzz.generate import FuzzPod
from harness.host.cgroups import CGROUP_ROOT, memory_root
from harness.model.oom import container_oom_score_adj
from harness.verdict.cgroups import CgroupCheck, check_cgroups
from harness.verdict.oomscore import container_oom_scores

NAMESPACE = "harness"  # the kubernetes backend's namespace (launch.kubernetes.pods.NAMESPACE)

# The reproducer's workload: the leak program in the pod's first container, a few MiB held until
# the scenario's end (as suites/upgrade.yaml S12), so every container's values are read running.
REPRODUCER_LEAK = {"chunk": "1Mi", "interval": "100ms", "max": "4Mi"}
REPRODUCER_TIMEOUT = "10s"
REJECTED_PREFIX = "Pod was rejected: "


@dataclass(frozen=True)
class Admission:
    admitted: bool
    reason: str = ""
    message: str = ""

    def text(self) -> str:
        return "admitted" if self.admitted else f"rejected {self.reason}: {self.message}".rstrip(": ")


@dataclass
class Difference:
    """One value where the kubelet and the model disagree."""

    kind: str  # admission, start, cgroup, oom_score_adj, allocatable
    where: str  # pod/container path or resource
    expected: str
    observed: str
    pod: str | None = None  # None: the batch's or the node's (kubepods, QoS tiers, allocatable)
    profile: int = 0
    batch: int = 0
    reproducer: str | None = None

    def line(self) -> str:
        who = self.pod or f"profile {self.profile} batch {self.batch}"
        return f"{who}: {self.kind} {self.where}: model {self.expected}, observed {self.observed}"


@dataclass
class PodResult:
    """One pod's comparison."""

    name: str
    index: int
    profile: int
    batch: int
    qos: str
    features: list[str]
    predicted: Admission
    observed: Admission | None = None
    files: int = 0  # cgroup files compared
    oom_scores: int = 0  # containers' oom_score_adj compared
    host_deviations: list[str] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)

    @property
    def compared(self) -> bool:
        return self.observed is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["compared"] = self.compared
        return d


def compare_admission(predicted: Admission, observed: Admission) -> list[tuple[str, str, str]]:
    """(where, expected, observed) for each way the kubelet's admission differs from the model's: the
    outcome, the reason, and the message (the model's must be the kubelet's, after its prefix)."""
    if predicted.admitted != observed.admitted:
        return [("admitted", predicted.text(), observed.text())]
    if predicted.admitted:
        return []
    out = []
    if predicted.reason != observed.reason:
        out.append(("reason", predicted.reason, observed.reason))
    if observed.message.removeprefix(REJECTED_PREFIX) != predicted.message:
        out.append(("message", predicted.message, observed.message))
    return out


def refused_causes(body: object) -> str:
    """The fields of an API server's refusal (a Status whose ``details.causes`` each name one,
    apimachinery pkg/api/errors ``NewInvalid``), sorted and joined as ``model.validation.refused_fields``
    gives the model's; the body itself when it names none."""
    try:
        status: Any = json.loads(body) if isinstance(body, str | bytes) else body
        causes = status["details"]["causes"]
        fields = sorted({str(c["field"]) for c in causes if c.get("field")})
    except (ValueError, TypeError, KeyError, AttributeError):
        fields = []
    return "; ".join(fields) if fields else str(body)


def check_differences(checks: list[CgroupCheck]) -> list[tuple[str, str, str, str]]:
    """(kind, where, expected, observed) of every check that does not match."""
    return [
        (
            "oom_score_adj" if c.file == "oom_score_adj" else "cgroup",
            f"{c.path} {c.file}",
            c.expected,
            "missing" if c.observed is None else c.observed,
        )
        for c in checks
        if not c.match
    ]


def reproducer_suite(
    name: str, pods: list[tuple[FuzzPod, str]], profile_file: str, reasons: list[str]
) -> dict[str, Any]:
    """A suite for ``harness run <suite> --backend kubernetes`` (S8-style: checkCgroups, every
    container's oom_score_adj recorded and judged): one workload per (pod, pod file), in order."""
    workloads: list[dict[str, Any]] = []
    for fp, pod_file in pods:
        w: dict[str, Any] = {"name": f"p{fp.index}", "pod": pod_file, "leak": dict(REPRODUCER_LEAK)}
        if fp.priority is not None:
            w["priority"] = fp.priority  # the backend makes the PriorityClass
        workloads.append(w)
    return {
        "apiVersion": "harness/v1",
        "kind": "Suite",
        "name": name,
        "description": "harness fuzz reproducer",
        "profile": profile_file,
        "sampleHz": 10,
        "scenarios": [
            {
                "name": name,
                "id": "FUZZ",
                "description": "Differences found by harness fuzz: " + "; ".join(reasons),
                "timeout": REPRODUCER_TIMEOUT,
                "checkCgroups": True,
                "backends": ["kubernetes"],
                "workloads": workloads,
            }
        ],
    }


def write_reproducer(
    out_dir: Path, name: str, pods: list[FuzzPod], profile_path: Path, diffs: list[Difference]
) -> Path:
    """``<out>/reproducers/<name>/suite.yaml`` with one pod file per pod and ``profile.yaml`` beside it
    (one pod for a pod's difference; a batch's pods for a QoS tier's). Every difference names it.
    Returns the suite's path."""
    name = name[:50].strip("-")
    d = out_dir / "reproducers" / name
    d.mkdir(parents=True, exist_ok=True)
    files = []
    for fp in pods:
        pod = json.loads(json.dumps(fp.manifest))
        if fp.priority is not None:
            pod["spec"]["priority"] = fp.priority  # what the model reads; the backend sends the class
        (d / f"{fp.name}.yaml").write_text(yaml.safe_dump(pod, sort_keys=False))
        files.append((fp, f"{fp.name}.yaml"))
    (d / "profile.yaml").write_text(profile_path.read_text())
    suite = reproducer_suite(name, files, "profile.yaml", [x.line() for x in diffs])
    path = d / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    for x in diffs:
        x.reproducer = str(path)
    return path


def container_dirs(obj: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(pod uid, container name) -> the runtime's container id, for every running container of the
    API server's pod (regular and init: sidecars are in initContainerStatuses)."""
    uid = str(obj["metadata"]["uid"])
    st = obj.get("status") or {}
    out = {}
    for c in [*(st.get("initContainerStatuses") or []), *(st.get("containerStatuses") or [])]:
        cid = str(c.get("containerID") or "").split("://", 1)[-1]
        if cid and (c.get("state") or {}).get("running"):
            out[(uid, str(c["name"]))] = cid
    return out


def compare_batch(
    fps: list[FuzzPod],
    results: list[PodResult],
    objs: dict[str, dict[str, Any]],
    profile: KubeletConfiguration,
    facts: NodeFacts,
    *,
    cgroup_version: int,
    cgroup_root: Path = CGROUP_ROOT,
    proc_root: Path = Path("/proc"),
) -> tuple[list[Difference], int]:
    """The node's state of a batch's admitted pods (``objs``: the API server's pods by name) against
    the model: each pod's and container's cgroup files and oom_score_adj go to its ``PodResult``;
    returns the differences of the kubepods and QoS-tier files (every pod of the batch decides them)
    and how many of those files were compared."""
    admitted = [(fp, r) for fp, r in zip(fps, results, strict=True) if r.observed and r.observed.admitted]
    models: list[Pod] = []
    dirs: dict[tuple[str, str], str] = {}
    names: dict[str, str] = {}
    for fp, res in admitted:
        obj = objs[fp.name]
        pod = fp.pod().model_copy(deep=True)
        pod.metadata.uid = str(obj["metadata"]["uid"])
        pod.metadata.namespace = NAMESPACE
        models.append(pod)
        dirs.update(container_dirs(obj))
        names[pod.metadata.uid] = fp.name
        oom = container_oom_scores(
            obj, pod, profile, facts, memory_root=memory_root(cgroup_version, cgroup_root),
            workload=fp.name, proc_root=proc_root,
        )  # fmt: skip
        res.oom_scores = len(oom)
        for kind, where, exp, got in check_differences(oom):
            res.differences.append(Difference(kind, where, exp, got, fp.name))
        read = {c.path.rsplit("/", 1)[-1] for c in oom}
        for ctr in [*pod.spec.init_containers, *pod.spec.containers]:
            v = container_oom_score_adj(
                pod, ctr.name, facts.memory_capacity_bytes, profile, facts.kubelet_minor
            )
            if ctr.name in read and v < 0 and not facts.negative_oom_score_adj:
                res.host_deviations.append(
                    f"{ctr.name}: oom_score_adj {v} asked by the kubelet, 0 applied "
                    "(containerd restrict_oom_score_adj: this host cannot set negative values)"
                )
    if not models:
        return [], 0  # no pod made the kubelet update its QoS tiers: nothing to compare there
    checks = check_cgroups(
        profile, facts, models, dirs, cgroup_version=cgroup_version, workloads=names, root=cgroup_root
    )
    by_name = {fp.name: res for fp, res in admitted}
    tier: list[Difference] = []
    tier_files = 0
    for c in checks:
        owner = by_name.get(c.workload or "") if c.level in ("pod", "container") else None
        if owner is not None:
            owner.files += 1
        else:
            tier_files += 1
        if not c.match:
            ((kind, where, exp, got),) = check_differences([c])
            if owner is not None:
                owner.differences.append(Difference(kind, where, exp, got, owner.name))
            else:
                tier.append(Difference(kind, where, exp, got))
    return tier, tier_files


def write_reproducers(
    out_dir: Path,
    batch_name: str,
    fps: list[FuzzPod],
    results: list[PodResult],
    batch_diffs: list[Difference],
    profile_path: Path,
    profile: int,
    batch: int,
) -> list[Path]:
    """A one-pod reproducer per pod with differences (an admission difference also takes the batch's
    pods admitted before it: the kubelet admitted it beside them); one with the batch's admitted pods for
    the batch's own (QoS tiers, kubepods, allocatable). Stamps each difference with profile and batch."""
    out = []
    for i, (fp, res) in enumerate(zip(fps, results, strict=True)):
        for d in res.differences:
            d.profile, d.batch = profile, batch
        if res.differences:
            before: list[FuzzPod] = []
            if any(d.kind == "admission" for d in res.differences):
                before = [
                    f for f, r in zip(fps[:i], results[:i], strict=True) if r.observed and r.observed.admitted
                ]
            out.append(write_reproducer(out_dir, fp.name, [*before, fp], profile_path, res.differences))
    for d in batch_diffs:
        d.profile, d.batch = profile, batch
    if batch_diffs:
        admitted = [fp for fp, r in zip(fps, results, strict=True) if r.observed and r.observed.admitted]
        out.append(write_reproducer(out_dir, batch_name, admitted or fps[:1], profile_path, batch_diffs))
    return out
