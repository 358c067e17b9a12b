"""``harness doctor`` changes nothing on the host: no daemon started, no image imported.

It runs the real command against this host's real state (whatever the project's Docker engine
and containerd are doing: both are only looked at) and compares before and after: the daemons'
processes (by pid, from /proc) and whether each answers on its socket. The previous doctor
started both engines; ``--fix`` still may (not run here: the engines are shared singletons).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAEMONS = {"dockerd", "containerd"}

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _daemon_pids() -> set[tuple[int, str]]:
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                comm = (d / "comm").read_text().strip()
                if comm in DAEMONS:
                    out.add((int(d.name), comm))
    return out


def _answering() -> tuple[bool, bool]:
    from harness.engines.containerd import answers, default_instance
    from harness.engines.docker import DEFAULT_RUN_DIR, SOCKET_NAME, ping

    return ping(Path(DEFAULT_RUN_DIR) / SOCKET_NAME), answers(default_instance())


def test_doctor_is_read_only() -> None:
    before_pids, before = _daemon_pids(), _answering()
    r = subprocess.run(
        [sys.executable, "-m", "harness", "doctor"], cwd=REPO, capture_output=True, text=True, timeout=150
    )
    assert r.returncode in (0, 1), r.stderr
    assert _answering() == before
    assert _daemon_pids() == before_pids
    for backend, up in zip(("docker", "containerd"), before, strict=True):
        lines = [x for x in r.stdout.splitlines() if x.startswith(backend) and " engine: " in x]
        assert len(lines) == 1, r.stdout
        assert ("not running" in lines[0]) == (not up), lines[0]
        if not up:
            assert "harness doctor --fix" in lines[0]
