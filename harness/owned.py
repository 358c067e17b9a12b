"""What the harness created, by owner: ``harness cleanup`` removes exactly that, never by name.

Every owner (a run, an engine, the local cluster, a VM lab) keeps one ledger,
``/run/harness/owned/<owner>.jsonl``: a header line naming the owner's process (pid and start
time, ``harness.procs``) and one JSON line per thing it created or released::

    {"owner": "run-20261206T...", "pid": 4242, "start": 1234567, "t": 1733443200.1}
    {"op": "add", "kind": "cgroup", "path": "harness/20261206T..."}
    {"op": "add", "kind": "docker-container", "socket": "/run/harness/docker.sock", "id": "3f1c..."}
    {"op": "release", "kind": "docker-container", "socket": "/run/harness/docker.sock", "id": "3f1c..."}

A line is appended and fsynced *before* the thing is created (a SIGKILL between the two leaves an
entry whose thing does not exist: removers treat "not found" as done), and released once removed.
A ledger whose owner process is gone (or has another start time) is *stale*: its live entries are
what a killed owner left, and :func:`sweep` removes them with a remover per kind (cgroup, pid, file
and dir here; the backends pass their own for containers, tasks and pods). A live owner's ledger is
never touched, so cleanup cannot destroy a concurrent run; nothing outside a ledger is touched, so
a foreign ``harness/other`` cgroup, container or task survives.

API for other owners (e.g. a VM lab): ``led = Ledger.open("lab-<name>")``; ``led.add("vm", name=...,
pid=...)`` before creating; ``led.release(...)`` after removing; ``led.finish()`` at the end; and
``sweep({"vm": remove_vm})`` from its cleanup. Keys of an entry identify it: release with the same keys.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.host.cgroups import CGROUP_ROOT, PREFIX, leftover_trees, remove_tree, write_memory_limit
from harness.procs import proc_start_time

OWNED_DIR = Path(os.environ.get("HARNESS_OWNED_DIR", "/run/harness/owned"))
_OWNER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,200}$")

# A remover gets an entry and returns None when the thing is gone (or never existed), or a
# one-line reason why it stayed.
Remover = Callable[[dict[str, Any]], "str | None"]


def _key(entry: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in entry.items() if k != "op"}, sort_keys=True)


@dataclass
class Ledger:
    owner: str
    path: Path

    @classmethod
    def open(
        cls, owner: str, *, pid: int | None = None, start: int | None = None, directory: Path | None = None
    ) -> Ledger:
        """The ledger of ``owner`` (created with a header naming ``pid``, default this process;
        an existing ledger of the same owner is appended to, its header kept)."""
        if not _OWNER_RE.match(owner):
            raise ValueError(f"bad ledger owner {owner!r}")
        d = directory or OWNED_DIR
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{owner}.jsonl"
        led = cls(owner, path)
        if not path.exists():
            pid = os.getpid() if pid is None else pid
            start = proc_start_time(pid) if start is None else start
            led._append({"owner": owner, "pid": pid, "start": start, "t": time.time()})
        return led

    def _append(self, rec: dict[str, Any]) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(rec, sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def add(self, kind: str, **fields: Any) -> None:
        """Record, before creating it, that this owner creates ``kind`` identified by ``fields``."""
        self._append({"op": "add", "kind": kind, **fields})

    def release(self, kind: str, **fields: Any) -> None:
        """Record that the thing is gone (removed by its owner)."""
        self._append({"op": "release", "kind": kind, **fields})

    def header(self) -> dict[str, Any]:
        for rec in self._records():
            return rec
        return {}

    def _records(self) -> Iterator[dict[str, Any]]:
        try:
            lines = self.path.read_text().splitlines()
        except OSError:
            return
        for ln in lines:
            with contextlib.suppress(ValueError):
                rec = json.loads(ln)
                if isinstance(rec, dict):
                    yield rec

    def live(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Entries added and not released, in the order they were added."""
        out: dict[str, dict[str, Any]] = {}
        for rec in self._records():
            op = rec.get("op")
            if op == "add":
                out.setdefault(_key(rec), {k: v for k, v in rec.items() if k != "op"})
            elif op == "release":
                out.pop(_key(rec), None)
        return [e for e in out.values() if kind is None or e.get("kind") == kind]

    def owner_alive(self) -> bool:
        h = self.header()
        pid, start = h.get("pid"), h.get("start")
        return isinstance(pid, int) and start is not None and proc_start_time(pid) == start

    def finish(self) -> bool:
        """The owner is done: drop the ledger when nothing is left in it (True); otherwise keep it
        for ``harness cleanup`` (the owner's exit makes it stale)."""
        if self.live():
            return False
        self.path.unlink(missing_ok=True)
        return True


def unowned_cgroups(directory: Path | None = None) -> list[str]:
    """``harness/<name>`` cgroups (any hierarchy) that no ledger names: not ours, left alone."""
    named = {str(e.get("path", "")).strip("/") for e in owned_live("cgroup", directory)}
    return sorted({f"{PREFIX}/{p.name}" for p in leftover_trees()} - named)


def run_ledger(run_id: str) -> Ledger:
    """The ledger of a run (opened by ``harness.run`` before anything of the run exists)."""
    return Ledger.open(f"run-{run_id}")


def ledgers(directory: Path | None = None) -> list[Ledger]:
    d = directory or OWNED_DIR
    if not d.is_dir():
        return []
    return [Ledger(p.name[: -len(".jsonl")], p) for p in sorted(d.glob("*.jsonl"))]


def owned_live(kind: str, directory: Path | None = None) -> list[dict[str, Any]]:
    """Live entries of ``kind`` in every ledger (a live owner's too): what the harness owns now."""
    return [e for led in ledgers(directory) for e in led.live(kind)]


_include_live = False


@contextlib.contextmanager
def including_live_owners() -> Iterator[None]:
    """Within this block :func:`sweep` also removes what live owners made (``cleanup --force``)."""
    global _include_live
    prev, _include_live = _include_live, True
    try:
        yield
    finally:
        _include_live = prev


def sweep(
    removers: dict[str, Remover], *, directory: Path | None = None, include_live_owners: bool = False
) -> list[str]:
    """Remove the live entries of the kinds in ``removers`` from every stale ledger (newest entry
    first), release what is gone, drop ledgers left empty; returns what stayed."""
    failed: list[str] = []
    for led in ledgers(directory):
        if led.owner_alive() and not (include_live_owners or _include_live):
            continue
        for e in reversed(led.live()):
            fn = removers.get(str(e.get("kind")))
            if fn is None:
                continue
            why = fn(e)
            if why is None:
                led.release(**e)
            else:
                failed.append(f"{led.owner}: {why}")
        if not led.live():
            led.path.unlink(missing_ok=True)
    return failed


# ---- removers of the host's own kinds -------------------------------------------------------------


def remove_cgroup(e: dict[str, Any]) -> str | None:
    """``{"kind": "cgroup", "path": rel}``: kill what is inside (by pid) and rmdir it in every hierarchy."""
    rel = str(e.get("path", "")).strip("/")
    if not rel or ".." in rel.split("/"):
        return f"refusing cgroup path {rel!r}"
    left = remove_tree(rel)
    return "; ".join(left) or None


def remove_pid(e: dict[str, Any]) -> str | None:
    """``{"kind": "pid", "pid": N, "start": T}``: SIGKILL only while the pid still has that start time."""
    pid, start = e.get("pid"), e.get("start")
    if not isinstance(pid, int) or start is None:
        return None
    if proc_start_time(pid) == start:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while proc_start_time(pid) == start and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc_start_time(pid) == start:
            return f"pid {pid} did not exit"
    return None


def remove_path(e: dict[str, Any]) -> str | None:
    """``{"kind": "file"|"dir", "path": p}``."""
    p = Path(str(e.get("path", "")))
    if not p.is_absolute() or p == Path("/"):
        return f"refusing path {p}"
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
    except OSError as exc:
        return f"{p}: {exc.strerror}"
    return None


LIMIT_ROOT = CGROUP_ROOT  # the only tree whose limit files restore_limit writes


def restore_limit(e: dict[str, Any]) -> str | None:
    """``{"kind": "cgroup-limit", "file": f, "before": v, "after": w}``: a limit file the run lowered
    for a while (kubepods beside host workloads, ``harness.cluster.ceiling.make_room``). Written back
    to ``before`` only while it still holds ``after`` (give or take the page the kernel rounds v1
    limits to): a kubelet restart, or anyone else, that wrote it since is left alone."""
    f = Path(str(e.get("file", "")))
    before, after = str(e.get("before", "")), str(e.get("after", ""))
    if (
        not f.is_relative_to(LIMIT_ROOT)
        or ".." in f.parts
        or f.name not in ("memory.limit_in_bytes", "memory.max")
    ):
        return f"refusing limit file {f}"
    try:
        now = f.read_text().strip()
    except OSError:
        return None  # the cgroup is gone: nothing to put back
    try:
        same = now == after or abs(int(now) - int(after)) < 4096
    except ValueError:
        same = False
    if not same:
        return None
    try:
        write_memory_limit(f, before)
    except OSError as exc:
        return f"cannot put {f} back to {before}: {exc.strerror}"
    return None


HOST_REMOVERS: dict[str, Remover] = {
    "cgroup-limit": restore_limit,
    "pid": remove_pid,
    "cgroup": remove_cgroup,
    "file": remove_path,
    "dir": remove_path,
}


def sweep_host(*, directory: Path | None = None, include_live_owners: bool = False) -> list[str]:
    """Processes, cgroups, files, directories and lowered cgroup limits of stale ledgers (after the
    backends' own kinds)."""
    return sweep(HOST_REMOVERS, directory=directory, include_live_owners=include_live_owners)


# ---- users of a shared engine -------------------------------------------------------------------


def add_user(owner: str, *, pid: int | None = None, directory: Path | None = None) -> None:
    """Count this process (or ``pid``) as a user of the shared thing ``owner`` (e.g. an engine)."""
    pid = os.getpid() if pid is None else pid
    Ledger.open(owner, directory=directory).add("user", pid=pid, start=proc_start_time(pid))


def remove_user(owner: str, *, pid: int | None = None, directory: Path | None = None) -> list[dict[str, Any]]:
    """This process stops using ``owner``; returns the other users still alive."""
    pid = os.getpid() if pid is None else pid
    led = Ledger.open(owner, directory=directory)
    for e in led.live("user"):
        if e.get("pid") == pid:
            led.release(**e)
    return live_users(owner, directory=directory)


def live_users(owner: str, *, directory: Path | None = None) -> list[dict[str, Any]]:
    """Users of ``owner`` whose process is alive (same pid and start time); dead ones are released."""
    path = (directory or OWNED_DIR) / f"{owner}.jsonl"
    if not path.exists():
        return []
    led = Ledger(owner, path)
    out = []
    for e in led.live("user"):
        if (
            isinstance(e.get("pid"), int)
            and e.get("start") is not None
            and proc_start_time(e["pid"]) == e["start"]
        ):
            out.append(e)
        else:
            led.release(**e)
    return out


def mark_on_demand(owner: str, pid: int, start: int | None, *, directory: Path | None = None) -> None:
    """``owner`` (a daemon, by pid and start time) was started on demand by a run: the last user to
    leave stops it (an engine started by hand stays)."""
    Ledger.open(owner, directory=directory).add("on-demand", pid=pid, start=start)


def on_demand(owner: str, pid: int | None, *, directory: Path | None = None) -> bool:
    """True when the daemon ``pid`` is the one recorded as started on demand (same start time)."""
    path = (directory or OWNED_DIR) / f"{owner}.jsonl"
    if pid is None or not path.exists():
        return False
    start = proc_start_time(pid)
    return any(
        e.get("pid") == pid and e.get("start") == start and start is not None
        for e in Ledger(owner, path).live("on-demand")
    )
