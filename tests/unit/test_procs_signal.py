"""A pid is signalled only while it still has the start time recorded with it (engines' and the
cluster's SIGTERM and SIGKILL fallbacks): a pid reused by another process is never hit."""

from __future__ import annotations

import signal
import subprocess

from harness.procs import proc_start_time, same_alive, signal_same, snapshot


def test_signal_same_spares_a_reused_pid() -> None:
    p = subprocess.Popen(["sleep", "60"])
    try:
        start = proc_start_time(p.pid)
        assert start is not None
        # what a stop recorded for an earlier process with this pid: another start time
        assert not signal_same(p.pid, start - 1, signal.SIGKILL)
        assert not signal_same(p.pid, None, signal.SIGKILL)
        assert p.poll() is None, "a process with another start time was signalled"
        assert snapshot([p.pid]) == [(p.pid, start)]
        assert signal_same(p.pid, start, signal.SIGKILL)
        p.wait(timeout=5)
        assert not same_alive(p.pid, start)
        assert not signal_same(p.pid, start, signal.SIGKILL)  # gone: nothing sent
    finally:
        p.kill()
        p.wait()
