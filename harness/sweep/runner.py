"""Run a sweep: pick a rate (design), run the scenario at that rate (the normal run pipeline),
classify the leaking workload's outcome, record the trial, refit; stop, fit, plot.

Backend-agnostic: every trial is ``harness.run.run_suite`` on a one-scenario copy of the suite
whose leaking workload has its leak rewritten (``harness.sweep.rates``), so each trial is a
complete run directory under ``<sweep>/runs/`` with its samples, events and verdicts, whatever
the backend (process, docker, and kubernetes once it exists). The observed outcome of the
leaking workload comes from the run's classifier (``harness.classify``).

Signals: during a trial the run pipeline handles SIGINT/SIGTERM/SIGHUP (workloads stopped,
run marked interrupted); between trials the sweep does. Either way the sweep stops, keeps every
completed trial, marks itself ``interrupted`` and exits 130; the interrupted trial is run
again on resume.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from harness import __version__
from harness.config.errors import first_error
from harness.config.kubelet import parse_profile
from harness.config.node import NodeFacts
from harness.config.suite import Scenario, Suite, load_suite
from harness.errors import HarnessError, InputError
from harness.model.schedule import SLOW_FRACTION
from harness.progress import Progress
from harness.run import Interrupted, install_signal_handlers, restore_signal_handlers, run_suite
from harness.sweep.design import OTHER, A, B, Design, Step, Trial, max_achieved, next_step
from harness.sweep.fit import Fit, fit_boundary
from harness.sweep.plot import write_plot_and_report
from harness.sweep.predicted import ModelPoint, ModelSettings, PredictedBoundary, predicted_boundary
from harness.sweep.rates import axis_rate, format_rate, leak_for_rate, leaking_workload, scenario_for_rate
from harness.sweep.store import SweepStore

OOM_OUTCOMES = ("oom_killed", "node_oom_killed")
# settings that may differ when a sweep is resumed
RESUMABLE_CHANGES = {"max_trials", "sample_hz", "tolerance", "warm_up"}


def default_classes(backend: str) -> tuple[list[str], list[str]]:
    """Evicted vs OOM-killed with a kubelet; without one nothing evicts: survived vs OOM-killed."""
    if backend == "kubernetes":
        return ["evicted"], list(OOM_OUTCOMES)
    return ["completed"], list(OOM_OUTCOMES)


@dataclass
class SweepConfig:
    suite_file: str
    scenario: str
    backend: str
    low: float
    high: float
    workload: str | None = None
    repeats: int = 3
    max_trials: int = 30
    grid: int = 5
    resolution: float = 0.05
    class_a: list[str] = field(default_factory=list)
    class_b: list[str] = field(default_factory=list)
    profile_set: dict[str, Any] = field(default_factory=dict)  # KubeletConfiguration field overrides
    node_set: dict[str, Any] = field(default_factory=dict)  # NodeFacts overrides
    stats_age_s: float | None = None
    sample_hz: float | None = None
    tolerance: float = 0.1  # predicted boundary may lie this far (relative) outside the measured interval
    warm_up: str = "auto"  # each trial's warm-up (harness.hostperf): auto, on, off

    def __post_init__(self) -> None:
        if not self.class_a or not self.class_b:
            a, b = default_classes(self.backend)
            self.class_a = self.class_a or a
            self.class_b = self.class_b or b
        overlap = set(self.class_a) & set(self.class_b)
        if overlap:
            raise InputError(None, "--outcomes", f"{sorted(overlap)} in both classes")

    def design(self) -> Design:
        try:
            return Design(self.low, self.high, self.grid, self.repeats, self.max_trials, self.resolution)
        except ValueError as exc:
            raise InputError(None, "sweep design", str(exc)) from None

    def inputs(self) -> dict[str, Any]:
        return {
            "suite_file": str(Path(self.suite_file).resolve()),
            "scenario": self.scenario,
            "workload": self.workload,
            "backend": self.backend,
            "low": self.low,
            "high": self.high,
            "repeats": self.repeats,
            "max_trials": self.max_trials,
            "grid": self.grid,
            "resolution": self.resolution,
            "class_a": list(self.class_a),
            "class_b": list(self.class_b),
            "profile_set": dict(self.profile_set),
            "node_set": dict(self.node_set),
            "stats_age_s": self.stats_age_s,
            "sample_hz": self.sample_hz,
            "tolerance": self.tolerance,
            "warm_up": self.warm_up,
        }

    @classmethod
    def from_inputs(cls, d: dict[str, Any]) -> SweepConfig:
        fields = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**fields)

    def classify(self, outcome: str) -> str:
        if outcome in self.class_a:
            return A
        if outcome in self.class_b:
            return B
        return OTHER


@dataclass
class Resolved:
    """The suite and scenario a sweep runs, with the profile overrides applied."""

    suite: Suite
    scenario: Scenario
    workload: str
    fingerprint: str


def resolve(cfg: SweepConfig) -> Resolved:
    suite = load_suite(cfg.suite_file)
    sc = suite.scenario(cfg.scenario)
    if cfg.backend not in sc.backends:
        raise InputError(
            cfg.suite_file,
            f"scenario {sc.name}",
            f"not meant for backend {cfg.backend} (backends: {', '.join(sc.backends)})",
        )
    if cfg.profile_set:
        assert sc.profile is not None
        data = {**sc.profile.to_yaml_dict(), **cfg.profile_set}
        prof = parse_profile(data, f"{sc.profile.source} with --set " + ",".join(cfg.profile_set))
        prof.source = sc.profile.source
        sc = sc.model_copy(update={"profile": prof})
    if cfg.node_set:
        assert sc.node is not None
        try:
            node = NodeFacts.model_validate({**sc.node.model_dump(by_alias=True), **cfg.node_set})
        except ValidationError as exc:
            raise first_error(exc, "--node-set", NodeFacts) from None
        sc = sc.model_copy(update={"node": node})
    w = leaking_workload(sc, cfg.workload, cfg.suite_file)
    for rate in (cfg.low, cfg.high):
        try:
            leak_for_rate(w.leak, rate)
        except ValueError as exc:
            raise InputError(None, "--rate-range", str(exc)) from None
    assert sc.profile is not None and sc.node is not None
    blob = json.dumps(
        {
            "scenario": sc.model_dump(mode="json", by_alias=True),
            "profile": sc.profile.to_yaml_dict(),
            "node": sc.node.model_dump(mode="json", by_alias=True),
        },
        sort_keys=True,
        default=str,
    )
    return Resolved(suite, sc, w.name, hashlib.sha256(blob.encode()).hexdigest()[:16])


def model_settings(cfg: SweepConfig) -> ModelSettings:
    return ModelSettings(
        kubelet=cfg.backend == "kubernetes",
        class_a=frozenset(cfg.class_a),
        class_b=frozenset(cfg.class_b),
        stats_age_s=cfg.stats_age_s,
    )


def predict(cfg: SweepConfig, res: Resolved) -> PredictedBoundary:
    """The model's curve over the sweep's range (widened 2x each way) and its boundary."""
    return predicted_boundary(res.scenario, res.workload, cfg.low / 2, cfg.high * 2, model_settings(cfg))


@dataclass
class SweepResult:
    sweep_dir: Path
    status: str  # complete, interrupted
    trials: list[dict[str, Any]]
    fit: Fit
    predicted: PredictedBoundary | None
    agree: bool | None
    stop_reason: str = ""
    host_limit: str | None = None  # the host could not reach the predicted boundary (exit 3)
    # (matched, trials) of the trials judged at the kubelet's own loop phase (``loop_phase_check``)
    at_loop_phase: tuple[int, int] | None = None
    agree_at_loop_phase: bool = False  # the agreement comes from that check, not from the boundary


def loop_phase_check(trials: list[dict[str, Any]]) -> tuple[int, int] | None:
    """How many A/B trials the model got right at the kubelet's own loop phase: each trial's
    outcome against the model's outcome for the phase of the kubelet's real syncs (``synced``, when
    the as-run prediction was a race; the as-run prediction itself otherwise). None when no trial
    had a race to settle (nothing beyond the boundary test).

    The predicted boundary averages the kubelet's 10 s loop over uniform phases. On the local
    cluster the phase is not uniform from trial to trial (each trial starts a fixed time after the
    kubelet's previous sync pattern; 2026-12-07: first syncs 5.7-8.5 s after the start in 8 of 11
    trials), so trials near the boundary flip where their phase says, not where the average does."""
    judged = [t for t in trials if t.get("cls") in (A, B) and t.get("predicted")]
    if not any(t.get("synced") for t in judged):
        return None
    ok = sum(t["outcome"] in str(t.get("synced") or t["predicted"]).split("|") for t in judged)
    return ok, len(judged)


def measured_fit(cfg: SweepConfig, trials: list[dict[str, Any]]) -> Fit:
    """P(A) against the rate each trial's leak really achieved (its label when unknown)."""
    used = [t for t in trials if t["cls"] in (A, B)]
    return fit_boundary([axis_rate(t) for t in used], [t["cls"] == A for t in used])


def host_limit(fit: Fit, predicted: PredictedBoundary | None, trials: list[dict[str, Any]]) -> str | None:
    """Why the sweep could not test the model, when the host is the reason: no measured boundary,
    and no trial reached the rate where the model puts it (the flip was never within reach)."""
    if predicted is None or predicted.rate is None or fit.boundary is not None or not trials:
        return None
    top = max_achieved([_trial(t) for t in trials])
    if top is None or top >= predicted.rate:
        return None
    return f"host limit: max achieved {format_rate(top)} below the predicted {format_rate(predicted.rate)}"


def _trial(t: dict[str, Any]) -> Trial:
    return Trial(t["rate"], t["cls"], t.get("rate_achieved"))


def agreement(
    fit: Fit, predicted: PredictedBoundary | None, tolerance: float, trials: list[Trial] | None = None
) -> bool | None:
    """Does the predicted boundary lie in the measured interval (widened by ``tolerance``)?

    When neither has a boundary in the range, they agree if the model's P(A) and the trials are on
    the same side everywhere (all trials A and the model's P(A) >= 0.5 at every rate, or both B).
    A boundary the trials locate where the model has none is a disagreement; so are trials of one
    class at (achieved) rates beyond the predicted boundary, on the side where the model says the
    other class. None: no test either way (inconclusive, exit 5): mixed trials that locate no
    boundary, or one class at rates that do not get past the predicted boundary.
    """
    located = fit.boundary is not None and not (
        fit.method == "logistic" and fit.ci_low is None and fit.ci_high is None
    )
    if predicted is not None and predicted.rate is None and predicted.curve and located:
        return False
    if (
        predicted is not None
        and predicted.rate is not None
        and fit.boundary is None
        and fit.n > 0
        and (fit.n_a == 0 or fit.n_b == 0)
        and trials
    ):
        curve = [(c.rate, c.p_a) for c in predicted.curve if c.p_a is not None]
        seen_a = fit.n_b == 0
        for t in trials:
            if t.cls not in (A, B):
                continue
            r = t.achieved if t.achieved is not None else t.rate
            if not curve or not (
                r > predicted.rate * (1 + tolerance) or r < predicted.rate / (1 + tolerance)
            ):
                continue
            p = min(curve, key=lambda c: abs(math.log(c[0] / r)))[1]
            if (p < 0.5) == seen_a:
                return False
    if (
        predicted is not None
        and predicted.rate is None
        and fit.boundary is None
        and fit.n > 0
        and (fit.n_a == 0 or fit.n_b == 0)
    ):
        model_p = [c.p_a for c in predicted.curve if c.p_a is not None]
        if model_p:
            all_a = fit.n_b == 0
            return all(p >= 0.5 for p in model_p) if all_a else all(p < 0.5 for p in model_p)
    if predicted is None or predicted.rate is None or fit.boundary is None:
        return None
    if fit.method == "logistic":
        lo, hi = fit.ci_low, fit.ci_high
        if lo is None and hi is None:
            return None  # an interval unbounded on both sides holds any prediction: no test
    else:
        lo, hi = fit.bracket_low, fit.bracket_high
    lo_ok = lo is None or predicted.rate >= lo / (1 + tolerance)
    hi_ok = hi is None or predicted.rate <= hi * (1 + tolerance)
    return lo_ok and hi_ok


def run_sweep(
    cfg: SweepConfig,
    store: SweepStore,
    *,
    say: Progress | None = None,
    verbose: bool = False,
) -> SweepResult:
    """Run (or resume) the sweep in ``store``; returns when the design stops or on a signal."""
    say = say or Progress()
    res = resolve(cfg)
    design = cfg.design()
    store.dir.mkdir(parents=True, exist_ok=True)
    store.lock()
    if cfg.profile_set:
        # backends that configure a real kubelet read the profile *file* (prof.source): give
        # them the patched one, so that the kubelet runs what the model assumes

        prof = res.scenario.profile
        assert prof is not None
        path = store.dir / "kubelet-profile.yaml"
        path.write_text(
            "# "
            + str(prof.source)
            + " with --set "
            + ", ".join(f"{k}={v}" for k, v in cfg.profile_set.items())
            + "\n"
            + yaml.safe_dump(prof.to_yaml_dict(), sort_keys=False)
        )
        prof.source = str(path.resolve())
    prev = install_signal_handlers()
    status = "failed"
    trials: list[dict[str, Any]] = []
    predicted: PredictedBoundary | None = None
    limit: str | None = None
    step = Step(None, "stop", "not started")
    try:
        if store.exists:
            store.load()
            if store.meta.get("fingerprint") != res.fingerprint:
                raise HarnessError(
                    f"sweep {store.dir.name}: scenario {cfg.scenario} of {cfg.suite_file} (or its profile/node) "
                    "changed since the sweep started; start a new sweep"
                )
            trials, warnings = store.read_trials()
            for w in warnings:
                say(f"harness: warning: {w}")
            cur = store.current()
            say(
                f"harness: resuming sweep {store.dir.name}: {len(trials)} completed trials kept"
                + (
                    f"; trial {cur['trial']} at {format_rate(cur['rate'])} was interrupted and runs again"
                    if cur and cur.get("trial") == len(trials) + 1
                    else ""
                )
            )
            store.meta["inputs"] = cfg.inputs()
            if store.meta.get("predicted"):
                predicted = _predicted_from_dict(store.meta["predicted"])
        else:
            store.create(cfg.inputs())
            store.update(
                fingerprint=res.fingerprint,
                suite=res.suite.name,
                workload=res.workload,
                harness_version=__version__,
            )
            say(f"harness: sweep {store.dir.name}: results in {store.dir}")
        sessions = store.meta.setdefault("sessions", [])
        sessions.append(
            {"pid": os.getpid(), "started": _now(), "command": sys.argv, "trials_before": len(trials)}
        )
        store.update(status="running")
        if predicted is None:
            say("harness: computing the model's curve and boundary ...")
            predicted = predict(cfg, res)
            store.update(predicted=predicted.to_dict())
        say(
            f"harness: sweep {cfg.scenario} ({res.workload}) on {cfg.backend}, "
            f"{format_rate(cfg.low)} .. {format_rate(cfg.high)}: "
            f"A = {'/'.join(cfg.class_a)}, B = {'/'.join(cfg.class_b)}; model boundary "
            + (format_rate(predicted.rate) if predicted.rate else f"none ({predicted.reason})")
        )
        runs_dir = store.dir / "runs"
        while True:
            done = [_trial(t) for t in trials]
            step = next_step(design, done)
            if step.rate is None:
                break
            rate = step.rate
            n = len(trials) + 1
            repeat = sum(1 for t in trials if t["rate"] == rate) + 1
            sc = scenario_for_rate(res.scenario, res.workload, rate)
            leak = next(w.leak for w in sc.workloads if w.name == res.workload)
            started = _now()
            store.set_current({"trial": n, "rate": rate, "phase": step.phase, "started": started})
            trial_suite = res.suite.model_copy(update={"scenarios": [sc]})
            trial_suite.source = res.suite.source
            t0 = time.monotonic()
            run = run_suite(
                trial_suite,
                cfg.backend,
                runs_dir,
                only=[sc.name],
                progress=Progress(quiet=not verbose),
                sample_hz=cfg.sample_hz,
                warm_up=cfg.warm_up,
            )
            if run.status != "complete":
                store.meta.setdefault("interrupted_trials", []).append(
                    {"trial": n, "rate": rate, "run_id": run.run_id, "at": _now()}
                )
                raise Interrupted(f"trial {n} interrupted")
            v = next((v for v in run.verdicts if v.workload == res.workload), None)
            if v is None:
                raise HarnessError(f"trial {n}: run {run.run_id} has no verdict for {res.workload}")
            cls = cfg.classify(v.observed)
            wp = next((p for p in run.predictions if p.get("name") == res.workload), {})
            achieved = wp.get("alloc_rate_bytes_per_s")
            warm = _warm_up_of(run.run_dir, sc.name)
            trial = {
                "trial": n,
                "rate": rate,
                "rate_effective": leak.rate_bytes_per_s,
                # what the program really allocated (None: too few chunks to tell)
                "rate_achieved": achieved,
                "repeat": repeat,
                "phase": step.phase,
                "chunk_bytes": leak.chunk_bytes,
                "interval_s": leak.interval_s,
                "outcome": v.observed,
                "cls": cls,
                "t_event_s": v.observed_t_s,
                "predicted": v.predicted,
                "predicted_race": v.race,
                # a race: the model's outcome at the kubelet's own loop phase (its logged syncs)
                "synced": v.synced_outcome,
                "victim": v.victim_observed,
                "verdict_passed": v.passed,
                "run_id": run.run_id,
                "started": started,
                "finished": _now(),
                "duration_s": round(time.monotonic() - t0, 3),
                "warm_up_bytes": warm.get("bytes") if warm.get("done") else None,
                "warm_up_s": warm.get("seconds") if warm.get("done") else None,
            }
            store.append_trial(trial)
            store.set_current(None)
            trials.append(trial)
            store.write_trials_table(trials)
            fit = measured_fit(cfg, trials)
            store.update(n_trials=len(trials), fit=fit.to_dict(), last_step=step.__dict__)
            t_txt = f" at {v.observed_t_s:.2f}s" if v.observed_t_s is not None else ""
            say(
                f"trial {n:>2}/{cfg.max_trials} {format_rate(rate):>11} ({step.phase:<6}) "
                f"{res.workload} -> {v.observed}{t_txt} [{cls}]  model: {v.predicted}"
                + (" (race)" if v.race else "")
                + (f", at the kubelet's loop phase: {v.synced_outcome}" if v.synced_outcome else "")
                + (f"  achieved {format_rate(achieved)}" if achieved is not None else "")
                + (
                    f"  (warm-up {warm['bytes'] / 2**20:.0f} MiB in {warm['seconds']:.1f} s)"
                    if warm.get("done")
                    else ""
                )
                + (f"  boundary so far: {fit.describe()}" if fit.boundary else "")
            )
            if achieved is not None and achieved < SLOW_FRACTION * leak.rate_bytes_per_s:
                say(
                    f"harness: warning: trial {n}: the leak allocated {format_rate(achieved)}, not the "
                    f"{format_rate(rate)} asked: this host cannot fault pages in faster; the verdict "
                    "used the as-run timeline, but the trial measures a lower rate than its label"
                )
            if cls == OTHER:
                say(
                    f"harness: warning: trial {n}: {v.observed} is neither {'/'.join(cfg.class_a)} nor "
                    f"{'/'.join(cfg.class_b)}: kept, excluded from the fit (run {run.run_id})"
                )
        status = "complete"
    except (KeyboardInterrupt, Interrupted):
        status = "interrupted"
        say(
            f"harness: interrupted: {len(trials)} completed trials kept; "
            f"resume with: harness sweep {cfg.suite_file} --resume {store.dir}"
        )
    finally:
        restore_signal_handlers(prev)
        try:
            fit = measured_fit(cfg, trials)
            limit = host_limit(fit, predicted, trials) if status == "complete" else None
            agree = None if limit else agreement(fit, predicted, cfg.tolerance, [_trial(t) for t in trials])
            at_phase = loop_phase_check(trials)
            # every trial right at its own loop phase: a sharper test than the phase-averaged boundary
            by_phase = (
                status == "complete"
                and limit is None
                and agree is not True
                and at_phase is not None
                and at_phase[0] == at_phase[1]
            )
            if by_phase:
                agree = True
            if store.meta:
                pred_d = predicted.to_dict() if predicted else None
                if pred_d:
                    pred_d.pop("curve", None)
                summary = {
                    "measured": fit.to_dict(),
                    "predicted": pred_d,
                    "agree": agree,
                    "tolerance": cfg.tolerance,
                    "n_trials": len(trials),
                    "stop_reason": step.reason if status == "complete" else status,
                    "host_limit": limit,
                    "max_achieved": max_achieved([_trial(t) for t in trials]),
                    "at_loop_phase": None
                    if at_phase is None
                    else {"matched": at_phase[0], "of": at_phase[1]},
                    "agree_at_loop_phase": by_phase,
                }
                store.write_json("fit.json", summary)
                store.update(host_limit=limit, agree=agree)  # before the report, which shows them
                if trials:
                    with contextlib.suppress(Exception):
                        write_plot_and_report(store.dir)
                sess = store.meta.get("sessions") or [{}]
                sess[-1].update(finished=_now(), status=status, trials_after=len(trials))
                store.update(
                    status=status,
                    fit=fit.to_dict(),
                    agree=agree,
                    stop_reason=summary["stop_reason"],
                    n_trials=len(trials),
                    host_limit=limit,
                )
        finally:
            store.unlock()
    return SweepResult(
        store.dir, status, trials, fit, predicted, agree, step.reason, limit, at_phase, by_phase
    )


def _warm_up_of(run_dir: Path, scenario: str) -> dict[str, Any]:
    """The trial run's warm-up record (run.json ``warm_up``), {} when there was none."""
    try:
        return dict(json.loads((run_dir / "run.json").read_text()).get("warm_up", {}).get(scenario) or {})
    except (OSError, ValueError):
        return {}


def _predicted_from_dict(d: dict[str, Any]) -> PredictedBoundary:

    return PredictedBoundary(
        rate=d.get("rate"),
        bracket=(d["bracket"][0], d["bracket"][1]) if d.get("bracket") else None,
        reason=d.get("reason", ""),
        evaluations=d.get("evaluations", 0),
        curve=[ModelPoint(**p) for p in d.get("curve", [])],
    )


def _now() -> str:
    return datetime.now(UTC).isoformat()
