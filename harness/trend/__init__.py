"""Trends across nights: per scenario and workload, outcome and event time run after run.

``harness trend SELECTOR -o trend.html`` selects runs like ``compare`` (complete runs unless the
selector filters on ``status``), oldest first, and judges every run against the ``--window``
runs of the same suite before it with ``compare``'s own checks (:func:`harness.compare.compare_groups`: outcome
shares, event times, verdicts, coverage, host deviations; Fisher / Mann-Whitney once a side has
``--min-repeats`` runs, tolerances otherwise). Nothing of compare's statistics is repeated here:
the two small functions :func:`load_runs` and :func:`judge` are the only calls into it, so a
change of compare's rules changes the trend alike.

The page is one self-contained HTML file (no script, nothing fetched): the runs (date, kubelet
version, host), the flagged changes with compare's wording, per scenario a plot (event time per
workload across runs, marker = outcome, red ring = a change) and a table of every cell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.catalog import Catalog, RunInfo, select_runs
from harness.compare import CompareOptions, Group, compare_groups, load_group
from harness.errors import InputError

# compare's checks that flag a cell of the trend (cgroup values are not part of a trend)
FLAG_CHECKS = ("outcome", "time", "verdict", "coverage")


@dataclass
class Cell:
    run: str
    scenario: str
    workload: str
    observed: str
    predicted: str
    passed: bool | None
    t_s: float | None
    victim: bool = False
    flags: list[str] = field(default_factory=list)  # compare's summaries of what changed here


@dataclass
class Trend:
    selector: str
    runs: list[RunInfo]
    cells: list[Cell]
    run_flags: dict[str, list[str]]  # run id -> changes not tied to one workload (host deviations)
    window: int
    options: Any  # harness.compare.CompareOptions
    warnings: list[str] = field(default_factory=list)

    @property
    def keys(self) -> list[tuple[str, str]]:
        seen: dict[tuple[str, str], None] = {}
        for c in self.cells:
            seen.setdefault((c.scenario, c.workload), None)
        return list(seen)

    @property
    def changes(self) -> list[tuple[str, str, str, str]]:
        """(run, scenario, workload, summary) of every flag, in run order."""
        order = {r.id: i for i, r in enumerate(self.runs)}
        out = [(c.run, c.scenario, c.workload, f) for c in self.cells for f in c.flags]
        out += [(run, "", "", f) for run, fs in self.run_flags.items() for f in fs]
        return sorted(out, key=lambda x: (order.get(x[0], 0), x[1], x[2]))

    def cell(self, run: str, scenario: str, workload: str) -> Cell | None:
        for c in self.cells:
            if (c.run, c.scenario, c.workload) == (run, scenario, workload):
                return c
        return None


# ---------------------------------------------------------------------------------------------
# the calls into compare


def load_runs(runs: list[RunInfo]) -> dict[str, Any]:
    """run id -> a one-run compare Group (verdicts and host deviations; no cgroup values)."""

    return {r.id: load_group(r.id, [r], cgroups=False) for r in runs}


def judge(window: list[Any], new: Any, options: Any) -> list[Any]:
    """compare's findings for NEW against the runs of WINDOW (each a one-run Group)."""

    return list(compare_groups(_combine(window), new, options).findings)


def _combine(groups: list[Any]) -> Any:
    """One compare Group of several one-run Groups (what load_group would return for them)."""

    frames = [g.verdicts for g in groups if not g.verdicts.empty]
    return Group(
        label=",".join(g.label for g in groups),
        runs=[r for g in groups for r in g.runs],
        verdicts=pd.concat(frames, ignore_index=True) if frames else groups[0].verdicts,
        cgroups=groups[0].cgroups.iloc[0:0],
        deviations={k: v for g in groups for k, v in g.deviations.items()},
        warnings=[w for g in groups for w in g.warnings],
    )


# ---------------------------------------------------------------------------------------------


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if f != f else f


def build_trend(
    selector: str,
    results: str | Path,
    *,
    window: int = 5,
    options: Any = None,
    progress: Callable[[str], None] | None = None,
) -> Trend:
    """Select the runs, load them once, judge each against the window before it."""

    opts = options or CompareOptions(cgroups=False)
    opts.cgroups = False
    opts.validate()
    if window < 1:
        raise InputError("--window", None, "must be at least 1")
    cat = Catalog(results) if Path(results).is_dir() else None
    runs = select_runs(selector, results, complete_only=True, catalog=cat)
    if not runs:
        raise InputError("SELECTOR", None, f"{selector!r} selects no complete run in {results}")
    if progress:
        progress(f"trend over {len(runs)} run(s), each judged against the {window} of its suite before it")
    groups = load_runs(runs)
    cells: list[Cell] = []
    warnings: list[str] = []
    for r in runs:
        g = groups[r.id]
        warnings += g.warnings
        for row in g.verdicts.to_dict("records"):
            passed = row.get("passed")
            cells.append(
                Cell(
                    run=r.id,
                    scenario=str(row.get("scenario")),
                    workload=str(row.get("workload")),
                    observed=str(row.get("observed")),
                    predicted=str(row.get("predicted") or ""),
                    passed=None if passed is None or passed != passed else bool(passed),
                    t_s=_num(row.get("observed_t_s")),
                    victim=bool(row.get("victim_observed") or False),
                )
            )
    index = {(c.run, c.scenario, c.workload): c for c in cells}
    run_flags: dict[str, list[str]] = {}
    for i, r in enumerate(runs):
        # the runs before it of the same suite (another suite's workloads are not "missing")
        same = [x for x in runs[:i] if x.labels.get("suite") == r.labels.get("suite")]
        before = [groups[x.id] for x in same[-window:]]
        if not before:
            continue
        for f in judge(before, groups[r.id], opts):
            if not f.changed:
                continue
            if f.check in FLAG_CHECKS:
                workload = f.subject.split(" ", 1)[0]  # a time finding's subject is "workload label"
                c = index.get((r.id, f.scenario, workload))
                if c is None:  # missing in NEW: a placeholder cell carries the flag
                    c = Cell(r.id, f.scenario, workload, "absent", "", None, None)
                    cells.append(c)
                    index[(r.id, f.scenario, workload)] = c
                c.flags.append(f.summary)
            else:
                run_flags.setdefault(r.id, []).append(f"{f.check}: {f.summary}")
    return Trend(selector, runs, cells, run_flags, window, opts, warnings)
