"""``harness upgrade-check``: the schedule, the commands, gathering the runs, the gate and the report.

The cluster steps are replaced by a runner that records the argv and, for ``harness run``, files a
copy of a real recorded kubelet run (tests/fixtures/runs) under the labels the step asked for. The
real thing is tests/e2e/test_upgrade_check.py (needs the local cluster).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.errors import HarnessError, InputError
from harness.upgrade import (
    UpgradeCheck,
    build_command,
    execute,
    gather,
    new_check_id,
    normalize_version,
    plan,
    selectors,
    step_commands,
    subprocess_runner,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs"
KUBELET_RUN = FIXTURES / "20261123T184541Z-kubelet-kubernetes-28da"


def test_plan_alternates_versions_so_drift_hits_both() -> None:
    steps = plan("1.33.4", "1.34.1", 3)
    assert [(s.version, s.repeat) for s in steps] == [
        ("1.33.4", 1),
        ("1.34.1", 1),
        ("1.33.4", 2),
        ("1.34.1", 2),
        ("1.33.4", 3),
        ("1.34.1", 3),
    ]
    assert [s.index for s in steps] == list(range(6))
    with pytest.raises(InputError, match="--repeats"):
        plan("1.33.4", "1.34.1", 0)


def test_versions_and_check_ids() -> None:
    assert normalize_version("v1.34.1") == "1.34.1"
    for bad in ("1.34", "latest", "1.34.1-rc.0"):
        with pytest.raises(InputError, match="not a release"):
            normalize_version(bad)
    a, b = new_check_id("1.33.4", "1.34.1"), new_check_id("1.33.4", "1.34.1")
    assert a != b and "-1.33.4-1.34.1-" in a


def test_step_commands_label_the_runs_and_selectors_find_them() -> None:
    check = UpgradeCheck("X1", "1.33.4", "1.34.1", "suites/upgrade.yaml", 2, "/tmp/r", ["S12"], "p.yaml")
    up, run = step_commands(plan("1.33.4", "1.34.1", 2)[3], check)
    assert up == ["cluster", "up", "--version", "1.34.1", "--profile", "p.yaml"]
    assert run == [
        "run",
        "suites/upgrade.yaml",
        "--backend",
        "kubernetes",
        "--results",
        "/tmp/r",
        "-q",
        "--scenario",
        "S12",
        "--label",
        "upgrade=X1",
        "--label",
        "side=to",
        "--label",
        "repeat=2",
        "--label",
        "kubelet-wanted=1.34.1",
    ]
    assert selectors("X1") == ("upgrade=X1,side=from", "upgrade=X1,side=to")
    assert build_command(["1.33.4", "1.33.4"]) == ["cluster", "build", "--version", "1.33.4"]


class FakeCluster:
    """Records the harness commands; ``run`` files a copy of a real kubelet run with the step's labels.

    ``change`` rewrites the NEW side's runs: ``outcome`` (S4's OOM kill becomes an eviction, as a
    kubelet that evicted faster would show) or ``late`` (S4's OOM kill 3.6 s after its window)."""

    def __init__(self, change: str | None = None, fail: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.version: str | None = None
        self.change = change
        self.fail = fail
        self.n = 0

    def __call__(self, argv: list[str], log: Path) -> int:
        self.calls.append(argv)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:
            f.write(" ".join(argv) + "\n")
        if argv[:2] == ["cluster", "up"]:
            self.version = argv[3]
            return 2 if self.fail == f"up {self.version}" else 0
        if argv[0] == "run":
            return self._run(argv)
        return 0

    def _run(self, argv: list[str]) -> int:
        labels = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--label")
        results = Path(argv[argv.index("--results") + 1])
        self.n += 1
        run_id = f"20261206T0{self.n:05d}Z-kubelet-kubernetes-{labels['side']}{labels['repeat']}"
        d = results / run_id
        shutil.copytree(KUBELET_RUN, d)
        meta = json.loads((d / "run.json").read_text())
        meta["run_id"] = run_id
        meta["started"] = f"2026-12-06T00:{self.n:02d}:00+00:00"
        meta["labels"] = labels
        meta["host"]["engine"]["kubelet"] = f"v{self.version}"
        (d / "run.json").write_text(json.dumps(meta))
        if labels["side"] == "to" and self.change:
            v = pd.read_parquet(d / "verdicts.parquet")
            if self.change == "outcome":
                row = v["workload"] == "fastleak"
                v.loc[row, "observed"] = "evicted"
                v.loc[row, "passed"] = False
            else:
                row = v["workload"] == "fastleak"
                v.loc[row, "observed_t_s"] = 6.0
                v.loc[row, ["time_ok", "passed"]] = [False, False]
            v.to_parquet(d / "verdicts.parquet", index=False)
        return 1  # the recorded run has one failed verdict: a mismatch is data, not a failed step


def _check(tmp: Path, a: str = "1.33.4", b: str = "1.34.1", repeats: int = 2) -> UpgradeCheck:
    return UpgradeCheck(new_check_id(a, b), a, b, "suites/kubelet.yaml", repeats, str(tmp / "runs"))


def test_execute_builds_then_alternates_and_keeps_its_state(tmp_path: Path) -> None:
    fake = FakeCluster()
    check = _check(tmp_path)
    said: list[str] = []
    execute(check, tmp_path, runner=fake, progress=said.append)
    assert fake.calls[0] == ["cluster", "build", "--version", "1.33.4", "--version", "1.34.1"]
    ups = [c[3] for c in fake.calls if c[:2] == ["cluster", "up"]]
    assert ups == ["1.33.4", "1.34.1", "1.33.4", "1.34.1"]
    state = json.loads((tmp_path / "upgrade.json").read_text())
    assert [(s["side"], s["run_rc"]) for s in state["steps"]] == [("from", 1), ("to", 1)] * 2
    assert sorted(p.name for p in (tmp_path / "logs").iterdir())[0] == "build.log"
    runs = gather(check)
    assert [r.labels["kubelet"] for r in runs["from"]] == ["1.33.4", "1.33.4"]
    assert [r.labels["repeat"] for r in runs["to"]] == ["1", "2"]
    assert any("step 4/4" in m for m in said)


def test_a_failed_step_stops_with_its_log_and_keeps_the_runs_done(tmp_path: Path) -> None:
    fake = FakeCluster(fail="up 1.34.1")
    check = _check(tmp_path)
    with pytest.raises(
        HarnessError, match=r"step 2 \(cluster up --version 1.34.1\) failed with exit 2; see .*step-02"
    ):
        execute(check, tmp_path, runner=fake)
    state = json.loads((tmp_path / "upgrade.json").read_text())
    assert [s["up_rc"] for s in state["steps"]] == [0, 2]
    assert len(list((tmp_path / "runs").iterdir())) == 1


def test_a_run_on_the_wrong_kubelet_is_refused(tmp_path: Path) -> None:
    fake = FakeCluster()
    check = _check(tmp_path, repeats=1)
    execute(check, tmp_path, runner=fake)
    d = next((tmp_path / "runs").glob("*-to1"))
    meta = json.loads((d / "run.json").read_text())
    meta["host"]["engine"]["kubelet"] = "v1.33.4"
    (d / "run.json").write_text(json.dumps(meta))
    with pytest.raises(HarnessError, match=r"side to wants kubelet 1\.34\.1 but run"):
        gather(check)


def _cli_check(tmp_path: Path, change: str | None, a: str = "1.33.4", b: str = "1.34.1") -> Any:
    """Run the schedule with the fake cluster, then the command's compare-and-report step."""
    out = tmp_path / "out"
    check = _check(out, a, b, repeats=2)
    execute(check, out, runner=FakeCluster(change))
    return CliRunner().invoke(
        cli,
        ["upgrade-check", "--from", a, "--to", b, "-o", str(out), "--compare-only"],
        catch_exceptions=False,
    )


def test_a_a_check_passes_and_writes_the_report(tmp_path: Path) -> None:
    r = _cli_check(tmp_path, None, "1.33.4", "1.33.4")
    assert r.exit_code == 0, r.output
    assert "no change beyond tolerance" in r.output
    out = tmp_path / "out"
    html = (out / "report.html").read_text()
    assert "Upgrade check: kubelet v1.33.4 -&gt; v1.33.4" in html
    assert html.count('<img src="data:image/png;base64,') == 4  # 2 scenarios x 2 sides
    assert {p.name for p in out.iterdir()} >= {"compare.md", "compare.json", "junit.xml", "compare.txt"}


def test_an_outcome_change_fails_the_gate_with_one_line(tmp_path: Path) -> None:
    r = _cli_check(tmp_path, "outcome")
    assert r.exit_code == 1, r.output
    changed = [x for x in r.output.splitlines() if x.lstrip().startswith("CHANGED")]
    assert changed[0].split("[")[0].strip() == (
        "CHANGED  outcome  s4-fast-past-kubepods/fastleak: outcome node_oom_killed 2/2 -> evicted 2/2 "
        "(share moved 100%)"
    )
    assert 'class="badge fail">' in (tmp_path / "out" / "report.html").read_text()


def test_bad_input_exits_2(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(cli, ["upgrade-check", "--from", "1.33", "--to", "1.34.1", "--dry-run"])
    assert r.exit_code == 2 and "not a release like 1.33.4" in r.output
    r = runner.invoke(cli, ["upgrade-check", "--from", "1.33.4", "--to", "1.34.1", "--suite", "nope.yaml"])
    assert r.exit_code == 2 and "nope.yaml: suite file not found" in r.output
    r = runner.invoke(
        cli, ["upgrade-check", "--from", "1.33.4", "--to", "1.34.1", "-o", str(tmp_path), "--compare-only"]
    )
    assert r.exit_code == 2 and "no upgrade.json" in r.output


def test_dry_run_prints_every_command() -> None:
    r = CliRunner().invoke(
        cli, ["upgrade-check", "--from", "1.32.5", "--to", "1.33.4", "--repeats", "2", "--dry-run"]
    )
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[1] == "harness cluster build --version 1.32.5 --version 1.33.4"
    assert [x.split()[4] for x in lines if x.startswith("harness cluster up")] == ["1.32.5", "1.33.4"] * 2
    assert lines[-1].startswith("harness compare --results results/upgrades/")


def test_a_time_outside_the_window_fails_the_gate(tmp_path: Path) -> None:
    r = _cli_check(tmp_path, "late")
    assert r.exit_code == 1, r.output
    changed = [x.split("[")[0].strip() for x in r.output.splitlines() if x.lstrip().startswith("CHANGED")]
    assert changed == [
        "CHANGED  time     s4-fast-past-kubepods/fastleak: node_oom_killed outside the as-run window in 2/2 NEW "
        "runs (BASE 0/2; medians t=2.59s -> 6.00s)",
        "CHANGED  verdict  s4-fast-past-kubepods/fastleak: verdict regressed: 2/2 pass -> 0/2 pass",
    ]


def test_the_subprocess_runner_logs_each_command_and_returns_its_exit_code(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "step.log"
    assert subprocess_runner(["--version"], log) == 0
    assert subprocess_runner(["upgrade-check", "--from", "x", "--to", "1.34.1"], log) == 2
    text = log.read_text()
    assert text.startswith("$ harness --version\nharness, version ")
    assert "$ harness upgrade-check --from x --to 1.34.1\n" in text and "not a release like 1.33.4" in text


def test_an_interrupted_step_is_recorded(tmp_path: Path) -> None:
    def runner(argv: list[str], log: Path) -> int:
        if argv[0] == "run":
            raise KeyboardInterrupt
        return 0

    check = _check(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        execute(check, tmp_path, runner=runner)
    state = json.loads((tmp_path / "upgrade.json").read_text())
    assert [(s["up_rc"], s["run_rc"]) for s in state["steps"]] == [(0, 130)]
