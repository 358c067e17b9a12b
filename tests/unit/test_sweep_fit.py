"""The logistic fit and its boundary interval (harness/sweep/fit.py), on synthetic trials."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.sweep.fit import Fit, fit_boundary

MI = float(1 << 20)


def synthetic(
    r50: float, k: float, n: int, seed: int, lo: float = 4 * MI, hi: float = 64 * MI
) -> tuple[list[float], list[bool]]:
    rng = np.random.default_rng(seed)
    rates = np.exp(rng.uniform(math.log(lo), math.log(hi), n))
    p = 1 / (1 + np.exp(-k * (np.log(rates) - math.log(r50))))
    return [float(r) for r in rates], [bool(x) for x in rng.random(n) < p]


def test_known_boundary_is_recovered() -> None:
    rates, a = synthetic(16 * MI, -6.0, 400, seed=3)
    f = fit_boundary(rates, a)
    assert f.method == "logistic"
    assert f.boundary == pytest.approx(16 * MI, rel=0.08)
    assert f.ci_low is not None and f.ci_high is not None
    assert f.ci_low < f.boundary < f.ci_high
    assert f.slope == pytest.approx(-6.0, rel=0.35)
    assert f.slope is not None and f.slope < 0  # A is the low-rate class
    # P(A) at the boundary is one half, the band contains the curve
    assert f.p_a(np.array([f.boundary]))[0] == pytest.approx(0.5, abs=1e-6)
    lo, hi = f.band(np.array([8 * MI, 16 * MI, 32 * MI]))
    mid = f.p_a(np.array([8 * MI, 16 * MI, 32 * MI]))
    assert np.all(lo <= mid) and np.all(mid <= hi)


def test_profile_interval_covers_the_truth_about_95_percent() -> None:
    hits = 0
    n_rep = 60
    for seed in range(n_rep):
        rates, a = synthetic(16 * MI, -5.0, 120, seed=100 + seed)
        f = fit_boundary(rates, a)
        assert f.ci_low is not None and f.ci_high is not None
        hits += f.ci_low <= 16 * MI <= f.ci_high
    assert 0.85 <= hits / n_rep <= 1.0


def test_interval_narrows_with_more_data() -> None:
    widths = []
    for n in (60, 600):
        rates, a = synthetic(16 * MI, -5.0, n, seed=11)
        f = fit_boundary(rates, a)
        assert f.ci_low and f.ci_high
        widths.append(f.ci_high / f.ci_low)
    assert widths[1] < widths[0]


def test_increasing_probability_is_fitted_too() -> None:
    rates, a = synthetic(30 * MI, +4.0, 300, seed=5)
    f = fit_boundary(rates, a)
    assert f.slope is not None and f.slope > 0
    assert f.boundary == pytest.approx(30 * MI, rel=0.12)


def test_perfect_separation_reports_the_bracket_not_a_ci() -> None:
    rates = [4 * MI, 8 * MI, 11 * MI, 15 * MI, 16 * MI, 32 * MI]
    a = [True, True, True, True, False, False]
    f = fit_boundary(rates, a)
    assert f.method == "separated"
    assert (f.bracket_low, f.bracket_high) == (pytest.approx(15 * MI), pytest.approx(16 * MI))
    assert f.boundary == pytest.approx(math.sqrt(15 * 16) * MI)
    assert f.ci_low is None and f.ci_high is None and f.slope is None
    assert "between 15 MiB/s and 16 MiB/s" in f.describe()
    # reversed direction
    g = fit_boundary(rates, [not x for x in a])
    assert g.method == "separated" and g.bracket_low == pytest.approx(15 * MI)


def test_quasi_separation_at_one_mixed_rate() -> None:
    rates = [4 * MI, 8 * MI, 16 * MI, 16 * MI, 16 * MI, 32 * MI]
    a = [True, True, True, False, False, False]
    f = fit_boundary(rates, a)
    assert f.method == "quasi-separated"
    assert f.boundary == pytest.approx(16 * MI)
    assert (f.bracket_low, f.bracket_high) == (pytest.approx(8 * MI), pytest.approx(32 * MI))


def test_weak_data_gives_unbounded_sides_not_invented_ones() -> None:
    f = fit_boundary([1 * MI, 2 * MI, 2 * MI, 3 * MI, 4 * MI], [True, False, True, True, False])
    assert f.method == "logistic"
    assert f.ci_low is None or f.ci_high is None
    assert any("do not bound" in n for n in f.notes)


def test_a_crossing_outside_the_rates_tried_is_not_a_boundary() -> None:
    """Mixed outcomes whose curve crosses 0.5 far outside the trials (the kubelet S11 sweep of stop
    23: B at 138 and 144 MiB/s, A from 48 to 207 MiB/s, fitted crossing 2.81 GiB/s) locate nothing."""
    rates = [48.1, 103, 144, 138, 157, 138, 187, 170, 207]
    a = [True, True, False, True, True, False, True, True, True]
    f = fit_boundary([r * MI for r in rates], a)
    assert f.method == "logistic" and f.boundary is None
    assert f.slope is not None  # the curve is kept for the plot
    assert any("outside the rates tried" in n for n in f.notes), f.notes
    assert f.describe().startswith("no boundary (logistic")


def test_one_class_only() -> None:
    f = fit_boundary([MI, 2 * MI], [True, True])
    assert f.method == "insufficient" and f.boundary is None
    assert "need both outcomes" in f.notes[0]
    with pytest.raises(ValueError):
        fit_boundary([MI], [True, False])


def test_round_trip_through_dict() -> None:
    rates, a = synthetic(16 * MI, -6.0, 200, seed=9)
    f = fit_boundary(rates, a)
    g = Fit.from_dict(f.to_dict())
    assert g.boundary == f.boundary and g.cov == f.cov
    assert g.p_a(np.array([10 * MI]))[0] == pytest.approx(f.p_a(np.array([10 * MI]))[0])
