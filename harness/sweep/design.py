"""Adaptive choice of the next leak rate: coarse grid, bisection, repeats, stop rules.

Pure logic: given the trials so far (rate and outcome class), :func:`next_step` says which
rate to run next, or why to stop. The same trials always give the same answer, which is what
makes a sweep resumable: an interrupted sweep re-reads its completed trials and continues
with exactly the step it would have taken (an interrupted trial was never recorded, so it is
chosen again).

Classes: ``A`` and ``B`` are the two outcomes whose boundary is measured (e.g. evicted vs
OOM-killed); ``other`` outcomes are kept but carry no information about the boundary.

The steps, in order of priority:

1. **grid**: ``grid`` log-spaced rates over LOW..HIGH, each run once, lowest first.
2. **retry** a rate that gave only other outcomes (e.g. a run disturbed from outside) until it
   has ``max(repeats, 2)`` trials.
3. No A or no B outcome at all: **stop**, the boundary is not in the range.
   The side that sees class X at lower rates is the "low class" (normally A, decided by the
   data: the class of the lowest rate that has any).
4. **separated** (every low-class outcome at a lower rate than every high-class one), with
   bracket ``(max low, min high)``:
   * the bracket is wider than ``1 + resolution``: **bisect** at its geometric midpoint;
   * otherwise **repeat** each bracket edge until it has ``repeats`` trials (a single trial at
     each edge is weak evidence; repeats may reveal a mixed rate).
5. **overlap** (some high-class outcome at or below some low-class one): the rates in the
   overlap zone ``[min high, max low]`` are where outcomes are mixed:
   * **repeat** zone rates with fewer than ``repeats`` trials (fewest first);
   * then **bisect** the gaps between the zone and the nearest pure rate on each side while
     wider than ``1 + resolution``.
6. **host limit**: a trial whose leak achieved less than ``SLOW_FRACTION`` of its label (the host
   cannot fault pages in that fast) sets a ceiling: no label above it is run (grid rates above it
   are dropped, a step above it stops the sweep). A faster label only asks for a rate the host
   already failed to produce; the trials would pile up at the same achieved rate.
7. **stop** when nothing is left to do, or at ``max_trials``. A rate is never run more than
   ``max(repeats, 1)`` times, or ``max(repeats, 2)`` while it gave only other outcomes; a
   midpoint that already has that many trials without an A or B outcome stops the sweep.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from harness.model.schedule import SLOW_FRACTION

A, B, OTHER = "A", "B", "other"


@dataclass(frozen=True)
class Design:
    low: float
    high: float
    grid: int = 5
    repeats: int = 3
    max_trials: int = 30
    resolution: float = 0.05  # stop bisecting when HIGH/LOW of a bracket < 1 + resolution

    def __post_init__(self) -> None:
        if not (0 < self.low < self.high):
            raise ValueError("need 0 < low < high")
        if self.grid < 2:
            raise ValueError("grid needs at least 2 rates")
        if self.repeats < 1:
            raise ValueError("repeats must be at least 1")
        if self.max_trials < 1:
            raise ValueError("max_trials must be at least 1")
        if self.resolution <= 0:
            raise ValueError("resolution must be positive")

    def grid_rates(self) -> list[float]:
        """Log-spaced rates; the ends are exactly LOW and HIGH."""
        n = self.grid
        la, lb = math.log(self.low), math.log(self.high)
        rates = [math.exp(la + (lb - la) * i / (n - 1)) for i in range(n)]
        rates[0], rates[-1] = self.low, self.high
        return rates


@dataclass(frozen=True)
class Trial:
    rate: float  # the label: the rate asked of the leak
    cls: str  # A, B or other
    achieved: float | None = None  # what the leak really allocated (None: unknown)

    @property
    def saturated(self) -> bool:
        """The host could not produce the asked rate (the leak fell below SLOW_FRACTION of it)."""
        return self.achieved is not None and self.achieved < SLOW_FRACTION * self.rate


def host_ceiling(trials: Iterable[Trial]) -> float | None:
    """The lowest label at which the host fell short of the asked rate (None: it never did)."""
    sat = [t.rate for t in trials if t.saturated]
    return min(sat) if sat else None


def max_achieved(trials: Iterable[Trial]) -> float | None:
    """The fastest rate any trial really reached (its label when the achieved rate is unknown)."""
    rates = [t.achieved if t.achieved is not None else t.rate for t in trials]
    return max(rates) if rates else None


@dataclass
class Step:
    rate: float | None  # None = stop
    phase: str  # grid, retry, bisect, repeat, stop
    reason: str
    bracket: tuple[float, float] | None = None
    host_limited: bool = False  # the step the design wanted is above the host's ceiling


@dataclass
class RateSummary:
    rate: float
    n: int = 0
    a: int = 0
    b: int = 0
    other: int = 0
    classes: list[str] = field(default_factory=list)


def summarize(trials: Iterable[Trial]) -> dict[float, RateSummary]:
    out: dict[float, RateSummary] = {}
    for t in trials:
        s = out.setdefault(t.rate, RateSummary(t.rate))
        s.n += 1
        s.classes.append(t.cls)
        if t.cls == A:
            s.a += 1
        elif t.cls == B:
            s.b += 1
        else:
            s.other += 1
    return out


def _geo(a: float, b: float) -> float:
    return math.sqrt(a * b)


def bracket(trials: Iterable[Trial]) -> tuple[str, str, float, float] | None:
    """``(low class, high class, max rate of the low class, min rate of the high class)``.

    None when A or B never occurred. The low class is the class seen at the lowest rate.
    """
    ts = [t for t in trials if t.cls in (A, B)]
    if not {t.cls for t in ts} >= {A, B}:
        return None
    lowest = min(ts, key=lambda t: t.rate)
    lo_cls = lowest.cls
    hi_cls = B if lo_cls == A else A
    max_lo = max(t.rate for t in ts if t.cls == lo_cls)
    min_hi = min(t.rate for t in ts if t.cls == hi_cls)
    return lo_cls, hi_cls, max_lo, min_hi


def next_step(design: Design, trials: list[Trial]) -> Step:
    """The next rate to run (or why to stop), from the completed trials; never above the host's
    ceiling (see :func:`host_ceiling`)."""
    step = _next_step(design, trials)
    ceiling = host_ceiling(trials)
    if ceiling is None:
        return step
    skipped = [r for r in design.grid_rates() if r > ceiling]
    limit = f"the host reached at most {_mib(max_achieved(trials))} (at label {_mib(ceiling)}); " + (
        f"{len(skipped)} faster grid rates not tried" if skipped else "no faster rate tried"
    )
    if step.rate is not None and step.rate > ceiling:
        return Step(None, "stop", f"host limit: {limit}", step.bracket, host_limited=True)
    if step.rate is None and skipped:
        return Step(None, "stop", f"{step.reason}; {limit}", step.bracket, host_limited=True)
    return step


def _mib(rate: float | None) -> str:
    return "?" if rate is None else f"{rate / 2**20:.0f} MiB/s"


def _next_step(design: Design, trials: list[Trial]) -> Step:
    if len(trials) >= design.max_trials:
        return Step(None, "stop", f"reached the maximum of {design.max_trials} trials")
    ceiling = host_ceiling(trials)
    summary = summarize(trials)
    cap = max(design.repeats, 1)
    cap_other = max(design.repeats, 2)  # a disturbed trial is retried even without repeats
    for r in design.grid_rates():
        if r not in summary and (ceiling is None or r <= ceiling):
            return Step(r, "grid", "coarse grid")
    no_info = [r for r in sorted(summary) if summary[r].a + summary[r].b == 0 and summary[r].n < cap_other]
    if no_info:
        return Step(no_info[0], "retry", "only other outcomes at this rate so far")
    br = bracket(trials)
    if br is None:
        seen = sorted({t.cls for t in trials})
        return Step(None, "stop", f"no boundary in the range: only {'/'.join(seen)} outcomes")
    _, _, max_lo, min_hi = br
    rates = sorted(summary)

    def run_or_stop(rate: float, phase: str, why: str, brk: tuple[float, float]) -> Step:
        s = summary.get(rate)
        if s is not None and s.n >= cap_other:
            return Step(None, "stop", f"{why}: rate {rate:.6g} B/s already ran {s.n} times without A or B")
        return Step(rate, phase, why, brk)

    if max_lo < min_hi:  # separated
        brk = (max_lo, min_hi)
        if min_hi / max_lo > 1 + design.resolution:
            # tested rates strictly inside the bracket gave only "other" outcomes: bisect around them
            inside = [r for r in rates if max_lo < r < min_hi]
            if not inside:
                return run_or_stop(_geo(max_lo, min_hi), "bisect", "bisection of the bracket", brk)
            edges = [max_lo, *inside, min_hi]
            inner = [(edges[i + 1] / edges[i], edges[i], edges[i + 1]) for i in range(len(edges) - 1)]
            ratio, a, b = max(inner)
            if ratio > 1 + design.resolution:
                return run_or_stop(_geo(a, b), "bisect", "bisection of the bracket", brk)
            return Step(None, "stop", "bracket holds only rates with other outcomes", brk)
        for edge in (max_lo, min_hi):
            if summary[edge].n < cap:
                return Step(edge, "repeat", "repeat at the bracket edge", brk)
        return Step(
            None, "stop", f"bracket narrower than {design.resolution:.0%} and its edges repeated", brk
        )

    # overlap: outcomes are mixed between min_hi and max_lo
    brk = (min_hi, max_lo)
    zone = [r for r in rates if min_hi <= r <= max_lo and (summary[r].a + summary[r].b) > 0]
    todo = [r for r in zone if summary[r].n < cap]
    if todo:
        r = min(todo, key=lambda r: (summary[r].n, r))
        return Step(r, "repeat", "repeat where outcomes are mixed", brk)
    below = [r for r in rates if r < min_hi and summary[r].a + summary[r].b > 0]
    above = [r for r in rates if r > max_lo and summary[r].a + summary[r].b > 0]
    gaps: list[tuple[float, float, float]] = []
    if below and min_hi / max(below) > 1 + design.resolution:
        gaps.append((min_hi / max(below), max(below), min_hi))
    if above and min(above) / max_lo > 1 + design.resolution:
        gaps.append((min(above) / max_lo, max_lo, min(above)))
    if gaps:
        _, a, b = max(gaps)
        return run_or_stop(_geo(a, b), "bisect", "bisection next to the mixed zone", brk)
    return Step(None, "stop", "mixed zone repeated and its edges resolved", brk)
