"""What a workload really did, as input for an *as-run* prediction.

The model's plan assumes a workload starts at the scenario's t = 0 (plus its ``startDelay``) and
allocates one chunk every ``interval``. Real hosts differ in two ways that are properties of the
host, not of the kubelet or the kernel's memory protection:

- launch latency: a pod is admitted, its sandbox and container created, before the program runs
  (0.1 s for a process, 1-5 s for a pod on a loaded node);
- allocation pace: the leak program touches every page of a chunk, and a host whose page faults
  are slow (a freshly booted VM faults guest memory in from its hypervisor) falls behind the
  schedule. The program then allocates each chunk as soon as the previous one is done.

The leak program reports both in its JSON lines (workloads/leak.c ``emit``): the ``start`` line of
every process (``mono_ns``, CLOCK_MONOTONIC, the same clock as the harness's
``time.monotonic()``), and one ``chunk`` line per allocated chunk with the time it was done
(``mono_ns``) and the time it was due (``deadline_ns``). A :class:`Schedule` turns them into the
time each chunk *began* (``max(due, previous done)``), which the simulation uses instead of the
plan; chunks after the last line (the one the kernel killed the program in, for instance) follow
the program's recent pace.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Chunks of recent history that set the pace for chunks the program never reported.
PACE_WINDOW = 5
# A program that allocated below this fraction of its asked rate is reported as a host deviation.
SLOW_FRACTION = 0.8


@dataclass
class ProcSchedule:
    """One leak process: when it started allocating and when each chunk was done."""

    start_s: float  # chunk 0 due (the program's own t0, after its start delay), scenario seconds
    interval_s: float
    due_s: list[float] = field(default_factory=list)  # chunk k due, k = 0.. (reported lines)
    done_s: list[float] = field(default_factory=list)  # chunk k allocated

    def __post_init__(self) -> None:
        self._known: list[float] | None = None
        self._pace = 0.0

    def _began_known(self) -> list[float]:
        """When each reported chunk began, and the one after the last report."""
        if self._known is None or len(self._known) != len(self.done_s) + 1:
            began = [max(self.due(0), self.start_s)]
            for k in range(1, len(self.done_s) + 1):
                began.append(max(self.due(k), self.done_s[k - 1]))
            self._known = began
            durs = [d - began[k] for k, d in enumerate(self.done_s)][-PACE_WINDOW:]
            self._pace = statistics.median(durs) if durs else 0.0
        return self._known

    def due(self, k: int) -> float:
        return self.due_s[k] if k < len(self.due_s) else self.start_s + k * self.interval_s

    def began(self, n: int) -> float:
        """When the program began allocating chunk ``n`` (scenario seconds): a reported chunk
        began when it was due or when the previous one was done, whichever was later; later
        chunks follow the program's recent pace (never earlier than due)."""
        known = self._began_known()
        if n < len(known):
            return known[n]
        # t_k = max(due_k, t_(k-1) + pace) with due_k linear in k has this closed form
        last = len(known) - 1
        return max(self.due(n), known[last] + (n - last) * self.pace_s())

    def durations(self) -> list[float]:
        """Seconds each reported chunk took to allocate."""
        known = self._began_known()
        return [d - known[k] for k, d in enumerate(self.done_s)]

    def pace_s(self) -> float:
        """Typical time per chunk lately (0 with no history)."""
        self._began_known()
        return self._pace

    def lag_s(self) -> float:
        """How far the last reported chunk was behind its due time."""
        if not self.done_s:
            return 0.0
        return max(0.0, self.done_s[-1] - self.due_s[len(self.done_s) - 1])


@dataclass
class Schedule:
    """Every process of one workload, keyed by the leak program's process index."""

    procs: dict[int, ProcSchedule]
    planned_start_s: float  # the plan's start (the workload's startDelay)
    chunk_bytes: int

    @property
    def start_s(self) -> float:
        return min(p.start_s for p in self.procs.values())

    @property
    def launch_s(self) -> float:
        """How much later than planned the program started (launch latency)."""
        return self.start_s - self.planned_start_s

    def began(self, proc: int, n: int, planned: float) -> float:
        p = self.procs.get(proc)
        return planned if p is None else p.began(n)

    def max_chunk_s(self) -> float:
        """The longest a reported chunk took: an event inside a chunk lands anywhere in it."""
        return max((d for p in self.procs.values() for d in p.durations()), default=0.0)

    def rate_bytes_per_s(self) -> float | None:
        """Bytes per second over all processes, from first due to last done (None: < 2 chunks)."""
        rates = []
        for p in self.procs.values():
            if len(p.done_s) >= 2 and p.done_s[-1] > p.start_s:
                rates.append(len(p.done_s) * self.chunk_bytes / (p.done_s[-1] - p.start_s))
        return sum(rates) if rates else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "launch_s": round(self.launch_s, 4),
            "max_chunk_s": round(self.max_chunk_s(), 4),
            "lag_s": round(max((p.lag_s() for p in self.procs.values()), default=0.0), 4),
            "rate_bytes_per_s": self.rate_bytes_per_s(),
            "chunks": sum(len(p.done_s) for p in self.procs.values()),
        }


def schedule_from_lines(
    lines: Iterable[Mapping[str, Any]],
    t0_mono: float,
    *,
    interval_s: float,
    chunk_bytes: int,
    planned_start_s: float = 0.0,
) -> Schedule | None:
    """The schedule the leak program reported, in seconds after ``t0_mono`` (the scenario's t = 0).

    ``None`` when no process reported its start (the program never ran: rejected at admission,
    or not the leak program). A ``start`` line's ``mono_ns`` is the program's t0 before its
    ``start_delay_ms``; chunk lines carry their own due time.
    """
    procs: dict[int, ProcSchedule] = {}
    for ev in lines:
        kind, idx = ev.get("event"), int(ev.get("proc", 0) or 0)
        if "mono_ns" not in ev:
            continue
        t = int(ev["mono_ns"]) / 1e9 - t0_mono
        if kind == "start":
            delay = float(ev.get("start_delay_ms", 0) or 0) / 1000
            procs[idx] = ProcSchedule(start_s=t + delay, interval_s=interval_s)
        elif kind == "chunk" and idx in procs and "deadline_ns" in ev:
            p = procs[idx]
            p.due_s.append(int(ev["deadline_ns"]) / 1e9 - t0_mono)
            p.done_s.append(t)
    if not procs:
        return None
    return Schedule(procs=procs, planned_start_s=planned_start_s, chunk_bytes=chunk_bytes)
