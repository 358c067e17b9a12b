"""The run directory: ``results/<run-id>/`` (layout in results/README.md).

``run.json`` is written at the start (status ``running``) and rewritten atomically
(write to a temporary file, fsync, rename) at every state change; raw data streams into
``progress/`` while the run goes on, so an interrupted run keeps what it saw and is
marked ``interrupted`` rather than lost. Parquet tables and ``junit.xml`` are written at
the end, also atomically.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import subprocess

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 1


def new_run_id(suite: str, backend: str) -> str:
    ts = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{ts}-{suite}-{backend}-{secrets.token_hex(2)}"


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_file(path: Path, write: Any) -> Path:
    """``write(tmp)`` then fsync and rename over ``path``: a reader (or a crash) never sees half a
    file. The temporary file is removed if ``write`` fails; the folder is fsynced after the rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return path


def write_table(path: Path, rows: Iterable[dict[str, Any]] | pd.DataFrame) -> Path:
    """A table as Parquet (nested values as JSON text), atomically."""
    import pandas as pd  # lazy: the catalog (runs list) imports this module and needs no pandas

    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = df[col].map(lambda v: json.dumps(v, default=str) if isinstance(v, dict | list) else v)
    return atomic_file(path, lambda tmp: df.to_parquet(tmp, index=False))


class RunStore:
    def __init__(self, results_dir: Path, run_id: str) -> None:
        self.dir = Path(results_dir) / run_id
        self.run_id = run_id
        self.progress = self.dir / "progress"
        self.progress.mkdir(parents=True, exist_ok=False)
        self._tables: dict[str, list[dict[str, Any]]] = {}
        self.meta: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "run_id": run_id,
            "status": "running",
            "started": datetime.now(UTC).isoformat(),
        }

    def update(self, **fields: Any) -> None:
        self.meta.update(fields)
        atomic_write(self.dir / "run.json", json.dumps(self.meta, indent=2, default=str).encode())

    def finish(self, status: str) -> None:
        self.update(status=status, finished=datetime.now(UTC).isoformat())

    def write_table(self, name: str, rows: Iterable[dict[str, Any]] | pd.DataFrame) -> Path:
        return write_table(self.dir / f"{name}.parquet", rows)

    def add_rows(self, name: str, rows: list[dict[str, Any]]) -> Path:
        """Append rows to a small table (rewritten whole, so it is complete after every call)."""
        acc = self._tables.setdefault(name, [])
        acc.extend(rows)
        return self.write_table(name, acc)

    def write_junit(self, suite: str, verdicts: list[dict[str, Any]], elapsed_s: float) -> Path:
        from xml.sax.saxutils import escape, quoteattr  # lazy: it imports urllib.request, http.client

        failures = sum(1 for v in verdicts if not v["passed"])
        cases = []
        for v in verdicts:
            name = quoteattr(f"{v['scenario']}/{v['workload']}")
            body = ""
            if not v["passed"]:
                msg = "; ".join(v["reasons"]) or f"predicted {v['predicted']}, observed {v['observed']}"
                body = f"<failure message={quoteattr(msg)}>{escape(msg)}</failure>"
            out = f"predicted={v['predicted']} observed={v['observed']}"
            if v.get("host_deviations"):
                out += "\nhost deviations: " + "; ".join(v["host_deviations"])
            body += f"<system-out>{escape(out)}</system-out>"
            cases.append(
                f"  <testcase classname={quoteattr(suite + '.' + v['scenario'])} name={name}>{body}</testcase>"
            )
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<testsuite name={quoteattr("harness." + suite)} tests="{len(verdicts)}" '
            f'failures="{failures}" errors="0" time="{elapsed_s:.3f}" timestamp="{time.strftime("%Y-%m-%dT%H:%M:%S")}">\n'
            + "\n".join(cases)
            + "\n</testsuite>\n"
        )
        path = self.dir / "junit.xml"
        atomic_write(path, xml.encode())
        return path


def git_revision(repo: Path) -> str | None:

    try:
        rev = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return (rev + ("-dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def load_run(run_dir: Path) -> dict[str, Any]:
    """run.json plus the tables that exist, as DataFrames."""
    import pandas as pd  # lazy: runs list imports this module and needs no pandas

    out: dict[str, Any] = {"run": json.loads((run_dir / "run.json").read_text())}
    for name in ("samples", "events", "outcomes", "verdicts", "cgroups"):
        p = run_dir / f"{name}.parquet"
        out[name] = pd.read_parquet(p) if p.exists() else pd.DataFrame()
    return out
