"""Where an event fell inside the window the model allowed, in a unit that means the same on both sides.

Inside its as-run window, an event's time is mostly the host's noise; the gate compares *where* it
fell (its position) between the sides, against the spread of that position within each side
(:mod:`harness.compare.core`). The unit depends on what sets the window's width:

* **An eviction**: the kubelet acts at the first eviction-loop tick after the threshold crossing,
  so the time from the crossing to the eviction is the wait for that tick (where the crossing fell
  in the loop, uniform over one period) plus the kill. The model's window runs from that first
  possible tick (its earliest time: the crossing, within one simulated phase, 10 s / 20 phases =
  0.5 s, ``harness.model.predict.PHASES``) over one loop period. The position is that latency in
  loop periods, ``(t - earliest) / evictionMonitoringPeriod`` (10 s, k8s: pkg/kubelet/kubelet.go
  ``evictionMonitoringPeriod``, ``harness.model.eviction.EVICTION_MONITORING_PERIOD_S``): 0 = at
  the first tick, 1 = one whole loop later. Unlike a fraction of the window it means the same when
  the two sides' windows have different widths (a race, a leak pace that differs between nights).
* **Anything else with a window of some width** (a kernel OOM kill after a leak's last chunks): the
  fraction of the window, 0 = earliest, 1 = latest.
* **A point window** (a kernel limit acts at once): seconds after the predicted time.

Stats age: the eviction's ``eviction_stats_age_s`` (the ``Evicted`` event's time minus the time of
the container stats the kubelet ranked on; ``harness.verdict.kubeletview``). The kubelet computes its
memory signals from stats it refreshes at every sync (``synchronize`` asks for ``updateStats=true``,
k8s: pkg/kubelet/eviction/eviction_manager.go), so the age of the cached pod stats (cAdvisor
housekeeping, 10-15 s, k8s: pkg/kubelet/cadvisor/cadvisor_linux.go) decides *which* pod goes, not
*when* the loop acts; a run that recorded its stats times already has them in its as-run window
(``model.housekeeping``). So the age is not subtracted from the latency: it is reported per side as
noise, and a position shift that comes with a stats-age shift of the same size says so (the
kubelet's stats, not its loop, moved).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.model.eviction import EVICTION_MONITORING_PERIOD_S

LOOP_PERIODS = "loop periods"
FRACTION = "of the window"
SECONDS_AFTER = "s after the predicted time"


def is_eviction(label: str) -> bool:
    """Whether an outcome label (``evicted``, ``evicted (victim)``) is the kubelet's eviction."""
    return label.split(" ")[0] == "evicted"


def unit_for(label: str, windows: list[tuple[float, float]]) -> str:
    """The unit positions of this outcome are measured in, the same for both sides' windows.

    >>> unit_for("evicted", [(9.5, 19.0), (12.0, 21.5)])
    'loop periods'
    >>> unit_for("node_oom_killed", [(4.0, 4.6), (4.1, 4.1)])
    's after the predicted time'
    """
    if is_eviction(label):
        return LOOP_PERIODS
    if windows and all(hi > lo for lo, hi in windows):
        return FRACTION
    return SECONDS_AFTER


def position(t: float, window: tuple[float, float], unit: str) -> float:
    """Where ``t`` fell in ``window`` in ``unit`` (see the module docstring).

    >>> position(14.0, (9.5, 19.0), LOOP_PERIODS)
    0.45
    >>> position(14.25, (9.5, 19.0), FRACTION)
    0.5
    """
    lo, hi = window
    if unit == LOOP_PERIODS:
        return (t - lo) / EVICTION_MONITORING_PERIOD_S
    if unit == FRACTION:
        return (t - lo) / (hi - lo)
    return t - lo


def noise_floor(unit: str, windows: list[tuple[float, float]]) -> float:
    """The spread (interquartile range) the kubelet's loop alone gives an eviction's position.

    The crossing falls anywhere in the loop, so the wait for the next tick is uniform over the
    window the model allows for it (its phases), at most one loop period wide: its interquartile
    range is half that width. Five runs per side often show less by chance (a uniform sample of 5
    has an IQR under 0.3 of its range one time in four), so the gate measures a shift against the
    larger of this and the spread seen within each side. A window narrower than a loop (the
    kernel's memcg notification syncs at once) lowers the floor; other outcomes have none.
    ``benchmarks/bench_gate_noise.py`` prints what it does to A/A false positives.

    >>> noise_floor(LOOP_PERIODS, [(9.5, 19.0), (12.0, 21.5)])
    0.475
    >>> noise_floor(LOOP_PERIODS, [(9.5, 39.0), (12.0, 12.5)])
    0.025
    >>> noise_floor(FRACTION, [(9.5, 19.0)])
    0.0
    """
    if unit != LOOP_PERIODS or not windows:
        return 0.0
    width = min(min(hi - lo for lo, hi in windows), EVICTION_MONITORING_PERIOD_S)
    return 0.5 * width / EVICTION_MONITORING_PERIOD_S


@dataclass(frozen=True)
class StatsAge:
    """The recorded stats age at one side's evictions: median and interquartile range, seconds."""

    n: int
    median_s: float
    iqr_s: float

    def text(self) -> str:
        return f"{self.median_s:.1f}s (IQR {self.iqr_s:.1f}s, {self.n} runs)"


def stats_age(ages: list[float | None]) -> StatsAge | None:
    """Summary of the recorded ages; None when no run recorded one (older runs, other backends).

    >>> stats_age([None, 2.0, 4.0, 6.0, 8.0]).text()
    '5.0s (IQR 3.0s, 4 runs)'
    """
    xs = sorted(a for a in ages if a is not None)
    if not xs:
        return None
    return StatsAge(len(xs), _quantile(xs, 0.5), _quantile(xs, 0.75) - _quantile(xs, 0.25))


def _quantile(xs: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on sorted ``xs``."""
    pos = q * (len(xs) - 1)
    i = int(pos)
    if i + 1 >= len(xs):
        return xs[-1]
    return xs[i] + (xs[i + 1] - xs[i]) * (pos - i)


def stats_age_explains(shift_s: float, base: StatsAge | None, new: StatsAge | None) -> bool:
    """Whether the stats age moved with the event, by at least half the time shift and the same way.

    >>> stats_age_explains(6.0, StatsAge(5, 2.0, 1.0), StatsAge(5, 8.5, 1.0))
    True
    >>> stats_age_explains(6.0, StatsAge(5, 2.0, 1.0), StatsAge(5, 2.5, 1.0))
    False
    """
    if base is None or new is None or shift_s == 0:
        return False
    moved = new.median_s - base.median_s
    return moved * shift_s > 0 and abs(moved) >= abs(shift_s) / 2
