"""Did anything change between BASE and NEW? Checks, tolerances and statistical tests.

Every check yields a :class:`Finding`; ``changed`` findings fail the gate (exit 1).

outcome   per scenario/workload, the distribution of observed outcomes (a victim kill is its
          own outcome, ``node_oom_killed (victim)``). Fewer than ``min_repeats`` runs on a side:
          changed when the share of some outcome moved by more than ``tolerance_share`` (so with
          one run per side, when the outcome differs). Otherwise Fisher's exact test per outcome
          (this outcome vs the others, Bonferroni over the outcomes seen): changed when
          p < ``alpha`` and the share moved by more than ``tolerance_share``.
time      per scenario/workload and outcome seen on both sides, the time of the event (seconds
          since the scenario's start). Fewer than ``min_repeats`` times on a side: changed when
          the medians differ by more than ``tolerance_seconds``. Otherwise Mann-Whitney U
          (two-sided): changed when p < ``alpha`` *and* the medians differ by more than
          ``tolerance_seconds`` (a significant 20 ms shift is not a behaviour change).
verdict   per scenario/workload, the share of passing verdicts: changed when it dropped (same
          rule as outcomes); an improvement is reported, not failed.
cgroup    per scenario/cgroup/file, the value seen in the runs (sampled memory limits; observed
          cgroup files when the run records them): changed when the most common value differs.
host      host deviations (e.g. an oom_score_adj the host cannot write): one that NEW has and
          BASE had not is a change; one that went away is reported.
coverage  a scenario/workload BASE has and NEW lacks is a change (it could hide a regression);
          one only NEW has is reported.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from harness.compare.load import Group
from harness.errors import InputError

CHECKS = ("coverage", "outcome", "time", "verdict", "cgroup", "host")


@dataclass
class CompareOptions:
    tolerance_seconds: float = 1.0
    tolerance_share: float = 0.0
    alpha: float = 0.05
    min_repeats: int = 5
    cgroups: bool = True

    def validate(self) -> None:

        if self.tolerance_seconds < 0:
            raise InputError("--tolerance-seconds", None, "must be >= 0")
        if not 0 <= self.tolerance_share < 1:
            raise InputError("--tolerance-share", None, "must be in [0, 1)")
        if not 0 < self.alpha < 1:
            raise InputError("--alpha", None, "must be in (0, 1)")
        if self.min_repeats < 2:
            raise InputError("--min-repeats", None, "must be at least 2")


@dataclass
class Finding:
    check: str
    scenario: str
    subject: str  # workload, cgroup file, deviation text
    changed: bool
    summary: str
    base: str = ""
    new: str = ""
    test: str = ""
    p_value: float | None = None
    note: str = ""  # e.g. "improved", "only in NEW"

    @property
    def name(self) -> str:
        return f"{self.scenario}/{self.subject}" if self.scenario else self.subject

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Comparison:
    base: Group
    new: Group
    options: CompareOptions
    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def changes(self) -> list[Finding]:
        return [f for f in self.findings if f.changed]

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "options": asdict(self.options),
            "base": {"selector": self.base.label, "runs": self.base.ids},
            "new": {"selector": self.new.label, "runs": self.new.ids},
            "findings": [f.to_dict() for f in self.findings],
            "warnings": self.warnings,
        }


# ---------------------------------------------------------------------------------------------
# statistics


def fisher_p(a_yes: int, a_n: int, b_yes: int, b_n: int) -> float:
    """Two-sided Fisher exact test p-value for the shares a_yes/a_n vs b_yes/b_n.

    >>> round(fisher_p(5, 5, 0, 5), 4)
    0.0079
    """
    # lazy: scipy loads only when a fit or test is computed
    from scipy.stats import fisher_exact

    res = fisher_exact([[a_yes, a_n - a_yes], [b_yes, b_n - b_yes]], alternative="two-sided")
    return float(res[1])


def mannwhitney_p(a: list[float], b: list[float]) -> float:
    # lazy: scipy loads only when a fit or test is computed
    from scipy.stats import mannwhitneyu

    if len(set(a)) == 1 and set(a) == set(b):
        return 1.0
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _dist(c: Counter[str], n: int) -> str:
    if n == 1:
        return next(iter(c))
    return ", ".join(f"{o} {k}/{n}" for o, k in c.most_common())


def share_change(
    base: Counter[str], new: Counter[str], opts: CompareOptions
) -> tuple[bool, float, str, float | None]:
    """(changed, largest share move, test used, p-value) for two outcome distributions."""
    nb, nn = sum(base.values()), sum(new.values())
    keys = sorted(set(base) | set(new))
    moves = {k: abs(base[k] / nb - new[k] / nn) for k in keys}
    worst = max(moves.values(), default=0.0)
    beyond = worst > opts.tolerance_share + 1e-12
    if nb < opts.min_repeats or nn < opts.min_repeats:
        test = "exact" if nb == nn == 1 else f"share tolerance {opts.tolerance_share:g}"
        return beyond, worst, test, None
    ps = [fisher_p(base[k], nb, new[k], nn) for k in keys]
    p = min(1.0, min(ps) * len(keys)) if ps else 1.0
    return beyond and p < opts.alpha, worst, f"Fisher exact (Bonferroni x{len(keys)})", p


# ---------------------------------------------------------------------------------------------
# checks


def _outcome_labels(df: pd.DataFrame) -> pd.Series:
    victim = df["victim_observed"] if "victim_observed" in df else pd.Series(False, index=df.index)
    victim = victim.fillna(False).astype(bool)
    obs = df["observed"].astype("string").fillna("unknown")
    return obs.where(~victim, obs + " (victim)")


def _by_workload(g: Group) -> dict[tuple[str, str], pd.DataFrame]:
    df = g.verdicts
    if df.empty:
        return {}
    df = df.assign(_label=_outcome_labels(df))
    return {(str(k[0]), str(k[1])): sub for k, sub in df.groupby(["scenario", "workload"], sort=True)}


def _coverage(b: dict[Any, pd.DataFrame], n: dict[Any, pd.DataFrame], out: list[Finding]) -> None:
    for key in sorted(set(b) | set(n)):
        sc, w = key
        if key in b and key not in n:
            out.append(
                Finding(
                    "coverage",
                    sc,
                    w,
                    True,
                    f"{sc}/{w}: in BASE ({len(b[key])} runs), missing in NEW",
                    base=f"{len(b[key])} runs",
                    new="absent",
                    test="presence",
                )
            )
        elif key in n and key not in b:
            out.append(
                Finding(
                    "coverage",
                    sc,
                    w,
                    False,
                    f"{sc}/{w}: only in NEW ({len(n[key])} runs)",
                    base="absent",
                    new=f"{len(n[key])} runs",
                    test="presence",
                    note="only in NEW",
                )
            )


def _outcomes(b: pd.DataFrame, n: pd.DataFrame, sc: str, w: str, opts: CompareOptions) -> Finding:
    cb, cn = Counter(b["_label"].tolist()), Counter(n["_label"].tolist())
    changed, move, test, p = share_change(cb, cn, opts)
    base, new = _dist(cb, len(b)), _dist(cn, len(n))
    if cb == cn or (set(cb) == set(cn) and len(cb) == 1):
        summary = f"{sc}/{w}: {base} in both"
    else:
        summary = f"{sc}/{w}: outcome {base} -> {new}"
        if len(b) > 1 or len(n) > 1:
            summary += f" (share moved {move:.0%}"
            summary += f", p={p:.3g})" if p is not None else ")"
    return Finding("outcome", sc, w, changed, summary, base=base, new=new, test=test, p_value=p)


def _times(b: pd.DataFrame, n: pd.DataFrame, sc: str, w: str, opts: CompareOptions) -> list[Finding]:
    out: list[Finding] = []
    if "observed_t_s" not in b or "observed_t_s" not in n:
        return out
    for label in sorted(set(b["_label"]) & set(n["_label"])):
        tb = [float(x) for x in b.loc[b["_label"] == label, "observed_t_s"].dropna()]
        tn = [float(x) for x in n.loc[n["_label"] == label, "observed_t_s"].dropna()]
        if not tb or not tn:
            continue
        mb, mn = _median(tb), _median(tn)
        shift = mn - mb
        beyond = abs(shift) > opts.tolerance_seconds + 1e-12
        p: float | None = None
        if len(tb) >= opts.min_repeats and len(tn) >= opts.min_repeats:
            p = mannwhitney_p(tb, tn)
            changed = beyond and p < opts.alpha
            test = f"Mann-Whitney U, tolerance {opts.tolerance_seconds:g}s"
        else:
            changed = beyond
            test = f"tolerance {opts.tolerance_seconds:g}s"
        what = f", medians of {len(tb)} / {len(tn)} runs" if max(len(tb), len(tn)) > 1 else ""
        summary = f"{sc}/{w}: {label} at t={mb:.2f}s -> {mn:.2f}s ({shift:+.2f}s{what}"
        summary += f", p={p:.3g})" if p is not None else ")"
        out.append(
            Finding(
                "time",
                sc,
                f"{w} {label}",
                changed,
                summary,
                base=f"{mb:.3f}",
                new=f"{mn:.3f}",
                test=test,
                p_value=p,
            )
        )
    return out


def _verdicts(b: pd.DataFrame, n: pd.DataFrame, sc: str, w: str, opts: CompareOptions) -> Finding | None:
    if "passed" not in b or "passed" not in n:
        return None
    pb = [bool(x) for x in b["passed"].dropna()]
    pn = [bool(x) for x in n["passed"].dropna()]
    if not pb or not pn:
        return None
    rb, rn = sum(pb) / len(pb), sum(pn) / len(pn)
    cb = Counter("pass" if x else "fail" for x in pb)
    cn = Counter("pass" if x else "fail" for x in pn)
    moved, _, test, p = share_change(cb, cn, opts)
    worse = rn < rb
    base, new = f"{sum(pb)}/{len(pb)} pass", f"{sum(pn)}/{len(pn)} pass"
    if rb == rn:
        return Finding("verdict", sc, w, False, f"{sc}/{w}: verdicts {base} -> {new}", base, new, test, p)
    note = "" if worse else "improved"
    word = "regressed" if worse else "improved"
    return Finding(
        "verdict",
        sc,
        w,
        moved and worse,
        f"{sc}/{w}: verdict {word}: {base} -> {new}",
        base,
        new,
        test,
        p,
        note,
    )


def _mode(values: list[str]) -> str:
    return Counter(values).most_common(1)[0][0]


def _cgroups(base: Group, new: Group, out: list[Finding]) -> None:
    b, n = base.cgroups, new.cgroups
    if b.empty or n.empty:
        return
    gb = {k: list(v) for k, v in b.groupby(["scenario", "cgroup", "file"])["value"]}
    gn = {k: list(v) for k, v in n.groupby(["scenario", "cgroup", "file"])["value"]}
    for key in sorted(set(gb) & set(gn)):
        sc, cg, f = (str(x) for x in key)
        vb, vn = gb[key], gn[key]
        mb, mn = _mode(vb), _mode(vn)
        subject = f"{cg} {f}"
        if mb != mn:
            out.append(
                Finding(
                    "cgroup",
                    sc,
                    subject,
                    True,
                    f"{sc}/{cg}: {f} {_fmt_value(mb)} -> {_fmt_value(mn)}",
                    base=mb,
                    new=mn,
                    test="most common value",
                )
            )
        else:
            note = "" if set(vb) == set(vn) else f"values vary: BASE {sorted(set(vb))}, NEW {sorted(set(vn))}"
            out.append(
                Finding(
                    "cgroup",
                    sc,
                    subject,
                    False,
                    f"{sc}/{cg}: {f} {_fmt_value(mb)} in both",
                    base=mb,
                    new=mn,
                    test="most common value",
                    note=note,
                )
            )


def _fmt_value(v: str) -> str:
    try:
        n = int(v)
    except ValueError:
        return v
    return f"{v} ({n >> 20}Mi)" if 1 << 20 <= n < 1 << 50 and n % (1 << 20) == 0 else v


def _host(base: Group, new: Group, out: list[Finding]) -> None:
    db = set().union(*base.deviations.values()) if base.deviations else set()
    dn = set().union(*new.deviations.values()) if new.deviations else set()
    for d in sorted(dn - db):
        k = sum(1 for s in new.deviations.values() if d in s)
        out.append(
            Finding(
                "host",
                "",
                d,
                True,
                f"new host deviation in {k}/{len(new.runs)} NEW runs: {d}",
                base="absent",
                new=f"{k} runs",
                test="presence",
            )
        )
    for d in sorted(db - dn):
        out.append(
            Finding(
                "host",
                "",
                d,
                False,
                f"host deviation gone in NEW: {d}",
                base="present",
                new="absent",
                test="presence",
                note="resolved",
            )
        )
    for d in sorted(db & dn):
        out.append(
            Finding("host", "", d, False, f"host deviation in both: {d}", "present", "present", "presence")
        )


def compare_groups(base: Group, new: Group, options: CompareOptions | None = None) -> Comparison:
    """Compare two loaded groups of runs (see the module docstring for the rules)."""
    opts = options or CompareOptions()
    opts.validate()
    res = Comparison(base=base, new=new, options=opts, warnings=[*base.warnings, *new.warnings])
    shared = set(base.ids) & set(new.ids)
    if shared:
        res.warnings.append(f"{len(shared)} run(s) are in both BASE and NEW: {', '.join(sorted(shared))}")
    for side, g in (("BASE", base), ("NEW", new)):
        bad = [r.id for r in g.runs if r.status != "complete"]
        if bad:
            res.warnings.append(f"{side} has runs that did not complete: {', '.join(bad)}")
    suites_b = {r.labels.get("suite") for r in base.runs}
    suites_n = {r.labels.get("suite") for r in new.runs}
    if suites_b != suites_n:
        res.warnings.append(
            f"suites differ: BASE {sorted(map(str, suites_b))}, NEW {sorted(map(str, suites_n))}"
        )
    bw, nw = _by_workload(base), _by_workload(new)
    _coverage(bw, nw, res.findings)
    for key in sorted(set(bw) & set(nw)):
        sc, w = key
        b, n = bw[key], nw[key]
        res.findings.append(_outcomes(b, n, sc, w, opts))
        res.findings += _times(b, n, sc, w, opts)
        v = _verdicts(b, n, sc, w, opts)
        if v is not None:
            res.findings.append(v)
    if opts.cgroups:
        _cgroups(base, new, res.findings)
    _host(base, new, res.findings)
    order = {c: i for i, c in enumerate(CHECKS)}
    res.findings.sort(key=lambda f: (not f.changed, order.get(f.check, 99), f.scenario, f.subject))
    return res
