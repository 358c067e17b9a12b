"""Which run folders ``harness runs prune`` removes, and which it must never touch.

Pools: the runs directly under the results folder, and the trial runs of each sweep
(``<results>/sweeps/<sweep-id>/runs/<run-id>/``; the sweep's own files, ``sweep.json``,
``trials.jsonl``, ``fit.json``, the plot and page, are small and stay). The rules apply to each
pool on its own, so ``--keep-last 30`` keeps thirty nightly runs and the last thirty trials of
every sweep.

* ``--keep-last N``: a run is a candidate when N newer runs of its pool (after the filters)
  exist;
* ``--older-than 30d``: a run is a candidate when it started more than that long ago;
* both given: both must hold.

Never removed, whatever the rules say (each with its reason in the plan):

* a run that is still running: registered in ``/run/harness/active`` by a live process
  (:func:`harness.run.active_runs`: same pid *and* process start time), or with status
  ``running`` in its ``run.json`` written less than :data:`RECENT_S` ago (the window between
  creating the folder and registering it);
* every trial of a sweep whose ``.lock`` is held (the sweep is running now).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.catalog import Catalog, RunInfo, select_runs
from harness.errors import InputError
from harness.run import active_runs

RECENT_S = 3600.0
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """``30d`` -> seconds; units s, m, h, d, w.

    >>> parse_age("30d"), parse_age("12h"), parse_age("2w")
    (2592000.0, 43200.0, 1209600.0)
    """
    m = _AGE.match(text)
    if not m:
        raise InputError(
            "--older-than", None, f"{text!r}: expected a number and a unit (s, m, h, d, w), e.g. 30d"
        )
    return float(m.group(1)) * _UNIT_S[m.group(2)]


@dataclass
class Decision:
    run: RunInfo
    pool: str  # "results" or "sweep <id>"
    prune: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run.id,
            "path": self.run.path,
            "pool": self.pool,
            "prune": self.prune,
            "reason": self.reason,
        }


@dataclass
class Plan:
    decisions: list[Decision] = field(default_factory=list)

    @property
    def prune(self) -> list[Decision]:
        return [d for d in self.decisions if d.prune]

    @property
    def kept(self) -> list[Decision]:
        return [d for d in self.decisions if not d.prune]


def _epoch(iso: str) -> float | None:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _sweep_locked(sweep_dir: Path) -> bool:
    """Is the sweep's ``.lock`` held by a process (a sweep running now)?"""
    lock = sweep_dir / ".lock"
    if not lock.exists():
        return False
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return True  # cannot tell: treat as running
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def decide(
    runs: list[RunInfo],
    pool: str,
    *,
    keep_last: int | None,
    older_than_s: float | None,
    active_dirs: set[str],
    now: float,
    locked: bool = False,
) -> list[Decision]:
    """The decision for each run of one pool (pure: no file is touched)."""
    if keep_last is None and older_than_s is None:
        raise InputError("runs prune", None, "give --keep-last N and/or --older-than AGE")
    if keep_last is not None and keep_last < 0:
        raise InputError("--keep-last", None, "must be >= 0")
    ordered = sorted(runs, key=lambda r: (r.started, r.id))
    out: list[Decision] = []
    for i, r in enumerate(ordered):
        newer = len(ordered) - 1 - i
        reasons = []
        rule = True
        if keep_last is not None:
            rule = rule and newer >= keep_last
            reasons.append(f"{newer} newer run(s)")
        if older_than_s is not None:
            t = _epoch(r.started)
            age = None if t is None else now - t
            rule = rule and age is not None and age > older_than_s
            reasons.append(f"age {age / 86400:.1f} d" if age is not None else "no start time")
        guard = ""
        if locked:
            guard = "its sweep is running (lock held)"
        elif str(Path(r.path).resolve()) in active_dirs:
            guard = "still running (registered active run)"
        elif r.status == "running":
            with contextlib.suppress(OSError):
                if now - (Path(r.path) / "run.json").stat().st_mtime < RECENT_S:
                    guard = "status running, run.json written in the last hour"
        if rule and guard:
            out.append(Decision(r, pool, False, f"kept: {guard}"))
        else:
            out.append(Decision(r, pool, rule, ("prune: " if rule else "keep: ") + ", ".join(reasons)))
    return out


def plan_prune(
    results: str | Path,
    *,
    keep_last: int | None = None,
    older_than_s: float | None = None,
    selector: str = "",
    sweeps: bool = True,
    now: float | None = None,
    active: list[dict[str, Any]] | None = None,
) -> Plan:
    """Decide for every run of the results folder and of its sweeps (nothing is removed)."""
    root = Path(results)
    if not root.is_dir():
        raise InputError(str(root), None, "results folder does not exist")
    if active is None:
        active = active_runs()
    active_dirs = {str(Path(str(a.get("dir", ""))).resolve()) for a in active if a.get("dir")}
    t = time.time() if now is None else now
    plan = Plan()
    runs = select_runs(selector, root, catalog=Catalog(root)) if selector else Catalog(root).runs()
    plan.decisions += decide(
        runs, "results", keep_last=keep_last, older_than_s=older_than_s, active_dirs=active_dirs, now=t
    )
    sweeps_root = root / "sweeps"
    if sweeps and sweeps_root.is_dir():
        for sd in sorted(p for p in sweeps_root.iterdir() if (p / "runs").is_dir()):
            trial_root = sd / "runs"
            cat = Catalog(trial_root)
            trials = select_runs(selector, trial_root, catalog=cat) if selector else cat.runs()
            plan.decisions += decide(
                trials,
                f"sweep {sd.name}",
                keep_last=keep_last,
                older_than_s=older_than_s,
                active_dirs=active_dirs,
                now=t,
                locked=_sweep_locked(sd),
            )
    return plan


def apply(plan: Plan, results: str | Path) -> list[str]:
    """Remove the planned run folders; returns the ones that could not be removed."""
    root = Path(results).resolve()
    failed: list[str] = []
    for d in plan.prune:
        p = Path(d.run.path).resolve()
        # only a run folder (run.json) below the results folder, never anything else
        if root not in p.parents or not (p / "run.json").is_file():
            failed.append(f"{p}: not a run folder under {root}")
            continue
        try:
            shutil.rmtree(p)
        except OSError as exc:
            failed.append(f"{p}: {exc}")
    return failed
