"""Observed vs predicted, per workload, with a sentence for every mismatch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.classify import Outcome
from harness.model.predict import WorkloadPrediction


@dataclass
class Verdict:
    scenario: str
    workload: str
    predicted: str
    observed: str
    match: bool
    time_ok: bool | None
    observed_t_s: float | None
    predicted_earliest_s: float | None
    predicted_latest_s: float | None
    victim_predicted: bool
    victim_observed: bool
    reasons: list[str] = field(default_factory=list)
    host_deviations: list[str] = field(default_factory=list)
    race: bool = False
    # an eviction on a real kubelet: what it ranked the pod on (``verdict.kubeletview``)
    kubelet_view: str | None = None
    eviction_stats_age_s: float | None = None
    # a race on a real kubelet: the model's outcome for the loop phase of the kubelet's own syncs
    # (``Prediction.synced``), beside the race's alternatives it is judged against
    synced_outcome: str | None = None

    @classmethod
    def check(
        cls,
        scenario: str,
        name: str,
        predicted: str,
        observed: str,
        match: bool,
        reasons: list[str],
        observed_t_s: float | None = None,
    ) -> Verdict:
        """A verdict about the node rather than a workload's outcome (kubelet start, cgroup values,
        memory-manager state): no time window, no victims."""
        return cls(
            scenario=scenario,
            workload=name,
            predicted=predicted,
            observed=observed,
            match=match,
            time_ok=None,
            observed_t_s=observed_t_s,
            predicted_earliest_s=None,
            predicted_latest_s=None,
            victim_predicted=False,
            victim_observed=False,
            reasons=reasons,
        )

    @property
    def passed(self) -> bool:
        return self.match and self.time_ok is not False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d


def first_sync_from(
    syncs: Sequence[tuple[float, float | None]] | None, t: float
) -> tuple[float, float | None] | None:
    """The first recorded eviction sync that started at ``t`` or later (None without one)."""
    return next((s for s in sorted(syncs or (), key=lambda s: s[0]) if s[0] >= t), None)


def judge(
    scenario: str,
    pred: WorkloadPrediction,
    obs: Outcome,
    observed_t_s: float | None,
    *,
    slack_s: float,
    interval_s: float,
    deviations: list[str] | None = None,
    node_stall_until_s: float | None = None,
    eviction_syncs: Sequence[tuple[float, float | None]] | None = None,
) -> Verdict:
    """Compare one workload's observed outcome with the model's prediction.

    ``node_stall_until_s``: for a scenario that runs the node out of memory on purpose
    (``exhaustsNode``), the end of the stall the run recorded (the node's daemons did not answer),
    else the scenario's end. The model puts a whole-node OOM where the node's available memory is
    gone; the kernel invokes the OOM killer only once reclaim fails (mm/page_alloc.c
    ``__alloc_pages_may_oom`` after ``should_reclaim_retry`` gives up), and a node without swap
    first thrashes on its file pages for a time nothing predicts. So a node-wide kill is judged
    "not before its window", bounded by the stall (or the scenario); its order and victims are
    checked as for any kill.

    ``eviction_syncs``: the kubelet's eviction syncs as its log recorded them, (start, decision)
    in scenario seconds (``sample.kubeletlog``). The model's loop runs every 10 s from every
    phase; the real one sleeps 10 s after each sync, which on a loaded node takes seconds, so it
    drifts late, and a sync decides some time after it starts. An eviction is also on time when
    it comes with the first recorded sync that started in its window (or, with none there, the
    first after it), up to that sync's decision."""
    reasons: list[str] = []
    candidates = {a.outcome: a for a in pred.alternatives} or {}
    alt = candidates.get(obs.outcome)
    match = alt is not None or obs.outcome == pred.outcome
    time_ok: bool | None = None
    tol = slack_s + interval_s
    if not match:
        expected = " or ".join(candidates) if candidates else pred.outcome
        reasons.append(
            f"predicted {expected} ({pred.mechanism}), observed {obs.outcome}"
            + (f": {obs.evidence[-1]}" if obs.evidence else "")
        )
    elif alt is not None and alt.earliest_s is not None and observed_t_s is not None:
        lo, hi = alt.earliest_s - tol, (alt.latest_s if alt.latest_s is not None else alt.earliest_s) + tol
        if obs.outcome == "node_oom_killed" and node_stall_until_s is not None:
            hi = max(hi, node_stall_until_s + tol)
        sync = first_sync_from(eviction_syncs, alt.earliest_s - tol) if obs.outcome == "evicted" else None
        if sync is not None:
            hi = max(hi, (sync[1] if sync[1] is not None else sync[0]) + tol)
        time_ok = lo <= observed_t_s <= hi
        if not time_ok:
            reasons.append(
                f"{obs.outcome} at t={observed_t_s:.2f}s, outside the "
                + ("as-run " if pred.basis == "as-run" else "predicted ")
                + "window "
                f"{alt.earliest_s:.2f}..{(alt.latest_s or alt.earliest_s):.2f}s (±{tol:.2f}s)"
                + (
                    f", or the node's stall until {node_stall_until_s:.2f}s"
                    if obs.outcome == "node_oom_killed" and node_stall_until_s is not None
                    else ""
                )
                + (
                    f", or the kubelet's first sync in it ({sync[0]:.2f}s, decided "
                    + ("?" if sync[1] is None else f"{sync[1]:.2f}s")
                    + ")"
                    if sync is not None
                    else ""
                )
            )
    elif alt is not None and alt.earliest_s is not None and observed_t_s is None:
        time_ok = False
        reasons.append(f"{obs.outcome} observed but its time is unknown")
    if match and obs.outcome in ("oom_killed", "node_oom_killed") and pred.victim != obs.victim:
        reasons.append(
            "predicted "
            + ("an innocent victim" if pred.victim else "the leaker itself")
            + " but observed "
            + ("an innocent victim" if obs.victim else "the leaker itself")
        )
        match = False
    if obs.disagreements:
        reasons += [f"evidence: {d}" for d in obs.disagreements]
    return Verdict(
        scenario=scenario,
        workload=pred.name,
        predicted=pred.label,
        observed=obs.outcome,
        match=match,
        time_ok=time_ok,
        observed_t_s=observed_t_s,
        predicted_earliest_s=alt.earliest_s if alt else pred.earliest_s,
        predicted_latest_s=alt.latest_s if alt else pred.latest_s,
        victim_predicted=pred.victim,
        victim_observed=obs.victim,
        reasons=reasons,
        host_deviations=list(deviations or []),
        race=pred.race,
    )
