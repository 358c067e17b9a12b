"""The kubelet's resource-fit admission and critical-pod preemption (pure).

k8s: pkg/kubelet/lifecycle/predicate.go ``predicateAdmitHandler.Admit``: the scheduler's
``noderesources.Fits`` against the node's allocatable minus the requests of the pods already
admitted; a failure is ``InsufficientResourceError`` with reason ``OutOf<resource>`` and message
``Node didn't have enough resource: <resource>, requested: <r>, used: <u>, capacity: <c>``. Before
rejecting, the failure goes to the admission-failure handler, the kubelet's
``preemption.CriticalPodAdmissionHandler`` (k8s: pkg/kubelet/preemption/preemption.go): a critical
pod (static, mirror, or priority >= 2000000000, ``kubetypes.IsCriticalPod``) whose only failures are
insufficient resources is admitted after the kubelet evicts ("Preempting") a set of lower-priority
pods whose requests cover ``GetInsufficientAmount`` = requested - (capacity - used), chosen by
``getPodsToPreempt`` (BestEffort, then Burstable, then Guaranteed; within a class the pod nearest
to the remaining requirement, ties to the smaller request), each running pod counted with
``GetResourceRequest`` (``resources.get_resource_request``: up to 1.33 sidecars as plain init
containers; from 1.34 the admission formula, pod-level requests alone where set).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from harness.config.kubelet import KubeletConfiguration
from harness.config.pod import Pod
from harness.model import qos, resources

MEMORY, CPU = "memory", "cpu"
# k8s: pkg/kubelet/events/event.go ``PreemptContainer = "Preempting"``; preemption.go ``message``
REASON_PREEMPTING = "Preempting"
PREEMPT_MESSAGE = "Preempted in order to admit critical pod"


@dataclass
class Insufficient:
    resource: str
    requested: int
    used: int
    capacity: int

    @property
    def reason(self) -> str:
        """predicate.go ``InsufficientResourceError.Reason``: ``OutOf<resource>``."""
        return f"OutOf{self.resource}"

    @property
    def message(self) -> str:
        """k8s: pkg/scheduler/framework/plugins/noderesources ``InsufficientResourceError`` text as the
        kubelet prints it (predicate.go ``Error``)."""
        return (
            f"Node didn't have enough resource: {self.resource}, requested: {self.requested}, "
            f"used: {self.used}, capacity: {self.capacity}"
        )

    @property
    def insufficient_amount(self) -> int:
        """``GetInsufficientAmount``: requested - (capacity - used)."""
        return self.requested - (self.capacity - self.used)


@dataclass
class FitResult:
    admitted: bool
    reason: str = ""
    message: str = ""
    insufficient: list[Insufficient] = field(default_factory=list)
    preempted: list[Pod] = field(default_factory=list)


def _requests(pod: Pod, profile: KubeletConfiguration, minor: int) -> dict[str, int]:
    return resources.pod_requests(pod, profile, minor)


def insufficient(
    pod: Pod,
    running: list[Pod],
    allocatable: dict[str, int],
    profile: KubeletConfiguration,
    minor: int,
    requests: Callable[[Pod], dict[str, int]] | None = None,
    used: Mapping[str, int] | None = None,
) -> list[Insufficient]:
    """``noderesources.Fits`` for cpu (millicores) and memory (bytes): ``requested + used > capacity``,
    checked only for a resource the pod requests (upstream skips zero requests). ``requests``: each
    pod's effective requests (default: computed from its spec), for a caller that keeps them;
    ``used``: the running pods' requests summed, for a caller that keeps the sum (default: summed
    here)."""
    req_of = requests if requests is not None else (lambda p: _requests(p, profile, minor))
    want = req_of(pod)
    out = []
    for res in (CPU, MEMORY):
        r = want.get(res, 0)
        if not r or res not in allocatable:
            continue
        in_use = used.get(res, 0) if used is not None else sum(req_of(p).get(res, 0) for p in running)
        if r + in_use > allocatable[res]:
            out.append(Insufficient(res, r, in_use, allocatable[res]))
    return out


def preemptable(preemptor: Pod, preemptee: Pod) -> bool:
    """k8s: pkg/kubelet/types/pod_update.go ``Preemptable``: a critical pod preempts non-critical
    ones, and a pod preempts pods of strictly lower priority."""
    if preemptor.is_critical and not preemptee.is_critical:
        return True
    return preemptor.effective_priority > preemptee.effective_priority


class PreemptionError(Exception):
    pass


def pods_to_preempt(
    pod: Pod, running: list[Pod], needs: list[Insufficient], profile: KubeletConfiguration, minor: int
) -> list[Pod]:
    """preemption.go ``getPodsToPreempt``; raises ``PreemptionError`` with upstream's message when no
    set of running pods frees enough."""

    def req(p: Pod, res: str) -> int:
        # not the admission request: GetResourceRequest (resources.get_resource_request), which
        # knows no sidecars up to 1.33
        return resources.get_resource_request(p, res, profile, minor)

    def subtract(reqs: dict[str, int], pods: list[Pod]) -> dict[str, int]:
        out = {}
        for res, q in reqs.items():
            for p in pods:
                q -= req(p, res)
                if q <= 0:
                    break
            if q > 0:
                out[res] = q
        return out

    def text(reqs: dict[str, int]) -> str:
        return "[" + "".join(f"(res: {r}, q: {q}), " for r, q in reqs.items()) + "]"

    def by_distance(pods: list[Pod], reqs: dict[str, int]) -> list[Pod]:
        pods = list(pods)
        chosen: list[Pod] = []
        while reqs:
            if not pods:
                raise PreemptionError(f"no set of running pods found to reclaim resources: {text(reqs)}")
            best, best_i = float(len(reqs) + 1), 0
            for i, p in enumerate(pods):
                dist = sum(math.pow((q - req(p, r)) / q, 2) for r, q in reqs.items() if q - req(p, r) > 0)
                smaller = all(
                    req(p, r) <= req(pods[best_i], r) for r in (MEMORY, CPU)
                )  # smallerResourceRequest (memory first, then cpu; equal counts as smaller)
                if dist < best or (dist == best and smaller):
                    best, best_i = dist, i
            reqs = subtract(reqs, [pods[best_i]])
            chosen.append(pods[best_i])
            pods[best_i] = pods[-1]
            pods.pop()
        return chosen

    groups: dict[str, list[Pod]] = {"BestEffort": [], "Burstable": [], "Guaranteed": []}
    for p in running:
        if preemptable(pod, p):
            groups[qos.pod_qos(p, profile, minor)].append(p)
    be, bu, gu = groups["BestEffort"], groups["Burstable"], groups["Guaranteed"]
    reqs = {n.resource: n.insufficient_amount for n in needs}
    left = subtract(reqs, be + bu + gu)
    if left:
        raise PreemptionError(f"no set of running pods found to reclaim resources: {text(left)}")
    g = by_distance(gu, subtract(reqs, be + bu))
    b = by_distance(bu, subtract(reqs, be + g))
    e = by_distance(be, subtract(reqs, b + g))
    return e + b + g


def admit_fit(
    pod: Pod,
    running: list[Pod],
    allocatable: dict[str, int],
    profile: KubeletConfiguration,
    minor: int,
    requests: Callable[[Pod], dict[str, int]] | None = None,
    used: Mapping[str, int] | None = None,
) -> FitResult:
    """Resource fit, then ``HandleAdmissionFailure`` for a critical pod (``requests``, ``used``: see
    ``insufficient``)."""
    short = insufficient(pod, running, allocatable, profile, minor, requests, used)
    if not short:
        return FitResult(True)
    first = short[0]
    if not pod.is_critical:
        return FitResult(False, first.reason, first.message, short)
    try:
        victims = pods_to_preempt(pod, running, short, profile, minor)
    except PreemptionError as exc:
        # predicate.go: the handler's error rejects the pod with reason UnexpectedAdmissionError
        return FitResult(
            False,
            "UnexpectedAdmissionError",
            f"Unexpected error while attempting to recover from admission failure: preemption: error "
            f"finding a set of pods to preempt: {exc}",
            short,
        )
    return FitResult(True, "", "", short, victims)
