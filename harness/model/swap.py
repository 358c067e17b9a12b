"""Swap of a container: the kubelet's swap behaviour and the limit the runtime writes (KEP-2400).

Source, verified in v1.32.5 and v1.33.4 (same rules, refactored in 1.33):
k8s: pkg/kubelet/kuberuntime/kuberuntime_container_linux.go ``configureContainerSwapResources``,
``GetContainerSwapBehavior`` (1.33) / ``ConfigureLimitedSwap`` (1.32), ``ConfigureNoSwap``,
``calcSwapForBurstablePods``, ``swapControllerAvailable``.

* Nothing is configured unless the swap controller exists for the kubelet: on cgroup v1 the file
  ``memory.memsw.limit_in_bytes`` in the memory root (swap accounting on), on v2
  ``memory.swap.max`` in the kubelet's own cgroup (absent in the root cgroup).
* ``LimitedSwap`` applies only with the ``NodeSwap`` gate on (k8s: pkg/features/kube_features.go:
  beta off 1.28, beta on from 1.30), on cgroup v2, to a non-critical Burstable pod's container that
  has a memory request or limit and whose request differs from its limit. Everything else, including
  the default ``swapBehavior: ""``, is ``NoSwap``.
* ``NoSwap`` on v2 writes ``memory.swap.max = 0`` (CRI ``unified``) for every container, limited
  or not; on v1 it sets ``MemorySwapLimitInBytes = MemoryLimitInBytes``, which the runtime writes to
  ``memory.memsw.limit_in_bytes`` only when a memory limit is set (0 = unset).
* ``LimitedSwap`` writes ``memory.swap.max = int(request / MemoryCapacity * SwapCapacity)`` (cAdvisor
  machine info: MemTotal and SwapTotal); a request larger than the node's memory falls back to NoSwap.

Before 1.30 the rules differed (``UnlimitedSwap``, the limit written as memory+swap): the model
does not predict swap for those versions (``covered`` is False) rather than guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from harness.config.kubelet import KubeletConfiguration
from harness.config.node import NodeFacts
from harness.config.pod import Pod
from harness.model.qos import BURSTABLE, pod_qos
from harness.model.resources import MEMORY, ContainerView, to_int
from harness.model.versions import gate_enabled

# the first kubelet minor with these rules (NodeSwap beta on, NoSwap the default); 1.28/1.29 differ
FIRST_MINOR = 30

Behavior = Literal["NoSwap", "LimitedSwap", "none"]


@dataclass(frozen=True)
class ContainerSwap:
    """What the kubelet asks the runtime for one container.

    ``behavior`` is ``"none"`` when the kubelet configures nothing (no swap controller) or the
    model does not cover this kubelet version (``covered`` False). ``swap_max_bytes`` is the v2
    ``memory.swap.max`` (None = not written: the kernel default ``max``); ``memsw_limit_bytes`` the v1
    ``memory.memsw.limit_in_bytes`` (None = not written). ``reason`` says which rule decided.
    """

    behavior: Behavior
    swap_max_bytes: int | None
    memsw_limit_bytes: int | None
    reason: str
    covered: bool = True


def swap_behavior(
    pod: Pod, container: ContainerView, profile: KubeletConfiguration, facts: NodeFacts
) -> tuple[Behavior, str]:
    """``GetContainerSwapBehavior`` (1.33; the same conditions in 1.32's two functions)."""
    minor = facts.kubelet_minor
    if not facts.swap_controller:
        return "none", "no swap controller (swap accounting off): the kubelet configures no swap"
    if profile.swap_behavior != "LimitedSwap":
        return "NoSwap", f"swapBehavior {profile.swap_behavior or '(default)'} is NoSwap"
    if not gate_enabled("NodeSwap", profile, minor):
        return "NoSwap", "LimitedSwap needs the NodeSwap gate, off here"
    if facts.cgroup_version != 2:
        return "NoSwap", "LimitedSwap needs cgroup v2"
    if pod.is_critical:
        return "NoSwap", "critical pods get no swap"
    if pod_qos(pod, profile, minor) != BURSTABLE:
        return "NoSwap", "only Burstable pods get swap"
    req = container.requests.get(MEMORY, Decimal(0))
    lim = container.limits.get(MEMORY, Decimal(0))
    if req == 0 and lim == 0:
        return "NoSwap", "the container asks for no memory"
    if req == lim:
        return "NoSwap", "the container's memory request equals its limit"
    return "LimitedSwap", "Burstable container with request != limit"


def container_swap(
    pod: Pod, container: ContainerView, profile: KubeletConfiguration, facts: NodeFacts, memory_limit: int
) -> ContainerSwap:
    """The swap files of one container (``memory_limit``: its memory limit in bytes, 0 = none)."""
    if facts.kubelet_minor < FIRST_MINOR:
        return ContainerSwap("none", None, None, "swap rules before kubelet 1.30 are not modelled", False)
    behavior, reason = swap_behavior(pod, container, profile, facts)
    if behavior == "none":
        return ContainerSwap("none", None, None, reason)
    if behavior == "LimitedSwap":
        request = to_int(MEMORY, container.requests.get(MEMORY, Decimal(0)))
        capacity = facts.memory_capacity_bytes
        if request <= capacity:  # calcSwapForBurstablePods refuses a request above MemoryCapacity
            swap = int(request / capacity * facts.swap_bytes)  # float64 proportion, int64() truncates
            return ContainerSwap("LimitedSwap", swap, None, f"{reason}: request/capacity x swap")
        reason = "request above the node's memory: calcSwapForBurstablePods fails, NoSwap"
    if facts.cgroup_version == 2:
        return ContainerSwap("NoSwap", 0, None, reason)
    return ContainerSwap("NoSwap", None, memory_limit or None, reason)
