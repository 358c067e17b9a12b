"""Writing and reading a task's oom_score_adj (``ctr`` has no option for it)."""

from __future__ import annotations

from pathlib import Path


def write_oom_score_adj(pids: list[int], value: int) -> tuple[list[int], list[str]]:
    """Write ``value`` to each pid's oom_score_adj; returns (written, errors) - gone pids are skipped."""
    done, errors = [], []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/oom_score_adj", "w") as f:
                f.write(str(value))
            done.append(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
        except OSError as exc:
            errors.append(f"pid {pid}: {exc.strerror}")
    return done, errors


def read_oom_score_adj(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/oom_score_adj").read_text())
    except (OSError, ValueError):
        return None
