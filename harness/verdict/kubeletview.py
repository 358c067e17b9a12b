"""The kubelet's view at an eviction: what it ranked the pod on, against what the harness measured.

The eviction manager ranks pods on their pod-level working set from cAdvisor's cache, refreshed
at the pod cgroup's own housekeeping (k8s 1.32/1.33: pkg/kubelet/eviction/helpers.go ``memory``,
``exceedMemoryRequests``: ``memoryUsage(podStats.Memory)``; ``model.housekeeping``), and names the
usage of its containers in the ``Evicted`` event's message (helpers.go ``evictionMessage``:
``Container <name> was using <usage>, request is <request>, ...``). Beside it a verdict shows the
last ``/stats/summary`` the harness polled before the event (the pod's stats time and working set;
its containers' in runs recorded before the pod's were kept), the harness's own 10 Hz sample of the
container's cgroup at that moment, and the age of the kubelet's stats (event time minus the stats
time), so an eviction that looks wrong on fresh numbers can be read as the kubelet saw it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from harness import quantity

# helpers.go ``containerMessageFmt = "Container %s was using %s, request is %s, has larger consumption of %s. "``
_CONTAINER_USING = re.compile(
    r"Container (\S+) was using (\S+), request is (\S+), has larger consumption of memory"
)


@dataclass
class EvictionView:
    workload: str
    pod: str
    t_event_wall: float
    message_usage_bytes: int | None  # the usage the Evicted message names (sum over its containers)
    summary_ws_bytes: int | None  # the pod's working set in the last summary before the event
    summary_stats_time: str | None  # that summary's pod stats time (the kubelet's view)
    stats_age_s: float | None  # event time minus the pod's stats time
    sample_ws_bytes: int | None  # the harness's own sample of the container cgroup at the event

    def text(self) -> str:
        def mi(b: int | None) -> str:
            return "?" if b is None else f"{b / 2**20:.0f}Mi"

        age = "unknown" if self.stats_age_s is None else f"{self.stats_age_s:.1f}s"
        return (
            f"kubelet's view at the eviction: Evicted message says {mi(self.message_usage_bytes)}, "
            f"last summary {mi(self.summary_ws_bytes)} (stats of {self.summary_stats_time or '-'}, "
            f"{age} old), harness sample {mi(self.sample_ws_bytes)}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _epoch(text: Any) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def message_usage(message: str | None) -> int | None:
    """The usage an ``Evicted`` message names, summed over its containers; None when it names none.

    >>> message_usage("The node was low on resource: memory. Threshold quantity: 1Gi, available: 1020Mi. "
    ...               "Container young was using 1200Mi, request is 0, has larger consumption of memory. ")
    1258291200
    """
    found = _CONTAINER_USING.findall(message or "")
    if not found:
        return None
    return sum(quantity.to_bytes(u) for _, u, _ in found)


def eviction_view(
    workload: str,
    pod: str,
    events: Iterable[Mapping[str, Any]],
    samples: Iterable[tuple[float, int | None]] = (),
) -> EvictionView | None:
    """The view at the pod's ``Evicted`` event, None when the run has no such event.

    ``events``: the run's events (``kubelet`` ``Evicted`` and ``kubelet-stats`` ``summary`` rows);
    ``samples``: the container cgroup's ``(t_wall, working_set)`` samples."""
    evs = list(events)
    evicted = [
        e
        for e in evs
        if e.get("source") == "kubelet"
        and e.get("kind") == "Evicted"
        and str(e.get("object", "")).endswith(pod)
    ]
    if not evicted:
        return None
    e = evicted[0]
    t = float(e["t_wall"])  # when the harness received it (the event's own time is in whole seconds)
    ws, stamp, age = None, None, None
    for s in evs:
        if s.get("source") != "kubelet-stats" or s.get("kind") != "summary" or float(s["t_wall"]) > t:
            continue
        try:
            pod_level = json.loads(s.get("pod_stats") or "{}").get(pod)
            containers = json.loads(s.get("containers") or "{}").get(pod) or {}
        except (TypeError, ValueError):
            continue
        if pod_level:
            stamp, ws = (str(pod_level[0]) if pod_level[0] else None), pod_level[1]
        elif containers:
            stamps = [c[0] for c in containers.values()]
            vals = [c[1] for c in containers.values()]
            ws = sum(int(v) for v in vals if v is not None) if any(v is not None for v in vals) else None
            stamp = max(str(x) for x in stamps if x) if any(stamps) else None
    at = _epoch(stamp)
    if at is not None:
        age = t - at
    sample = None
    for ts, v in samples:
        if ts <= t:
            sample = v
    return EvictionView(workload, pod, t, message_usage(e.get("detail")), ws, stamp, age, sample)
