"""Batches a node admits, and the model's admission of each pod in the order it is sent (pure).

The kubelet admits a pod against its allocatable minus the requests of the pods it already admitted
(k8s pkg/kubelet/lifecycle/predicate.go), so the comparison sends the pods of a batch one at a time,
in index order, and the model admits them in the same order (``model.fit.admit_fit``). A batch holds
pods whose requests fit together in the node's allocatable, plus pods that no node here could admit
(their requests alone exceed allocatable: refused whatever runs, so they cost nothing and never make
the kubelet preempt a batch-mate). Each batch is deleted before the next is sent.
"""

from __future__ import annotations

from harness.config.kubelet import KubeletConfiguration
from harness.config.pod import Pod
from harness.fuzz.compare import Admission
from harness.model.fit import admit_fit, insufficient
from harness.model.validation import API_REFUSED, pod_resource_errors, refused_fields


def plan_batches(
    pods: list[Pod],
    allocatable: dict[str, int],
    profile: KubeletConfiguration,
    kubelet_minor: int,
    max_pods: int,
) -> list[list[int]]:
    """Indexes of ``pods`` in batches: in order, a new batch when the next pod would not fit beside
    the batch's fitting pods or the batch has ``max_pods``."""
    batches: list[list[int]] = []
    cur: list[int] = []
    fitting: list[Pod] = []
    for i, p in enumerate(pods):
        never = bool(
            pod_resource_errors(p, profile, kubelet_minor)
            or insufficient(p, [], allocatable, profile, kubelet_minor)
        )
        full = len(cur) >= max_pods
        if cur and (full or (not never and insufficient(p, fitting, allocatable, profile, kubelet_minor))):
            batches.append(cur)
            cur, fitting = [], []
        cur.append(i)
        if not never:
            fitting.append(p)
    if cur:
        batches.append(cur)
    return batches


def predict_admissions(
    pods: list[Pod], allocatable: dict[str, int], profile: KubeletConfiguration, kubelet_minor: int
) -> list[Admission]:
    """The model's admission of each pod, sent in this order to an empty node: one the API server
    refuses (``model.validation``) is never admitted and takes nothing from its batch-mates."""
    running: list[Pod] = []
    out = []
    for p in pods:
        refused = pod_resource_errors(p, profile, kubelet_minor)
        if refused:  # the API server answers 422: no kubelet sees the pod
            out.append(Admission(False, API_REFUSED, refused_fields(refused)))
            continue
        r = admit_fit(p, running, allocatable, profile, kubelet_minor)
        if r.admitted:
            running = [q for q in running if q not in r.preempted] + [p]
        out.append(Admission(r.admitted, r.reason, r.message))
    return out
