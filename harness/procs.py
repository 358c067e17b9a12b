"""Processes the harness starts and later stops: read from /proc, never matched by name alone.

One place for what the engines (Docker, containerd), the local cluster and the run registry need:
a process's start time (a pid is trusted only while it has the start time recorded with it),
liveness (a zombie is not alive), pid files, descendants, and starting a daemon in its own
session with its output appended to a log.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot); None when the pid does not exist or
    is a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ')'
    rest = raw[raw.rindex(")") + 2 :].split()
    if rest[0] == "Z":
        return None
    return int(rest[19])


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    return proc_start_time(pid) is not None


def read_pid(pidfile: Path) -> int | None:
    """The first number in a plain pid file, None when missing or malformed."""
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def exe_name(pid: int) -> str:
    """Base name of the process's executable ("" when unreadable)."""
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return ""


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    """All descendants of ``pid`` (children first), from /proc."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def spawn_daemon(
    cmd: Sequence[str], log: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session (it outlives the command that started it), stdin closed,
    stdout and stderr appended to ``log`` after a header line naming the command."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as f:
        f.write(f"\n=== harness: starting {' '.join(cmd)}\n".encode())
        f.flush()
        return subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=cwd,
        )


def snapshot(pids: Sequence[int]) -> list[tuple[int, int]]:
    """(pid, start time) of each live pid: what may be signalled later, see :func:`signal_same`."""
    out = []
    for p in pids:
        start = proc_start_time(p)
        if start is not None:
            out.append((p, start))
    return out


def signal_same(pid: int, start: int | None, sig: int) -> bool:
    """Send ``sig`` to ``pid`` only while it is still the process that had ``start`` (a pid reused by
    another process since is never signalled); True if sent. Re-checked right before every signal."""
    if start is None or proc_start_time(pid) != start:
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def same_alive(pid: int, start: int | None) -> bool:
    return start is not None and proc_start_time(pid) == start
