"""Did anything change between BASE and NEW? Checks, tolerances and statistical tests.

Every check yields a :class:`Finding`; ``changed`` findings fail the gate (exit 1). A finding's
``noise`` says what varied within each side (the A/A noise the change is measured against).

outcome   per scenario/workload, the distribution of observed outcomes (a victim kill is its
          own outcome, ``node_oom_killed (victim)``). Fewer than ``min_repeats`` runs on a side:
          changed when the share of some outcome moved by more than ``tolerance_share`` (so with
          one run per side, when the outcome differs). Otherwise Fisher's exact test per outcome
          (this outcome vs the others, Bonferroni over the outcomes seen): changed when
          p < ``alpha`` and the share moved by more than ``tolerance_share``.
time      per scenario/workload and outcome seen on both sides, the time of the event (seconds
          since the scenario's start) judged against what the model allows on *each* side: the
          as-run predicted window the run's verdict used (``time_ok``; older runs without it:
          the window widened by ``tolerance_seconds``). A time is a change when it leaves that
          side's window (more NEW runs outside than BASE runs; Fisher's exact test from
          ``min_repeats`` runs per side). Inside the window, where the event fell (its position,
          :mod:`harness.compare.position`: for an eviction the latency from the threshold crossing
          in kubelet loop periods, 10 s; otherwise the fraction of the window, 0 = earliest,
          1 = latest; for a point window the seconds after it) is noise of the host (where the
          crossing fell in the kubelet's loop, the leak's own pace; the stats age at an eviction
          is reported with it) unless, with ``min_repeats`` runs per side, it moved
          beyond the noise seen within each side: Mann-Whitney U p < ``alpha`` *and* the shift
          of the median position larger than ``min_effect`` x the larger interquartile range of
          the two sides (for an eviction at least the half loop its phase alone spreads it,
          :func:`harness.compare.position.noise_floor`) *and* the median time moved by more
          than ``tolerance_seconds``.
          An outcome without a predicted window: the median time against ``tolerance_seconds``
          (Mann-Whitney U when repeated), as before.
verdict   per scenario/workload, the share of passing verdicts: changed when it dropped (same
          rule as outcomes); an improvement is reported, not failed.
cgroup    per scenario/cgroup/file, the value seen in the runs (sampled memory limits; observed
          cgroup files when the run records them): changed when the most common value differs.
          A sampled limit that differs while every run on both sides had its own model's value,
          one the model gives for every kubelet version on that node (event ``expected_limits``,
          :func:`harness.model.layout.sampled_limits`), is the nodes' difference: reported, not
          failed. A value the model knows to change with the version (e.g. a sidecar's
          oom_score_adj in 1.33) stays a change: that is what an upgrade gate must show.
host      host deviations compared by kind (:func:`harness.compare.kinds.deviation_kind`: the
          slow leak's "N MiB/s of the M asked" is one kind whatever N): a kind NEW has and
          BASE had not is a change; one that went away is reported; the messages are context.
coverage  a scenario/workload BASE has and NEW lacks is a change (it could hide a regression);
          one only NEW has is reported.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.compare import position as pos
from harness.compare.kinds import deviation_kind
from harness.compare.load import Group
from harness.errors import InputError

CHECKS = ("coverage", "outcome", "time", "verdict", "cgroup", "host")


@dataclass
class CompareOptions:
    tolerance_seconds: float = 1.0
    tolerance_share: float = 0.0
    alpha: float = 0.05
    min_repeats: int = 5
    min_effect: float = 1.0  # a position shift must exceed this many times the spread within a side
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
        if self.min_effect < 0:
            raise InputError("--min-effect", None, "must be >= 0")


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
    noise: str = ""  # the spread seen within each side (A/A noise), or the messages behind a kind

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
    noise = ""
    if max(len(b), len(n)) > 1:
        noise = (
            "one outcome within each side"
            if len(cb) == len(cn) == 1
            else f"within BASE: {base}; within NEW: {new}"
        )
    return Finding("outcome", sc, w, changed, summary, base=base, new=new, test=test, p_value=p, noise=noise)


def _spread(xs: list[float]) -> float:
    """Interquartile range (the noise within one side); 0 for fewer than two values."""
    if len(xs) < 2:
        return 0.0
    q1, q3 = np.percentile(xs, [25, 75])
    return float(q3 - q1)


@dataclass
class _Timed:
    """One side's times of one outcome, with each run's as-run window and position in it."""

    times: list[float]
    windows: list[tuple[float, float] | None]
    inside: list[bool | None]
    ages: list[float | None] = field(default_factory=list)  # stats age at an eviction, where recorded

    @classmethod
    def of(cls, rows: pd.DataFrame, slack_s: float) -> _Timed:
        times: list[float] = []
        windows: list[tuple[float, float] | None] = []
        inside: list[bool | None] = []
        ages: list[float | None] = []
        # columns as lists, not to_dict("records"): this runs per outcome per workload per run
        # judged (trend: 1,800 calls for 100 nights), where to_dict's per-call cost dominated
        cols = (
            "observed_t_s",
            "predicted_earliest_s",
            "predicted_latest_s",
            "predicted",
            "observed",
            "time_ok",
            "eviction_stats_age_s",
        )
        data = [rows[c].tolist() if c in rows else [None] * len(rows) for c in cols]
        for t, lo, hi, pred, observed, ok, age in zip(*data, strict=True):
            if t is None or pd.isna(t):
                continue
            win = None
            predicted = str(pred or "").split("|")
            if str(observed) not in predicted:
                lo = None  # the window is that of another outcome: it says nothing about this one
            if lo is not None and not pd.isna(lo):
                win = (float(lo), float(hi) if hi is not None and not pd.isna(hi) else float(lo))
            if ok is None or pd.isna(ok):
                # no verdict on the time (older runs): the window widened by the tolerance
                ok = None if win is None else win[0] - slack_s <= float(t) <= win[1] + slack_s
            times.append(float(t))
            windows.append(win)
            inside.append(bool(ok) if ok is not None else None)
            ages.append(None if age is None or pd.isna(age) else float(age))
        return cls(times, windows, inside, ages)

    @property
    def windowed(self) -> bool:
        return bool(self.times) and all(w is not None for w in self.windows)

    def positions(self, unit: str) -> list[float]:
        """Where each event fell in its window, in ``unit`` (:mod:`harness.compare.position`)."""
        out = []
        for t, w in zip(self.times, self.windows, strict=True):
            assert w is not None
            out.append(pos.position(t, w, unit))
        return out

    def outside(self) -> int:
        return sum(1 for x in self.inside if x is False)

    def window_text(self) -> str:
        ws = sorted({w for w in self.windows if w is not None})
        if not ws:
            return "no window"
        if len(ws) == 1:
            lo, hi = ws[0]
            return f"{lo:.2f}..{hi:.2f}s"
        return f"{min(w[0] for w in ws):.2f}..{max(w[1] for w in ws):.2f}s ({len(ws)} windows)"


def _times(b: pd.DataFrame, n: pd.DataFrame, sc: str, w: str, opts: CompareOptions) -> list[Finding]:
    """Times judged against each side's as-run window (see the module docstring)."""
    out: list[Finding] = []
    if "observed_t_s" not in b or "observed_t_s" not in n:
        return out
    for label in sorted(set(b["_label"]) & set(n["_label"])):
        tb = _Timed.of(b.loc[b["_label"] == label], opts.tolerance_seconds)
        tn = _Timed.of(n.loc[n["_label"] == label], opts.tolerance_seconds)
        if not tb.times or not tn.times:
            continue
        if tb.windowed and tn.windowed:
            out.append(_windowed_time(tb, tn, sc, w, label, opts))
        else:
            out.append(_absolute_time(tb.times, tn.times, sc, w, label, opts))
    return out


def _windowed_time(tb: _Timed, tn: _Timed, sc: str, w: str, label: str, opts: CompareOptions) -> Finding:
    nb, nn = len(tb.times), len(tn.times)
    mb, mn = _median(tb.times), _median(tn.times)
    shift = mn - mb
    ob, on = tb.outside(), tn.outside()
    repeated = nb >= opts.min_repeats and nn >= opts.min_repeats
    subject = f"{w} {label}"
    base_txt = f"{mb:.3f} in {tb.window_text()}" + (f", {ob}/{nb} outside" if ob else "")
    new_txt = f"{mn:.3f} in {tn.window_text()}" + (f", {on}/{nn} outside" if on else "")
    # 1. leaving the window the model allows on that side
    if on / nn > ob / nb:
        moved, _, test, p = share_change(
            Counter({"outside": ob, "inside": nb - ob}), Counter({"outside": on, "inside": nn - on}), opts
        )
        if nb == nn == 1:
            summary = (
                f"{sc}/{w}: {label} at t={mn:.2f}s, outside NEW's as-run window {tn.window_text()} "
                f"(BASE t={mb:.2f}s inside {tb.window_text()})"
            )
        else:
            summary = (
                f"{sc}/{w}: {label} outside the as-run window in {on}/{nn} NEW runs "
                f"(BASE {ob}/{nb}; medians t={mb:.2f}s -> {mn:.2f}s)"
            )
            if p is not None:
                summary += f", p={p:.3g}"
        noise = f"outside the window: BASE {ob}/{nb}, NEW {on}/{nn}"
        test = "as-run window" + (f", {test}" if test != "exact" else "")
        if moved:
            return Finding("time", sc, subject, True, summary, base_txt, new_txt, test, p, noise=noise)
    # 2. the position inside the window, against the noise within each side
    windows = [w_ for w_ in (*tb.windows, *tn.windows) if w_ is not None]
    unit = pos.unit_for(label, windows)
    floor = pos.noise_floor(unit, windows)
    pb, pn = tb.positions(unit), tn.positions(unit)
    qb, qn = _median(pb), _median(pn)
    sb, sn = _spread(pb), _spread(pn)
    dpos = qn - qb
    if unit == pos.LOOP_PERIODS:
        unit = f"loop periods of {pos.EVICTION_MONITORING_PERIOD_S:g} s from the crossing"
    noise = f"spread (IQR) of the position: BASE {sb:.2f}, NEW {sn:.2f} ({unit})"
    if floor:
        noise += f"; the loop's phase alone: {floor:.2f}"
    age_b, age_n = pos.stats_age(tb.ages), pos.stats_age(tn.ages)
    if age_b or age_n:
        noise += (
            f"; stats age at the eviction: BASE {age_b.text() if age_b else 'not recorded'}, "
            f"NEW {age_n.text() if age_n else 'not recorded'}"
        )
    if ob or on:
        noise = f"outside the window: BASE {ob}/{nb}, NEW {on}/{nn}; {noise}"
    pos_txt = f"position {qb:.2f} -> {qn:.2f} {unit}"
    out_txt = f" (outside it: BASE {ob}/{nb}, NEW {on}/{nn} runs)" if ob or on else ""
    p = None
    if repeated:
        p = mannwhitney_p(pb, pn)
        spread = max(sb, sn, floor)
        effect = abs(dpos) / spread if spread > 0 else (float("inf") if abs(dpos) > 1e-9 else 0.0)
        beyond = abs(shift) > opts.tolerance_seconds + 1e-12
        changed = p < opts.alpha and effect > opts.min_effect and beyond
        test = (
            f"as-run window; Mann-Whitney U on the position, effect > {opts.min_effect:g} x spread, "
            f"tolerance {opts.tolerance_seconds:g}s"
        )
        eff_txt = "inf" if effect == float("inf") else f"{effect:.1f}"
        summary = (
            f"{sc}/{w}: {label} {'moved inside' if changed else 'inside'} the as-run window{out_txt}: {pos_txt} "
            f"(t={mb:.2f}s -> {mn:.2f}s, {shift:+.2f}s, medians of {nb} / {nn} runs, "
            f"shift {eff_txt} x the spread within a side, p={p:.3g})"
        )
        note = "" if changed or abs(shift) <= opts.tolerance_seconds else "moved within the noise"
        if changed and pos.stats_age_explains(shift, age_b, age_n):
            assert age_b is not None and age_n is not None
            summary += (
                f"; the stats age at the eviction moved too ({age_b.median_s:.1f}s -> {age_n.median_s:.1f}s): "
                "the kubelet's stats, not its loop"
            )
        return Finding("time", sc, subject, changed, summary, base_txt, new_txt, test, p, note, noise)
    where = f"against the as-run windows{out_txt}" if out_txt else "inside the as-run window on both sides"
    summary = (
        f"{sc}/{w}: {label} at t={mb:.2f}s -> {mn:.2f}s ({shift:+.2f}s), {where} "
        f"({tb.window_text()} / {tn.window_text()}; {pos_txt})"
    )
    note = "" if abs(shift) <= opts.tolerance_seconds else "moved inside the window"
    test = f"as-run window (position compared from {opts.min_repeats} runs per side)"
    return Finding("time", sc, subject, False, summary, base_txt, new_txt, test, None, note, noise)


def _absolute_time(
    tb: list[float], tn: list[float], sc: str, w: str, label: str, opts: CompareOptions
) -> Finding:
    """No predicted window on a side (the model predicts no time for this outcome): the median
    time against ``tolerance_seconds``, with Mann-Whitney U when repeated."""
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
    noise = f"spread (IQR) of the time: BASE {_spread(tb):.2f}s, NEW {_spread(tn):.2f}s"
    return Finding(
        "time", sc, f"{w} {label}", changed, summary, f"{mb:.3f}", f"{mn:.3f}", test, p, noise=noise
    )


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
    host_b, host_n = _host_only(b), _host_only(n)
    for key in sorted(set(gb) & set(gn)):
        sc, cg, f = (str(x) for x in key)
        vb, vn = gb[key], gn[key]
        mb, mn = _mode(vb), _mode(vn)
        test, note = "most common value", ""
        if mb == mn:
            changed, summary = False, f"{sc}/{cg}: {f} {_fmt_value(mb)} in both"
            if set(vb) != set(vn):
                note = f"values vary: BASE {sorted(set(vb))}, NEW {sorted(set(vn))}"
        elif key in host_b and key in host_n:
            changed = False
            summary = (
                f"{sc}/{cg}: {f} {_fmt_value(mb)} -> {_fmt_value(mn)}, each run its own node's model value"
            )
            test = "each side's model"
            note = (
                "the nodes differ (memory, NUMA free memory), not the kubelet: every run had its "
                "model's value, which no kubelet version changes, or the harness's own ceiling"
            )
        else:
            changed, summary = True, f"{sc}/{cg}: {f} {_fmt_value(mb)} -> {_fmt_value(mn)}"
        out.append(
            Finding("cgroup", sc, f"{cg} {f}", changed, summary, base=mb, new=mn, test=test, note=note)
        )


def _host_only(df: pd.DataFrame) -> set[tuple[Any, ...]]:
    """The (scenario, cgroup, file) whose value was, in every run of the side, the run's own model
    value and one no kubelet version changes (``host_only``, sampled limits of runs that recorded
    ``expected_limits``)."""
    if "host_only" not in df:
        return set()
    # a row without the flag (an observed file, an older run) is NaN: not True
    return {
        key
        for key, flags in df.groupby(["scenario", "cgroup", "file"])["host_only"]
        if len(flags) and flags.eq(True).all()
    }


def _fmt_value(v: str) -> str:
    try:
        n = int(v)
    except ValueError:
        return v
    return f"{v} ({n >> 20}Mi)" if 1 << 20 <= n < 1 << 50 and n % (1 << 20) == 0 else v


def _kinds(g: Group) -> dict[str, dict[str, set[str]]]:
    """kind -> run id -> the messages of that kind in the run."""
    out: dict[str, dict[str, set[str]]] = {}
    for run, msgs in g.deviations.items():
        for m in msgs:
            out.setdefault(deviation_kind(m), {}).setdefault(run, set()).add(m)
    return out


def _examples(by_run: dict[str, set[str]], limit: int = 2) -> str:
    msgs = sorted({m for ms in by_run.values() for m in ms})
    more = f" (+{len(msgs) - limit} more)" if len(msgs) > limit else ""
    return "; ".join(msgs[:limit]) + more


def _host(base: Group, new: Group, out: list[Finding]) -> None:
    """Host deviations by kind (:mod:`harness.compare.kinds`); the messages are context."""
    kb, kn = _kinds(base), _kinds(new)
    nb, nn = len(base.runs), len(new.runs)
    for kind in sorted(set(kn) - set(kb)):
        k = len(kn[kind])
        out.append(
            Finding(
                "host",
                "",
                kind,
                True,
                f"new host deviation in {k}/{nn} NEW runs: {kind}",
                base="absent",
                new=f"{k}/{nn} runs",
                test="kind present",
                note=f"e.g. {_examples(kn[kind])}",
            )
        )
    for kind in sorted(set(kb) - set(kn)):
        out.append(
            Finding(
                "host",
                "",
                kind,
                False,
                f"host deviation gone in NEW: {kind}",
                base=f"{len(kb[kind])}/{nb} runs",
                new="absent",
                test="kind present",
                note="resolved",
            )
        )
    for kind in sorted(set(kb) & set(kn)):
        out.append(
            Finding(
                "host",
                "",
                kind,
                False,
                f"host deviation in both: {kind}",
                f"{len(kb[kind])}/{nb} runs",
                f"{len(kn[kind])}/{nn} runs",
                "kind present",
                noise=f"BASE: {_examples(kb[kind])} | NEW: {_examples(kn[kind])}",
            )
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
