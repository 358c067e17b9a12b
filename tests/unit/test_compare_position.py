"""The position of an event inside its as-run window: evictions in kubelet loop periods from the
crossing, other outcomes as a fraction of the window; the stats age at evictions as noise."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.catalog import RunInfo
from harness.compare import CompareOptions, Group, compare_groups, load_group
from harness.compare import position as pos
from harness.compare.output import to_text


def _info(run_id: str, path: str = "") -> RunInfo:
    return RunInfo(
        id=run_id,
        path=path or f"/nonexistent/{run_id}",
        status="complete",
        started=run_id,
        finished=None,
        labels={"suite": "kubelet"},
        host_deviations=[],
    )


def _group(label: str, rows: list[tuple[str, float, float, float, float | None]]) -> Group:
    """One run per row: (observed, t, earliest, latest, stats age) of S3's burstable pod, inside its window."""
    out: list[dict[str, Any]] = []
    ids = [f"{label}-{i:03d}" for i in range(len(rows))]
    for run, (obs, t, lo, hi, age) in zip(ids, rows, strict=True):
        out.append(
            {
                "run": run,
                "scenario": "s3",
                "workload": "burstable",
                "predicted": obs,
                "observed": obs,
                "observed_t_s": t,
                "predicted_earliest_s": lo,
                "predicted_latest_s": hi,
                "time_ok": True,
                "victim_observed": False,
                "passed": True,
                "eviction_stats_age_s": age,
            }
        )
    return Group(
        label=label,
        runs=[_info(i) for i in ids],
        verdicts=pd.DataFrame(out),
        cgroups=pd.DataFrame(),
        deviations={i: set() for i in ids},
    )


def _evictions(
    rng: random.Random, n: int, lo: float, hi: float, latency: tuple[float, float], age: float | None = None
) -> list[tuple[str, float, float, float, float | None]]:
    """``n`` evictions ``latency`` loop periods (uniform) after the crossing at ``lo``."""
    rows: list[tuple[str, float, float, float, float | None]] = []
    for _ in range(n):
        t = lo + rng.uniform(*latency) * pos.EVICTION_MONITORING_PERIOD_S
        rows.append(("evicted", t, lo, hi, None if age is None else age + rng.uniform(0, 2)))
    return rows


def _time(c: Any) -> Any:
    return next(f for f in c.findings if f.check == "time")


def test_the_loop_period_is_the_kubelets() -> None:
    # k8s: pkg/kubelet/kubelet.go evictionMonitoringPeriod = time.Second * 10
    assert pos.EVICTION_MONITORING_PERIOD_S == 10.0
    assert pos.position(19.0, (12.0, 21.5), pos.LOOP_PERIODS) == pytest.approx(0.7)
    assert pos.unit_for("evicted (victim)", []) == pos.LOOP_PERIODS
    assert pos.unit_for("oom_killed", [(3.0, 5.0)]) == pos.FRACTION


def test_a_wider_new_window_with_the_same_latency_is_no_change() -> None:
    """NEW's as-run window starts 2.5 s later (the leak's pace) and is twice as wide (a race widened it),
    but the kubelet still evicts late in the first loop after the crossing: as a fraction of the window the evictions would seem to move from its
    end to its middle; in loop periods from the crossing they did not move."""
    latencies = (0.6, 0.65, 0.7, 0.8, 0.85, 0.9)
    base = _group("a", [("evicted", 9.5 + 10 * x, 9.5, 19.0, None) for x in latencies])
    new = _group("b", [("evicted", 12.0 + 10 * x, 12.0, 31.0, None) for x in latencies])
    fractions = [pos.position(9.5 + 10 * x, (9.5, 19.0), pos.FRACTION) for x in latencies]
    # judged as fractions the shift (-0.4) is 2 x the spread within a side, Mann-Whitney p = 0.002, and
    # the median time moved 2.5 s: the window-fraction rule would fail the gate on the host's noise
    assert min(fractions) > max(pos.position(12.0 + 10 * x, (12.0, 31.0), pos.FRACTION) for x in latencies)
    c = compare_groups(base, new)
    assert not c.changed, to_text(c)
    f = _time(c)
    assert "position 0.75 -> 0.75 loop periods of 10 s from the crossing" in f.summary
    assert (
        f.noise
        == "spread (IQR) of the position: BASE 0.18, NEW 0.18 (loop periods of 10 s from the crossing); "
        "the loop's phase alone: 0.47"
    )


def test_a_kubelet_one_loop_later_inside_a_wide_window_is_a_change() -> None:
    """Inside the same wide window, evictions that came within the first loop now come in the second:
    the latency from the crossing grew by a loop period, far beyond the spread within each side."""
    rng = random.Random(2)
    base = _group("a", _evictions(rng, 6, 10.0, 30.0, (0.1, 0.4)))
    new = _group("b", _evictions(rng, 6, 10.0, 30.0, (1.1, 1.4)))
    c = compare_groups(base, new)
    (f,) = c.changes
    assert f.check == "time" and "moved inside the as-run window" in f.summary
    assert "loop periods of 10 s from the crossing" in f.summary
    assert "stats age" not in f.summary and "stats age" not in f.noise  # none recorded


def test_a_shift_within_the_loops_own_phase_noise_is_no_change() -> None:
    """Each side's evictions fell close together by chance or because the kubelet (re)started at the
    same moment before every run, so the loop's phase was the same each time; a version that starts a
    little later moves the phase by a quarter of a loop. That is past the (tiny) spread within each
    side but inside the half loop the phase alone spreads an eviction over: no change."""
    base = _group("a", [("evicted", 9.5 + 10 * x, 9.5, 19.0, None) for x in (0.30, 0.31, 0.32, 0.33, 0.34)])
    new = _group("b", [("evicted", 9.5 + 10 * x, 9.5, 19.0, None) for x in (0.55, 0.56, 0.57, 0.58, 0.59)])
    f = _time(compare_groups(base, new))
    assert not f.changed and f.p_value is not None and f.p_value < 0.01
    assert "shift 0.5 x the spread within a side" in f.summary
    # in a window narrower than a loop (the memcg notification syncs at once) the floor is lower
    # and the same quarter-loop shift fails the gate
    base = _group("a", [("evicted", 9.5 + 10 * x, 9.5, 13.5, None) for x in (0.01, 0.02, 0.03, 0.04, 0.05)])
    new = _group("b", [("evicted", 9.5 + 10 * x, 9.5, 13.5, None) for x in (0.26, 0.27, 0.28, 0.29, 0.30)])
    assert _time(compare_groups(base, new)).changed


def test_other_outcomes_keep_the_fraction_of_the_window() -> None:
    rows = [("oom_killed", 3.0 + 0.1 * i, 3.0, 5.0, None) for i in range(5)]
    c = compare_groups(_group("a", rows), _group("b", rows))
    assert not c.changed
    assert _time(c).noise.endswith("(of the window)")


def test_stats_age_is_reported_as_noise_within_each_side() -> None:
    rows = [("evicted", 9.5 + 10 * x, 9.5, 19.0, age) for x, age in ((0.1, 2.0), (0.3, 4.0), (0.5, 6.0))]
    base = _group("a", rows * 2)
    new = _group("b", [(o, t, lo, hi, None) for o, t, lo, hi, _ in rows * 2])
    c = compare_groups(base, new)
    assert not c.changed
    assert _time(c).noise == (
        "spread (IQR) of the position: BASE 0.30, NEW 0.30 (loop periods of 10 s from the crossing); "
        "the loop's phase alone: 0.47; stats age at the eviction: BASE 4.0s (IQR 3.0s, 6 runs), NEW not recorded"
    )


def test_a_shift_that_comes_with_older_stats_says_so() -> None:
    """Evictions a loop later while the kubelet's stats got as much older: still a change (the kubelet
    changed), and the line names the stats rather than the loop."""
    rng = random.Random(4)
    base = _group("a", _evictions(rng, 6, 9.5, 30.0, (0.1, 0.4), age=1.0))
    new = _group("b", _evictions(rng, 6, 9.5, 30.0, (1.1, 1.4), age=11.0))
    (f,) = compare_groups(base, new).changes
    assert "the stats age at the eviction moved too" in f.summary and "not its loop" in f.summary
    # the same shift with stats of the same age: the loop moved, no such remark
    same = _group("c", _evictions(rng, 6, 9.5, 30.0, (1.1, 1.4), age=1.0))
    (f,) = compare_groups(base, same).changes
    assert "stats age" not in f.summary


def test_few_repeats_report_the_latency_but_never_fail_on_it() -> None:
    rng = random.Random(5)
    base = _group("a", _evictions(rng, 4, 9.5, 30.0, (0.1, 0.2)))
    new = _group("b", _evictions(rng, 4, 9.5, 30.0, (1.7, 1.8)))
    c = compare_groups(base, new)
    assert not c.changed
    assert "loop periods of 10 s from the crossing" in _time(c).summary
    assert [f.check for f in compare_groups(base, new, CompareOptions(min_repeats=4)).changes] == ["time"]


def test_the_stats_age_is_loaded_from_verdicts_parquet(tmp_path: Path) -> None:
    runs = []
    for i, age in enumerate((2.5, None)):
        d = tmp_path / f"run{i}"
        d.mkdir()
        pd.DataFrame(
            [
                {
                    "scenario": "s3",
                    "workload": "burstable",
                    "predicted": "evicted",
                    "observed": "evicted",
                    "observed_t_s": 12.0,
                    "predicted_earliest_s": 9.5,
                    "predicted_latest_s": 19.0,
                    "time_ok": True,
                    "victim_observed": False,
                    "passed": True,
                    "eviction_stats_age_s": age,
                }
            ]
        ).to_parquet(d / "verdicts.parquet")
        runs.append(_info(f"run{i}", str(d)))
    g = load_group("x", runs, cgroups=False)
    assert g.verdicts["eviction_stats_age_s"].tolist()[0] == 2.5
    assert pd.isna(g.verdicts["eviction_stats_age_s"].tolist()[1])
