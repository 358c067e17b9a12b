"""The regression gate's rules on groups of runs (pure logic), and loading recorded runs."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pandas as pd
import pytest

from harness.catalog import Catalog, RunInfo, select_runs
from harness.compare import CompareOptions, Group, compare_groups, compare_selections, load_group
from harness.compare.core import fisher_p, mannwhitney_p, share_change
from harness.compare.output import to_json, to_junit, to_markdown, to_text
from harness.errors import InputError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs"
PROCESS_RUNS = sorted(p.name for p in FIXTURES.iterdir() if "-process-" in p.name)


def _info(run_id: str, deviations: list[str] | None = None) -> RunInfo:
    return RunInfo(
        id=run_id,
        path=f"/nonexistent/{run_id}",
        status="complete",
        started=run_id,
        finished=None,
        labels={"suite": "local"},
        host_deviations=deviations or [],
    )


def _group(
    label: str,
    outcomes: list[str],
    times: list[float] | None = None,
    *,
    workload: str = "leaker",
    passed: list[bool] | None = None,
    victim: list[bool] | None = None,
    limits: list[str] | None = None,
    deviations: list[list[str]] | None = None,
) -> Group:
    n = len(outcomes)
    ids = [f"{label}-{i:03d}" for i in range(n)]
    rows: list[dict[str, Any]] = []
    for i in range(n):
        rows.append(
            {
                "run": ids[i],
                "scenario": "s1",
                "workload": workload,
                "predicted": "oom_killed",
                "observed": outcomes[i],
                "observed_t_s": times[i] if times else 1.5,
                "victim_observed": victim[i] if victim else False,
                "passed": passed[i] if passed else outcomes[i] == "oom_killed",
            }
        )
    cg = pd.DataFrame(
        [
            {"run": ids[i], "scenario": "s1", "cgroup": "kubepods", "file": "memory limit", "value": v}
            for i, v in enumerate(limits or [])
        ]
    )
    devs = deviations or [[] for _ in range(n)]
    return Group(
        label=label,
        runs=[_info(ids[i], devs[i]) for i in range(n)],
        verdicts=pd.DataFrame(rows),
        cgroups=cg,
        deviations={ids[i]: set(devs[i]) for i in range(n)},
    )


def _changed(c: Any, check: str) -> list[str]:
    return [f.summary for f in c.changes if f.check == check]


# --------------------------------------------------------------------------- statistics


def test_fisher_and_mannwhitney_against_known_values() -> None:
    # 5/5 vs 0/5: p = 2 / C(10,5) = 2/252
    assert fisher_p(5, 5, 0, 5) == pytest.approx(2 / 252)
    assert fisher_p(3, 5, 3, 5) == pytest.approx(1.0)
    assert mannwhitney_p([1.0] * 6, [1.0] * 6) == 1.0
    assert mannwhitney_p([1, 2, 3, 4, 5, 6], [11, 12, 13, 14, 15, 16]) < 0.01


def test_share_change_small_samples_use_the_tolerance() -> None:
    from collections import Counter

    opts = CompareOptions()
    changed, move, test, p = share_change(Counter(a=1), Counter(b=1), opts)
    assert changed and move == 1.0 and test == "exact" and p is None
    changed, move, _, _ = share_change(Counter(a=2), Counter(a=1, b=1), CompareOptions(tolerance_share=0.6))
    assert not changed and move == pytest.approx(0.5)


# --------------------------------------------------------------------------- outcomes


def test_planted_eviction_instead_of_oom_kill_fails_the_gate() -> None:
    c = compare_groups(_group("base", ["oom_killed"]), _group("new", ["evicted"]))
    assert c.changed
    assert _changed(c, "outcome") == ["s1/leaker: outcome oom_killed -> evicted"]
    assert _changed(c, "verdict") == ["s1/leaker: verdict regressed: 1/1 pass -> 0/1 pass"]
    assert not _changed(c, "time")  # times of different outcomes are not compared


def test_identical_groups_pass() -> None:
    c = compare_groups(_group("base", ["oom_killed"] * 3), _group("new", ["oom_killed"] * 3))
    assert not c.changed
    assert {f.check for f in c.findings} >= {"outcome", "time", "verdict"}


def test_victim_kill_is_its_own_outcome() -> None:
    base = _group("base", ["node_oom_killed"], victim=[False], passed=[True])
    new = _group("new", ["node_oom_killed"], victim=[True], passed=[True])
    c = compare_groups(base, new)
    assert _changed(c, "outcome") == ["s1/leaker: outcome node_oom_killed -> node_oom_killed (victim)"]


def test_repeated_runs_use_fisher_exact() -> None:
    ten_oom = ["oom_killed"] * 10
    # one flaky run out of ten: not significant
    c = compare_groups(_group("b", ten_oom), _group("n", ["evicted"] + ["oom_killed"] * 9))
    f = next(f for f in c.findings if f.check == "outcome")
    assert not f.changed and f.p_value is not None and f.p_value > 0.05 and "Fisher" in f.test
    # half of them: significant
    c = compare_groups(_group("b", ten_oom), _group("n", ["evicted"] * 6 + ["oom_killed"] * 4))
    f = next(f for f in c.findings if f.check == "outcome")
    assert f.changed and f.p_value is not None and f.p_value < 0.05
    assert f.summary.startswith("s1/leaker: outcome oom_killed 10/10 -> evicted 6/10, oom_killed 4/10")
    # same, with a share tolerance larger than the move
    c = compare_groups(
        _group("b", ten_oom),
        _group("n", ["evicted"] * 6 + ["oom_killed"] * 4),
        CompareOptions(tolerance_share=0.7),
    )
    assert not _changed(c, "outcome")


def test_race_distributions_that_match_pass() -> None:
    base = ["evicted"] * 6 + ["node_oom_killed"] * 4
    new = ["evicted"] * 5 + ["node_oom_killed"] * 5
    c = compare_groups(_group("b", base, passed=[True] * 10), _group("n", new, passed=[True] * 10))
    assert not c.changed


# --------------------------------------------------------------------------- times


def test_time_shift_single_runs_uses_the_tolerance() -> None:
    c = compare_groups(_group("b", ["oom_killed"], [1.5]), _group("n", ["oom_killed"], [3.0]))
    assert _changed(c, "time") == ["s1/leaker: oom_killed at t=1.50s -> 3.00s (+1.50s)"]
    c = compare_groups(
        _group("b", ["oom_killed"], [1.5]),
        _group("n", ["oom_killed"], [3.0]),
        CompareOptions(tolerance_seconds=2),
    )
    assert not c.changed


def test_time_shift_repeated_runs_need_significance_and_size() -> None:
    b = [1.50, 1.52, 1.49, 1.51, 1.50, 1.53]
    shifted = [t + 2.0 for t in b]
    c = compare_groups(_group("b", ["oom_killed"] * 6, b), _group("n", ["oom_killed"] * 6, shifted))
    f = next(f for f in c.findings if f.check == "time")
    assert f.changed and "Mann-Whitney" in f.test and f.p_value is not None and f.p_value < 0.01
    # significant but tiny (30 ms): not a behaviour change at the default 1 s tolerance
    tiny = [t + 0.03 for t in b]
    c = compare_groups(_group("b", ["oom_killed"] * 6, b), _group("n", ["oom_killed"] * 6, tiny))
    assert not _changed(c, "time")
    # large median move but the groups overlap completely: not significant
    noisy_b = [1, 9, 1, 9, 1, 9]
    noisy_n = [9, 1, 9, 1, 9, 1.5]
    c = compare_groups(
        _group("b", ["oom_killed"] * 6, noisy_b),
        _group("n", ["oom_killed"] * 6, noisy_n),
        CompareOptions(tolerance_seconds=0.1),
    )
    f = next(f for f in c.findings if f.check == "time")
    assert not f.changed and f.p_value is not None and f.p_value > 0.05


# --------------------------------------------------------------------------- other checks


def test_cgroup_values_and_host_deviations() -> None:
    dev = "oom_score_adj -997 cannot be written on this host (no CAP_SYS_RESOURCE); the workload runs with 0"
    base = _group("b", ["oom_killed"] * 2, limits=["872415232"] * 2, deviations=[[], []])
    new = _group("n", ["oom_killed"] * 2, limits=["905969664"] * 2, deviations=[[dev], []])
    c = compare_groups(base, new)
    assert _changed(c, "cgroup") == ["s1/kubepods: memory limit 872415232 (832Mi) -> 905969664 (864Mi)"]
    assert _changed(c, "host") == [
        "new host deviation in 1/2 NEW runs: negative oom_score_adj cannot be written (no CAP_SYS_RESOURCE)"
    ]
    assert next(f for f in c.changes if f.check == "host").note == f"e.g. {dev}"
    # the other way round: the deviation went away (reported, not failed); no cgroup compare when off
    c = compare_groups(new, base, CompareOptions(cgroups=False))
    assert not _changed(c, "host") and not _changed(c, "cgroup")
    assert any(f.note == "resolved" for f in c.findings)


def test_missing_workload_in_new_fails_and_extra_one_is_reported() -> None:
    base = _group("b", ["oom_killed"])
    new = _group("n", ["oom_killed"], workload="other")
    c = compare_groups(base, new)
    assert _changed(c, "coverage") == ["s1/leaker: in BASE (1 runs), missing in NEW"]
    assert any(f.check == "coverage" and f.note == "only in NEW" and not f.changed for f in c.findings)


def test_verdict_improvement_is_reported_not_failed() -> None:
    base = _group("b", ["oom_killed"], passed=[False])
    new = _group("n", ["oom_killed"], passed=[True])
    c = compare_groups(base, new)
    assert not c.changed
    assert any(f.check == "verdict" and f.note == "improved" for f in c.findings)


def test_bad_options_are_input_errors() -> None:
    for opts in (
        CompareOptions(alpha=0),
        CompareOptions(tolerance_share=1.5),
        CompareOptions(min_repeats=1),
        CompareOptions(tolerance_seconds=-1),
    ):
        with pytest.raises(InputError):
            compare_groups(_group("b", ["oom_killed"]), _group("n", ["oom_killed"]), opts)


def test_outputs_carry_the_changes() -> None:
    c = compare_groups(_group("base", ["oom_killed"]), _group("new", ["evicted"]))
    text = to_text(c)
    assert "CHANGED  outcome  s1/leaker: outcome oom_killed -> evicted" in text
    assert "behaviour changed: 2 change(s)" in text
    md = to_markdown(c)
    assert "| outcome | s1/leaker | oom_killed | evicted | exact |  |" in md
    root = ElementTree.fromstring(to_junit(c))
    assert root.get("failures") == "2" and int(root.get("tests", 0)) == len(c.findings)
    failed = [tc.get("name") for tc in root.iter("testcase") if tc.find("failure") is not None]
    assert failed == ["s1/leaker", "s1/leaker"]
    assert '"changed": true' in to_json(c)


# --------------------------------------------------------------------------- recorded runs


def _plant(dst: Path) -> Path:
    sys.path.insert(0, str(FIXTURES))
    try:
        from plant import plant
    finally:
        sys.path.remove(str(FIXTURES))
    return plant(
        FIXTURES / PROCESS_RUNS[1],
        dst,
        scenario="s1-container-limit",
        workload="leaker",
        outcome="evicted",
        at_s=1.2,
    )


def test_recorded_runs_load_and_identical_behaviour_passes() -> None:
    runs = [r for r in Catalog(FIXTURES, use_index=False).runs() if r.labels["backend"] == "process"]
    g = load_group("process", runs)
    assert set(g.verdicts["run"]) == {r.id for r in runs}
    assert len(g.verdicts) == 9 * len(runs)
    lim = g.cgroups[(g.cgroups["scenario"] == "s1-container-limit") & (g.cgroups["cgroup"] == "leaker")]
    assert set(lim["value"]) == {str(128 << 20)}  # the leaker's 128Mi limit, from the samples
    c = compare_groups(load_group("a", runs[:1]), load_group("b", runs[1:2]))
    assert not c.changed, to_text(c)


def test_recorded_run_against_planted_change_fails(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(FIXTURES / PROCESS_RUNS[0], results / PROCESS_RUNS[0])
    planted = _plant(results)
    c = compare_selections(PROCESS_RUNS[0], planted.name, results)
    assert c.changed
    assert _changed(c, "outcome") == ["s1-container-limit/leaker: outcome oom_killed -> evicted"]
    assert [f.check for f in c.changes] == ["outcome", "verdict"]
    # selected by the planted label
    assert [r.id for r in select_runs("planted=*", results)] == [planted.name]


def test_observed_cgroup_values_from_a_real_kubelet_run(tmp_path: Path) -> None:
    """cgroups.parquet as the S8 scenario writes it; pod UIDs differ between runs, values compare."""
    from harness.compare.load import cgroup_subject

    name = next(p.name for p in FIXTURES.iterdir() if (p / "cgroups.parquet").exists())
    base_dir = tmp_path / "base" / name
    shutil.copytree(FIXTURES / name, base_dir)
    new_dir = tmp_path / "new" / name
    shutil.copytree(FIXTURES / name, new_dir)
    cg = pd.read_parquet(new_dir / "cgroups.parquet")
    cg["path"] = cg["path"].str.replace(
        r"pod[0-9a-f-]{36}", "pod00000000-1111-2222-3333-444444444444", regex=True
    )
    target = (cg["level"] == "kubepods") & (cg["file"] == "memory.limit_in_bytes")
    assert target.sum() == 1
    cg.loc[target, "observed"] = str(int(cg.loc[target, "observed"].iloc[0]) + (64 << 20))
    cg.to_parquet(new_dir / "cgroups.parquet", index=False)
    base = load_group("base", select_runs(str(base_dir), tmp_path))
    new = load_group("new", select_runs(str(new_dir), tmp_path))
    subjects = set(base.cgroups["cgroup"])
    assert "kubepods/pod<uid>/guaranteed [guaranteed]" in subjects
    assert (
        cgroup_subject("kubepods/burstable/pod8c636f80-d933-400b-950d-967f31ade9bb")
        == "kubepods/burstable/pod<uid>"
    )
    c = compare_groups(base, new)
    assert [f.summary for f in c.changes] == [
        "s8-cgroup-values/kubepods: memory.limit_in_bytes 3264802816 -> 3331911680"
    ]


def test_empty_selection_names_the_side(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES, tmp_path / "results", ignore=shutil.ignore_patterns("*.py", ".*"))
    with pytest.raises(
        InputError,
        match=r"^NEW: 'backend=containerd' selects no complete run.*backend=docker\|kubernetes\|process",
    ):
        compare_selections("backend=process", "backend=containerd", tmp_path / "results")
