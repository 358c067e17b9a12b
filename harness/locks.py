"""Machine-wide locks around what two checkouts of the harness must not do at once.

``cluster up/down``, starting and stopping an engine, and a VM lab's up/down each hold an exclusive
``flock`` on ``/run/harness/locks/<name>.lock`` (the kernel drops it when the holder dies, even by
SIGKILL, so a killed holder never leaves a stale lock). A second caller waits up to ``timeout``
seconds, saying once who holds the lock, then fails with a :class:`HostError` naming the lock and
its holder; ``timeout=0`` fails at once.

Use (e.g. the VM lab)::

    with exclusive("lab-up", "start the VM lab", say=print):
        ...

The lock is re-entrant within one process (a nested ``exclusive`` of the same name passes through),
so ``cluster up`` may start the cluster's containerd under the same lock names without deadlock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from harness.errors import HostError

LOCK_DIR = Path(os.environ.get("HARNESS_LOCK_DIR", "/run/harness/locks"))
DEFAULT_TIMEOUT = float(os.environ.get("HARNESS_LOCK_TIMEOUT", "600"))
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")
_held: dict[str, int] = {}
_mutex = threading.Lock()


def lock_path(name: str, directory: Path | None = None) -> Path:
    if not _NAME_RE.match(name):
        raise ValueError(f"bad lock name {name!r}")
    return (directory or LOCK_DIR) / f"{name}.lock"


def holder(name: str, directory: Path | None = None) -> str:
    """Who holds (or last held) the lock, as written by the holder: "pid N: what"."""
    try:
        rec = json.loads(lock_path(name, directory).read_text() or "{}")
    except (OSError, ValueError):
        return "unknown"
    return f"pid {rec.get('pid')}: {rec.get('what')}"


@contextlib.contextmanager
def exclusive(
    name: str,
    what: str,
    *,
    timeout: float | None = None,
    say: Callable[[str], None] | None = None,
    directory: Path | None = None,
) -> Iterator[None]:
    """Hold the machine-wide lock ``name`` while doing ``what``; see the module docstring."""
    path = lock_path(name, directory)
    key = str(path)
    with _mutex:
        if key in _held:
            _held[key] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield
        finally:
            with _mutex:
                _held[key] -= 1
        return
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise HostError(
                        f"cannot {what}: another harness holds the lock {path} ({holder(name, directory)}); "
                        f"gave up after {timeout:g} s"
                    ) from None
                if not told and say is not None:
                    say(f"waiting for the lock {path} ({holder(name, directory)}) to {what}")
                    told = True
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "what": what, "t": time.time()}).encode(), 0)
        with _mutex:
            _held[key] = 1
        try:
            yield
        finally:
            with _mutex:
                _held.pop(key, None)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
