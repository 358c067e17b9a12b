"""``harness sweep``: where one outcome stops winning against another as the leak rate grows."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from harness.backends import NAMES
from harness.config.durations import parse_duration
from harness.config.errors import safe_load
from harness.errors import (
    EXIT_HOST,
    EXIT_INCONCLUSIVE,
    EXIT_MISMATCH,
    EXIT_OK,
    HarnessError,
    InputError,
)
from harness.model.predict import OUTCOMES
from harness.paths import sweeps_dir
from harness.progress import Progress
from harness.sweep.rates import format_rate, parse_rate_range

# sweep.json input keys -> the option that sets them (for error messages)
_OPTION = {
    "low": "--rate-range",
    "high": "--rate-range",
    "class_a": "--outcomes",
    "class_b": "--outcomes",
    "profile_set": "--set",
    "node_set": "--node-set",
    "stats_age_s": "--stats-age",
}


def _parse_sets(values: tuple[str, ...], option: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in values:
        key, eq, raw = v.partition("=")
        if not eq or not key.strip():
            raise InputError(None, option, f"expected FIELD=VALUE, got {v!r}")
        try:
            out[key.strip()] = safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise InputError(None, option, f"{key}: value {raw!r} is not YAML: {exc}") from None
    return out


def _parse_outcomes(text: str) -> tuple[list[str], list[str]]:
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise InputError(
            None, "--outcomes", f"expected A,B (e.g. evicted,oom_killed+node_oom_killed), got {text!r}"
        )
    classes = []
    for p in parts:
        names = [n.strip() for n in p.split("+") if n.strip()]
        for n in names:
            if n not in OUTCOMES:
                raise InputError(None, "--outcomes", f"unknown outcome {n!r} (one of {', '.join(OUTCOMES)})")
        classes.append(names)
    return classes[0], classes[1]


def _parse_fraction(text: str, option: str) -> float:
    t = text.strip()
    try:
        v = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise InputError(None, option, f"expected a fraction like 0.05 or 5%, got {text!r}") from None
    if not v > 0:
        raise InputError(None, option, f"must be positive, got {text!r}")
    return v


def _sweep_dir(results: str, resume: str | None, output: str | None) -> Path | None:
    if output:
        return Path(output)
    if resume:
        p = Path(resume)
        if p.is_dir() and (p / "sweep.json").exists():
            return p
        cand = Path(results) / resume
        if not (cand / "sweep.json").exists():
            raise HarnessError(f"no sweep {resume!r} in {results} (looked for {cand / 'sweep.json'})")
        return cand
    return None


@click.command("sweep")
@click.argument("suite_file", metavar="SUITE", type=click.Path(dir_okay=False))
@click.option("--scenario", help="The scenario to sweep (name or id).")
@click.option("--rate-range", help="LOW:HIGH leak rates, e.g. 4Mi/s:64Mi/s, 1MiB/s:1GiB/s or bytes/s.")
@click.option(
    "--repeats",
    type=click.IntRange(1, 50),
    default=3,
    show_default=True,
    help="Trials per rate where outcomes are mixed (and at the bracket edges).",
)
@click.option(
    "--backend",
    type=click.Choice(NAMES),
    default="process",
    show_default=True,
    help="How workloads are launched.",
)
@click.option(
    "--max-trials",
    type=click.IntRange(1, 1000),
    default=30,
    show_default=True,
    help="Stop after this many trials (may be raised on resume).",
)
@click.option(
    "--grid",
    type=click.IntRange(2, 50),
    default=5,
    show_default=True,
    help="Log-spaced rates of the coarse grid.",
)
@click.option(
    "--resolution",
    default="5%",
    show_default=True,
    help="Stop bisecting when a bracket's HIGH/LOW is below 1 + this.",
)
@click.option(
    "--outcomes",
    help="The two outcome classes A,B; '+' joins outcomes of a class. Default: evicted,oom_killed+node_oom_killed with --backend kubernetes, else completed,oom_killed+node_oom_killed.",
)
@click.option(
    "--workload", help="The workload whose leak rate is swept (default: the only one leaking without a max)."
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Override a KubeletConfiguration field of the scenario's profile, e.g. kernelMemcgNotification=true (the model uses it; trials get the patched profile file <sweep>/kubelet-profile.yaml); repeatable.",
)
@click.option(
    "--node-set",
    "node_sets",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Override a node fact of the scenario (the model's node, and the node the process/docker backends confine), e.g. cgroupVersion=2; repeatable.",
)
@click.option(
    "--stats-age",
    help="Model: age of the stats the kubelet's eviction signals see, e.g. 5s (default 0: fresh stats, see harness/model/predict.py STATS_AGE_S).",
)
@click.option(
    "--tolerance",
    default="10%",
    show_default=True,
    help="The predicted boundary may lie this far outside the measured interval and still agree.",
)
@click.option(
    "--resume",
    "resume",
    metavar="ID",
    help="Continue the sweep results/sweeps/ID (or a sweep directory): completed trials are kept, an interrupted one runs again.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False),
    help="The sweep directory (resumed automatically if it holds a sweep).",
)
@click.option(
    "--results",
    "results_dir",
    type=click.Path(file_okay=False),
    default=lambda: str(sweeps_dir()),
    show_default="$HARNESS_RESULTS/sweeps, else results/sweeps",
    help="Folder receiving <sweep-id>/ when -o is not given.",
)
@click.option("--sample-hz", type=float, help="Sampling rate of each trial (default: the suite's sampleHz).")
@click.option(
    "--warm-up",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Touch and release each trial's memory before it starts (as 'harness run --warm-up'), so that the "
    "leak runs on memory this host faults in fast (auto: where fresh memory has been measured slow).",
)
@click.option(
    "--model-only", is_flag=True, help="Print the model's curve and boundary over the range; run nothing."
)
@click.option("--json", "as_json", is_flag=True, help="With --model-only: JSON output.")
@click.option("-v", "--verbose", is_flag=True, help="Show each trial's live run progress too.")
@click.option("-q", "--quiet", is_flag=True, help="Only the final lines.")
@click.pass_context
def sweep_cmd(
    ctx: click.Context,
    suite_file: str,
    scenario: str | None,
    rate_range: str | None,
    repeats: int,
    backend: str,
    max_trials: int,
    grid: int,
    resolution: str,
    outcomes: str | None,
    workload: str | None,
    sets: tuple[str, ...],
    node_sets: tuple[str, ...],
    stats_age: str | None,
    tolerance: str,
    resume: str | None,
    output: str | None,
    results_dir: str,
    sample_hz: float | None,
    warm_up: str,
    model_only: bool,
    as_json: bool,
    verbose: bool,
    quiet: bool,
) -> None:
    """Sweep a scenario's leak rate and measure where the outcome flips from A to B.

    \b
    Each trial runs the scenario (as 'harness run' does) with the leaking workload's rate
    rewritten. Rates: a log-spaced grid over LOW:HIGH, then bisection around the flip and
    repeats where outcomes are mixed, until the bracket is narrower than --resolution or
    --max-trials is reached. P(A) is fitted against log(rate) (logistic regression; profile
    likelihood 95% CI; under perfect separation the bracketing rates are the interval) and
    compared with the model's boundary. The fit and the plot place each trial at the rate its
    leak really achieved; no rate above one the host could not produce is tried. Results:
    results/sweeps/<sweep-id>/ (sweep.json, trials.jsonl, trials.parquet, fit.json, sweep.png,
    report.html, runs/).

    \b
    Examples:
      harness sweep suites/sweep-local.yaml --scenario S11-local --rate-range 4Mi/s:64Mi/s
      harness sweep suites/sweep-local.yaml --scenario S11 --backend kubernetes \\
          --rate-range 32Mi/s:2Gi/s --set kernelMemcgNotification=true --model-only
      harness sweep suites/sweep-local.yaml --resume 20261123T190000Z-S11-local-process-1a2b
    Exit 0 when the predicted boundary agrees with the measured one, 1 when it does not, 2 on bad
    input, 3 when the host failed or could not reach the predicted boundary (no flip measured,
    every achieved rate below it), 4 on an internal error, 5 when the trials are inconclusive
    (they locate no boundary to compare: more --repeats or --max-trials decide), 130 when
    interrupted (resumable).
    """
    # lazy: sweep.runner loads scipy and pandas, sweep.store pandas/pyarrow (CLI start-up)
    from harness.sweep.runner import RESUMABLE_CHANGES, SweepConfig, predict, resolve, run_sweep
    from harness.sweep.store import SweepStore, new_sweep_id

    say = Progress(quiet=quiet)
    sweep_dir = _sweep_dir(results_dir, resume, output)
    stored: dict[str, Any] | None = None
    if sweep_dir is not None and (sweep_dir / "sweep.json").exists():
        stored = SweepStore(sweep_dir).load()["inputs"]
    elif resume:
        raise HarnessError(f"{sweep_dir}: no sweep to resume")

    given = {
        name
        for name in ctx.params
        if ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)
    }
    new: dict[str, Any] = {}
    if scenario is not None:
        new["scenario"] = scenario
    if rate_range is not None:
        try:
            new["low"], new["high"] = parse_rate_range(rate_range)
        except ValueError as exc:
            raise InputError(None, "--rate-range", str(exc)) from None
    if "repeats" in given or stored is None:
        new["repeats"] = repeats
    if "backend" in given or stored is None:
        new["backend"] = backend
    if "max_trials" in given or stored is None:
        new["max_trials"] = max_trials
    if "grid" in given or stored is None:
        new["grid"] = grid
    if "resolution" in given or stored is None:
        new["resolution"] = _parse_fraction(resolution, "--resolution")
    if "tolerance" in given or stored is None:
        new["tolerance"] = _parse_fraction(tolerance, "--tolerance")
    if outcomes is not None:
        new["class_a"], new["class_b"] = _parse_outcomes(outcomes)
    if workload is not None:
        new["workload"] = workload
    if sets:
        new["profile_set"] = _parse_sets(sets, "--set")
    if node_sets:
        new["node_set"] = _parse_sets(node_sets, "--node-set")
    if stats_age is not None:
        try:
            new["stats_age_s"] = parse_duration(stats_age)
        except ValueError as exc:
            raise InputError(None, "--stats-age", str(exc)) from None
    if sample_hz is not None:
        new["sample_hz"] = sample_hz
    if "warm_up" in given or stored is None:
        new["warm_up"] = warm_up

    if stored is not None:
        assert sweep_dir is not None
        if Path(stored["suite_file"]).resolve() != Path(suite_file).resolve():
            raise InputError(
                None,
                "SUITE",
                f"sweep {sweep_dir.name} runs {stored['suite_file']}, not {Path(suite_file).resolve()}",
            )
        for k, v in new.items():
            if k not in RESUMABLE_CHANGES and stored.get(k) != v:
                raise InputError(
                    None,
                    _OPTION.get(k, f"--{k.replace('_', '-')}"),
                    f"sweep {sweep_dir.name} was started with {k}={stored.get(k)!r}, not {v!r}: "
                    "drop the option to resume it, or start a new sweep",
                )
        data = {**stored, **new}
    else:
        if scenario is None or rate_range is None:
            raise InputError(
                None, "--scenario/--rate-range", "both are needed to start a sweep (or --resume ID)"
            )
        data = {"suite_file": suite_file, **new}
    data["suite_file"] = suite_file
    cfg = SweepConfig.from_inputs(data)

    if model_only:
        res = resolve(cfg)
        pb = predict(cfg, res)
        if as_json:
            click.echo(
                json.dumps(
                    {"inputs": cfg.inputs(), "workload": res.workload, "predicted": pb.to_dict()}, indent=2
                )
            )
            return
        click.echo(
            f"model: {cfg.scenario} ({res.workload}) with "
            + ("a kubelet" if cfg.backend == "kubernetes" else f"no kubelet ({cfg.backend})")
            + (", " + ", ".join(f"{k}={v}" for k, v in cfg.profile_set.items()) if cfg.profile_set else "")
        )
        click.echo(f"  {'rate':>12}  P({'/'.join(cfg.class_a)})  outcomes (share of kubelet loop phases)")
        for p in pb.curve:
            pa = "   -  " if p.p_a is None else f"{p.p_a:6.3f}"
            shares = ", ".join(f"{k} {v:.0%}" for k, v in sorted(p.shares.items(), key=lambda kv: -kv[1]))
            click.echo(f"  {format_rate(p.rate):>12}  {pa}  {shares}")
        if pb.rate is not None:
            assert pb.bracket is not None
            click.echo(
                f"harness: predicted boundary {format_rate(pb.rate)} "
                f"(P crosses 0.5 between {format_rate(pb.bracket[0])} and {format_rate(pb.bracket[1])})"
            )
        else:
            click.echo(f"harness: no predicted boundary: {pb.reason}")
        return

    if sweep_dir is None:
        sweep_dir = Path(results_dir) / new_sweep_id(cfg.scenario, cfg.backend)
    result = run_sweep(cfg, SweepStore(sweep_dir), say=say, verbose=verbose)
    pred = result.predicted
    click.echo(f"harness: measured boundary {result.fit.describe()}")
    click.echo(
        "harness: predicted boundary "
        + (
            format_rate(pred.rate)
            if pred is not None and pred.rate
            else f"none ({pred.reason if pred else '-'})"
        )
        + {
            True: ": agrees"
            if not result.agree_at_loop_phase
            else " (averaged over uniform loop phases): outside the measured interval, but every trial "
            "matches the model at the kubelet's own loop phase",
            False: ": DISAGREES",
            None: ": not compared (the trials locate no boundary with a bounded interval)"
            if pred is not None and pred.rate
            else "",
        }[result.agree]
        + f" (tolerance {cfg.tolerance:.0%})"
    )
    if result.at_loop_phase is not None:
        ok, n = result.at_loop_phase
        click.echo(
            f"harness: at the kubelet's own loop phase (its logged syncs) the model called {ok} of {n} trials"
        )
    click.echo(
        f"harness: sweep {result.status} ({result.stop_reason}); {len(result.trials)} trials; results in {result.sweep_dir}"
    )
    if result.status == "interrupted":
        sys.exit(130)
    if result.host_limit:
        click.echo(
            f"harness: {result.host_limit}: the model is not tested here"
            + (
                ""
                if cfg.warm_up == "on"
                else " (if fresh memory is the limit, 'harness doctor' says so: --warm-up on)"
            )
        )
        sys.exit(EXIT_HOST)
    if result.agree is None:
        click.echo(
            "harness: inconclusive: the trials neither agree nor disagree with the model "
            "(more --repeats, or --max-trials, narrow the interval)"
        )
        sys.exit(EXIT_INCONCLUSIVE)
    sys.exit(EXIT_OK if result.agree else EXIT_MISMATCH)
