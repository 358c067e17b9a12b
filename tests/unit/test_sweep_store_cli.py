"""The sweep directory (harness/sweep/store.py) and the ``harness sweep`` command's input handling.

No trial is run here: the CLI tests use ``--model-only`` or fail before the first trial.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.errors import HarnessError
from harness.sweep.design import A, B, Trial
from harness.sweep.fit import Fit
from harness.sweep.predicted import ModelPoint, PredictedBoundary
from harness.sweep.runner import SweepConfig, agreement
from harness.sweep.store import SweepStore

ROOT = Path(__file__).resolve().parents[2]
SUITE = str(ROOT / "suites" / "sweep-local.yaml")
MI = float(1 << 20)


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


# ------------------------------------------------------------------ store


def test_trials_append_and_read_back(tmp_path: Path) -> None:
    st = SweepStore(tmp_path / "s")
    st.create({"x": 1})
    for i in range(3):
        st.append_trial({"trial": i + 1, "rate": 1.5 * (i + 1)})
    trials, warnings = st.read_trials()
    assert [t["trial"] for t in trials] == [1, 2, 3] and warnings == []
    assert trials[1]["rate"] == 3.0  # floats round-trip exactly (the design keys on them)
    assert SweepStore(tmp_path / "s").load()["inputs"] == {"x": 1}


def test_torn_last_line_is_ignored_and_not_glued_to_the_next(tmp_path: Path) -> None:
    st = SweepStore(tmp_path / "s")
    st.create({})
    st.append_trial({"trial": 1})
    with open(st.trials_path, "ab") as f:
        f.write(b'{"trial": 2, "ra')  # killed mid-write
    trials, warnings = st.read_trials()
    assert [t["trial"] for t in trials] == [1]
    assert "incomplete last line" in warnings[0]
    st.append_trial({"trial": 2})
    trials, _ = st.read_trials()
    assert [t["trial"] for t in trials] == [1, 2]


def test_corrupt_middle_line_is_an_error(tmp_path: Path) -> None:
    st = SweepStore(tmp_path / "s")
    st.create({})
    st.trials_path.write_text('{"trial": 1}\nnot json\n{"trial": 3}\n')
    with pytest.raises(HarnessError, match="line 2 is not JSON"):
        st.read_trials()


def test_one_process_per_sweep(tmp_path: Path) -> None:
    a, b = SweepStore(tmp_path / "s"), SweepStore(tmp_path / "s")
    a.create({})
    a.lock()
    try:
        with pytest.raises(HarnessError, match="being run by another process"):
            b.lock()
    finally:
        a.unlock()
    b.lock()
    b.unlock()


def test_current_trial_marker(tmp_path: Path) -> None:
    st = SweepStore(tmp_path / "s")
    st.create({})
    assert st.current() is None
    st.set_current({"trial": 4, "rate": 2.0})
    assert st.current() == {"trial": 4, "rate": 2.0}
    st.set_current(None)
    assert st.current() is None


def test_not_a_sweep(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="not a sweep directory"):
        SweepStore(tmp_path).load()


# ------------------------------------------------------------------ agreement


def test_agreement_uses_the_interval_and_the_tolerance() -> None:
    sep = Fit(n=4, n_a=2, n_b=2, method="separated", boundary=15.6, bracket_low=15.0, bracket_high=16.0)
    pred = PredictedBoundary(15.9, (15.8, 16.0), "", 1)
    assert agreement(sep, pred, 0.0) is True
    assert agreement(sep, PredictedBoundary(17.0, None, "", 1), 0.05) is False
    assert agreement(sep, PredictedBoundary(16.5, None, "", 1), 0.05) is True
    logi = Fit(n=9, n_a=4, n_b=5, method="logistic", boundary=10.0, ci_low=8.0, ci_high=None)
    assert agreement(logi, PredictedBoundary(1000.0, None, "", 1), 0.0) is True  # unbounded above
    assert agreement(logi, PredictedBoundary(7.0, None, "", 1), 0.1) is False
    assert agreement(logi, PredictedBoundary(None, None, "none", 1), 0.1) is None
    # unbounded on both sides: any prediction would fit, so nothing is compared
    vague = Fit(n=9, n_a=7, n_b=2, method="logistic", boundary=170.0, ci_low=None, ci_high=None)
    assert agreement(vague, PredictedBoundary(203.0, None, "", 1), 0.1) is None


def test_default_outcome_classes_depend_on_the_backend() -> None:
    k = SweepConfig(suite_file=SUITE, scenario="S11", backend="kubernetes", low=1, high=2)
    p = SweepConfig(suite_file=SUITE, scenario="S11-local", backend="process", low=1, high=2)
    assert (k.class_a, k.class_b) == (["evicted"], ["oom_killed", "node_oom_killed"])
    assert (p.class_a, p.class_b) == (["completed"], ["oom_killed", "node_oom_killed"])
    assert (p.classify("completed"), p.classify("node_oom_killed"), p.classify("unknown")) == (
        "A",
        "B",
        "other",
    )


# ------------------------------------------------------------------ CLI


def test_model_only_local_boundary() -> None:
    code, out, _ = run(
        "sweep", SUITE, "--scenario", "S11-local", "--rate-range", "4Mi/s:64Mi/s", "--model-only"
    )
    assert code == 0, out
    assert "harness: predicted boundary 15.9 MiB/s" in out
    assert "completed 100%" in out and "oom_killed 100%" in out


def test_model_only_json_and_kubelet_settings() -> None:
    args = ["sweep", SUITE, "--scenario", "S11", "--backend", "kubernetes", "--rate-range", "64Mi/s:1Gi/s"]
    code, out, _ = run(*args, "--model-only", "--json")
    assert code == 0, out
    d = json.loads(out)
    default = d["predicted"]["rate"]
    assert d["inputs"]["class_a"] == ["evicted"] and d["workload"] == "leaker"
    code, out, _ = run(
        *args,
        "--model-only",
        "--json",
        "--set",
        "kernelMemcgNotification=true",
        "--node-set",
        "cgroupVersion=1",
    )
    assert code == 0, out
    notify = json.loads(out)["predicted"]
    assert notify["rate"] is None or notify["rate"] > 5 * default
    code, out, _ = run(*args, "--model-only", "--json", "--stats-age", "5s")
    assert json.loads(out)["predicted"]["rate"] < default


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (["--scenario", "S11-local"], "both are needed to start a sweep"),
        (["--scenario", "S11-local", "--rate-range", "64Mi/s:4Mi/s"], "--rate-range: invalid rate range"),
        (
            ["--scenario", "S11-local", "--rate-range", "4Mi/s:64Mi/s", "--outcomes", "completed"],
            "expected A,B",
        ),
        (
            ["--scenario", "S11-local", "--rate-range", "4Mi/s:64Mi/s", "--outcomes", "completed,oom"],
            "unknown outcome 'oom'",
        ),
        (
            ["--scenario", "S11-local", "--rate-range", "4Mi/s:64Mi/s", "--outcomes", "completed,completed"],
            "in both classes",
        ),
        (["--scenario", "nope", "--rate-range", "4Mi/s:64Mi/s", "--model-only"], "no scenario named 'nope'"),
        (["--scenario", "S11", "--rate-range", "4Mi/s:64Mi/s"], "not meant for backend process"),
        (
            [
                "--scenario",
                "S11-local",
                "--rate-range",
                "4Mi/s:64Mi/s",
                "--model-only",
                "--set",
                "evictonHard=1",
            ],
            "unknown field (did you mean 'evictionHard'?)",
        ),
        (
            ["--scenario", "S11-local", "--rate-range", "4Mi/s:64Mi/s", "--set", "kernelMemcgNotification"],
            "expected FIELD=VALUE",
        ),
        (
            [
                "--scenario",
                "S11-local",
                "--rate-range",
                "4Mi/s:64Mi/s",
                "--workload",
                "ghost",
                "--model-only",
            ],
            "no workload named 'ghost'",
        ),
        (
            ["--scenario", "S11-local", "--rate-range", "4Mi/s:64Mi/s", "--resolution", "abc"],
            "--resolution: expected a fraction",
        ),
        (["--scenario", "S11-local", "--rate-range", "1/s:64Mi/s"], "too slow for the leak program"),
        (["--resume", "no-such-sweep"], "no sweep 'no-such-sweep'"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], msg: str, tmp_path: Path) -> None:
    code, out, err = run("sweep", SUITE, "--results", str(tmp_path), *args)
    assert code == 2, out + err
    assert msg in err
    assert err.count("\n") == 1 and err.startswith("harness: error: ")
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_resume_refuses_changed_inputs(tmp_path: Path) -> None:
    cfg = SweepConfig(suite_file=SUITE, scenario="S11-local", backend="process", low=4 * MI, high=64 * MI)
    st = SweepStore(tmp_path / "sw")
    st.create(cfg.inputs())
    code, _, err = run("sweep", SUITE, "--resume", str(tmp_path / "sw"), "--rate-range", "4Mi/s:60Mi/s")
    assert code == 2 and "--rate-range: sweep sw was started with high=67108864.0" in err
    code, _, err = run("sweep", SUITE, "--resume", "sw", "--results", str(tmp_path), "--repeats", "5")
    assert code == 2 and "repeats=3, not 5" in err
    other = str(ROOT / "suites" / "local.yaml")
    code, _, err = run("sweep", other, "--resume", str(tmp_path / "sw"))
    assert code == 2 and "runs " in err and "sweep-local.yaml" in err


def test_sweep_suite_scenarios_keep_their_own_profile_and_node() -> None:
    """A scenario's own ``profile:`` and ``node:`` in a Suite file (harness/config/suite.py)."""
    from harness.config.suite import load_suite

    s = load_suite(SUITE)
    local, kube = s.scenario("S11-local"), s.scenario("S11")
    assert local.node is not None and local.node.memory_capacity_bytes == 1 << 30
    assert local.profile is not None and local.profile.source.endswith("profiles/local.yaml")
    assert kube.profile is not None and kube.profile.source.endswith("profiles/cluster-default.yaml")
    assert kube.profile_file == "../profiles/cluster-default.yaml"
    assert kube.node is not None and kube.node.memory_capacity_bytes > 1 << 30  # this host


def _synthetic_sweep(tmp_path: Path, trials: list[tuple[float, str]]) -> Path:
    from harness.sweep.runner import measured_fit

    cfg = SweepConfig(suite_file=SUITE, scenario="S11", backend="kubernetes", low=8 * MI, high=128 * MI)
    st = SweepStore(tmp_path / "sw")
    st.create(cfg.inputs())
    rows = []
    for i, (rate, outcome) in enumerate(trials):
        row = {
            "trial": i + 1,
            "rate": rate,
            "phase": "grid",
            "outcome": outcome,
            "cls": cfg.classify(outcome),
        }
        row |= {"t_event_s": 1.0, "predicted": "evicted", "run_id": f"run-{i}"}
        st.append_trial(row)
        rows.append(row)
    curve = [
        {"rate": r * MI, "p_a": p, "shares": {}, "share_a": p, "share_b": 1 - p, "outcome": "x"}
        for r, p in [(8, 1.0), (16, 0.9), (32, 0.4), (64, 0.1), (128, 0.0)]
    ]
    fit = measured_fit(cfg, rows)
    st.update(workload="leaker", predicted={"rate": 28 * MI, "curve": curve}, fit=fit.to_dict(), agree=True)
    return st.dir


def test_plot_and_report_of_a_logistic_sweep(tmp_path: Path) -> None:
    from harness.sweep.plot import write_plot_and_report

    rates = [8, 12, 16, 20, 24, 28, 32, 40, 48, 64, 96, 128]
    ev = {8, 12, 16, 20, 28, 40}  # mixed around ~30 MiB/s
    trials = [(r * MI, "evicted" if r in ev else "node_oom_killed") for r in rates] + [(24 * MI, "unknown")]
    d = _synthetic_sweep(tmp_path, trials)
    png, page = write_plot_and_report(d)
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 20_000
    html = page.read_text()
    assert "logistic fit, 12 trials" in html and "predicted boundary</th><td>28 MiB/s" in html
    assert "<td>unknown</td><td>other</td>" in html
    assert "data:image/png;base64," in html


def test_plot_of_a_separated_sweep(tmp_path: Path) -> None:
    from harness.sweep.plot import write_plot_and_report

    d = _synthetic_sweep(tmp_path, [(8 * MI, "evicted"), (16 * MI, "evicted"), (32 * MI, "oom_killed")])
    _, page = write_plot_and_report(d)
    assert "between 16 MiB/s and 32 MiB/s: separated, no CI" in page.read_text()


def _curve(boundary: float, a_below: bool = True) -> list[ModelPoint]:
    """A model curve over 16..256 with P(A) 1 on one side of ``boundary`` and 0 on the other."""
    out = []
    for r in (16.0, 32.0, 64.0, 128.0, 256.0):
        p = 1.0 if (r < boundary) == a_below else 0.0
        out.append(ModelPoint(r, {}, p, p, 1 - p, "A" if p else "B"))
    return out


def test_agreement_one_class_past_the_boundary_or_a_boundary_the_model_lacks() -> None:
    """Trials of one class are a disagreement once they reach past the predicted boundary on the
    side where the model says the other class; short of it (within the tolerance) nothing is tested.
    A boundary the trials locate where the model has none in the range is a disagreement."""
    pred = PredictedBoundary(100.0, (64.0, 128.0), "", 5, _curve(100.0))
    all_a = Fit(n=3, n_a=3, n_b=0, method="insufficient", boundary=None)
    # A only, up to 200 (achieved): the model says B above 100
    assert agreement(all_a, pred, 0.1, [Trial(50.0, A), Trial(250.0, A, 200.0)]) is False
    # A only, but the fastest trial achieved 105: within the tolerance, no test
    assert agreement(all_a, pred, 0.1, [Trial(50.0, A), Trial(250.0, A, 105.0)]) is None
    # B only, at rates above the boundary: what the model says
    all_b = Fit(n=2, n_a=0, n_b=2, method="insufficient", boundary=None)
    assert agreement(all_b, pred, 0.1, [Trial(150.0, B), Trial(200.0, B)]) is None
    assert agreement(all_b, pred, 0.1, [Trial(40.0, B), Trial(200.0, B)]) is False
    # the trials separate at 60; the model has no boundary in 16..256 (A everywhere)
    sep = Fit(n=4, n_a=2, n_b=2, method="separated", boundary=60.0, bracket_low=50.0, bracket_high=70.0)
    none = PredictedBoundary(None, None, "A everywhere", 5, _curve(1e9))
    assert agreement(sep, none, 0.1) is False
    vague = Fit(n=9, n_a=7, n_b=2, method="logistic", boundary=170.0, ci_low=None, ci_high=None)
    assert agreement(vague, none, 0.1) is None


def test_an_inconclusive_sweep_exits_5_not_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mixed trials that locate no boundary neither agree nor disagree: exit 5 with the reason."""
    import harness.sweep.runner as runner

    def fake_run_sweep(cfg: SweepConfig, store: Any, **_: Any) -> runner.SweepResult:
        fit = Fit(n=9, n_a=7, n_b=2, method="logistic", boundary=None, notes=["outside the rates tried"])
        pred = PredictedBoundary(203.0 * 2**20, None, "", 1)
        return runner.SweepResult(store.dir, "complete", [{}] * 9, fit, pred, None, "max trials", None)

    monkeypatch.setattr(runner, "run_sweep", fake_run_sweep)
    suite = str(Path(__file__).resolve().parents[2] / "suites" / "sweep-local.yaml")
    args = [
        "sweep",
        suite,
        "--scenario",
        "S11-local",
        "--rate-range",
        "4Mi/s:64Mi/s",
        "-o",
        str(tmp_path / "s"),
    ]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 5, res.output
    assert "not compared" in res.output and "inconclusive" in res.output
