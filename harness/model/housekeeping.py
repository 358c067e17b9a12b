"""When the per-pod stats the eviction manager ranks on were taken: cAdvisor's housekeeping.

At each sync the eviction manager asks the summary provider for fresh *node* stats
(``summaryProvider.Get(ctx, updateStats=true)``: the root and pods cgroups with ``MaxAge: 0``,
k8s: pkg/kubelet/stats/helper.go ``getCgroupInfo``), but pods are ranked on their pod-level working
set (k8s 1.32/1.33: pkg/kubelet/eviction/helpers.go ``exceedMemoryRequests`` and ``memory`` compare
``memoryUsage(podStats.Memory)``), which the stats providers take from the pod cgroup's entry in
cAdvisor's cache (pkg/kubelet/stats/cri_stats_provider.go ``addPodCPUMemoryStats``,
cadvisor_stats_provider.go ``ListPodStats``: ``getCadvisorPodInfoFromPodUID``; the cache is read
by ``getCadvisorContainerInfo``: ``ContainerInfoV2("/", {Count: 2, Recursive: true})``, no MaxAge).
Each cgroup's cached stats are refreshed at its own housekeeping (google/cadvisor v0.51/v0.52
manager/container.go ``housekeeping``): once when cAdvisor starts tracking it (``NewTimer(0)``),
then every ``jitter(housekeepingInterval, 1.0)`` = interval + rand[0, 1) x interval
(``nextHousekeepingInterval``), where the interval is the kubelet's 10 s, doubled (capped at 15 s)
while the last two stats are equal and lowered back to 10 s when they differ. A pod cgroup is
tracked from the pod's start: while its program sleeps its start delay its stats do not change and
its housekeepings come 15-30 s apart, so a young pod can be ranked on stats from before its leak
began (measured: S14 on 1.33.4, the young pod ranked at 674Mi while its container's stats said 1403Mi, and the other pod was evicted).

A *schedule* is, per workload, the times (s since the scenario's start) of its pod cgroup's
housekeepings. The kubelet sees a pod's working set as it was at the last one before the sync.
The plan does not know them: ``sample_schedules`` draws several (seeded, so a prediction is
reproducible) plus the two extremes; a run recorded them (``from_summaries``: each new pod stats
time in the ``/stats/summary`` polls of ``harness/launch/kubernetes/watch.py``).
"""

from __future__ import annotations

import bisect
import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# k8s: pkg/kubelet/cadvisor/cadvisor_linux.go ``defaultHousekeepingInterval = 10 * time.Second``
HOUSEKEEPING_INTERVAL_S = 10.0
# k8s: pkg/kubelet/cadvisor/cadvisor_linux.go ``maxHousekeepingInterval = 15 * time.Second`` (reached
# only by a container whose stats do not change; ``allowDynamicHousekeeping = true``)
MAX_HOUSEKEEPING_INTERVAL_S = 15.0
# google/cadvisor manager/container.go ``nextHousekeepingInterval``: ``jitter(cd.housekeepingInterval,
# 1.0)`` (newer: ``cd.jitterFactor``, flag ``jitter_factor`` default 1.0); utils ``jitter``:
# ``duration + rand.Float64() * maxFactor * duration``
JITTER_FACTOR = 1.0
# Housekeeping schedules drawn per kubelet loop phase in a planned prediction (beside the two
# extremes): enough to find a victim that a few stats ages give, cheap enough for sweeps.
SAMPLES = 6
# Housekeepings assumed after the last one a run recorded for a container (``from_summaries``).
EXTRAPOLATE = 30


@dataclass
class Schedule:
    """Per workload, the times of its container's housekeepings (sorted); ``label`` says which."""

    label: str
    times: dict[str, list[float]] = field(default_factory=dict)

    def seen_at(self, workload: str, t: float) -> float | None:
        """The time of the stats the kubelet has for ``workload`` at ``t``; None = as fresh as ``t``
        (a workload without a schedule, e.g. not a pod)."""
        ts = self.times.get(workload)
        if ts is None:
            return None
        i = bisect.bisect_right(ts, t)
        return ts[i - 1] if i else None


def max_age_s() -> float:
    """The oldest a leaking container's cached stats can be: one jittered interval."""
    return HOUSEKEEPING_INTERVAL_S * (1.0 + JITTER_FACTOR)


def periodic(start_s: float, deadline_s: float, intervals: Iterable[float]) -> list[float]:
    """Housekeepings from ``start_s`` (the first at once) with the given successive intervals."""
    out = [start_s]
    for iv in intervals:
        nxt = out[-1] + iv
        if nxt > deadline_s:
            break
        out.append(nxt)
    return out


def dynamic(start_s: float, active_s: float, deadline_s: float, jitters: Iterable[float]) -> list[float]:
    """Housekeepings of a cgroup tracked from ``start_s`` whose stats change from ``active_s`` on
    (a program that sleeps its start delay, then leaks), with cAdvisor's dynamic interval:
    ``nextHousekeepingInterval`` doubles the interval (10 s, capped at 15 s) when the last two
    stats are equal and lowers it back to 10 s when they differ, then jitters it by
    ``1 + jitter``; ``jitters`` are the successive draws in [0, 1)."""
    out = [start_s]
    interval = HOUSEKEEPING_INTERVAL_S
    for u in jitters:
        if len(out) >= 2:  # two stats to compare: unchanged while the program has not begun
            idle = out[-1] <= active_s
            interval = min(interval * 2, MAX_HOUSEKEEPING_INTERVAL_S) if idle else HOUSEKEEPING_INTERVAL_S
        nxt = out[-1] + interval * (1.0 + JITTER_FACTOR * u)
        if nxt > deadline_s:
            break
        out.append(nxt)
    return out


def sample_schedules(
    starts: Mapping[str, float],
    deadline_s: float,
    samples: int = SAMPLES,
    seed: int = 0,
    active: Mapping[str, float] | None = None,
) -> list[Schedule]:
    """Schedules for a planned prediction: the slowest (every interval at its jittered maximum, so
    stats up to ~20 s old, ~30 s while idle), the fastest (no jitter), then ``samples`` drawn with
    cAdvisor's jitter.

    ``starts``: each pod workload's pod start (its pod cgroup's first housekeeping); ``active``:
    when its stats begin to change (its leak's start; ``starts`` when not given)."""
    active = active or starts
    n = int(deadline_s // HOUSEKEEPING_INTERVAL_S) + 2
    top = 1.0 - 1e-4
    out = [
        Schedule(
            "housekeeping every ~20 s",
            {w: dynamic(s, active.get(w, s), deadline_s, [top] * n) for w, s in starts.items()},
        ),
        Schedule(
            "housekeeping every 10 s",
            {w: dynamic(s, active.get(w, s), deadline_s, [0.0] * n) for w, s in starts.items()},
        ),
    ]
    rng = random.Random(seed)
    for k in range(samples):
        times = {}
        for w, s in sorted(starts.items()):
            times[w] = dynamic(s, active.get(w, s), deadline_s, [rng.random() for _ in range(n)])
        out.append(Schedule(f"housekeeping sample {k + 1} (cAdvisor's jitter)", times))
    return out


def _stamps(event: Mapping[str, Any]) -> dict[str, list[tuple[Any, Any]]]:
    """Per pod, the (stats time, working set) pairs a summary event recorded: the pod-level stats
    when it has them, else each container's (older runs)."""
    if event.get("pod_stats"):
        return {pod: [(v[0], v[1])] for pod, v in json.loads(event["pod_stats"]).items()}
    if event.get("containers"):
        return {
            pod: [(v[0], v[1]) for v in containers.values()]
            for pod, containers in json.loads(event["containers"]).items()
        }
    return {}


def _epoch(text: Any) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass
class StatsView:
    """What the recorded summaries say about one workload's container: (stats time, working set)."""

    seen: list[tuple[float, int | None]] = field(default_factory=list)


def from_summaries(
    events: Iterable[Mapping[str, Any]], pods: Mapping[str, str], t0_wall: float
) -> tuple[list[Schedule], dict[str, StatsView]]:
    """The housekeeping schedules a run recorded, from its ``kubelet-stats``/``summary`` events.

    ``pods``: pod name -> workload. Each distinct pod stats time is one housekeeping of the pod
    cgroup, whose stats the ranking reads (``pod_stats`` of the event; runs recorded before it was
    kept give their containers' times instead); the watch polls every second and records every new
    time, and housekeepings are at least 10 s apart, so none is missed. The summary prints
    times in whole seconds (``metav1.Time`` marshals RFC 3339 without fractions), so a housekeeping
    lies between its stamp and one second later, and no later than the poll that first showed it:
    two schedules, the earliest and the latest times, bracket it (a kubelet sync in the same second
    may have come before or after it). Empty when the run recorded no container stats (an older
    run, or a backend without a kubelet)."""
    seen: dict[str, set[float]] = {}
    latest: dict[tuple[str, float], float] = {}
    views: dict[str, StatsView] = {}
    for e in events:
        if e.get("source") != "kubelet-stats" or e.get("kind") != "summary":
            continue
        try:
            per_pod = _stamps(e)
        except (TypeError, ValueError):
            continue
        for pod, stamps in per_pod.items():
            w = pods.get(pod)
            if w is None:
                continue
            for stamp, ws in stamps:
                at = _epoch(stamp)
                if at is None:
                    continue
                rel = at - t0_wall
                polled = float(e["t_wall"]) - t0_wall if e.get("t_wall") is not None else rel + 1.0
                if rel not in seen.setdefault(w, set()):
                    seen[w].add(rel)
                    views.setdefault(w, StatsView()).seen.append((rel, ws))
                    latest[(w, rel)] = max(rel, min(rel + 1.0 - 1e-3, polled))
    if not seen:
        return [], views
    early = {w: sorted(ts) for w, ts in seen.items()}
    late = {w: sorted(latest[(w, t)] for t in ts) for w, ts in seen.items()}
    # A pod's last housekeepings before it was evicted or killed can fall between two polls and go
    # unseen (the pod leaves the summary first): after the last one seen, continue at the interval
    # (measured on the local cluster: 9-11 s between stamps, i.e. 10 s, no visible jitter).
    for sched in (early, late):
        for ts in sched.values():
            ts += [ts[-1] + k * HOUSEKEEPING_INTERVAL_S for k in range(1, EXTRAPOLATE + 1)]
    return [
        Schedule("housekeeping as recorded (earliest)", early),
        Schedule("housekeeping as recorded (latest)", late),
    ], views
