"""Pure logic of the nightly-lab commands: figures, metric text, retention, HARNESS_RESULTS, --json."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from harness.catalog import RunInfo
from harness.cli import cli
from harness.errors import InputError
from harness.export import render, run_figures
from harness.export.figures import evictions
from harness.retention import apply, decide, parse_age, plan_prune

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs"
KUBELET_RUN = FIXTURES / "20261123T184541Z-kubelet-kubernetes-28da"
PROCESS_RUN = FIXTURES / "20261123T183957Z-local-process-8ad9"


# ---------------------------------------------------------------------------- figures and metrics


def test_stats_age_is_event_time_minus_last_summary_before_it() -> None:
    ev = pd.DataFrame(
        [
            {"t_mono": 1.0, "t_wall": 1000.0, "source": "harness", "kind": "scenario_start", "scenario": "s7"},
            {"t_mono": 2.0, "t_wall": 1001.0, "source": "kubelet-stats", "kind": "summary",
             "stats_time": "1970-01-01T00:16:40Z"},  # 1000
            {"t_mono": 9.0, "t_wall": 1008.0, "source": "kubelet-stats", "kind": "summary",
             "stats_time": "1970-01-01T00:16:47Z"},  # 1007
            {"t_mono": 9.5, "t_wall": 1012.5, "source": "kubelet", "kind": "Evicted",
             "object": "Pod/s7-young-pod-ab12"},
            {"t_mono": 10.0, "t_wall": 1013.0, "source": "kubelet-stats", "kind": "summary",
             "stats_time": "1970-01-01T00:16:53Z"},  # after the eviction: not the kubelet's view
        ]
    )  # fmt: skip
    (e,) = evictions(ev, {("s7", "young"), ("s7", "young-pod"), ("s1", "young")})
    assert (e.scenario, e.workload, e.pod) == ("s7", "young-pod", "s7-young-pod-ab12")
    assert e.stats_time == "1970-01-01T00:16:47Z"
    assert e.stats_age_s == pytest.approx(5.5)


def test_no_summary_no_stats_age() -> None:
    ev = pd.DataFrame(
        [{"t_mono": 1.0, "t_wall": 5.0, "source": "kubelet", "kind": "Evicted", "object": "Pod/x"}]
    )
    (e,) = evictions(ev, set())
    assert e.stats_age_s is None and e.workload == "" and e.scenario == ""


@pytest.mark.parametrize("fmt", ["openmetrics", "prometheus"])
def test_metrics_equal_the_run_tables(fmt: str) -> None:
    fig = run_figures(KUBELET_RUN)
    text = render(fig, fmt).decode()
    assert text.rstrip().endswith("# EOF") == (fmt == "openmetrics")
    samples = {
        (
            s.name,
            tuple(sorted((k, v) for k, v in s.labels.items() if k in ("result", "scenario", "workload"))),
        ): s
        for fam in text_string_to_metric_families(text.replace("# EOF\n", ""))
        for s in fam.samples
    }
    v = pd.read_parquet(KUBELET_RUN / "verdicts.parquet")
    assert samples[("harness_verdicts_total", (("result", "pass"),))].value == v["passed"].sum()
    assert samples[("harness_verdicts_total", (("result", "fail"),))].value == (~v["passed"]).sum()
    for r in v.to_dict("records"):
        key = (("scenario", r["scenario"]), ("workload", r["workload"]))
        assert samples[("harness_workload_outcome", key)].labels["outcome"] == r["observed"]
        assert samples[("harness_workload_verdict_passed", key)].value == float(r["passed"])
        t = r["observed_t_s"]
        assert (("harness_workload_event_seconds", key) in samples) == (not pd.isna(t))
    s = samples[
        ("harness_workload_outcome", (("scenario", "s2-slow-past-allocatable"), ("workload", "slowleak")))
    ]
    # host facts as labels, no run id on a series (it must continue across nights)
    assert s.labels["kubelet_version"] == "1.33.4" and s.labels["cgroup_version"] == "v1"
    assert s.labels["host"] == "vm" and s.labels["kernel"].startswith("6.18") and "run_id" not in s.labels
    age = samples[
        (
            "harness_eviction_stats_age_seconds",
            (("scenario", "s2-slow-past-allocatable"), ("workload", "slowleak")),
        )
    ]
    assert 0 <= age.value < 15  # cAdvisor housekeeping ~10 s, back-off up to ~15 s


def test_process_run_has_no_evictions_and_one_deviation() -> None:
    fig = run_figures(PROCESS_RUN)
    assert fig.evictions == [] and len(fig.deviations) == 1
    assert fig.verdicts_passed == 9 and fig.verdicts_failed == 0


def test_not_a_run_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no run\.json"):
        run_figures(tmp_path)


# ---------------------------------------------------------------------------- retention


def _info(i: int, status: str = "complete", path: str = "/nonexistent") -> RunInfo:
    return RunInfo(
        id=f"r{i}", path=f"{path}/r{i}", status=status, started=f"2026-11-{i:02d}T00:00:00+00:00",
        finished=None, labels={},
    )  # fmt: skip


NOW = pd.Timestamp("2026-11-30T00:00:00Z").timestamp()


def test_keep_last_and_older_than() -> None:
    runs = [_info(i) for i in range(1, 11)]
    d = decide(runs, "results", keep_last=3, older_than_s=None, active_dirs=set(), now=NOW)
    assert [x.run.id for x in d if x.prune] == [f"r{i}" for i in range(1, 8)]
    d = decide(runs, "results", keep_last=None, older_than_s=parse_age("25d"), active_dirs=set(), now=NOW)
    assert [x.run.id for x in d if x.prune] == ["r1", "r2", "r3", "r4"]
    d = decide(runs, "results", keep_last=8, older_than_s=parse_age("25d"), active_dirs=set(), now=NOW)
    assert [x.run.id for x in d if x.prune] == ["r1", "r2"]  # both must hold


def test_running_runs_are_never_pruned() -> None:
    runs = [_info(1), _info(2), _info(3)]
    active = {str(Path("/nonexistent/r1").resolve())}
    d = decide(runs, "results", keep_last=0, older_than_s=None, active_dirs=active, now=NOW)
    assert [x.prune for x in d] == [False, True, True]
    assert "still running" in d[0].reason
    d = decide(runs, "sweep s", keep_last=0, older_than_s=None, active_dirs=set(), now=NOW, locked=True)
    assert not any(x.prune for x in d) and all("lock held" in x.reason for x in d)


def test_parse_age_errors() -> None:
    with pytest.raises(InputError, match="30 days"):
        parse_age("30 days")


def _copy_runs(dst: Path) -> list[str]:
    names = sorted(p.name for p in FIXTURES.iterdir() if (p / "run.json").is_file())
    for n in names:
        shutil.copytree(FIXTURES / n, dst / n)
    return names


def test_plan_and_apply_on_a_results_folder_with_a_sweep(tmp_path: Path) -> None:
    res = tmp_path / "results"
    names = _copy_runs(res)
    sweep = res / "sweeps" / "20261124T000000Z-S11-process-aaaa"
    _copy_runs(sweep / "runs")
    (sweep / "sweep.json").write_text("{}")
    # the newest top-level run is "running" and registered by a live process (this one)
    meta = json.loads((res / names[-1] / "run.json").read_text())
    (res / names[-1] / "run.json").write_text(json.dumps({**meta, "status": "running"}))
    active = [{"run_id": names[-1], "pid": os.getpid(), "dir": str(res / names[-1])}]
    plan = plan_prune(res, keep_last=2, active=active, now=time.time())
    top = {d.run.id: d for d in plan.decisions if d.pool == "results"}
    trials = [d for d in plan.decisions if d.pool.startswith("sweep")]
    assert [n for n, d in top.items() if d.prune] == names[:3]
    assert len(trials) == len(names) and sum(d.prune for d in trials) == len(names) - 2
    assert apply(plan, res) == []
    assert sorted(p.name for p in res.iterdir() if (p / "run.json").exists()) == names[3:]
    assert len(list((sweep / "runs").glob("*/run.json"))) == 2 and (sweep / "sweep.json").exists()
    # the running one survives even with --keep-last 0
    plan = plan_prune(res, keep_last=0, active=active, now=time.time(), sweeps=False)
    assert [d.run.id for d in plan.prune] == [names[3]]


def test_a_locked_sweep_is_left_alone(tmp_path: Path) -> None:
    res = tmp_path / "results"
    res.mkdir()
    sweep = res / "sweeps" / "s"
    _copy_runs(sweep / "runs")
    fd = os.open(sweep / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert plan_prune(res, keep_last=0, active=[]).prune == []
    finally:
        os.close(fd)
    assert len(plan_prune(res, keep_last=0, active=[]).prune) == 5


# ---------------------------------------------------------------------------- CLI


def test_harness_results_sets_the_folder(tmp_path: Path) -> None:
    res = tmp_path / "nightly"
    names = _copy_runs(res)
    r = CliRunner().invoke(cli, ["runs", "list", "--json"], env={"HARNESS_RESULTS": str(res)})
    assert r.exit_code == 0, r.output
    assert [x["id"] for x in json.loads(r.stdout)] == names
    r = CliRunner().invoke(cli, ["runs", "show", "last:1", "--json"], env={"HARNESS_RESULTS": str(res)})
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["run_id"] == names[-1]
    r = CliRunner().invoke(
        cli, ["runs", "prune", "--keep-last", "1", "--dry-run"], env={"HARNESS_RESULTS": str(res)}
    )
    assert r.exit_code == 0 and r.stdout.count("would remove") == len(names) - 1
    assert len(list(res.glob("*/run.json"))) == len(names)  # dry run: nothing removed


def test_export_writes_a_textfile(tmp_path: Path) -> None:
    out = tmp_path / "harness.prom"
    r = CliRunner().invoke(cli, ["export", str(PROCESS_RUN), "-o", str(out), "--format", "prometheus"])
    assert r.exit_code == 0, r.output
    names = {f.name for f in text_string_to_metric_families(out.read_text())}
    assert {"harness_verdicts", "harness_workload_event_seconds", "harness_run_info"} <= names
    assert [p.name for p in tmp_path.iterdir()] == ["harness.prom"]


def test_export_needs_exactly_one_run() -> None:
    r = CliRunner().invoke(cli, ["export", str(FIXTURES)])
    assert r.exit_code == 2 and "selects 5 runs" in r.output


def test_prune_needs_a_rule(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["runs", "prune", "--results", str(tmp_path)])
    assert r.exit_code == 2 and "--keep-last" in r.output


# ---------------------------------------------------------------------------- trend


def test_trend_flags_with_compare_rules(tmp_path: Path) -> None:
    import sys

    from harness.compare import CompareOptions
    from harness.trend import build_trend

    res = tmp_path / "runs"
    _copy_runs(res)
    sys.path.insert(0, str(FIXTURES))
    try:
        from plant import plant
    finally:
        sys.path.remove(str(FIXTURES))
    p = Path(plant(FIXTURES / "20261123T184023Z-local-process-2cef", res, outcome="evicted", at_s=1.2))
    meta = json.loads((p / "run.json").read_text())
    (p / "run.json").write_text(json.dumps({**meta, "started": "2026-11-24T00:00:00+00:00"}))
    t = build_trend("backend=process", res, window=5)
    assert [r.id for r in t.runs][-1] == p.name and len(t.runs) == 3
    flagged = {(c.run, c.scenario, c.workload) for c in t.cells if c.flags}
    assert flagged == {(p.name, "s1-container-limit", "leaker")}
    assert t.cell(p.name, "s1-container-limit", "leaker").observed == "evicted"  # type: ignore[union-attr]
    # compare's time rule: a time inside its own as-run window is not a change, however small the
    # tolerance, so the nights' jitter flags nothing but the planted outcome
    t = build_trend("backend=process", res, window=1, options=CompareOptions(tolerance_seconds=0.001))
    assert {(c.run, c.scenario, c.workload) for c in t.cells if c.flags} == {
        (p.name, "s1-container-limit", "leaker")
    }
    with pytest.raises(InputError, match="selects no complete run"):
        build_trend("backend=nothing", res)


def test_dashboard_names_only_exported_metrics() -> None:
    import re

    dash = json.loads((FIXTURES.parents[2] / "dashboards" / "nightly.json").read_text())
    text = json.dumps(dash)
    used = set(re.findall(r"harness_[a-z_]+", text)) - {"harness_nightly"}
    exported = {
        s.name
        for f in (run_figures(KUBELET_RUN), run_figures(PROCESS_RUN))
        for fam in text_string_to_metric_families(render(f, "prometheus").decode())
        for s in fam.samples
    }
    assert used and used <= exported, used - exported


def test_a_merged_lab_run_labels_each_row_with_its_lab_host(tmp_path: Path) -> None:
    """harness run --inventory merges hosts' tables with a host column: no duplicate series."""
    run = tmp_path / KUBELET_RUN.name
    shutil.copytree(KUBELET_RUN, run)
    for table in ("verdicts", "events"):
        df = pd.read_parquet(run / f"{table}.parquet")
        both = pd.concat([df.assign(host="lab-a"), df.assign(host="lab-b")], ignore_index=True)
        both.to_parquet(run / f"{table}.parquet")
    fig = run_figures(run)
    assert {e.host for e in fig.evictions} == {"lab-a", "lab-b"}
    assert len({round(e.stats_age_s or -1, 6) for e in fig.evictions}) == 1  # each host's own summaries
    fams = list(text_string_to_metric_families(render(fig, "prometheus").decode()))
    series = [(s.name, tuple(sorted(s.labels.items()))) for f in fams for s in f.samples]
    assert len(series) == len(set(series))
    outc = [s for f in fams for s in f.samples if s.name == "harness_workload_outcome"]
    assert sorted({s.labels["host"] for s in outc}) == ["lab-a", "lab-b"] and len(outc) == 6
