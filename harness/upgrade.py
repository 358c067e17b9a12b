"""The upgrade check: one kubelet version against another on this host, alternating versions.

``harness upgrade-check --from A --to B`` builds both versions, then runs the suite A, B, A, B, ...
(``repeats`` runs per side) so that whatever drifts on the host during the night (page cache,
fragmentation, another job) falls on both sides alike instead of on the second one only. Each run
is labelled with the check's id, its side and its repeat, so the comparison selects exactly its own
runs from the results folder. Everything goes through the ordinary CLI (``harness cluster build``,
``harness cluster up --version V``, ``harness run SUITE --backend kubernetes --label ...``), each
step a subprocess with its own log, so a step that fails leaves the runs done so far on disk.

The functions here are plain: :func:`plan` (the schedule), :func:`step_commands` (the argv of each
step), :func:`selectors` (how the comparison finds the runs) and :func:`execute` (runs the plan
through a runner that tests can replace). The command lives in ``harness/commands/upgrade.py``.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.errors import EXIT_HOST, EXIT_INPUT, EXIT_INTERNAL, HarnessError, HostError, InputError

SIDES = ("from", "to")
LABEL_CHECK = "upgrade"
LABEL_SIDE = "side"
LABEL_REPEAT = "repeat"
# exit codes of `harness run`: 0 all verdicts match, 1 a mismatch (data, not a failure of the check)
RUN_OK = (0, 1)
INTERRUPTED = 130


@dataclass(frozen=True)
class Step:
    """One run of the suite on one version."""

    index: int  # 0-based position in the schedule
    side: str  # "from" | "to"
    version: str
    repeat: int  # 1-based repeat of this side

    def labels(self, check_id: str) -> dict[str, str]:
        return {LABEL_CHECK: check_id, LABEL_SIDE: self.side, LABEL_REPEAT: str(self.repeat)}


@dataclass
class StepResult:
    step: Step
    up_rc: int | None = None
    run_rc: int | None = None
    seconds: float = 0.0
    log: str = ""

    @property
    def ok(self) -> bool:
        return self.up_rc == 0 and self.run_rc in RUN_OK


@dataclass
class UpgradeCheck:
    """What a check asks for; written to ``upgrade.json`` in the output folder with its progress."""

    check_id: str
    from_version: str
    to_version: str
    suite: str
    repeats: int
    results: str
    scenarios: list[str] = field(default_factory=list)
    profile: str | None = None
    started: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def normalize_version(v: str) -> str:
    """``v1.34.1`` and ``1.34.1`` are the same release; anything but MAJOR.MINOR.PATCH is bad input."""
    s = v.strip().removeprefix("v")
    parts = s.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise InputError("--from/--to", None, f"{v!r} is not a release like 1.33.4")
    return s


def new_check_id(from_version: str, to_version: str, now: datetime | None = None) -> str:
    """A label value that names one check: ``20261206T010203Z-1.33.4-1.34.1-ab12``."""
    t = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{t}-{from_version}-{to_version}-{secrets.token_hex(2)}"


def plan(from_version: str, to_version: str, repeats: int) -> list[Step]:
    """A, B, A, B, ...: ``repeats`` runs per side, alternating, starting with the old version.

    >>> [(s.side, s.repeat) for s in plan("1.33.4", "1.34.1", 2)]
    [('from', 1), ('to', 1), ('from', 2), ('to', 2)]
    """
    if repeats < 1:
        raise InputError("--repeats", None, "must be at least 1")
    # --from == --to is an A/A check (the noise of this host); the sides are told apart by label
    steps: list[Step] = []
    for r in range(1, repeats + 1):
        for side, v in (("from", from_version), ("to", to_version)):
            steps.append(Step(index=len(steps), side=side, version=v, repeat=r))
    return steps


def build_command(versions: list[str]) -> list[str]:
    """``harness cluster build`` for every version (cached ones return at once)."""
    out = ["cluster", "build"]
    for v in dict.fromkeys(versions):
        out += ["--version", v]
    return out


def step_commands(
    step: Step,
    check: UpgradeCheck,
) -> list[list[str]]:
    """The harness argv of one step: bring the cluster to the version, then run the suite."""
    up = ["cluster", "up", "--version", step.version]
    if check.profile:
        up += ["--profile", check.profile]
    run = ["run", check.suite, "--backend", "kubernetes", "--results", check.results, "-q"]
    for s in check.scenarios:
        run += ["--scenario", s]
    for k, v in step.labels(check.check_id).items():
        run += ["--label", f"{k}={v}"]
    run += ["--label", f"kubelet-wanted={step.version}"]
    return [up, run]


def selectors(check_id: str) -> tuple[str, str]:
    """BASE and NEW for ``harness compare``: this check's complete runs of each side."""
    return (
        f"{LABEL_CHECK}={check_id},{LABEL_SIDE}=from",
        f"{LABEL_CHECK}={check_id},{LABEL_SIDE}=to",
    )


def gather(check: UpgradeCheck) -> dict[str, list[Any]]:
    """This check's complete runs per side, each run's kubelet checked against its side's version.

    A run that reports another kubelet than its side asked for (``cluster up`` fell back, a stale
    binary) would make the comparison lie: it is a :class:`HarnessError` naming the run.
    """
    # lazy: harness.catalog loads pandas/pyarrow; the CLI imports this module at start-up
    from harness.catalog import Catalog, select_runs

    cat = Catalog(check.results, use_index=False)
    out: dict[str, list[Any]] = {}
    for side, sel, version in zip(
        SIDES, selectors(check.check_id), (check.from_version, check.to_version), strict=True
    ):
        runs = select_runs(sel, check.results, complete_only=True, catalog=cat)
        wrong = [r.id for r in runs if r.labels.get("kubelet") not in (None, version)]
        if wrong:
            got = {r.labels.get("kubelet") for r in runs if r.id in wrong}
            raise HarnessError(f"side {side} wants kubelet {version} but run(s) {', '.join(wrong)} ran {got}")
        out[side] = runs
    return out


Runner = Callable[[list[str], Path], int]


def subprocess_runner(argv: list[str], log: Path) -> int:
    """Run ``python -m harness ARGV`` with its output appended to ``log``; its exit code.

    Ctrl-C reaches the step too (same process group): the step stops what it started and keeps its
    results (``harness run`` exits 130), so it is waited for before the interrupt goes on.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as f:
        f.write(f"$ harness {' '.join(argv)}\n".encode())
        f.flush()
        p = subprocess.Popen(
            [sys.executable, "-m", "harness", *argv],
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            return p.wait()
        except KeyboardInterrupt:
            p.wait()
            raise


def _tail(log: Path, n: int = 5) -> str:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(x.strip() for x in lines[-n:] if x.strip())


def execute(
    check: UpgradeCheck,
    out_dir: Path,
    runner: Runner = subprocess_runner,
    progress: Callable[[str], None] | None = None,
) -> list[StepResult]:
    """Build both versions, then run the schedule; ``upgrade.json`` is rewritten after each step.

    A build or ``cluster up`` that fails, or a run that ends with a harness error (exit 2), stops the
    check with a :class:`HarnessError` naming the step and its log (exit 2): a missing side is not a
    comparison. A run whose verdicts mismatch (exit 1) is data and the check goes on. Ctrl-C in a
    step (exit 130) stops the check as interrupted.
    """
    say = progress or (lambda _m: None)
    out_dir.mkdir(parents=True, exist_ok=True)
    logs = out_dir / "logs"
    state = out_dir / "upgrade.json"
    steps = plan(check.from_version, check.to_version, check.repeats)
    check.started = check.started or datetime.now(UTC).isoformat()

    def save() -> None:
        state.write_text(json.dumps(check.to_dict(), indent=2) + "\n")

    save()
    t = time.monotonic()
    say(f"building v{check.from_version} and v{check.to_version} (cached builds return at once)")
    rc = runner(build_command([check.from_version, check.to_version]), logs / "build.log")
    if rc != 0:
        raise HostError(
            f"cluster build failed (exit {rc}); see {logs / 'build.log'}: {_tail(logs / 'build.log')}"
        )
    say(f"built in {time.monotonic() - t:.0f} s")
    results: list[StepResult] = []
    for step in steps:
        log = logs / f"step-{step.index + 1:02d}-{step.side}-v{step.version}.log"
        res = StepResult(step=step, log=str(log))
        t = time.monotonic()
        say(f"step {step.index + 1}/{len(steps)}: v{step.version} ({step.side}, repeat {step.repeat})")
        up, run = step_commands(step, check)
        try:
            res.up_rc = runner(up, log)
            if res.up_rc == 0:
                res.run_rc = runner(run, log)
        except KeyboardInterrupt:
            check.steps.append({**asdict(step), "up_rc": res.up_rc, "run_rc": INTERRUPTED, "seconds": 0.0})
            save()
            raise
        res.seconds = round(time.monotonic() - t, 1)
        results.append(res)
        check.steps.append({**asdict(step), "up_rc": res.up_rc, "run_rc": res.run_rc, "seconds": res.seconds})
        save()
        if INTERRUPTED in (res.up_rc, res.run_rc):
            raise KeyboardInterrupt
        if not res.ok:
            what = f"cluster up --version {step.version}" if res.up_rc != 0 else f"run of {check.suite}"
            code = res.up_rc if res.up_rc != 0 else res.run_rc
            err = (HarnessError if res.up_rc == 0 and code == EXIT_INPUT else HostError)(
                f"step {step.index + 1} ({what}) failed with exit {code}; see {log}: {_tail(log)}"
            )
            # a run's bad input (2) or internal error (4) is the gate's too; anything else is the lab's (3)
            err.code = code if res.up_rc == 0 and code in (EXIT_INPUT, EXIT_INTERNAL) else EXIT_HOST
            raise err
        say(f"  done in {res.seconds:.0f} s (run exit {res.run_rc})")
    return results
