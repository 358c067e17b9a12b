"""Logistic fit of P(A) against log(rate), and the boundary rate where P(A) = 0.5.

Model: ``logit P(A) = k · (ln rate − ln r50)``; ``r50`` is the boundary. Fitted by maximum
likelihood (scipy.optimize). The boundary's confidence interval is a **profile likelihood**
interval: the rates ``r`` whose deviance ``2·(ℓ_max − max_k ℓ(k, r))`` is at most the χ²₁
quantile (3.84 for 95 %). A side on which the deviance never reaches it within a factor
``SEARCH_SPAN`` of the tested rates is reported as unbounded (``None``), not invented.

Perfect separation (every A at a lower rate than every B, or the reverse) has no maximum
likelihood estimate: the slope runs to infinity. Then no curve and no CI are reported, only
the **bracketing interval** ``(highest rate of the low class, lowest rate of the high
class)`` and its geometric midpoint. Quasi-separation (the classes touch at one rate that has
both outcomes) is reported the same way, the bracket being the tested rates around that rate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, stats

from harness.sweep.rates import format_rate

SEARCH_SPAN = 10.0  # profile search extends a factor 10 beyond the tested rates


@dataclass
class Fit:
    n: int  # trials used (A or B)
    n_a: int
    n_b: int
    method: str  # logistic, separated, quasi-separated, insufficient
    boundary: float | None  # rate (B/s) where P(A) = 0.5 (separated: midpoint of the bracket)
    ci_low: float | None = None  # profile-likelihood interval (logistic), None = unbounded/none
    ci_high: float | None = None
    bracket_low: float | None = None  # separated: tested rates that bracket the boundary
    bracket_high: float | None = None
    slope: float | None = None  # k (per unit of ln rate); negative when A is the low-rate class
    intercept: float | None = None  # b0 = -k ln r50
    cov: list[list[float]] | None = None  # covariance of (b0, k) from the observed information
    width_10_90: float | None = None  # ratio of the rates where P(A) is 0.1 and 0.9
    level: float = 0.95
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Fit:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def p_a(self, rates: np.ndarray) -> np.ndarray:
        """Fitted P(A) at these rates (logistic fits only)."""
        assert self.slope is not None and self.intercept is not None
        return np.asarray(_expit(self.intercept + self.slope * np.log(rates)))

    def band(self, rates: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise Wald band of P(A) (on the linear predictor, delta method)."""
        assert self.slope is not None and self.intercept is not None and self.cov is not None
        x = np.log(rates)
        eta = self.intercept + self.slope * x
        c = np.asarray(self.cov)
        var = c[0, 0] + 2 * x * c[0, 1] + x * x * c[1, 1]
        se = np.sqrt(np.maximum(var, 0.0))
        return _expit(eta - z * se), _expit(eta + z * se)

    def describe(self) -> str:

        if self.boundary is None:
            return f"no boundary ({self.method}: " + "; ".join(self.notes) + ")"
        if self.method == "logistic":
            lo = format_rate(self.ci_low) if self.ci_low else "unbounded"
            hi = format_rate(self.ci_high) if self.ci_high else "unbounded"
            return f"{format_rate(self.boundary)} ({self.level:.0%} CI {lo} .. {hi}, logistic fit, {self.n} trials)"
        assert self.bracket_low is not None and self.bracket_high is not None
        return (
            f"{format_rate(self.boundary)} (between {format_rate(self.bracket_low)} and "
            f"{format_rate(self.bracket_high)}: {self.method}, no CI, {self.n} trials)"
        )


def _expit(z: Any) -> Any:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=float)))


def _nll(b0: float, k: float, x: np.ndarray, y: np.ndarray) -> float:
    eta = b0 + k * x
    # -sum(y*eta - log(1+e^eta)), stable
    return float(np.sum(np.logaddexp(0.0, eta) - y * eta))


def _grad(beta: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = _expit(beta[0] + beta[1] * x)
    r = p - y
    return np.array([np.sum(r), np.sum(r * x)])


def fit_boundary(rates: list[float], is_a: list[bool], level: float = 0.95) -> Fit:
    """Fit P(A) vs ln(rate) for trials with outcome A (True) or B (False)."""
    if len(rates) != len(is_a):
        raise ValueError("rates and outcomes differ in length")
    x = np.log(np.asarray(rates, dtype=float))
    y = np.asarray(is_a, dtype=float)
    n_a, n_b = int(y.sum()), int(len(y) - y.sum())
    fit = Fit(n=len(y), n_a=n_a, n_b=n_b, method="insufficient", boundary=None, level=level)
    if n_a == 0 or n_b == 0:
        fit.notes.append(f"need both outcomes, have {n_a} A and {n_b} B")
        return fit
    xa, xb = x[y == 1], x[y == 0]
    a_low = xa.mean() < xb.mean()
    lo_x, hi_x = (xa, xb) if a_low else (xb, xa)
    if lo_x.max() < hi_x.min():
        fit.method = "separated"
        fit.bracket_low, fit.bracket_high = math.exp(lo_x.max()), math.exp(hi_x.min())
        fit.boundary = math.sqrt(fit.bracket_low * fit.bracket_high)
        fit.notes.append("perfect separation: no maximum-likelihood curve, the bracket is the interval")
        return fit
    if lo_x.max() == hi_x.min():
        touch = lo_x.max()
        tested = np.unique(x)
        below, above = tested[tested < touch], tested[tested > touch]
        fit.method = "quasi-separated"
        fit.boundary = math.exp(touch)
        fit.bracket_low = math.exp(below.max()) if below.size else math.exp(touch)
        fit.bracket_high = math.exp(above.min()) if above.size else math.exp(touch)
        fit.notes.append(
            "the outcomes overlap at a single rate only: the curve is steeper than the data resolve; "
            "the tested rates around it are the interval"
        )
        return fit

    # maximum likelihood (convex): start from a straight line through the midpoint
    x0 = 0.5 * (xa.mean() + xb.mean())
    k0 = (1.0 if not a_low else -1.0) * 4.0 / max(np.ptp(x), 1e-6)
    res = optimize.minimize(
        lambda b: _nll(b[0], b[1], x, y),
        np.array([-k0 * x0, k0]),
        jac=lambda b: _grad(b, x, y),
        method="BFGS",
        options={"gtol": 1e-9, "maxiter": 1000},
    )
    b0, k = float(res.x[0]), float(res.x[1])
    ll_max = -_nll(b0, k, x, y)
    if abs(k) < 1e-9:
        fit.method = "logistic"
        fit.intercept, fit.slope = b0, k
        fit.notes.append("fitted slope is zero: the outcome does not depend on the rate in this range")
        return fit
    m_hat = -b0 / k
    fit.method = "logistic"
    fit.intercept, fit.slope = b0, k
    if not float(x.min()) <= m_hat <= float(x.max()):
        # mixed outcomes whose fitted curve crosses 0.5 only outside the rates tried: an
        # extrapolation (a kubelet sweep here put it at 2.81 GiB/s from trials of 138-207 MiB/s),
        # not a measured boundary
        fit.notes.append(
            f"the fitted curve crosses P(A) = 0.5 at {format_rate(math.exp(m_hat))}, outside the rates "
            f"tried ({format_rate(math.exp(float(x.min())))} .. {format_rate(math.exp(float(x.max())))}): "
            "the outcomes are mixed there, no boundary located"
        )
        return fit
    fit.boundary = math.exp(m_hat)
    p = _expit(b0 + k * x)
    w = p * (1 - p)
    info = np.array([[w.sum(), (w * x).sum()], [(w * x).sum(), (w * x * x).sum()]])
    try:
        fit.cov = np.linalg.inv(info).tolist()
    except np.linalg.LinAlgError:
        fit.notes.append("singular information matrix: no band")
    fit.width_10_90 = math.exp(2 * math.log(9) / abs(k))

    crit = float(stats.chi2.ppf(level, 1))

    def profile_dev(m: float) -> float:
        # max over k of the likelihood with the boundary fixed at m (convex in k)
        r = optimize.minimize_scalar(lambda kk: _nll(-kk * m, kk, x, y), bracket=(k - abs(k), k), tol=1e-10)
        return 2.0 * (ll_max + float(r.fun)) - crit

    span = math.log(SEARCH_SPAN)
    lo_lim, hi_lim = float(x.min()) - span, float(x.max()) + span
    if profile_dev(lo_lim) > 0:
        fit.ci_low = math.exp(optimize.brentq(profile_dev, lo_lim, m_hat, xtol=1e-9))
    else:
        fit.notes.append("the data do not bound the boundary from below")
    if profile_dev(hi_lim) > 0:
        fit.ci_high = math.exp(optimize.brentq(profile_dev, m_hat, hi_lim, xtol=1e-9))
    else:
        fit.notes.append("the data do not bound the boundary from above")
    return fit
