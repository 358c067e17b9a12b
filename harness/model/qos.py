"""Pod QoS class (kubelet-memory-spec.md §2.1, §2.2).

k8s: pkg/apis/core/v1/helper/qos/qos.go ``GetPodQOS`` / ``ComputePodQOS`` in its 1.28–1.34 shape
(sums over containers + init containers, only cpu and memory, only strictly positive quantities;
with PodLevelResources on and ``spec.resources`` present, only the pod-level lists count).
Verified: the classic algorithm against several snapshots (spec §2.1); the post-1.34 refactor
(``resourceQOS`` per container, seen in a newer snapshot) is not what 1.34 runs; for valid defaulted
pods (request <= limit) it should give the same class [not proven].
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, cast

from harness.config.kubelet import KubeletConfiguration
from harness.config.pod import Pod
from harness.model.resources import CPU, MEMORY, PodView, ResourceList, pod_view

QOSClass = Literal["Guaranteed", "Burstable", "BestEffort"]
GUARANTEED: QOSClass = "Guaranteed"
BURSTABLE: QOSClass = "Burstable"
BESTEFFORT: QOSClass = "BestEffort"
QOS_CLASSES: tuple[QOSClass, ...] = (GUARANTEED, BURSTABLE, BESTEFFORT)

# qos.go supportedQoSComputeResources = {cpu, memory}
_QOS_RESOURCES = (CPU, MEMORY)


def _process(into: ResourceList, rl: ResourceList) -> set[str]:
    """Add the strictly positive cpu/memory quantities of ``rl``; return the names found."""
    found: set[str] = set()
    for name, q in rl.items():
        if name not in _QOS_RESOURCES or q <= 0:
            continue
        found.add(name)
        into[name] = into.get(name, Decimal(0)) + q
    return found


def compute_qos(view: PodView) -> QOSClass:
    """``ComputePodQOS`` on a defaulted pod view."""
    requests: ResourceList = {}
    limits: ResourceList = {}
    guaranteed = True
    if view.pod_resources_present:
        # pod-level branch (PodLevelResources gate already applied by pod_view)
        if view.pod_requests:
            _process(requests, view.pod_requests)
        if view.pod_limits:
            found = _process(limits, view.pod_limits)
            if not {CPU, MEMORY} <= found:
                guaranteed = False
    else:
        for c in view.all_containers():
            _process(requests, c.requests)
            found = _process(limits, c.limits)
            if not {CPU, MEMORY} <= found:
                guaranteed = False
    if not requests and not limits:
        return BESTEFFORT
    if guaranteed:
        for name, req in requests.items():
            if limits.get(name) != req:
                guaranteed = False
                break
    if guaranteed and len(requests) == len(limits):
        return GUARANTEED
    return BURSTABLE


def pod_qos(pod: Pod, profile: KubeletConfiguration, kubelet_minor: int) -> QOSClass:
    """``GetPodQOS``: ``status.qosClass`` when already recorded, else computed (§2.1/§2.2)."""
    if pod.status is not None and pod.status.qos_class:
        if pod.status.qos_class not in QOS_CLASSES:
            raise ValueError(f"pod {pod.name!r}: unknown status.qosClass {pod.status.qos_class!r}")
        return cast(QOSClass, pod.status.qos_class)
    return compute_qos(pod_view(pod, profile, kubelet_minor))
