"""The adaptive design (harness/sweep/design.py): grid, bisection, repeats, stop rules.

The tests drive ``next_step`` with simulated trials: a "true" boundary decides each outcome
(deterministically, or with a band of rates where outcomes are random).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from harness.sweep.design import OTHER, A, B, Design, Trial, next_step

MI = float(1 << 20)


def run(design: Design, outcome: Callable[[float, int], str]) -> tuple[list[Trial], list[str], str]:
    trials: list[Trial] = []
    phases: list[str] = []
    for _ in range(1000):
        step = next_step(design, trials)
        if step.rate is None:
            return trials, phases, step.reason
        n = sum(1 for t in trials if t.rate == step.rate)
        trials.append(Trial(step.rate, outcome(step.rate, n)))
        phases.append(step.phase)
    raise AssertionError("the design never stopped")


def threshold(boundary: float) -> Callable[[float, int], str]:
    return lambda r, n: A if r < boundary else B


def test_grid_is_log_spaced_with_exact_ends() -> None:
    d = Design(4 * MI, 64 * MI, grid=5)
    g = d.grid_rates()
    assert g[0] == 4 * MI and g[-1] == 64 * MI
    assert [round(r / MI, 6) for r in g] == [4, 8, 16, 32, 64]


def test_deterministic_boundary_is_bracketed_to_the_resolution() -> None:
    d = Design(4 * MI, 64 * MI, grid=5, repeats=3, resolution=0.05)
    trials, phases, reason = run(d, threshold(21 * MI))
    assert phases[:5] == ["grid"] * 5
    a_max = max(t.rate for t in trials if t.cls == A)
    b_min = min(t.rate for t in trials if t.cls == B)
    assert a_max < 21 * MI <= b_min
    assert b_min / a_max <= 1.05
    # the bracket edges were repeated, nothing else was
    counts = {r: sum(1 for t in trials if t.rate == r) for r in {t.rate for t in trials}}
    assert counts[a_max] == 3 and counts[b_min] == 3
    assert all(c == 1 for r, c in counts.items() if r not in (a_max, b_min))
    assert "narrower than 5%" in reason
    # bisection needs about log2(ln 2 / ln 1.05) = 4 steps from a factor-2 grid bracket
    assert phases.count("bisect") == 4
    assert len(trials) == 5 + 4 + 4


def test_direction_is_learned_from_the_data() -> None:
    """B at low rates and A at high ones works the same way."""
    d = Design(1 * MI, 100 * MI, grid=3, repeats=1, resolution=0.1)
    trials, _, _ = run(d, lambda r, n: B if r < 7 * MI else A)
    b_max = max(t.rate for t in trials if t.cls == B)
    a_min = min(t.rate for t in trials if t.cls == A)
    assert b_max < 7 * MI <= a_min and a_min / b_max <= 1.1


def test_no_flip_in_range_stops_after_the_grid() -> None:
    d = Design(4 * MI, 64 * MI, grid=4)
    trials, _, reason = run(d, lambda r, n: B)
    assert len(trials) == 4
    assert reason == "no boundary in the range: only B outcomes"


def test_max_trials_is_a_hard_stop() -> None:
    d = Design(4 * MI, 64 * MI, grid=5, repeats=3, max_trials=7)
    trials, _, reason = run(d, threshold(21 * MI))
    assert len(trials) == 7
    assert "maximum of 7 trials" in reason


def test_mixed_rates_are_repeated_and_edges_resolved() -> None:
    """Outcomes are random within 14..22 MiB/s (P(A) falls linearly in log rate there)."""
    rng = random.Random(7)
    lo, hi = 14 * MI, 22 * MI

    def outcome(r: float, n: int) -> str:
        if r <= lo:
            return A
        if r >= hi:
            return B
        p = (math.log(hi) - math.log(r)) / (math.log(hi) - math.log(lo))
        return A if rng.random() < p else B

    d = Design(4 * MI, 64 * MI, grid=5, repeats=4, resolution=0.1, max_trials=200)
    trials, phases, reason = run(d, outcome)
    assert "repeat" in phases
    by_rate: dict[float, list[str]] = {}
    for t in trials:
        by_rate.setdefault(t.rate, []).append(t.cls)
    mixed = [r for r, cs in by_rate.items() if A in cs and B in cs]
    assert mixed, "the design should have found rates with both outcomes"
    for r in mixed:
        assert len(by_rate[r]) == 4, "every mixed rate is repeated up to --repeats"
        assert lo < r < hi
    assert len(by_rate[max(by_rate)]) <= 4
    assert reason.startswith("mixed zone repeated") or reason.startswith("bracket narrower")


def test_other_outcomes_are_retried_then_excluded() -> None:
    """A rate disturbed once (unknown) is run again; a persistent 'other' is given up on."""
    seen: dict[float, int] = {}

    def outcome(r: float, n: int) -> str:
        seen[r] = seen.get(r, 0) + 1
        if r == 4 * MI and seen[r] == 1:
            return OTHER  # disturbed once
        if r == 64 * MI:
            return OTHER  # always
        return A if r < 21 * MI else B

    d = Design(4 * MI, 64 * MI, grid=5, repeats=2, resolution=0.1)
    trials, phases, _ = run(d, outcome)
    assert "retry" in phases
    assert [t.cls for t in trials if t.rate == 4 * MI] == [OTHER, A]
    assert [t.cls for t in trials if t.rate == 64 * MI] == [OTHER, OTHER]  # capped at repeats
    a_max = max(t.rate for t in trials if t.cls == A)
    b_min = min(t.rate for t in trials if t.cls == B)
    assert a_max < 21 * MI <= b_min


def test_same_trials_same_step() -> None:
    """Resumability rests on this: the next step is a function of the completed trials."""
    d = Design(4 * MI, 64 * MI, grid=5, repeats=3)
    trials, _, _ = run(d, threshold(21 * MI))
    for k in range(len(trials)):
        s1 = next_step(d, trials[:k])
        s2 = next_step(d, [Trial(t.rate, t.cls) for t in trials[:k]])
        assert (s1.rate, s1.phase) == (s2.rate, s2.phase)
        assert s1.rate == trials[k].rate  # exactly the rate that was run next


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"low": 0.0, "high": 1.0}, "0 < low < high"),
        ({"low": 2.0, "high": 1.0}, "0 < low < high"),
        ({"grid": 1}, "at least 2"),
        ({"repeats": 0}, "at least 1"),
        ({"max_trials": 0}, "at least 1"),
        ({"resolution": 0.0}, "positive"),
    ],
)
def test_design_validation(kw: dict[str, float], msg: str) -> None:
    args: dict[str, float] = {"low": 1.0, "high": 10.0, **kw}
    with pytest.raises(ValueError, match=msg):
        Design(**args)  # type: ignore[arg-type]


def test_a_disturbed_trial_is_retried_even_without_repeats() -> None:
    d = Design(4 * MI, 64 * MI, grid=5, repeats=1, resolution=0.1)
    mid = d.grid_rates()[2]  # ~16 MiB/s
    first = {"done": False}

    def outcome(r: float, n: int) -> str:
        if r == mid and not first["done"]:
            first["done"] = True
            return OTHER
        return A if r < 21 * MI else B

    trials, phases, _ = run(d, outcome)
    assert [t.cls for t in trials if t.rate == mid] == [OTHER, A]
    assert phases.count("retry") == 1
    assert max(sum(1 for t in trials if t.rate == r) for r in {t.rate for t in trials}) == 2
