"""A shared engine counts its users: one run's end must not stop the engine (and so the containers)
another run still uses; the last user of an engine started on demand stops it. A private containerd
instance in a temporary folder (its own root, state and socket), two processes as two runs."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import harness.owned
from harness.engines.containerd import (
    ContainerdHandle,
    ContainerdInstance,
    answers,
    engine_owner,
    stop,
    stop_if_unused,
)
from harness.owned import add_user, remove_user
from harness.procs import read_pid

pytestmark = [pytest.mark.integration]

RUN_A = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from harness.engines.containerd import ContainerdInstance, ensure_containerd, engine_owner, stop_if_unused
    from harness.owned import add_user, remove_user
    inst = ContainerdInstance.under(Path(sys.argv[1]), Path(sys.argv[2]), cri=False)
    h = ensure_containerd(inst, on_demand_start=True)   # what a run's backend does on first use
    add_user(engine_owner(inst))
    print("started" if h.started_by_us else "found", flush=True)
    sys.stdin.readline()                                 # run B starts using it meanwhile
    remove_user(engine_owner(inst))                      # run A's close()
    print("stopped" if stop_if_unused(h) == [] and not h.started_by_us else "kept", flush=True)
    """
)


@pytest.fixture
def inst() -> Iterator[ContainerdInstance]:
    d = Path(tempfile.mkdtemp(prefix="hu-", dir="/tmp"))  # short: a unix socket path has 107 bytes
    i = ContainerdInstance.under(d / "root", d / "run", cri=False)
    yield i
    stop(i)
    subprocess.run(["rm", "-rf", str(d)], check=False)


def test_one_runs_end_does_not_stop_the_engine_another_run_uses(
    inst: ContainerdInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    owned = tmp_path / "owned"
    monkeypatch.setattr(harness.owned, "OWNED_DIR", owned)
    a = subprocess.Popen(
        [sys.executable, "-c", RUN_A, str(inst.root), str(inst.socket.parent)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "HARNESS_OWNED_DIR": str(owned)},
    )
    assert a.stdin is not None and a.stdout is not None
    assert a.stdout.readline().strip() == "started"
    add_user(engine_owner(inst))  # run B (this process) uses the same engine
    pid = read_pid(inst.pidfile_path)
    a.stdin.write("\n")
    a.stdin.flush()
    assert a.stdout.readline().strip() == "kept", "run A's end stopped the engine run B still uses"
    a.wait(timeout=30)
    assert answers(inst), "the engine run B uses was stopped"
    remove_user(engine_owner(inst))  # run B's close(): the last user of an on-demand engine stops it
    assert stop_if_unused(ContainerdHandle(inst, pid=pid)) == []
    assert not answers(inst)
