"""Outcome prediction: simulate a scenario's timeline on the modelled node.

The kernel acts at once: whenever a charge would take a cgroup above its memory limit,
page cache in that cgroup's subtree is reclaimed first, and if that is not enough the
OOM killer picks a victim inside that cgroup (the deepest cgroup on the charging path
that is at its limit; linux: mm/memcontrol.c ``try_charge`` / mm/page_counter.c
``page_counter_try_charge``), by badness (linux: mm/oom_kill.c, see ``model.oom``).

The kubelet acts on its eviction loop (every 10 s, ``model.eviction``), with node-level
observations taken fresh at each sync (``summaryProvider.Get(ctx, updateStats=true)``:
k8s: pkg/kubelet/stats/helper.go ``getCgroupInfo`` uses MaxAge 0 when updateStats),
at most one eviction per sync followed by a wait for the pod's cleanup, and with
``kernelMemcgNotification`` (cgroup v1) an extra sync when a memcg threshold is crossed.

The phase of the kubelet's loop relative to the scenario is unknown, so the scenario is
simulated for ``PHASES`` evenly spaced phases. Outcomes that differ between phases are
a *race*: the prediction gives every alternative with its window and its share of phases
instead of guessing.
"""

from __future__ import annotations

import bisect
import copy
import heapq
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from harness.config.kubelet import KubeletConfiguration
from harness.config.node import NodeFacts
from harness.config.pod import Pod
from harness.config.suite import Scenario
from harness.model import housekeeping as hk
from harness.model.admit import admit_pod
from harness.model.eviction import EvictionManager, PodUsage, observe
from harness.model.fit import PREEMPT_MESSAGE, REASON_PREEMPTING, admit_fit
from harness.model.layout import PlacedWorkload, place_workloads
from harness.model.node import node_allocatable
from harness.model.oom import OomCandidate, oom_kill_set, select_victim
from harness.model.resources import CPU, MEMORY, pod_requests
from harness.model.schedule import Schedule
from harness.model.thresholds import MEMORY_AVAILABLE
from harness.quantity import format_binary_si

# Number of kubelet loop phases simulated per scenario.
PHASES = 20
# Resident memory of one leak process before it allocates (static binary, stack, page
# tables); measured on the leak program, see workloads/README.md.
PROCESS_BASE_BYTES = 512 * 1024
# Delay between the eviction decision and the pod's processes being gone, beyond the
# grace period: pod worker + runtime StopContainer round trip (seen ~0.1-1 s).
KILL_LATENCY_S = 1.0
# When kernelMemcgNotification fires, synchronize runs right away (eviction_manager.go
# ``thresholdNotifier`` handler); allow for the stats refresh it triggers.
NOTIFY_LATENCY_S = 0.5
# Age of the stats the eviction signals are computed from, at each sync. 0: ``synchronize``
# calls ``summaryProvider.Get(ctx, updateStats=true)`` (k8s: pkg/kubelet/eviction/eviction_manager.go),
# which asks cAdvisor for the root cgroup and the pods cgroup with ``MaxAge: 0`` (k8s:
# pkg/kubelet/stats/helper.go ``getCgroupInfo``; pkg/kubelet/server/stats/summary_sys_containers.go
# ``SystemContainerPods: forceStatsUpdate: updateStats``), i.e. an on-demand housekeeping. Pod
# stats (used only for ranking) come from cAdvisor's cache, refreshed every housekeeping
# interval (k8s: pkg/kubelet/cadvisor/cadvisor_linux.go ``defaultHousekeepingInterval = 10s``,
# ``maxHousekeepingInterval = 15s``). ``predict_scenario(stats_age_s=...)`` models signals
# computed from older stats (e.g. another stats provider or a slow on-demand update).
# The per-pod stats the ranking uses are modelled apart, by ``model.housekeeping``.
STATS_AGE_S = 0.0
# Whether the timelines of one loop phase share their trunk (``_Sim.fork``); off, each stats schedule's
# timeline runs from t = 0 (the straightforward simulation the tests compare with).
SHARE_TRUNKS = True

OUTCOMES = ("completed", "oom_killed", "node_oom_killed", "evicted", "rejected", "runtime_failed", "unknown")


@dataclass
class Alternative:
    outcome: str
    earliest_s: float | None
    latest_s: float | None
    mechanism: str
    share: float  # fraction of simulated kubelet phases with this outcome


@dataclass
class WorkloadPrediction:
    name: str
    outcome: str
    earliest_s: float | None
    latest_s: float | None
    mechanism: str
    victims: list[str] = field(default_factory=list)
    victim: bool = False  # killed although it was not the one leaking into the limit
    race: bool = False
    alternatives: list[Alternative] = field(default_factory=list)
    qos_class: str | None = None
    oom_score_adj: int | None = None
    notes: list[str] = field(default_factory=list)
    # "planned": every program starts at t = 0 + startDelay and allocates one chunk per interval;
    # "as-run": each program's reported start and allocation pace (``model.schedule``), with the
    # planned prediction in ``planned_*``
    basis: str = "planned"
    launch_s: float | None = None  # as-run: program start minus planned start
    alloc_rate_bytes_per_s: float | None = None  # as-run: achieved allocation rate
    max_chunk_s: float | None = None  # as-run: the longest a chunk took to allocate
    planned_outcome: str | None = None
    planned_earliest_s: float | None = None
    planned_latest_s: float | None = None

    @property
    def label(self) -> str:
        """The outcome as verdicts show it: every alternative of a race, joined by "|"."""
        return "|".join(a.outcome for a in self.alternatives) if self.race else self.outcome

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Prediction:
    scenario: str
    kubelet: bool
    workloads: list[WorkloadPrediction]
    node: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    # as run, with the loop phase of the kubelet's real syncs (``predict_scenario(sync_phase_s=)``):
    # what the model says once the phase that decides a race is known; kept beside, not in to_dict
    synced: Prediction | None = None
    synced_phase_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "kubelet": self.kubelet,
            "node": self.node,
            "notes": self.notes,
            "workloads": [w.to_dict() for w in self.workloads],
        }

    def workload(self, name: str) -> WorkloadPrediction:
        for w in self.workloads:
            if w.name == name:
                return w
        raise KeyError(name)


@dataclass
class Baseline:
    """Memory already in use when the scenario starts (measured by the run, 0 in pure model use).

    ``root_working_set``: working set of the whole node outside the workloads;
    ``kubepods_working_set``: of pods not part of the scenario.
    ``root_unavailable``: on a whole real node (not a cgroup drawn around the workloads), the
    memory the kernel cannot give to new allocations without swapping or OOM, ``MemTotal -
    MemAvailable`` (``si_mem_available``, mm/show_mem.c; Documentation/filesystems/proc.rst
    "MemAvailable: An estimate of how much memory is available for starting new applications,
    without swapping"). The node's global OOM comes when the workloads have taken what was
    available: the page cache in ``root_usage`` is reclaimed first, so ``root_usage`` would put
    it early by the size of the cache. None: the node is a cgroup, whose ``root_usage`` counts.

    The page cache in ``root_working_set`` (``root_active_file``: the kubelet's working set is
    usage - inactive_file, cadvisor handler.go setMemoryStats, so active file pages count in it)
    is reclaimed as the workloads take the node's free memory: the kernel leaves the cache alone
    until free memory is down to the zones' low watermarks (``root_free_before_reclaim``,
    ``MemFree`` - the sum of ``low`` in /proc/zoneinfo: kswapd wakes there, mm/page_alloc.c
    wake_all_kswapds, mm/vmscan.c balance_pgdat), then each page the workloads take is a page
    of cache reclaimed. Reclaim takes the inactive list (``root_inactive_file``, not in the
    working set) and deactivates active pages only when the inactive list runs low (mm/vmscan.c
    shrink_list, inactive_is_low): the model takes the inactive list first whole, which makes
    the working set as high as the kernel can leave it. So on a real node ``memory.available``
    never falls much below the memory that is neither anon nor page cache (kernel slab, page
    tables) plus the free watermark: a threshold under that is not crossed before the kernel's
    OOM. None: not measured (a cgroup drawn around the workloads, or pure model use): the cache
    in the working set stays.
    """

    root_working_set: int = 0
    kubepods_working_set: int = 0
    root_usage: int = 0
    kubepods_usage: int = 0
    root_unavailable: int | None = None
    root_active_file: int = 0
    root_inactive_file: int = 0
    root_free_before_reclaim: int | None = None


# --------------------------------------------------------------------------------------
# Static layout of the simulated node


@dataclass
class _Proc:
    pid: int
    workload: str
    anon: int = PROCESS_BASE_BYTES
    alive: bool = True


@dataclass
class _W(PlacedWorkload):
    """A workload on one simulated timeline: its static placement and what happens to it."""

    procs: list[_Proc] = field(default_factory=list)
    cache: int = 0  # page cache charged to the workload (pagecache mode)
    outcome: str | None = None
    time: float | None = None
    mechanism: str = ""
    victim: bool = False
    killed_by: str | None = None
    pending_kill_at: float | None = None
    started: bool = False
    # evicted: the working set the kubelet ranked it on, and the age of those stats (s)
    seen_ws: int | None = None
    stats_age_s: float | None = None


# --------------------------------------------------------------------------------------
# What every timeline of one prediction shares


class _Layout:
    """The static layout of the node (``place_workloads``) and what depends on it alone: computed
    once per prediction, shared by its timelines (every loop phase x stats schedule), which only
    read it. Pods' effective requests are kept per pod (admission's resource fit and the eviction
    ranking ask for them at every admission and sync)."""

    def __init__(self, scenario: Scenario, profile: KubeletConfiguration, facts: NodeFacts, kubelet: bool):
        self.placed, self.limits, self.notes, self.node_info = place_workloads(
            scenario, profile, facts, kubelet
        )
        self.profile = profile
        self.minor = facts.kubelet_minor
        alloc = {MEMORY: int(self.node_info["allocatable_bytes"])}
        cpu = node_allocatable(profile, facts).allocatable.get(CPU)
        if cpu is not None:
            alloc[CPU] = cpu
        self.fit_allocatable = alloc
        self._requests: dict[int, tuple[Pod, dict[str, int]]] = {}

    def pod_requests(self, pod: Pod) -> dict[str, int]:
        """``resources.pod_requests`` of a pod of this layout, computed once (callers only read it)."""
        hit = self._requests.get(id(pod))
        if hit is None or hit[0] is not pod:
            hit = (pod, pod_requests(pod, self.profile, self.minor))
            self._requests[id(pod)] = hit
        return hit[1]

    def pod_memory_request(self, pod: Pod) -> int:
        """What the eviction ranking compares the working set with (``eviction._pod_memory_request``)."""
        return int(self.pod_requests(pod).get("memory", 0))


# --------------------------------------------------------------------------------------
# One simulated timeline


class _Diverge(Exception):
    """A trunk timeline reached a sync that ranks pods: its stats schedules part from here."""


class _Sim:
    def __init__(
        self,
        scenario: Scenario,
        profile: KubeletConfiguration,
        facts: NodeFacts,
        kubelet: bool,
        phase: float,
        baseline: Baseline,
        stats_age_s: float = STATS_AGE_S,
        schedules: Mapping[str, Schedule] | None = None,
        housekeeping: hk.Schedule | None = None,
        layout: _Layout | None = None,
        trunk: bool = False,
    ) -> None:
        self.scenario = scenario
        # trunk: the part of a loop phase's timelines that every stats schedule shares. The pods'
        # stats ages matter only when the kubelet ranks pods (``pod_ws_seen``), so the timelines of
        # one phase are the same up to the first sync that ranks: the trunk runs up to it (recording
        # the pods' working sets, as a timeline with a schedule does), stops before it (``paused``),
        # and each schedule's timeline continues from a copy (``fork``)
        self.trunk = trunk
        self.paused = False
        # per-pod stats: None = as fresh as the sync; else each container's housekeepings
        self.housekeeping = housekeeping
        self.pod_history: dict[str, list[tuple[float, int]]] = {}
        self.schedules = dict(schedules or {})
        self.stats_age_s = stats_age_s
        # (time, root working set, kubepods working set) after every event, for stale stats
        self.ws_history: list[tuple[float, int, int]] = [(0.0, *self.working_sets_at_start(baseline))]
        self.profile = profile
        self.facts = facts
        self.kubelet = kubelet
        self.phase = phase
        self.baseline = baseline
        layout = layout or _Layout(scenario, profile, facts, kubelet)
        self.layout = layout
        self.limits = layout.limits
        self.notes = list(layout.notes)
        self.node_info = dict(layout.node_info)
        self.ws = {name: _W(**vars(pw)) for name, pw in layout.placed.items()}
        # memory charged per cgroup (usage: anon of live processes + page cache; anon alone), kept
        # up to date by every change of a process's anon or a workload's cache (``_anon``,
        # ``_cache``, ``_kill``): the sums ``usage`` and ``anon_in`` would otherwise recompute
        # over every workload at every charge
        self._usage: dict[str, int] = {}
        self._anon: dict[str, int] = {}
        for w in self.ws.values():
            for c in w.cgroups:
                self._usage.setdefault(c, 0)
                self._anon.setdefault(c, 0)
        # pods whose working set changed since the last ``record_pods`` (None: record every pod)
        self._changed: set[str] | None = None
        # the pods admitted and running (started, no outcome yet) and their requests summed, for
        # admission's resource fit (``_run``, ``_end``)
        self._running: set[str] = set()
        self._used: dict[str, int] = {}
        self.pid = 100
        # the node's page cache reclaimed so far (``_reclaim_node_cache``)
        self.cache_reclaimed = 0
        self.events: list[tuple[float, int, str, Any]] = []
        self.seq = 0
        self.manager: Any = None
        self.deadline = scenario.timeout_s
        if kubelet:
            self.manager = EvictionManager(profile, facts, memory_request=layout.pod_memory_request)
        self.notify_armed_at = -math.inf
        self.mm_state: Any = None  # memory manager state (Static policy), admission by admission

    # -- event queue
    def push(self, t: float, kind: str, data: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, data))

    # -- accounting
    def usage(self, cg: str) -> int:
        """Anon of live processes plus page cache of the workloads in ``cg``'s subtree, plus the
        baseline (root, kubepods)."""
        total = self._usage.get(cg, 0)
        if cg == "":
            total += self.root_base()
        elif cg == "kubepods":
            total += self.baseline.kubepods_usage
        return total

    def root_base(self) -> int:
        """What the node holds outside the workloads, as ``usage("")`` counts it."""
        b = self.baseline
        return b.root_usage if b.root_unavailable is None else b.root_unavailable

    def anon_in(self, cg: str) -> int:
        return self._anon.get(cg, 0)

    def _reclaim_node_cache(self) -> None:
        """What the workloads took beyond the node's free memory is page cache reclaimed (it
        does not come back when they free it): ``Baseline.root_free_before_reclaim``."""
        room = self.baseline.root_free_before_reclaim
        if room is not None:
            self.cache_reclaimed = max(self.cache_reclaimed, self.usage("") - self.root_base() - room)

    def _add_anon(self, s: _W, proc: _Proc, nbytes: int) -> None:
        proc.anon += nbytes
        if proc.alive:
            for c in s.cgroups:
                self._usage[c] += nbytes
                self._anon[c] += nbytes
            if self._changed is not None:
                self._changed.add(s.spec.name)
            if nbytes > 0:
                self._reclaim_node_cache()

    def _set_cache(self, s: _W, value: int) -> None:
        delta = value - s.cache
        s.cache = value
        if delta:
            for c in s.cgroups:
                self._usage[c] += delta
            if delta > 0:
                self._reclaim_node_cache()

    def _run(self, s: _W) -> None:
        """The pod is admitted and started: its requests count as used."""
        if s.pod is not None and s.spec.name not in self._running:
            self._running.add(s.spec.name)
            for k, v in self.layout.pod_requests(s.pod).items():
                self._used[k] = self._used.get(k, 0) + v

    def _end(self, s: _W) -> None:
        """Call before the workload gets its outcome: a pod that had none no longer counts as used."""
        if s.outcome is None and s.spec.name in self._running:
            self._running.discard(s.spec.name)
            for k, v in self.layout.pod_requests(s.pod).items():  # type: ignore[arg-type]
                self._used[k] -= v

    def fit_used(self) -> dict[str, int]:
        """The requests of the running pods summed (``fit.insufficient``'s ``used``)."""
        return self._used

    def _kill(self, s: _W, proc: _Proc) -> None:
        """The process is gone: its anon is freed."""
        if proc.alive and proc.anon:
            for c in s.cgroups:
                self._usage[c] -= proc.anon
                self._anon[c] -= proc.anon
            if self._changed is not None:
                self._changed.add(s.spec.name)
        proc.alive = False
        proc.anon = 0

    def working_sets(self) -> tuple[int, int]:
        """Working set of root and of kubepods: anon only (page cache written once is inactive),
        less the node's active page cache reclaimed so far (``Baseline.root_free_before_reclaim``:
        the inactive pages, the workloads' cache among them, go first)."""
        b = self.baseline
        root = b.root_working_set + self.anon_in("")
        if self.cache_reclaimed > 0:
            inactive = b.root_inactive_file + self.usage("") - self.root_base() - self.anon_in("")
            root -= min(b.root_active_file, max(0, self.cache_reclaimed - inactive))
        kube = b.kubepods_working_set + self.anon_in("kubepods")
        return root, kube

    @staticmethod
    def working_sets_at_start(baseline: Baseline) -> tuple[int, int]:
        return baseline.root_working_set, baseline.kubepods_working_set

    def observed_working_sets(self, t: float) -> tuple[int, int]:
        """Working sets as the kubelet sees them at ``t``: those of ``t - stats_age_s``."""
        if self.stats_age_s <= 0:
            return self.working_sets()

        i = bisect.bisect_right(self.ws_history, t - self.stats_age_s, key=lambda h: h[0])
        seen = self.ws_history[max(i - 1, 0)]
        return seen[1], seen[2]

    # -- kernel
    def charge(self, t: float, s: _W, proc: _Proc, nbytes: int, cache: bool) -> bool:
        """Charge nbytes to the workload; True if the allocating process survives."""
        while True:
            over = None
            for cg in reversed(s.cgroups):  # deepest first
                lim = self.limits.get(cg)
                if lim is not None and self.usage(cg) + nbytes > lim:
                    over = cg
                    break
            if over is None:
                if cache:
                    self._set_cache(s, s.cache + nbytes)
                else:
                    self._add_anon(s, proc, nbytes)
                return True
            # reclaim page cache in the subtree first
            need = self.usage(over) + nbytes - (self.limits[over] or 0)
            for other in self.ws.values():
                if over in other.cgroups and other.cache and need > 0:
                    take = min(other.cache, need)
                    self._set_cache(other, other.cache - take)
                    need -= take
            if need <= 0:
                continue
            if cache:
                # a page-cache writer never triggers the OOM killer for clean pages: it reclaims
                # its own cache (written pages are clean after writeback)
                take = min(s.cache, nbytes)
                self._set_cache(s, s.cache - take + nbytes)
                return True
            victim = self.oom(t, over, s)
            if victim is None:
                return False
            if not proc.alive:
                return False

    def oom(self, t: float, domain: str, charger: _W) -> _Proc | None:

        cands: list[OomCandidate] = []
        procs: dict[int, tuple[_W, _Proc]] = {}
        for s in self.ws.values():
            if domain in s.cgroups:
                for p in s.procs:
                    if p.alive:
                        cands.append(
                            OomCandidate(
                                pid=p.pid,
                                name=s.spec.name,
                                cgroup=s.cgroups[-1],
                                rss_bytes=p.anon,
                                oom_score_adj=s.oom_score_adj,
                            )
                        )
                        procs[p.pid] = (s, p)
        lim = self.limits[domain] or self.facts.memory_capacity_bytes
        totalpages = lim // self.facts.page_size
        victim = select_victim(cands, totalpages, self.facts.page_size)
        if victim is None:
            return None
        vs, vp = procs[victim.pid]
        group = {vs.cgroups[-1]} if vs.oom_group else set()
        killed = oom_kill_set(victim, cands, group, domain) if group else [victim]
        own = {vs.cgroups[-1]} | ({vs.cgroups[-2]} if vs.spec.placement == "pod" else set())
        own_scope = domain in own
        outcome = "oom_killed" if own_scope else "node_oom_killed"
        for c in killed:
            ks, kp = procs[c.pid]
            self._kill(ks, kp)
            if ks.outcome is None:
                self._end(ks)
                ks.outcome = outcome
                ks.time = t
                scope = "its own cgroup" if own_scope else (f"cgroup {domain!r}" if domain else "the node")
                ks.mechanism = (
                    f"kernel OOM in {scope} (limit {format_binary_si(lim)}), "
                    f"victim by badness (oom_score_adj {ks.oom_score_adj})"
                )
                if ks is not charger:
                    ks.victim = True
                    ks.killed_by = charger.spec.name
        # a workload whose processes all died releases its page cache on exit
        for s in self.ws.values():
            if s.procs and not any(p.alive for p in s.procs):
                self._set_cache(s, 0)
        return vp

    # -- kubelet
    def sync(self, t: float, periodic: bool = True) -> None:

        root_ws, kube_ws = self.observed_working_sets(t)
        cap = self.facts.memory_capacity_bytes
        kubepods_limit = self.limits.get("kubepods")
        # observe() takes usage and inactive_file; pass WS as usage with 0 inactive.
        obs = observe(cap, root_ws, 0, kubepods_limit, kube_ws, 0)

        def usages() -> list[PodUsage]:
            if self.trunk:
                raise _Diverge
            out = []
            for s in self.ws.values():
                if s.pod is None or s.outcome in ("evicted", "rejected") or not s.started:
                    continue
                if s.outcome is not None and not any(p.alive for p in s.procs):
                    continue
                ws = self.pod_ws_seen(s, t)
                out.append(PodUsage(pod=s.pod, working_set_bytes=ws, container_working_set={s.spec.name: ws}))
            return out

        res = self.manager.synchronize(t, obs, usages)
        if res.evicted is not None:
            name = res.evicted.pod.metadata.name
            s = self.ws[name]
            if s.outcome is None:
                self._end(s)
                s.outcome = "evicted"
                s.time = t
                met = ", ".join(f"{m.signal}<{m.value.text}" for m in res.met) or "threshold"
                s.mechanism = f"kubelet eviction ({met}; sync at {t:.1f}s)"
                s.seen_ws = res.evicted.working_set_bytes
                if self.housekeeping is not None:
                    seen = self.housekeeping.seen_at(name, t)
                    s.stats_age_s = None if seen is None else t - seen
                    s.mechanism += "; ranked on " + ", ".join(
                        f"{u.pod.metadata.name} {format_binary_si(u.working_set_bytes or 0)}"
                        + self.age_text(u.pod.metadata.name, t)
                        for u in res.ranked
                    )
            # The leak program exits on SIGTERM at once, so memory is freed after the
            # kill latency, whatever the grace period.
            self.push(t + KILL_LATENCY_S, "release", name)
            # waitForPodsCleanup: poll every 1 s up to 30 s, then synchronize again at once
            # (k8s: pkg/kubelet/eviction/eviction_manager.go podCleanupPollFreq/podCleanupTimeout)
            if periodic:
                self.push(t + KILL_LATENCY_S + 1.0, "sync", None)
        elif periodic:
            # evictionMonitoringPeriod (k8s: pkg/kubelet/kubelet.go)
            self.push(t + 10.0, "sync", None)

    def pod_ws_seen(self, s: _W, t: float) -> int:
        """The pod's working set as the kubelet's ranking sees it at ``t``: as of its container's
        last housekeeping (``model.housekeeping``), or the current one without a schedule."""
        now = sum(p.anon for p in s.procs if p.alive)
        seen = None if self.housekeeping is None else self.housekeeping.seen_at(s.spec.name, t)
        if seen is None:
            return now
        hist = self.pod_history.get(s.spec.name, [])
        i = bisect.bisect_right(hist, seen, key=lambda h: h[0])
        return hist[i - 1][1] if i else 0

    def age_text(self, name: str, t: float) -> str:
        seen = None if self.housekeeping is None else self.housekeeping.seen_at(name, t)
        return "" if seen is None else f" ({t - seen:.1f}s old)"

    def record_pods(self, t: float) -> None:
        """Each pod's working set after an event, where it changed (the first call: every pod)."""
        names = self.ws if self._changed is None else self._changed
        for name in names:
            s = self.ws[name]
            if s.pod is None:
                continue
            ws = sum(p.anon for p in s.procs if p.alive)
            hist = self.pod_history.setdefault(name, [])
            if not hist or hist[-1][1] != ws:
                hist.append((t, ws))
        self._changed = set()

    def maybe_notify(self, t: float) -> None:
        """kernelMemcgNotification (cgroup v1 only): a crossed memcg threshold syncs at once."""
        if not (self.kubelet and self.profile.kernel_memcg_notification and self.facts.cgroup_version == 1):
            return
        if t - self.notify_armed_at < 10.0:
            # notifiers are refreshed at most every notifierRefreshInterval (10 s)
            return

        root_ws, kube_ws = self.working_sets()
        cap = self.facts.memory_capacity_bytes
        kl = self.limits.get("kubepods")
        for th in self.manager.thresholds:
            if th.signal == MEMORY_AVAILABLE:
                crossed = cap - root_ws < th.value.resolve(cap)
            elif kl is not None:
                crossed = kl - kube_ws < th.value.resolve(kl)
            else:
                crossed = False
            if crossed:
                self.notify_armed_at = t
                self.push(t + NOTIFY_LATENCY_S, "sync-notify", None)
                return

    def fork(self, housekeeping: hk.Schedule | None) -> _Sim:
        """This timeline's state, continued apart with the given per-pod stats schedule."""
        child = copy.copy(self)
        child.trunk = False
        child.housekeeping = housekeeping
        child.ws = {}
        for name, w in self.ws.items():
            c = copy.copy(w)
            c.procs = [copy.copy(p) for p in w.procs]
            child.ws[name] = c
        child.pod_history = {k: list(v) for k, v in self.pod_history.items()}
        child.ws_history = list(self.ws_history)
        child.events = list(self.events)
        child.notes = list(self.notes)
        child.node_info = dict(self.node_info)
        child._usage = dict(self._usage)
        child._anon = dict(self._anon)
        child._changed = None if self._changed is None else set(self._changed)
        child._running = set(self._running)
        child._used = dict(self._used)
        child.manager = None if self.manager is None else self.manager.copy()
        child.mm_state = copy.deepcopy(self.mm_state)
        return child

    def run(self) -> None:
        for s in self.ws.values():
            sched = self.schedules.get(s.spec.name)
            self.push(sched.start_s if sched else s.spec.leak.start_delay_s, "start", s.spec.name)
        if self.kubelet:
            self.push(self.phase, "sync", None)
        self.push(self.deadline, "deadline", None)
        self.resume()

    def resume(self) -> None:
        """Run the events in the queue until the deadline (a trunk: or until it pauses)."""
        self.paused = False
        while self.events:
            t, seq, kind, data = heapq.heappop(self.events)
            if t > self.deadline:
                break
            if kind == "deadline":
                break
            if kind == "start":
                self.start(t, self.ws[data])
            elif kind == "chunk":
                self.chunk(t, *data)
            elif kind == "release":
                s = self.ws[data]
                for p in s.procs:
                    self._kill(s, p)
                self._set_cache(s, 0)
            elif kind in ("sync", "sync-notify") and self.trunk:
                saved = self.manager.copy()
                try:
                    self.sync(t, periodic=kind == "sync")
                except _Diverge:
                    # nothing but the manager changed before the ranking: undo, keep the event
                    self.manager = saved
                    heapq.heappush(self.events, (t, seq, kind, data))
                    self.paused = True
                    return
            elif kind == "sync":
                self.sync(t)
            elif kind == "sync-notify":
                self.sync(t, periodic=False)
            elif kind == "hold-exit":
                s = self.ws[data]
                if s.outcome is None:
                    self._end(s)
                    s.outcome = "completed"
                    s.time = t
                    s.mechanism = "reached its maximum and exited after its hold time"
                    for p in s.procs:
                        self._kill(s, p)
                    self._set_cache(s, 0)
            if self.stats_age_s > 0:
                self.ws_history.append((t, *self.working_sets()))
            if self.housekeeping is not None or self.trunk:
                self.record_pods(t)

    def admit(self, t: float, s: _W) -> bool:
        """The kubelet's admit handlers in their registration order (k8s: pkg/kubelet/kubelet.go
        NewMainKubelet): the eviction manager's Admit, then the container manager's resource
        allocation handler (topology manager + memory manager, pkg/kubelet/cm/topologymanager
        scope.go), then the predicate handler's resource fit (pkg/kubelet/lifecycle/predicate.go:
        reason "OutOf<resource>")."""

        assert s.pod is not None
        ok, reason, message = self.manager.admit(s.pod)
        if ok:
            res, state = admit_pod(s.pod, self.profile, self.facts, self.mm_state, qos_class=s.qos)
            ok, reason, message = res.admitted, res.reason or "", res.message or ""
            if ok:
                self.mm_state = state
        if ok:
            # predicate.go resource fit, then the critical-pod admission handler (``model.fit``)
            # with ``used`` given, admit_fit reads the running pods only to choose whom a critical
            # pod preempts: listed for a critical pod alone (a list of every pod at every admission
            # made the admissions quadratic in the number of pods)
            running = (
                [
                    o
                    for o in self.ws.values()
                    if o.pod is not None and o.started and o.outcome is None and o is not s
                ]
                if s.pod.is_critical
                else []
            )
            fitted = admit_fit(
                s.pod,
                [o.pod for o in running if o.pod is not None],
                dict(self.layout.fit_allocatable),
                self.profile,
                self.layout.minor,
                requests=self.layout.pod_requests,
                used=self.fit_used(),
            )
            ok, reason, message = fitted.admitted, fitted.reason, fitted.message
            for victim in fitted.preempted:
                o = self.ws[victim.metadata.name]
                self._end(o)
                o.outcome, o.time = "evicted", t
                o.mechanism = (
                    f"preempted at admission of critical pod {s.spec.name} ({REASON_PREEMPTING}: "
                    f"{PREEMPT_MESSAGE}; k8s: pkg/kubelet/preemption)"
                )
                o.killed_by = s.spec.name
                self.push(t + KILL_LATENCY_S, "release", o.spec.name)
        if not ok:
            s.started = True
            self._end(s)
            s.outcome = "rejected"
            s.time = t
            s.mechanism = f"{reason}: {message}"
        return ok

    def start(self, t: float, s: _W) -> None:
        if self.kubelet and s.pod is not None and not self.admit(t, s):
            return
        s.started = True
        if self.kubelet:
            self._run(s)
        leak = s.spec.leak
        for i in range(leak.processes):
            self.pid += 1
            proc = _Proc(pid=self.pid, workload=s.spec.name, anon=0)
            s.procs.append(proc)
            if not self.charge(t, s, proc, PROCESS_BASE_BYTES, cache=False):
                return
            self.push(self.chunk_time(s.spec.name, i, 0, now=t, planned=t), "chunk", (s.spec.name, i, 0))

    def chunk(self, t: float, name: str, idx: int, n: int) -> None:
        s = self.ws[name]
        proc = s.procs[idx]
        if not proc.alive or s.outcome is not None:
            return
        leak = s.spec.leak
        allocated = n * leak.chunk_bytes
        if leak.max_bytes and allocated >= leak.max_bytes:
            if idx == 0 and leak.hold_s is not None:
                self.push(t + leak.hold_s, "hold-exit", name)
            return
        size = leak.chunk_bytes
        if leak.max_bytes:
            size = min(size, leak.max_bytes - allocated)
        if s.heap_cap_bytes is not None and allocated + size > s.heap_cap_bytes:
            self._end(s)
            s.outcome = "runtime_failed"
            s.time = t
            s.mechanism = (
                f"heap cap {s.spec.leak.heap_cap_percent}% of its cgroup limit "
                f"({format_binary_si(s.heap_cap_bytes)}) reached before the limit"
            )
            for p in s.procs:
                self._kill(s, p)
            return
        touched = int(size * leak.touch)
        ok = self.charge(t, s, proc, touched, cache=(leak.mode == "pagecache"))
        if not ok or not proc.alive:
            return
        self.maybe_notify(t)
        next_t = self.chunk_time(name, idx, n + 1, now=t, planned=t + leak.interval_s)
        self.push(next_t, "chunk", (name, idx, n + 1))

    def chunk_time(self, name: str, idx: int, n: int, *, now: float, planned: float) -> float:
        """When chunk ``n`` of process ``idx`` is charged: the plan, or when the program really
        began it (an as-run prediction, ``model.schedule``)."""
        sched = self.schedules.get(name)
        return planned if sched is None else max(now, sched.began(idx, n, planned))


# --------------------------------------------------------------------------------------


def predict_scenario(
    scenario: Scenario,
    *,
    kubelet: bool,
    baseline: Baseline | None = None,
    phases: int = PHASES,
    stats_age_s: float = STATS_AGE_S,
    schedules: Mapping[str, Schedule] | None = None,
    housekeeping: hk.Schedule | Sequence[hk.Schedule] | None = None,
    pod_stats: bool = True,
    sync_phase_s: float | None = None,
) -> Prediction:
    """Predict each workload's outcome and time window for one scenario.

    ``kubelet``: whether a real kubelet runs (kubernetes backend). Without it only the
    kernel acts on the mirrored cgroup hierarchy (process/docker/containerd backends).
    ``stats_age_s``: age of the stats the kubelet's eviction signals see (``STATS_AGE_S``).
    ``schedules``: per workload, when its program really started and allocated each chunk
    (``model.schedule``): an *as-run* prediction, free of launch latency and of the host's
    allocation pace. Without it the plan (t = 0 + startDelay, one chunk per interval).
    ``housekeeping``: when each pod's cached stats were taken, as a run recorded them
    (``model.housekeeping.from_summaries``). Without it, with a kubelet and two pods or more, each
    loop phase is simulated with fresh pod stats and with the sampled housekeeping schedules
    (``model.housekeeping.sample_schedules``); a victim that only some stats ages give is an
    alternative with its reason. ``pod_stats=False``: pods ranked on fresh stats only.
    ``sync_phase_s``: when the kubelet's first eviction sync after t = 0 really began (a run's kubelet
    log, ``sample.kubeletlog``): only that loop phase is simulated instead of ``phases`` of them,
    which settles a race that the loop's phase decides.
    """
    assert scenario.profile is not None and scenario.node is not None, "load the suite with load_suite()"
    profile, facts = scenario.profile, scenario.node
    baseline = baseline or Baseline()
    runs: list[_Sim] = []
    n = phases if kubelet else 1
    loop_phases = [10.0 * i / n for i in range(n)]
    if kubelet and sync_phase_s is not None:
        loop_phases = [sync_phase_s % 10.0]
    hks = _housekeeping_schedules(scenario, kubelet, schedules, housekeeping, pod_stats)
    layout = _Layout(scenario, profile, facts, kubelet)
    for loop_phase in loop_phases:
        sim_of_phase = partial(
            _Sim,
            scenario,
            profile,
            facts,
            kubelet,
            phase=loop_phase,
            baseline=baseline,
            stats_age_s=stats_age_s,
            schedules=schedules,
            layout=layout,
        )
        if len(hks) > 1 and SHARE_TRUNKS:
            # the phase's timelines share their trunk, up to the first sync that ranks pods
            trunk = sim_of_phase(trunk=True)
            trunk.run()
            for sched_hk in hks:
                sim = trunk.fork(sched_hk)
                if trunk.paused:
                    sim.resume()
                runs.append(sim)
            continue
        for sched_hk in hks:
            sim = sim_of_phase(housekeeping=sched_hk)
            sim.run()
            runs.append(sim)
    first = runs[0]
    # over every run: who each workload's kills made victims of, and who was evicted
    victims_of: dict[str, set[str]] = {}
    evicted_anywhere: set[str] = set()
    for r in runs:
        for v, vs in r.ws.items():
            if vs.victim and vs.killed_by is not None:
                victims_of.setdefault(vs.killed_by, set()).add(v)
            if vs.outcome == "evicted":
                evicted_anywhere.add(v)
    out: list[WorkloadPrediction] = []
    for name, s0 in first.ws.items():
        per = [(r.ws[name].outcome or "completed", r.ws[name]) for r in runs]
        fresh = {o for (o, _), r in zip(per, runs, strict=True) if r.housekeeping is None}
        counts = Counter(o for o, _ in per)
        alts: list[Alternative] = []
        for outcome, cnt in counts.most_common():
            times = [s.time for o, s in per if o == outcome and s.time is not None]
            mech = next(s.mechanism for o, s in per if o == outcome)
            if outcome == "completed" and not mech:
                mech = _survival_reason(s0)
            alts.append(
                Alternative(
                    outcome=outcome,
                    earliest_s=min(times) if times else None,
                    latest_s=max(times) if times else None,
                    mechanism=mech,
                    share=cnt / len(per),
                )
            )
        main = alts[0]
        victims = sorted(victims_of.get(name, ()))
        wp = WorkloadPrediction(
            name=name,
            outcome=main.outcome,
            earliest_s=main.earliest_s,
            latest_s=main.latest_s,
            mechanism=main.mechanism,
            victims=victims,
            victim=any(r.ws[name].victim for r in runs if r.ws[name].outcome == main.outcome),
            race=len(alts) > 1,
            alternatives=alts,
            qos_class=s0.qos,
            oom_score_adj=s0.oom_score_adj,
        )
        if wp.race and (len(fresh) > 1 or not fresh):
            wp.notes.append(
                "race between "
                + " and ".join(f"{a.outcome} ({a.share:.0%} of kubelet loop phases)" for a in alts)
                + ": crossing and kill are closer than one eviction loop"
            )
        stale = [a for a in alts if fresh and a.outcome not in fresh]
        if stale:
            stale_outcomes = {a.outcome for a in stale}
            ages = [
                age
                for (o, _), r in zip(per, runs, strict=True)
                if o in stale_outcomes and (age := r.ws[name].stats_age_s) is not None
            ]
            others = sorted(evicted_anywhere - {name})
            wp.notes.append(
                "stats age: on fresh pod stats "
                + "/".join(sorted(fresh))
                + ", but the kubelet ranks pods on cAdvisor's cached pod-cgroup stats (housekeeping "
                + f"every {hk.HOUSEKEEPING_INTERVAL_S:g} s plus jitter, up to {hk.max_age_s():g} s old, "
                + f"{hk.MAX_HOUSEKEEPING_INTERVAL_S:g} s plus jitter while the pod is idle): "
                + " and ".join(f"{a.outcome} ({a.share:.0%} of phases x stats ages)" for a in stale)
                + (f" when its stats are {min(ages):.1f}-{max(ages):.1f} s old" if ages else "")
                + (f" or another pod's are (evicted elsewhere: {', '.join(others)})" if others else "")
            )
        out.append(wp)
    return Prediction(
        scenario=scenario.name, kubelet=kubelet, workloads=out, node=first.node_info, notes=first.notes
    )


def _housekeeping_schedules(
    scenario: Scenario,
    kubelet: bool,
    schedules: Mapping[str, Schedule] | None,
    recorded: hk.Schedule | Sequence[hk.Schedule] | None,
    pod_stats: bool,
) -> list[hk.Schedule | None]:
    """The per-pod stats schedules to simulate each loop phase with (None = fresh stats).

    Only a ranking among two pods or more depends on them, so one pod (or no kubelet) keeps the
    fresh view alone. A recorded schedule replaces the samples (the as-run prediction)."""
    pods = [w for w in scenario.workloads if w.placement == "pod"]
    if not kubelet or not pod_stats or len(pods) < 2:
        return [None]
    if isinstance(recorded, hk.Schedule):
        return [recorded]
    if recorded:
        return list(recorded)
    # the pod cgroup is tracked from the pod's start; its stats change once the program leaks
    # (after its start delay): as run, from the program's recorded start, else as planned
    active = {
        w.name: (schedules[w.name].start_s if schedules and w.name in schedules else w.leak.start_delay_s)
        for w in pods
    }
    starts = {w.name: max(active[w.name] - w.leak.start_delay_s, 0.0) for w in pods}
    return [None, *hk.sample_schedules(starts, scenario.timeout_s, active=active)]


def _survival_reason(s: _W) -> str:
    leak = s.spec.leak
    if leak.mode == "pagecache":
        return "page cache is reclaimed at the limit and is not part of the working set"
    if leak.max_bytes:
        return f"stays below every limit and threshold at its maximum {format_binary_si(leak.max_bytes)}"
    return "no limit or threshold reached before the scenario's deadline"
