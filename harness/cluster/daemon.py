"""Long-running processes the cluster starts: one log and one pid file each, stopped by that pid only.

A pid file holds ``{"pid": N, "start": <starttime from /proc/N/stat>, "argv": [...]}``: a pid is
trusted only while the process with that pid has the same start time, so a reused pid is never
signalled (no ``pkill``, no name matching anywhere).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.procs import proc_start_time, signal_same, spawn_daemon


@dataclass
class Daemon:
    name: str
    log: Path
    pidfile: Path

    def record(self) -> dict[str, object] | None:
        try:
            rec: dict[str, object] = json.loads(self.pidfile.read_text())
        except (OSError, ValueError):
            return None
        return rec

    def pid(self) -> int | None:
        """The pid if the process we started is still running (same pid, same start time)."""
        rec = self.record()
        if not rec:
            return None
        pid = rec.get("pid")
        if not isinstance(pid, int):
            return None
        start = proc_start_time(pid)
        return pid if start is not None and start == rec.get("start") else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(
        self, argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> int:
        if (pid := self.pid()) is not None:
            return pid
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        proc = spawn_daemon(argv, self.log, env=env, cwd=cwd)
        start = proc_start_time(proc.pid)
        rec = {"pid": proc.pid, "start": start, "argv": list(argv), "started": time.time()}
        tmp = self.pidfile.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec) + "\n")
        tmp.replace(self.pidfile)
        # the Popen object is dropped: reap it later so it does not stay a zombie in this process
        _children.append(proc)
        return proc.pid

    def stop(self, timeout: float = 20.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout``; True if it was running."""
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        rec = self.record() or {}
        start = rec.get("start")
        start = start if isinstance(start, int) else None
        # each signal only while the pid still has the recorded start time (never a reused pid)
        signal_same(pid, start, signal.SIGTERM)
        if not _wait_gone(pid, timeout, start):
            signal_same(pid, start, signal.SIGKILL)
            _wait_gone(pid, 10.0, start)
        self.pidfile.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 20) -> str:
        try:
            data = self.log.read_bytes()[-64_000:].decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(data.rstrip().splitlines()[-lines:])


_children: list[subprocess.Popen[bytes]] = []


def _wait_gone(pid: int, timeout: float, start: int | None) -> bool:
    """Until the process with this pid and start time is gone (a reused pid does not count)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in _children:
            if p.pid == pid:
                p.poll()
        if start is None or proc_start_time(pid) != start:
            return True
        time.sleep(0.1)
    return start is None or proc_start_time(pid) != start
