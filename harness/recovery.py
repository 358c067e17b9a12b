"""Runs whose process was killed (SIGKILL, OOM, a lost host) are marked ``killed`` and completed.

A run writes ``run.json`` with status ``running`` and its pid and process start time, streams its
samples (Arrow batches) and events (JSON lines) into ``progress/`` and turns them into tables at
the end. A process killed with SIGKILL never reaches the end: its run stayed ``running`` for ever.
The next ``harness cleanup`` or ``harness runs list`` finds such runs (their pid is gone or is
another process: the start time differs), turns what the progress files hold into the usual
tables, marks the run ``killed`` and removes its page-cache scratch folder.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.procs import proc_start_time
from harness.results import atomic_write

if TYPE_CHECKING:
    from harness.catalog import Catalog

# harness.run, harness.sample.sampler and harness.scenario.steps (pandas, pyarrow, the model) are
# imported only when a run is found dead: ``runs list`` calls this on every listing.


def _alive(meta: dict[str, Any], run_id: str) -> bool | None:
    """Is the run's process alive? None when nothing says (a run of an older harness)."""
    pid, start = meta.get("pid"), meta.get("pid_start")
    if pid is None:
        from harness.run import ACTIVE_DIR  # lazy: harness.run loads the model and pandas (runs list)

        reg = ACTIVE_DIR / f"{run_id}.json"
        try:
            rec = json.loads(reg.read_text())
        except (OSError, ValueError):
            return None
        pid, start = rec.get("pid"), rec.get("start")
    if pid is None or start is None:
        return None
    return bool(proc_start_time(int(pid)) == start)


def _events(progress: Path) -> list[dict[str, Any]]:
    out = []
    path = progress / "events.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # the torn last line of a killed writer
    return out


def recover_run(run_dir: Path, say: Callable[[str], None] = lambda _m: None) -> bool:
    """Mark one dead ``running`` run ``killed`` and write its tables; False if it is not one."""
    try:
        meta = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return False
    if meta.get("status") != "running" or _alive(meta, run_dir.name) is not False:
        return False
    # lazy: only a killed run is recovered; these load pandas/pyarrow and the model (runs list)
    from harness.results import write_table
    from harness.run import ACTIVE_DIR
    from harness.sample.sampler import finalize
    from harness.scenario.steps import WORKDIR

    progress = run_dir / "progress"
    written, failed = [], []
    for name, write in (
        ("samples.parquet", lambda: finalize(progress, run_dir / "samples.parquet")),
        ("events.parquet", lambda: write_table(run_dir / "events.parquet", _events(progress))),
    ):
        try:
            write()
            written.append(name)
        except Exception as exc:  # keep going: the status matters most
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    meta.update(
        status="killed",
        finished=None,
        killed_detected=datetime.now(UTC).isoformat(),
        recovered_tables=written,
    )
    if failed:
        meta["recovery_errors"] = failed
    atomic_write(run_dir / "run.json", json.dumps(meta, indent=2, default=str).encode())
    shutil.rmtree(WORKDIR / run_dir.name, ignore_errors=True)
    (ACTIVE_DIR / f"{run_dir.name}.json").unlink(missing_ok=True)
    say(
        f"harness: run {run_dir.name} was killed (pid {meta.get('pid', '?')} gone): marked killed, "
        f"tables written from its progress files: {', '.join(written) or 'none'}"
    )
    return True


def recover_killed_runs(
    results_dir: Path, say: Callable[[str], None] = lambda _m: None, *, catalog: Catalog | None = None
) -> list[str]:
    """Every dead ``running`` run directly under ``results_dir``: the ids marked ``killed``.

    With the ``catalog`` of ``results_dir``, only the runs it lists as ``running`` are read (its
    index is re-checked against every run.json's mtime and size); without, every run.json is.
    """
    if not results_dir.is_dir():
        return []
    if catalog is not None:
        names = sorted(catalog.running_folders())
    else:
        names = sorted(d.name for d in results_dir.iterdir() if (d / "run.json").is_file())
    return [name for name in names if recover_run(results_dir / name, say)]
