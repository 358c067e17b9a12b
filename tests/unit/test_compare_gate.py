"""The upgrade gate: times judged against each side's as-run window, A/A noise, deviations by kind."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.catalog import RunInfo, select_runs
from harness.compare import CompareOptions, Group, compare_groups, load_group
from harness.compare.kinds import deviation_kind
from harness.compare.output import to_text

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs"
KUBELET_RUN = "20261123T184541Z-kubelet-kubernetes-28da"
PROCESS_RUNS = sorted(p.name for p in FIXTURES.iterdir() if "-process-" in p.name)


def _info(run_id: str, deviations: list[str]) -> RunInfo:
    return RunInfo(
        id=run_id,
        path=f"/nonexistent/{run_id}",
        status="complete",
        started=run_id,
        finished=None,
        labels={"suite": "kubelet"},
        host_deviations=deviations,
    )


def _runs(
    label: str,
    events: list[list[tuple[str, str, float, float, float, bool | None]]],
    deviations: list[list[str]] | None = None,
) -> Group:
    """One run per item of ``events``: (workload, observed, t, earliest, latest, time_ok) rows of S3."""
    rows: list[dict[str, Any]] = []
    ids = [f"{label}-{i:03d}" for i in range(len(events))]
    for run, evs in zip(ids, events, strict=True):
        for w, obs, t, lo, hi, ok in evs:
            rows.append(
                {
                    "run": run,
                    "scenario": "s3",
                    "workload": w,
                    "predicted": "evicted",
                    "observed": obs,
                    "observed_t_s": t,
                    "predicted_earliest_s": lo,
                    "predicted_latest_s": hi,
                    "time_ok": ok if obs == "evicted" else None,
                    "victim_observed": False,
                    "passed": obs == "evicted" and ok is not False,
                }
            )
    devs = deviations or [[] for _ in ids]
    return Group(
        label=label,
        runs=[_info(i, d) for i, d in zip(ids, devs, strict=True)],
        verdicts=pd.DataFrame(rows),
        cgroups=pd.DataFrame(),
        deviations={i: set(d) for i, d in zip(ids, devs, strict=True)},
    )


def _slow(got: int, asked: int = 400, chunk: float = 0.31) -> str:
    # the sentence as harness/run.py writes it
    return (
        f"the leak allocated {got} MiB/s of the {asked} MiB/s asked (a chunk took up to {chunk:.2f} s, "
        "interval 0.1 s): this host's page faults are slower than the schedule; judged on the as-run timeline"
    )


def _changes(c: Any, check: str | None = None) -> list[str]:
    return [f.summary for f in c.changes if check is None or f.check == check]


# --------------------------------------------------------------------------- the issue's example


def test_issue_20_later_evictions_inside_both_windows_are_no_change() -> None:
    """1.33.4 vs 1.34.1: S3's three evictions ~10 s later, each inside its side's as-run window, and
    the slow-leak deviation with other numbers: the old gate said 10 changes; none is the kubelet."""
    workloads = ("besteffort", "burstable", "guaranteed")
    base = _runs("1.33.4", [[(w, "evicted", 9.0 + i, 9.5, 19.0, True) for i, w in enumerate(workloads)]])
    new = _runs("1.34.1", [[(w, "evicted", 19.0 + i, 12.0, 21.5, True) for i, w in enumerate(workloads)]])
    base.deviations = {"1.33.4-000": {_slow(212)}}
    new.deviations = {"1.34.1-000": {_slow(187, chunk=0.44)}}
    c = compare_groups(base, new)
    assert not c.changed, to_text(c)
    times = [f for f in c.findings if f.check == "time"]
    assert len(times) == 3 and all("inside the as-run window on both sides" in f.summary for f in times)
    assert times[0].summary == (
        "s3/besteffort: evicted at t=9.00s -> 19.00s (+10.00s), inside the as-run window on both sides "
        "(9.50..19.00s / 12.00..21.50s; position -0.05 -> 0.70 loop periods of 10 s from the crossing)"
    )
    assert times[0].note == "moved inside the window"
    host = [f for f in c.findings if f.check == "host"]
    assert [f.summary for f in host] == [
        "host deviation in both: slow leak: this host's page faults are slower than the schedule"
    ]
    assert "212 MiB/s" in host[0].noise and "187 MiB/s" in host[0].noise  # values as context


def test_eviction_instead_of_oom_kill_is_a_change() -> None:
    base = _runs("a", [[("burstable", "evicted", 10.0, 9.5, 19.0, True)]])
    new = _runs("b", [[("burstable", "node_oom_killed", 10.0, 9.5, 19.0, None)]])
    c = compare_groups(base, new)
    assert _changes(c, "outcome") == ["s3/burstable: outcome evicted -> node_oom_killed"]


def test_a_time_outside_the_new_window_is_a_change() -> None:
    base = _runs("a", [[("burstable", "evicted", 12.0, 9.5, 19.0, True)]])
    new = _runs("b", [[("burstable", "evicted", 31.0, 12.0, 21.5, False)]])
    c = compare_groups(base, new)
    assert _changes(c) == [
        "s3/burstable: evicted at t=31.00s, outside NEW's as-run window 12.00..21.50s "
        "(BASE t=12.00s inside 9.50..19.00s)",
        # the verdict failed too (passed is False when the time is outside)
        "s3/burstable: verdict regressed: 1/1 pass -> 0/1 pass",
    ]
    # the reverse: NEW back inside its window is no time change
    c = compare_groups(new, base)
    assert not _changes(c, "time")
    # outside on both sides: the model misses on both versions alike, not a change between them
    also_out = _runs("c", [[("burstable", "evicted", 33.0, 12.0, 21.5, False)]])
    (f,) = [f for f in compare_groups(new, also_out).findings if f.check == "time"]
    assert not f.changed
    assert f.summary == (
        "s3/burstable: evicted at t=31.00s -> 33.00s (+2.00s), against the as-run windows (outside it: "
        "BASE 1/1, NEW 1/1 runs) (12.00..21.50s / 12.00..21.50s; position 1.90 -> 2.10 loop periods of 10 s "
        "from the crossing)"
    )


def test_without_time_ok_the_window_is_widened_by_the_tolerance() -> None:
    base = _runs("a", [[("burstable", "evicted", 12.0, 9.5, 19.0, None)]])
    near = _runs("b", [[("burstable", "evicted", 20.0, 12.0, 19.5, None)]])
    far = _runs("c", [[("burstable", "evicted", 21.0, 12.0, 19.5, None)]])
    assert not compare_groups(base, near).changed
    assert _changes(compare_groups(base, far), "time")


def test_window_of_another_outcome_is_not_used() -> None:
    """A run that completed while eviction was predicted: its time is not in an eviction window."""
    base = _runs("a", [[("burstable", "completed", 41.5, 34.0, 43.5, None)]])
    new = _runs("b", [[("burstable", "completed", 45.0, 34.0, 43.5, None)]])
    f = next(f for f in compare_groups(base, new).findings if f.check == "time")
    assert f.changed and f.test == "tolerance 1s" and "window" not in f.summary


# --------------------------------------------------------------------------- A/A noise, repeats


def _sample(rng: random.Random, n: int, lo: float, hi: float, pos: tuple[float, float]) -> list[Any]:
    return [[("burstable", "evicted", lo + rng.uniform(*pos) * (hi - lo), lo, hi, True)] for _ in range(n)]


def test_a_a_with_repeats_passes_and_reports_the_spread() -> None:
    """The same kubelet twice, 5 runs each: the eviction falls anywhere in its 10 s loop."""
    rng = random.Random(20)
    for _ in range(20):
        base = _runs("a", _sample(rng, 5, 9.5, 19.0, (0.0, 1.0)))
        new = _runs("b", _sample(rng, 5, 12.0, 21.5, (0.0, 1.0)))
        c = compare_groups(base, new)
        assert not c.changed, to_text(c)
        f = next(f for f in c.findings if f.check == "time")
        assert "Mann-Whitney" in f.test and f.noise.startswith("spread (IQR) of the position: BASE 0.")
        assert next(f for f in c.findings if f.check == "outcome").noise == "one outcome within each side"


def test_mixed_outcomes_report_the_distribution_within_each_side() -> None:
    rng = random.Random(11)
    runs = _sample(rng, 5, 9.5, 19.0, (0.0, 1.0))
    runs[0] = [("burstable", "node_oom_killed", 10.0, 9.5, 19.0, None)]
    c = compare_groups(_runs("a", runs), _runs("b", _sample(rng, 5, 9.5, 19.0, (0.0, 1.0))))
    f = next(f for f in c.findings if f.check == "outcome")
    assert f.noise == "within BASE: evicted 4/5, node_oom_killed 1/5; within NEW: evicted 5/5"
    assert not f.changed  # Fisher: one run in five is within the noise


def test_a_position_shift_beyond_the_noise_is_a_change_with_repeats() -> None:
    """Evictions that used to come early in the window now all come at its end: a slower kubelet."""
    rng = random.Random(7)
    base = _runs("a", _sample(rng, 6, 9.5, 19.0, (0.05, 0.25)))
    new = _runs("b", _sample(rng, 6, 9.5, 19.0, (0.8, 0.95)))
    c = compare_groups(base, new)
    (f,) = c.changes
    assert f.check == "time" and "moved inside the as-run window" in f.summary
    assert f.p_value is not None and f.p_value < 0.01
    # the same shift is not a change when one side's own spread is as large as the shift
    wide = _runs("c", _sample(rng, 6, 9.5, 19.0, (0.0, 1.0)))
    narrow = _runs(
        "d", [[("burstable", "evicted", t, 9.5, 19.0, True)] for t in (17, 17.5, 18, 18.2, 18.5, 18.9)]
    )
    c = compare_groups(wide, narrow, CompareOptions(min_effect=3.0))
    assert not c.changed, to_text(c)


def test_fewer_runs_than_min_repeats_never_fail_on_position() -> None:
    rng = random.Random(3)
    base = _runs("a", _sample(rng, 4, 9.5, 19.0, (0.0, 0.1)))
    new = _runs("b", _sample(rng, 4, 9.5, 19.0, (0.9, 1.0)))
    c = compare_groups(base, new)
    assert not c.changed
    with_repeats = compare_groups(base, new, CompareOptions(min_repeats=4))
    assert [f.check for f in with_repeats.changes] == ["time"]


def test_leaving_the_window_in_more_runs_uses_fisher_with_repeats() -> None:
    rng = random.Random(5)
    base = _runs("a", _sample(rng, 6, 9.5, 19.0, (0.0, 1.0)))
    one_out = _runs(
        "b", [*_sample(rng, 5, 9.5, 19.0, (0.0, 1.0)), [("burstable", "evicted", 30, 9.5, 19, False)]]
    )
    f = next(f for f in compare_groups(base, one_out).findings if f.check == "time")
    assert not f.changed and f.noise.startswith("outside the window: BASE 0/6, NEW 1/6; spread")
    all_out = _runs("c", [[("burstable", "evicted", 30 + i, 9.5, 19, False)] for i in range(6)])
    f = next(f for f in compare_groups(base, all_out).findings if f.check == "time")
    assert f.changed and "Fisher" in f.test and "outside the as-run window in 6/6 NEW runs" in f.summary


# --------------------------------------------------------------------------- deviation kinds


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (_slow(212), "slow leak: this host's page faults are slower than the schedule"),
        (
            _slow(3).replace("page faults", "file writes"),
            "slow leak: this host's file writes are slower than the schedule",
        ),
        (
            "oom_score_adj -997 cannot be written on this host (no CAP_SYS_RESOURCE); the workload runs with 0",
            "negative oom_score_adj cannot be written (no CAP_SYS_RESOURCE)",
        ),
        (
            "oom_score_adj -997 asked by the kubelet, 0 applied "
            "(containerd restrict_oom_score_adj: this host cannot set negative values)",
            "oom_score_adj asked by the kubelet not applied (containerd restrict_oom_score_adj)",
        ),
        (
            "oom_score_adj -997 could not be set on every process (pid 12: permission denied)",
            "oom_score_adj could not be set on every process",
        ),
        ("something new at 1.5 s, 300 MiB", "something new at N s, N MiB"),
    ],
)
def test_deviation_kinds(message: str, kind: str) -> None:
    assert deviation_kind(message) == kind


def test_the_known_patterns_match_the_code_that_writes_them() -> None:
    """The f-strings in the code still produce the sentences the kinds are matched on."""
    from harness.launch.base import applied_oom_score_adj

    _, dev = applied_oom_score_adj(-997, negative_ok=False)
    assert dev is not None
    assert deviation_kind(dev) == "negative oom_score_adj cannot be written (no CAP_SYS_RESOURCE)"
    src = (Path(__file__).resolve().parents[2] / "harness" / "scenario" / "asrun.py").read_text()
    assert 'f"the leak allocated {got / 2**20:.0f} MiB/s of the {asked / 2**20:.0f} MiB/s asked "' in src


def test_a_new_kind_of_deviation_is_a_change_and_shows_its_messages() -> None:
    base = _runs("a", [[("burstable", "evicted", 12.0, 9.5, 19.0, True)]], deviations=[[_slow(212)]])
    new = _runs(
        "b",
        [[("burstable", "evicted", 12.0, 9.5, 19.0, True)]],
        deviations=[
            [_slow(100), "oom_score_adj -997 cannot be written on this host (no CAP_SYS_RESOURCE); x"]
        ],
    )
    c = compare_groups(base, new)
    (f,) = c.changes
    assert f.summary == (
        "new host deviation in 1/1 NEW runs: negative oom_score_adj cannot be written (no CAP_SYS_RESOURCE)"
    )
    assert f.note.startswith("e.g. oom_score_adj -997")


# --------------------------------------------------------------------------- recorded runs


def _copy(tmp: Path, name: str, as_name: str) -> Path:
    d = tmp / as_name
    shutil.copytree(FIXTURES / name, d)
    meta = json.loads((d / "run.json").read_text())
    meta["run_id"] = as_name
    (d / "run.json").write_text(json.dumps(meta))
    return d


def test_recorded_a_a_pairs_pass() -> None:
    """Two real process runs of the same suite, and process vs docker (a slower launcher: every
    event 0.2-0.9 s later, all inside the windows): no change."""
    runs = select_runs(str(FIXTURES), FIXTURES)
    by = {r.id: r for r in runs}
    a, b = (load_group(n, [by[n]]) for n in PROCESS_RUNS)
    assert not compare_groups(a, b).changed
    docker = load_group("docker", [r for r in runs if r.labels["backend"] == "docker"])
    c = compare_groups(b, docker)
    assert not c.changed, to_text(c)
    assert all("inside the as-run window" in f.summary for f in c.findings if f.check == "time")


def test_recorded_kubelet_run_time_outside_its_window_fails(tmp_path: Path) -> None:
    """The real kubelet run, and the same run with S4's OOM kill 3 s after its window (the verdict
    then fails on time) and with a slow-leak deviation of other numbers on both sides."""
    base_dir = _copy(tmp_path, KUBELET_RUN, KUBELET_RUN)
    new_dir = _copy(tmp_path, KUBELET_RUN, KUBELET_RUN.replace("28da", "late"))
    for d, got in ((base_dir, 212), (new_dir, 187)):
        meta = json.loads((d / "run.json").read_text())
        meta["host_deviations"] = [_slow(got)]
        (d / "run.json").write_text(json.dumps(meta))
    v = pd.read_parquet(new_dir / "verdicts.parquet")
    row = v["workload"] == "fastleak"
    v.loc[row, "observed_t_s"] = float(v.loc[row, "predicted_latest_s"].iloc[0]) + 3.0
    v.loc[row, "time_ok"] = False
    v.loc[row, "passed"] = False
    v.to_parquet(new_dir / "verdicts.parquet", index=False)
    base = load_group("base", select_runs(str(base_dir), tmp_path))
    new = load_group("new", select_runs(str(new_dir), tmp_path))
    c = compare_groups(base, new)
    assert _changes(c) == [
        "s4-fast-past-kubepods/fastleak: node_oom_killed at t=5.40s, outside NEW's as-run window "
        "2.40..2.40s (BASE t=2.59s inside 2.40..2.40s)",
        "s4-fast-past-kubepods/fastleak: verdict regressed: 1/1 pass -> 0/1 pass",
    ]
    assert not compare_groups(base, base).changed


def _with_oom_scores(tmp: Path, as_name: str, uid: str, sidecar: str) -> Path:
    """The real S8 run plus the rows harness/verdict/oomscore.py records for a pod with a sidecar."""
    d = _copy(tmp, S8_RUN, as_name)
    cg = pd.read_parquet(d / "cgroups.parquet")
    rel = f"kubepods/burstable/pod{uid}"
    rows = [
        {
            "scenario": "s8-cgroup-values",
            "level": "process",
            "path": f"{rel}/{name}",
            "real_path": f"/proc/{pid}/oom_score_adj",
            "file": "oom_score_adj",
            "expected": value,
            "observed": value,
            "match": True,
            "workload": "app",
        }
        for name, pid, value in (("sidecar", 4100, sidecar), ("app", 4101, "979"))
    ]
    pd.concat([cg, pd.DataFrame(rows)], ignore_index=True).to_parquet(d / "cgroups.parquet", index=False)
    return d


S8_RUN = "20261123T185048Z-kubelet-kubernetes-e423"


def test_sidecar_oom_score_change_is_one_line_and_a_a_passes(tmp_path: Path) -> None:
    old = _with_oom_scores(tmp_path / "a", "r-1.32.5", "11111111-2222-3333-4444-555555555555", "999")
    new = _with_oom_scores(tmp_path / "b", "r-1.33.4", "66666666-7777-8888-9999-000000000000", "979")
    again = _with_oom_scores(tmp_path / "c", "r-1.33.4-again", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "979")
    g_old, g_new, g_again = (load_group(d.name, select_runs(str(d), d.parent)) for d in (old, new, again))
    c = compare_groups(g_old, g_new)
    assert _changes(c) == [
        "s8-cgroup-values/kubepods/burstable/pod<uid>/sidecar [app]: oom_score_adj 999 -> 979"
    ]
    assert not compare_groups(g_new, g_again).changed
