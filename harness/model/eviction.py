"""The kubelet's eviction manager for memory (kubelet-memory-spec.md §5), as pure functions.

Upstream: k8s pkg/kubelet/eviction/eviction_manager.go (``managerImpl.synchronize``, ``Admit``,
``evictPod``), pkg/kubelet/eviction/helpers.go (``makeSignalObservations``, ``thresholdsMet``,
``rankMemoryPressure``, ``evictionMessage``), pkg/kubelet/stats/helper.go (available bytes),
pkg/kubelet/pod_workers.go (``calculateEffectiveGracePeriod``).

Verified against upstream snapshots (1.3x ``helpers.go`` and ``eviction_manager.go``, read for this
module): threshold comparison (strict ``>``), min-reclaim re-check, first-observed/last-observed
bookkeeping, transition period (``now - at < period``), grace period (``now - first >= grace``),
one eviction per sync, critical pods skipped, message constants, admission rules.

Where upstream is non-deterministic the model picks one documented order:

- ``thresholdsMetGracePeriod`` iterates a Go map, then ``sort.Sort(byEvictionPriority)`` (not
  stable) puts memory signals first. When both ``memory.available`` and
  ``allocatableMemory.available`` are met, either may be "the" threshold of the message. The model
  keeps configuration order (hard ``memory.available`` first, its allocatable copy last).
- ``rankMemoryPressure`` uses ``sort.Sort`` (not stable): pods that tie on every key may come out
  in any order. The model uses a stable sort (input order breaks ties).
- ``Admit`` prints ``m.nodeConditions`` whose order comes from a map; the model sorts them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness import quantity
from harness.model import (
    qos,
    resources,  # lazy: written concurrently by another engineer
    versions,
)
from harness.model.thresholds import (
    ALLOCATABLE_MEMORY_AVAILABLE,
    MEMORY_AVAILABLE,
    MEMORY_SIGNALS,
    Threshold,
    format_go_quantity,
    go_quantity_string,
    parse_thresholds,
    quantity_format,
)

if TYPE_CHECKING:
    from harness.config.kubelet import KubeletConfiguration
    from harness.config.node import NodeFacts
    from harness.config.pod import Container, Pod

# k8s: pkg/kubelet/kubelet.go ``evictionMonitoringPeriod = time.Second * 10``
EVICTION_MONITORING_PERIOD_S = 10.0
# k8s: pkg/kubelet/eviction/eviction_manager.go ``podCleanupTimeout = 30 * time.Second``
POD_CLEANUP_TIMEOUT_S = 30.0
# eviction_manager.go ``podCleanupPollFreq = time.Second``
POD_CLEANUP_POLL_S = 1.0
# k8s: pkg/kubelet/eviction/memory_threshold_notifier.go ``notifierRefreshInterval = 10 * time.Second``
NOTIFIER_REFRESH_INTERVAL_S = 10.0
# k8s: pkg/kubelet/stats/helper.go ``isMemoryUnlimited``: ``maxMemorySize = uint64(1 << 62)``; a limit
# strictly above it counts as unlimited and no ``availableBytes`` is reported.
MAX_MEMORY_SIZE = 1 << 62
# k8s: staging/src/k8s.io/api/core/v1/well_known_taints.go ``TaintNodeMemoryPressure``
TAINT_MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"
# helpers.go constants (verified)
REASON_EVICTED = "Evicted"
NODE_LOW_MESSAGE_FMT = "The node was low on resource: {}. "
THRESHOLD_MET_MESSAGE_FMT = "Threshold quantity: {}, available: {}. "
CONTAINER_MESSAGE_FMT = "Container {} was using {}, request is {}, has larger consumption of {}. "
POD_MESSAGE_FMT = "Pod {} was using {}, request is {}, has larger consumption of {}. "
NODE_CONDITION_MESSAGE_FMT = "The node had condition: {}. "
MEMORY_PRESSURE = "MemoryPressure"
# k8s: pkg/kubelet/types/pod_update.go: pod default TGPS when unset (v1.DefaultTerminationGracePeriodSeconds)
DEFAULT_TERMINATION_GRACE_PERIOD_S = 30


@dataclass
class Observation:
    """``signalObservation``: available and capacity in bytes; ``time`` = stats timestamp (s).

    ``time=None`` means "always fresh" (upstream: a zero time is always accepted by
    ``thresholdsUpdatedStats``).
    """

    signal: str
    available_bytes: int
    capacity_bytes: int
    time: float | None = None


def working_set(usage: int, inactive_file: int) -> int:
    """cAdvisor ``setMemoryStats``: ``usage - inactive_file``, 0 when inactive_file >= usage."""
    return usage - inactive_file if inactive_file < usage else 0


def observe(
    memtotal: int,
    root_usage: int,
    root_inactive_file: int,
    kubepods_limit: int | None,
    kubepods_usage: int,
    kubepods_inactive_file: int,
    time: float | None = None,
) -> dict[str, Observation]:
    """``makeSignalObservations`` for the two memory signals (§5.2).

    ``memory.available = MemTotal - WS(/)`` (cAdvisor sets the root limit to MemTotal);
    ``allocatableMemory.available = limit(kubepods) - WS(kubepods)``, missing when kubepods is
    unlimited (``None`` or > 1<<62). Upstream computes ``limit - ws`` in uint64 and converts to
    int64, so the value goes negative when WS exceeds the limit.

    >>> obs = observe(8 << 30, 7 << 30, 1 << 30, None, 0, 0)
    >>> obs["memory.available"].available_bytes == 2 << 30, ALLOCATABLE_MEMORY_AVAILABLE in obs
    (True, False)
    """
    out = {
        MEMORY_AVAILABLE: Observation(
            MEMORY_AVAILABLE, memtotal - working_set(root_usage, root_inactive_file), memtotal, time
        )
    }
    if kubepods_limit is not None and kubepods_limit <= MAX_MEMORY_SIZE:
        ws = working_set(kubepods_usage, kubepods_inactive_file)
        out[ALLOCATABLE_MEMORY_AVAILABLE] = Observation(
            ALLOCATABLE_MEMORY_AVAILABLE, kubepods_limit - ws, kubepods_limit, time
        )
    return out


def threshold_bytes(threshold: Threshold, observation: Observation) -> int:
    """``GetThresholdQuantity(threshold.Value, observed.capacity)`` in bytes."""
    return threshold.value.resolve(observation.capacity_bytes)


def thresholds_met(
    thresholds: list[Threshold], observations: dict[str, Observation], enforce_min_reclaim: bool
) -> list[Threshold]:
    """``thresholdsMet``: met when ``quantity (+ minReclaim) > available`` (strict, §5.5).

    Thresholds without an observation are skipped ("no observation found for eviction signal").
    """
    out = []
    for t in thresholds:
        obs = observations.get(t.signal)
        if obs is None:
            continue
        q = threshold_bytes(t, obs)
        if enforce_min_reclaim and t.min_reclaim is not None:
            q += t.min_reclaim_bytes(obs.capacity_bytes)
        if q > obs.available_bytes:
            out.append(t)
    return out


def _same_threshold(a: Threshold, b: Threshold) -> bool:
    """helpers.go ``hasThreshold``: grace period, signal and value (min-reclaim not compared)."""
    return a.grace_period_s == b.grace_period_s and a.signal == b.signal and a.value == b.value


def merge_thresholds(a: list[Threshold], b: list[Threshold]) -> list[Threshold]:
    """helpers.go ``mergeThresholds``: ``a`` plus the items of ``b`` not already in it."""
    out = list(a)
    for t in b:
        if not any(_same_threshold(t, x) for x in out):
            out.append(t)
    return out


@dataclass
class PodUsage:
    """A pod and its stats; ``working_set_bytes=None`` = stats missing from the summary.

    ``container_working_set`` keeps the order of ``PodStats.Containers`` (the order the message
    lists offending containers in).
    """

    pod: Pod
    working_set_bytes: int | None
    container_working_set: dict[str, int] = field(default_factory=dict)


def _pod_memory_request(pod: Pod, profile: KubeletConfiguration, minor: int) -> int:

    return int(resources.pod_requests(pod, profile, minor).get("memory", 0))


def rank_for_memory(
    pods: list[PodUsage],
    profile: KubeletConfiguration,
    minor: int,
    memory_request: Callable[[Pod], int] | None = None,
) -> list[PodUsage]:
    """``rankMemoryPressure`` = ``orderedBy(exceedMemoryRequests, priority, memory)`` (§5.7).

    1. pods without stats first, then pods whose working set is strictly above their (effective)
       memory request; 2. lower priority first; 3. larger ``WS - request`` first.
    Upstream sorts with ``sort.Sort`` (not stable); this uses Python's stable sort, so pods equal
    on every key keep their input order (upstream: any order).
    ``memory_request``: the pod's effective memory request (default: computed from its spec), for a
    caller that ranks the same pods many times and keeps them computed.
    """

    def key(pu: PodUsage) -> tuple[int, int, int, int]:
        prio = pu.pod.effective_priority
        if pu.working_set_bytes is None:
            return (0, 0, prio, 0)
        req = (
            memory_request(pu.pod)
            if memory_request is not None
            else _pod_memory_request(pu.pod, profile, minor)
        )
        exceeds = pu.working_set_bytes > req
        return (1, 0 if exceeds else 1, prio, -(pu.working_set_bytes - req))

    return sorted(pods, key=key)


def container_memory_request_text(container: Container) -> str:
    """``container.Resources.Requests[memory].String()`` after API defaulting.

    The API server defaults a missing request to the limit; a container with neither prints the
    zero Quantity, ``0``.
    """
    res = container.resources
    val = res.requests.get("memory", res.limits.get("memory"))
    return "0" if val is None else go_quantity_string(val)


def _container_memory_request_bytes(container: Container) -> int:
    res = container.resources
    val = res.requests.get("memory", res.limits.get("memory"))
    return 0 if val is None else quantity.to_bytes(val)


def pod_memory_request_text(pod: Pod, profile: KubeletConfiguration, minor: int) -> str | None:
    """``pod.Spec.Resources.Requests[memory].String()`` as the kubelet holds the pod: after the API
    server's ``defaultPodRequests`` (pkg/apis/core/v1/defaults.go, v1.34.2), which fills a missing
    pod-level request only when pod-level limits are set: from the containers' aggregate request
    where one asks memory (a copy of that quantity, so printed in its spelling; a sum keeps the first
    addend's format, resource.Quantity ``Add``), else from the pod-level memory limit. None: the
    pod has no pod-level memory request (the message then has no ``Pod ...`` sentence)."""
    res = pod.spec.resources
    if res is None:
        return None
    if "memory" in res.requests:
        return go_quantity_string(res.requests["memory"])
    if not res.limits:
        return None
    spelled = [
        c.resources.requests.get("memory", c.resources.limits.get("memory"))
        for c in [*pod.spec.containers, *pod.spec.init_containers]
    ]
    given = [str(v) for v in spelled if v is not None]
    if given:
        view = resources.pod_view(pod, profile, minor)
        total = resources.aggregate_container(view, "requests").get("memory")
        if total:
            return format_go_quantity(total, quantity_format(given[0]))
    if "memory" in res.limits:
        return go_quantity_string(res.limits["memory"])
    return None


def eviction_message(
    threshold: Threshold,
    observation: Observation,
    victim: PodUsage,
    profile: KubeletConfiguration,
    minor: int,
) -> str:
    """``evictionMessage`` for memory (§5.10), trailing spaces included.

    ``"The node was low on resource: memory. Threshold quantity: <q>, available: <a>. "`` then, for
    each container in stats order whose working set is strictly above its memory request,
    ``"Container <n> was using <u>, request is <r>, has larger consumption of memory. "``.
    Containers considered: regular ones; from 1.31 also init and sidecar containers (PR
    kubernetes#124947, merged May 2024 [inferred release 1.31]). From 1.34 with PodLevelResources
    on and a pod-level memory request, a ``Pod <name> was using ...`` sentence comes first (PR
    kubernetes#132277 [inferred release 1.34]). Usage and threshold print as BinarySI quantities.

    >>> # see tests/unit/test_model_eviction.py for the spec example
    """
    msg = NODE_LOW_MESSAGE_FMT.format("memory")
    q = threshold.value.display(observation.capacity_bytes)
    msg += THRESHOLD_MET_MESSAGE_FMT.format(q, quantity.format_binary_si(observation.available_bytes))
    if victim.working_set_bytes is None and not victim.container_working_set:
        return msg  # stats(pod) not found: message stops after the threshold sentence
    pod = victim.pod
    pod_request = pod_memory_request_text(pod, profile, minor) if minor >= 34 else None
    if (
        pod_request is not None
        and versions.gate_enabled("PodLevelResources", profile, minor)
        and victim.working_set_bytes is not None
    ):
        msg += POD_MESSAGE_FMT.format(
            pod.name, quantity.format_binary_si(victim.working_set_bytes), pod_request, "memory"
        )
    containers = list(pod.spec.containers)
    if minor >= 31:
        containers += list(pod.spec.init_containers)
    by_name = {c.name: c for c in containers}
    for name, usage in victim.container_working_set.items():
        c = by_name.get(name)
        if c is None:
            continue
        if usage > _container_memory_request_bytes(c):
            msg += CONTAINER_MESSAGE_FMT.format(
                name, quantity.format_binary_si(usage), container_memory_request_text(c), "memory"
            )
    return msg


def offending_containers(victim: PodUsage, minor: int) -> list[tuple[str, str]]:
    """Event annotations ``offending_containers`` / ``offending_containers_usage`` as pairs."""
    containers = list(victim.pod.spec.containers) + (
        list(victim.pod.spec.init_containers) if minor >= 31 else []
    )
    by_name = {c.name: c for c in containers}
    return [
        (n, quantity.format_binary_si(u))
        for n, u in victim.container_working_set.items()
        if n in by_name and u > _container_memory_request_bytes(by_name[n])
    ]


def grace_period_override_s(threshold: Threshold, pod: Pod, profile: KubeletConfiguration, minor: int) -> int:
    """The ``gracePeriodOverride`` the eviction manager passes to the pod killer (§5.9).

    Hard: ``immediateEvictionGracePeriodSeconds`` = 1 from 1.31 (PR kubernetes#124063), 0 before.
    Soft: ``evictionMaxPodGracePeriod``; from 1.32 ``min(max, pod TGPS)`` unless the
    ``AllowOverwriteTerminationGracePeriodSeconds`` gate is on (PR kubernetes#122890).
    """

    if threshold.hard:
        return int(versions.hard_eviction_grace_override_s(minor))
    override = int(profile.eviction_max_pod_grace_period)
    if minor >= 32 and not versions.gate_enabled(
        "AllowOverwriteTerminationGracePeriodSeconds", profile, minor
    ):
        override = min(override, int(pod.spec.termination_grace_period_seconds))
    return override


def effective_grace_period(override: int, pod_tgps: int) -> int:
    """pod_workers.go ``calculateEffectiveGracePeriod`` for a running pod (status grace 0).

    The override replaces 0; a result of 0 falls back to the pod's TGPS (1.28-1.34 shape, spec
    §5.9/§11); the result is at least 1 s.
    """
    gp = override
    if gp == 0:
        gp = pod_tgps
    return max(gp, 1)


def eviction_grace_period_s(threshold: Threshold, pod: Pod, profile: KubeletConfiguration, minor: int) -> int:
    """Seconds between the eviction (SIGTERM) and SIGKILL (§5.9).

    >>> # 1.30 hard -> pod TGPS (issue #115819); 1.31+ hard -> 1 s; see the unit tests
    """
    return effective_grace_period(
        grace_period_override_s(threshold, pod, profile, minor),
        int(pod.spec.termination_grace_period_seconds),
    )


def tolerates_taint(tolerations: list[dict[str, Any]], key: str, effect: str, value: str = "") -> bool:
    """``TolerationsTolerateTaint`` / ``Toleration.ToleratesTaint`` (k8s.io/api core/v1/toleration.go)."""
    for t in tolerations:
        t_effect = t.get("effect") or ""
        t_key = t.get("key") or ""
        op = t.get("operator") or "Equal"
        if t_effect and t_effect != effect:
            continue
        if t_key and t_key != key:
            continue
        if op == "Exists" or (op == "Equal" and (t.get("value") or "") == value):
            return True
    return False


def admit(pod: Pod, conditions: set[str], profile: KubeletConfiguration, minor: int) -> tuple[bool, str, str]:
    """``managerImpl.Admit`` (§5.11): ``(admitted, reason, message)``.

    No conditions or a critical pod: admitted. Only MemoryPressure: non-BestEffort admitted,
    BestEffort only if it tolerates ``node.kubernetes.io/memory-pressure:NoSchedule``. Otherwise
    reason ``Evicted``, message ``The node had condition: [<conditions>]. ``.
    """
    if not conditions or pod.is_critical:
        return True, "", ""
    if conditions == {MEMORY_PRESSURE}:
        if qos.pod_qos(pod, profile, minor) != "BestEffort":
            return True, "", ""
        if tolerates_taint(pod.spec.tolerations, TAINT_MEMORY_PRESSURE, "NoSchedule"):
            return True, "", ""
    names = sorted(conditions, key=lambda c: (c != MEMORY_PRESSURE, c))
    return False, REASON_EVICTED, NODE_CONDITION_MESSAGE_FMT.format("[" + " ".join(names) + "]")


def memcg_notifier_usage_threshold(capacity: int, threshold_bytes: int, inactive_file: int) -> int:
    """memory_threshold_notifier.go ``UpdateThreshold``: ``capacity - threshold + inactive_file``.

    The eventfd fires when ``memory.usage_in_bytes`` crosses this, i.e. when the working set
    reaches ``capacity - threshold`` (§5.12; cgroup v1 only).
    """
    return capacity - threshold_bytes + inactive_file


@dataclass
class SyncResult:
    time: float
    observations: dict[str, Observation]
    met: list[Threshold]
    memory_pressure: bool
    evicted: PodUsage | None
    ranked: list[PodUsage]
    message: str | None
    grace_period_s: int | None
    # the threshold eviction acted on, and the critical pods that were skipped
    threshold: Threshold | None = None
    skipped_critical: list[PodUsage] = field(default_factory=list)


def _eviction_priority(t: Threshold) -> int:
    """``byEvictionPriority``: memory signals first (the rest never occur in this model)."""
    return 0 if t.signal in MEMORY_SIGNALS else 1


class EvictionManager:
    """State machine of ``managerImpl.synchronize`` restricted to memory (§5.6).

    Call :meth:`synchronize` at each kubelet tick with the observations of that moment and the
    active pods. The caller owns the timing: the loop sleeps ``EVICTION_MONITORING_PERIOD_S``
    after a sync without eviction, and after an eviction waits for the pod to be cleaned up
    (polled every ``POD_CLEANUP_POLL_S``, at most ``POD_CLEANUP_TIMEOUT_S``) and runs again at once.
    """

    def __init__(
        self,
        profile: KubeletConfiguration,
        facts: NodeFacts,
        thresholds: list[Threshold] | None = None,
        memory_request: Callable[[Pod], int] | None = None,
    ) -> None:
        self.profile = profile
        # the pods' effective memory requests for the ranking (``rank_for_memory``)
        self.memory_request = memory_request
        self.facts = facts
        self.minor = facts.kubelet_minor
        self.thresholds = thresholds if thresholds is not None else parse_thresholds(profile, self.minor)
        self.pressure_transition_s = profile.pressure_transition_seconds
        self.thresholds_first_observed_at: dict[Threshold, float] = {}
        self.node_conditions_last_observed_at: dict[str, float] = {}
        self.thresholds_met: list[Threshold] = []
        self.node_conditions: list[str] = []
        self.last_observations: dict[str, Observation] = {}

    @property
    def memory_pressure(self) -> bool:
        return MEMORY_PRESSURE in self.node_conditions

    def copy(self) -> EvictionManager:
        """A manager in the same state whose state then evolves apart (configuration shared)."""
        other = copy.copy(self)
        other.thresholds_first_observed_at = dict(self.thresholds_first_observed_at)
        other.node_conditions_last_observed_at = dict(self.node_conditions_last_observed_at)
        other.thresholds_met = list(self.thresholds_met)
        other.node_conditions = list(self.node_conditions)
        other.last_observations = dict(self.last_observations)
        return other

    def admit(self, pod: Pod) -> tuple[bool, str, str]:
        return admit(pod, set(self.node_conditions), self.profile, self.minor)

    def synchronize(
        self,
        now: float,
        observations: dict[str, Observation],
        pods: list[PodUsage] | Callable[[], list[PodUsage]],
    ) -> SyncResult:
        """One pass of ``synchronize``; evicts at most one pod.

        ``pods``: the active pods and their stats, or a function giving them. Upstream lists them
        (``podFunc()``) at every sync; the model calls the function only when they are ranked, the
        result being the same (listing them has no effect of its own)."""
        result = SyncResult(now, observations, [], self.memory_pressure, None, [], None, None)
        if not self.thresholds:
            return result
        met = thresholds_met(self.thresholds, observations, False)
        if self.thresholds_met:
            met = merge_thresholds(met, thresholds_met(self.thresholds_met, observations, True))
        first = {t: self.thresholds_first_observed_at.get(t, now) for t in met}
        conditions = [MEMORY_PRESSURE] if any(t.signal in MEMORY_SIGNALS for t in met) else []
        last_seen = dict(self.node_conditions_last_observed_at)
        for c in conditions:
            last_seen[c] = now
        # nodeConditionsObservedSince: reported while now - lastObservedAt < transition period
        reported = [c for c, at in last_seen.items() if now - at < self.pressure_transition_s]
        # thresholdsMetGracePeriod: now - firstObservedAt >= gracePeriod
        graced = [t for t, at in first.items() if now - at >= t.grace_period_s]
        self.node_conditions = reported
        self.thresholds_first_observed_at = first
        self.node_conditions_last_observed_at = last_seen
        self.thresholds_met = graced
        fresh = []
        for t in graced:  # thresholdsUpdatedStats
            obs = observations.get(t.signal)
            if obs is None:
                continue
            last = self.last_observations.get(t.signal)
            if last is None or obs.time is None or last.time is None or obs.time > last.time:
                fresh.append(t)
        self.last_observations = observations
        result.met = met
        result.memory_pressure = self.memory_pressure
        if not fresh:
            return result  # "Eviction manager: no resources are starved"
        fresh.sort(key=_eviction_priority)
        to_reclaim = fresh[0]
        if callable(pods):
            pods = pods()
        if to_reclaim.signal not in MEMORY_SIGNALS or not pods:
            return result
        result.threshold = to_reclaim
        ranked = rank_for_memory(pods, self.profile, self.minor, self.memory_request)
        result.ranked = ranked
        # getThresholdMetInfo: first memory threshold (in sorted order) that has an observation
        msg_t = next(t for t in fresh if t.signal in MEMORY_SIGNALS and t.signal in observations)
        for pu in ranked:
            if pu.pod.is_critical:
                result.skipped_critical.append(pu)  # "cannot evict a critical pod"
                continue
            result.evicted = pu
            result.message = eviction_message(msg_t, observations[msg_t.signal], pu, self.profile, self.minor)
            result.grace_period_s = eviction_grace_period_s(to_reclaim, pu.pod, self.profile, self.minor)
            return result
        return result  # "Eviction manager: unable to evict any pods from the node"


def next_sync_time(now: float, evicted: bool, cleaned_up_after_s: float | None = None) -> float:
    """When the loop runs next (eviction_manager.go ``Start``).

    No eviction: ``now + 10 s``. After an eviction the loop polls every second until the pod is
    cleaned up (``cleaned_up_after_s`` after the eviction) or 30 s pass, then syncs at once.
    """
    if not evicted:
        return now + EVICTION_MONITORING_PERIOD_S
    if cleaned_up_after_s is None or cleaned_up_after_s > POD_CLEANUP_TIMEOUT_S:
        return now + POD_CLEANUP_TIMEOUT_S
    return now + max(
        POD_CLEANUP_POLL_S, math.ceil(cleaned_up_after_s / POD_CLEANUP_POLL_S) * POD_CLEANUP_POLL_S
    )
