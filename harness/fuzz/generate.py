"""Random pods and kubelet profiles, drawn deterministically from a seed (pure: no cluster, no host).

A pod is a real v1 manifest that passes the project's pod schema (``config.pod.parse_pod``): a QoS
class chosen first (BestEffort, Burstable, Guaranteed), one to three regular containers, regular init
containers and sidecars (init containers with ``restartPolicy: Always``, KEP-753), priorities (none,
the built-in ``system-node-critical`` / ``system-cluster-critical``, a harness PriorityClass value) and
quantities written as users write them (``1000m``, ``0.5``, ``129Mi``, ``1.5Gi``, ``100M``, ``300000Ki``).
Some pods ask more than any node here has, so that admission refusals are exercised. Pod-level
resources only where the kubelet (and the API server of the same version) has ``PodLevelResources`` on;
a few of those break the API server's rules on purpose (feature ``api-refused``).

A profile is the base profile with a few knobs the model covers changed: reservations, the hard
``memory.available`` threshold, CFS quota, the pod pids limit. The system reservation stays large, so
``kubepods`` stays a few GiB on this 24 GiB host (profiles/cluster-default.yaml explains the sizes).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from harness import quantity
from harness.config.kubelet import KubeletConfiguration
from harness.config.pod import Pod, parse_pod
from harness.images import LEAK_IMAGE, PAUSE_IMAGE
from harness.model import versions
from harness.model.resources import aggregate_container, pod_view
from harness.model.validation import pod_resource_errors

QOS_CLASSES = ("BestEffort", "Burstable", "Guaranteed")
# What users write (docs: concepts/configuration/manage-resources-containers "Meaning of memory/CPU").
MEMORY_VALUES = ("64Mi", "100M", "129Mi", "200Mi", "256Mi", "300000Ki", "0.25Gi", "0.5Gi", "1G", "1.5Gi")
CPU_VALUES = ("10m", "50m", "100m", "125m", "0.1", "250m", "0.5", "1000m", "1")
# More than this host's node can give (2 CPUs, a few GiB allocatable): refused at admission.
OVERSIZED = {"memory": ("6Gi", "8000M"), "cpu": ("3", "4000m")}
CUSTOM_PRIORITIES = (100, 1000, 1000000)
# The view of a pod with pod-level resources (their gate on, as wherever they are drawn)
_POD_LEVEL_ON = KubeletConfiguration.model_validate({"featureGates": {"PodLevelResources": True}})
# The regular init container's program: allocate 1 MiB and exit 0 (workloads/README.md).
INIT_ARGS = ["--chunk=1048576", "--interval-ms=0", "--max=1048576", "--hold-ms=0"]


@dataclass(frozen=True)
class Images:
    """Images of the generated containers: long-running ones and the init program."""

    pause: str = PAUSE_IMAGE
    leak: str = LEAK_IMAGE


@dataclass
class FuzzPod:
    """One generated pod: its manifest (as sent, minus node binding) and how it was drawn."""

    index: int
    name: str
    manifest: dict[str, Any]
    qos_target: str
    oversized: bool = False
    priority: int | None = None  # a harness PriorityClass value (None: none or a built-in class)
    features: list[str] = field(default_factory=list)  # init, sidecar, critical, pod-level, ...

    def pod(self) -> Pod:
        """The manifest as the model reads it (spec.priority set for a harness class, as the
        API server's Priority admission plugin does)."""
        data = _copy(self.manifest)
        if self.priority is not None:
            data["spec"]["priority"] = self.priority
        return parse_pod(data, f"<fuzz pod {self.name}>")


def _copy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_copy(v) for v in obj]
    return obj


def _pick_le(rng: random.Random, values: tuple[str, ...], at_least: str) -> str:
    """A value from ``values`` not below ``at_least`` (so a request never exceeds its limit)."""
    floor = quantity.parse(at_least)
    ok = [v for v in values if quantity.parse(v) >= floor]
    return rng.choice(ok) if ok else at_least


def _equal_spelling(rng: random.Random, value: str, kind: str) -> str:
    """The same quantity, sometimes written another way (``1`` vs ``1000m``, ``1Gi`` vs bytes)."""
    if rng.random() < 0.5:
        return value
    if kind == "cpu":
        return f"{quantity.to_millis(value)}m"
    n = quantity.to_bytes(value)
    return str(n) if n % 1024 else f"{n // 1024}Ki"


def _resources(rng: random.Random, qos: str, oversized: str | None) -> dict[str, Any]:
    """One container's resources for the pod's QoS target; ``oversized`` names a resource to blow up."""
    if qos == "BestEffort":
        return {}
    if qos == "Guaranteed":
        limits = {"memory": rng.choice(MEMORY_VALUES), "cpu": rng.choice(CPU_VALUES)}
        if oversized:
            limits[oversized] = rng.choice(OVERSIZED[oversized])
        out: dict[str, Any] = {"limits": dict(limits)}
        if rng.random() < 0.6:  # requests omitted default to the limits
            out["requests"] = {k: _equal_spelling(rng, v, k) for k, v in limits.items()}
        return out
    # Burstable: any mix of requests and limits, request <= limit
    requests: dict[str, str] = {}
    limits = {}
    for kind, values in (("memory", MEMORY_VALUES), ("cpu", CPU_VALUES)):
        r = rng.random()
        if r < 0.3:
            continue
        if r < 0.6:
            requests[kind] = rng.choice(values)
        elif r < 0.8:
            limits[kind] = rng.choice(values)
        else:
            requests[kind] = rng.choice(values)
            limits[kind] = _pick_le(rng, values, requests[kind])
    if oversized:
        requests[oversized] = rng.choice(OVERSIZED[oversized])
        limits.pop(oversized, None)
    out = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _container(
    rng: random.Random, name: str, image: str, qos: str, oversized: str | None = None
) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": image, "imagePullPolicy": "Never"}
    res = _resources(rng, qos, oversized)
    if res:
        c["resources"] = res
    return c


def _pod_level(rng: random.Random, spec: dict[str, Any]) -> dict[str, Any]:
    """Pod-level memory requests (and, for most, limits) for ``spec``. Most are valid: the request at
    or above the containers' aggregate request (the sidecar formula,
    ``model.resources.aggregate_container``), the limit at or above it and every container's
    limit. One in six breaks one of the API server's rules (k8s ``validatePodResourceConsistency``:
    the request below the aggregate, or the limit below a container's, which may take the request
    below the aggregate with it), so the model's validation
    (``model.validation``) is exercised too; a request above the pod's limit is refused by the
    project's own pod schema already (``config.podschema``), so it is never drawn."""
    pod = parse_pod(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": spec}, "<fuzz draw>"
    )
    view = pod_view(pod, _POD_LEVEL_ON, 34)
    mib = 1 << 20
    aggregate = -(-int(aggregate_container(view, "requests").get("memory", 0)) // mib)  # MiB, rounded up
    top_limit = -(-max([int(c.limits.get("memory", 0)) for c in view.containers] + [0]) // mib)
    request = max(aggregate, 64) + rng.choice((0, 0, 1, 64))  # 65Mi and 129Mi-like values too
    limit = max(request, top_limit, 129) + rng.choice((0, 1, 128))
    with_limit = rng.random() < 0.6
    if rng.random() < 1 / 6:
        if rng.random() < 0.5:
            request = max(aggregate - rng.choice((1, 64)), 1)
            limit = max(limit, request)
        elif top_limit > 1:  # a request above the lowered limit is lowered too (it may break both)
            limit, with_limit = top_limit - 1, True
            request = min(request, limit)
    out: dict[str, Any] = {"requests": {"memory": f"{request}Mi"}}
    if with_limit:
        out["limits"] = {"memory": f"{limit}Mi"}
    return out


def generate_pod(
    rng: random.Random, index: int, name: str, *, pod_level_resources: bool, images: Images
) -> FuzzPod:
    """One random pod (see the module docstring)."""
    qos = rng.choice(QOS_CLASSES)
    oversized: str | None = None
    if qos != "BestEffort" and rng.random() < 0.1:
        oversized = rng.choice(("memory", "cpu"))
    features: list[str] = []
    n_regular = rng.choice((1, 1, 2, 3))
    containers = [_container(rng, f"c{i}", images.pause, qos) for i in range(n_regular)]
    if oversized:
        containers[0] = _container(rng, "c0", images.pause, qos, oversized)
        features.append(f"oversized-{oversized}")
    init: list[dict[str, Any]] = []
    for i in range(rng.choice((0, 0, 1, 2))):
        if rng.random() < 0.5:
            c = _container(rng, f"side{i}", images.pause, qos)
            c["restartPolicy"] = "Always"
            features.append("sidecar")
        else:
            c = _container(rng, f"init{i}", images.leak, qos)
            c["args"] = list(INIT_ARGS)
            features.append("init")
        init.append(c)
    if qos == "Burstable" and not any("resources" in c for c in containers + init):
        containers[0]["resources"] = {"requests": {"memory": rng.choice(MEMORY_VALUES)}}
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 0,
        "containers": containers,
    }
    if init:
        spec["initContainers"] = init
    priority: int | None = None
    r = rng.random()
    if r < 0.15:
        spec["priorityClassName"] = "system-node-critical"
        features.append("node-critical")
    elif r < 0.22:
        spec["priorityClassName"] = "system-cluster-critical"
        features.append("cluster-critical")
    elif r < 0.45:
        priority = rng.choice(CUSTOM_PRIORITIES)
        features.append("priority")
    if pod_level_resources and qos != "BestEffort" and rng.random() < 0.3:
        spec["resources"] = _pod_level(rng, spec)
        features.append("pod-level")
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
    fp = FuzzPod(index, name, manifest, qos, oversized is not None, priority, features)
    pod = fp.pod()  # every generated pod passes the pod schema
    if "resources" in spec and pod_resource_errors(pod, _POD_LEVEL_ON, 34):
        features.append("api-refused")  # the API server answers 422
    return fp


def pod_level_allowed(profile: KubeletConfiguration, kubelet_minor: int) -> bool:
    """Pod-level resources only where the kubelet has the gate on and the API server (same version,
    started without feature-gate flags) keeps ``spec.resources``: the gate on by default (1.34 beta)."""
    return versions.gate_default("PodLevelResources", kubelet_minor) and versions.gate_enabled(
        "PodLevelResources", profile, kubelet_minor
    )


def generate_pods(
    seed: int,
    count: int,
    *,
    prefix: str,
    pod_level_resources: bool = False,
    images: Images | None = None,
) -> list[FuzzPod]:
    """``count`` pods from ``seed`` (the same seed, the same pods)."""
    rng = random.Random(f"pods-{seed}")
    imgs = images or Images()
    return [
        generate_pod(rng, i, f"{prefix}-{i:04d}", pod_level_resources=pod_level_resources, images=imgs)
        for i in range(count)
    ]


def generate_profile(rng: random.Random, base: dict[str, Any]) -> dict[str, Any]:
    """The base KubeletConfiguration (a mapping) with random knobs the model covers."""
    out = _copy(base)
    kube = dict(out.get("kubeReserved") or {})
    system = dict(out.get("systemReserved") or {})
    kube["memory"] = rng.choice(("256Mi", "512Mi", "1Gi"))
    system["memory"] = rng.choice(("19Gi", "20Gi"))
    for res, choices in ((kube, (None, "100m", "250m")), (system, (None, "200m"))):
        v = rng.choice(choices)
        if v is None:
            res.pop("cpu", None)
        else:
            res["cpu"] = v
    out["kubeReserved"], out["systemReserved"] = kube, system
    hard = dict(out.get("evictionHard") or {})
    hard["memory.available"] = rng.choice(("500Mi", "1Gi"))
    out["evictionHard"] = hard
    out["cpuCFSQuota"] = rng.random() < 0.7
    pids = rng.choice((None, 1024, 4096))
    if pids is None:
        out.pop("podPidsLimit", None)
    else:
        out["podPidsLimit"] = pids
    out.setdefault("evictionPressureTransitionPeriod", "30s")
    return out


def generate_profiles(seed: int, count: int, base: dict[str, Any]) -> list[dict[str, Any]]:
    """``count`` profiles from ``seed`` (independent of the pods' draw)."""
    rng = random.Random(f"profiles-{seed}")
    return [generate_profile(rng, base) for _ in range(count)]
