"""The sweep directory: ``results/sweeps/<sweep-id>/``.

| file | what |
|---|---|
| ``sweep.json`` | inputs (suite, scenario, workload, backend, range, design, outcome classes, profile overrides, model settings), status, the model's curve and boundary, the latest fit; rewritten atomically |
| ``trials.jsonl`` | one JSON line per **completed** trial, appended with a single ``write`` and fsynced: the sweep's source of truth |
| ``trials.parquet`` | the same table, rewritten atomically after every trial (for pandas / reports) |
| ``fit.json`` | the measured boundary (``harness.sweep.fit.Fit``) and the predicted one |
| ``sweep.png``, ``report.html`` | the plot and a page embedding it |
| ``runs/<run-id>/`` | each trial's full run directory (``harness.results``) |
| ``current.json`` | the trial being run right now (removed when it is recorded) |
| ``.lock`` | held (``flock``) by the process running the sweep |

Resume: the completed trials are read back and the design (``harness.sweep.design``) picks
the next step from them, so completed trials are never rerun and an interrupted one (it has
no line in ``trials.jsonl``; ``current.json`` names it) is chosen again. A last line cut short
by a crash is ignored with a warning, and cut off before the next trial is appended.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import HarnessError
from harness.paths import sweeps_dir
from harness.results import atomic_write

SCHEMA_VERSION = 1
DEFAULT_ROOT = sweeps_dir()  # $HARNESS_RESULTS/sweeps, else results/sweeps


def new_sweep_id(scenario: str, backend: str) -> str:
    ts = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{ts}-{scenario}-{backend}-{secrets.token_hex(2)}"


class SweepStore:
    def __init__(self, path: Path) -> None:
        self.dir = Path(path)
        self.meta: dict[str, Any] = {}
        self._lock_fd: int | None = None

    # -- life cycle
    @property
    def exists(self) -> bool:
        return (self.dir / "sweep.json").is_file()

    def create(self, inputs: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "runs").mkdir(exist_ok=True)
        self.meta = {
            "schema": SCHEMA_VERSION,
            "sweep_id": self.dir.name,
            "status": "running",
            "created": datetime.now(UTC).isoformat(),
            "inputs": inputs,
            "sessions": [],
        }
        self.save()

    def load(self) -> dict[str, Any]:
        p = self.dir / "sweep.json"
        try:
            self.meta = json.loads(p.read_text())
        except FileNotFoundError:
            raise HarnessError(f"{self.dir}: not a sweep directory (no sweep.json)") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise HarnessError(f"{p}: unreadable: {exc}") from None
        if self.meta.get("schema") != SCHEMA_VERSION:
            raise HarnessError(
                f"{p}: schema {self.meta.get('schema')!r}, this harness reads {SCHEMA_VERSION}"
            )
        return self.meta

    def save(self) -> None:
        atomic_write(self.dir / "sweep.json", json.dumps(self.meta, indent=2, default=str).encode())

    def update(self, **fields: Any) -> None:
        self.meta.update(fields)
        self.save()

    def lock(self) -> None:
        """Only one process runs a sweep at a time (an advisory lock, released on exit)."""
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise HarnessError(f"sweep {self.dir} is being run by another process (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- trials
    @property
    def trials_path(self) -> Path:
        return self.dir / "trials.jsonl"

    def read_trials(self) -> tuple[list[dict[str, Any]], list[str]]:
        """Completed trials, and warnings (a torn last line)."""
        p = self.trials_path
        if not p.exists():
            return [], []
        out: list[dict[str, Any]] = []
        warnings: list[str] = []
        lines = p.read_bytes().split(b"\n")
        for i, raw in enumerate(lines):
            if not raw.strip():
                continue
            try:
                out.append(json.loads(raw))
            except json.JSONDecodeError:
                if i == len(lines) - 1:
                    warnings.append(
                        f"{p}: ignoring an incomplete last line (the sweep was killed while writing it)"
                    )
                else:
                    raise HarnessError(f"{p}: line {i + 1} is not JSON") from None
        return out, warnings

    def append_trial(self, trial: dict[str, Any]) -> None:
        """Append one trial as a single write + fsync (O_APPEND: never interleaved or reordered)."""
        p = self.trials_path
        data = (json.dumps(trial, default=str) + "\n").encode()
        # a torn last line (killed while writing it: that trial is run again) is cut off first
        if p.exists() and p.stat().st_size > 0:
            raw = p.read_bytes()
            if not raw.endswith(b"\n"):
                os.truncate(p, raw.rfind(b"\n") + 1)
        fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def write_trials_table(self, trials: list[dict[str, Any]]) -> Path:
        path = self.dir / "trials.parquet"
        tmp = path.with_name(f".{path.name}.tmp")
        pd.DataFrame(trials).to_parquet(tmp, index=False)
        os.replace(tmp, path)
        return path

    def set_current(self, info: dict[str, Any] | None) -> None:
        p = self.dir / "current.json"
        if info is None:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        else:
            atomic_write(p, json.dumps(info, default=str).encode())

    def current(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self.dir / "current.json").read_text())
            return data
        except (OSError, json.JSONDecodeError):
            return None

    def write_json(self, name: str, data: dict[str, Any]) -> Path:
        path = self.dir / name
        atomic_write(path, json.dumps(data, indent=2, default=str).encode())
        return path
