"""The harness-owned cgroup tree that mirrors the kubelet's layout.

Every local run lives under ``harness/`` in the memory hierarchy (cgroup v1) or the
unified hierarchy (v2)::

    harness/<run-id>/<scenario>/                     "node": limit = the suite's memoryCapacity
    harness/<run-id>/<scenario>/kubepods/            limit = the model's kubepods limit
    harness/<run-id>/<scenario>/kubepods/burstable/pod<uid>/<container>
    harness/<run-id>/<scenario>/system/<host workload>
    harness/<run-id>/<scenario>/containers/<container workload>

The node limit confines every experiment, so a run can never exhaust the machine.
Docker with ``--cgroup-parent`` creates the same paths in *every* v1 hierarchy, so
removal walks all of them, deepest first (see ``remove_tree``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from harness.errors import HostError

CGROUP_ROOT = Path("/sys/fs/cgroup")
PREFIX = "harness"
# cgroup v1 shows "no limit" as PAGE_COUNTER_MAX rounded to the page size
V1_UNLIMITED = 9223372036854771712


def cgroup_version(root: Path = CGROUP_ROOT) -> int:
    """2 on a unified host, 1 on legacy or hybrid (memory controller on v1)."""
    if (root / "cgroup.controllers").exists():
        return 2
    if (root / "memory").is_dir():
        return 1
    raise HostError(f"no memory cgroup controller found under {root}")


def memory_root(version: int, root: Path = CGROUP_ROOT) -> Path:
    return root / "memory" if version == 1 else root


def write_memory_limit(limit_file: Path, value: int | str, *, systemd: bool | None = None) -> None:
    """Write a memory limit (``memory.max`` / ``memory.limit_in_bytes``); raises ``OSError``.

    A systemd slice (``kubepods.slice``, the kubelet's systemd cgroup driver) gets the value as its
    unit's ``MemoryMax`` too (``systemctl set-property --runtime``): systemd writes a unit's own
    ``MemoryMax`` back whenever any property of the unit is set, and the kubelet sets ``CPUWeight``
    on ``kubepods.slice`` at every QoS update (``qosContainerManagerImpl.UpdateCgroups``: the
    Guaranteed tier is the root container; on each new pod and every minute,
    pkg/kubelet/cm/qos_container_manager_linux.go). Measured on lab kc, 2026-12-07: a file-only
    write reverted to the kubelet's 2244567040 at the next ``set-property CPUWeight``, and held
    through it once ``MemoryMax`` was set. ``systemd``: whether systemd manages the host's cgroups
    (default: it was booted, ``/run/systemd/system`` exists)."""
    unit = limit_file.parent.name
    if systemd is None:
        systemd = Path("/run/systemd/system").is_dir()
    if unit.endswith(".slice") and systemd and shutil.which("systemctl"):
        r = subprocess.run(
            ["systemctl", "set-property", "--runtime", unit, f"MemoryMax={value}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if r.returncode != 0:
            raise OSError(errno.EIO, f"systemctl set-property {unit} MemoryMax={value}: {r.stderr.strip()}")
    limit_file.write_text(str(value))


def hierarchies(root: Path = CGROUP_ROOT) -> list[Path]:
    """Every mounted hierarchy directory (v1 controllers, named ones, unified)."""
    if (root / "cgroup.controllers").exists():
        return [root]
    out = []
    for d in sorted(root.iterdir()):
        if d.is_dir() and not d.is_symlink() and (d / "cgroup.procs").exists():
            out.append(d)
    return out


def controller_dirs(root: Path = CGROUP_ROOT) -> dict[str, Path]:
    """Controller name -> hierarchy directory (v1 ``cpu,cpuacct`` serves cpu and cpuacct; v2: every
    controller is in the unified root)."""
    hs = hierarchies(root)
    if hs == [root]:
        return dict.fromkeys(("memory", "cpu", "pids", "hugetlb", "cpuset"), root)
    out: dict[str, Path] = {}
    for d in hs:
        for c in d.name.split(","):
            out.setdefault(c, d)
    return out


def controller_dir(controller: str, root: Path = CGROUP_ROOT) -> Path | None:
    """The hierarchy directory serving ``controller``, None where it is not mounted."""
    return controller_dirs(root).get(controller)


class CgroupTree:
    """One scenario's node: create, set limits, place processes, remove."""

    def __init__(self, node_rel: str, version: int | None = None, root: Path = CGROUP_ROOT) -> None:
        self.version = version or cgroup_version(root)
        self.root = root
        self.mem_root = memory_root(self.version, root)
        self.node_rel = node_rel.strip("/")
        self.created: list[str] = []

    # paths
    def rel(self, path: str) -> str:
        """Path below the cgroup mount for a node-relative path ("" = the node)."""
        return f"{self.node_rel}/{path}".rstrip("/") if path else self.node_rel

    def abs(self, path: str) -> Path:
        return self.mem_root / self.rel(path)

    # creation
    def create(
        self, limits: dict[str, int | None], swap: Mapping[str, tuple[int | None, int | None]] | None = None
    ) -> None:
        """Create every cgroup in ``limits`` (and their parents) and set the memory limits,
        outermost first so that a child limit is never written under a smaller parent; then the
        swap limits in ``swap`` (path -> (v2 memory.swap.max, v1 memory.memsw.limit_in_bytes))."""
        paths = sorted(set(limits) | {""}, key=lambda p: (p.count("/") + (1 if p else 0), p))
        for p in paths:
            self._mkdirs(p)
        for p in paths:
            lim = limits.get(p)
            if lim is not None:
                self.set_limit(p, lim)
        for p, (v2, v1) in (swap or {}).items():
            self.set_swap(p, v2 if self.version == 2 else v1)

    def set_swap(self, path: str, value: int | None) -> None:
        """Write the swap limit the kubelet would have the runtime write (v2 ``memory.swap.max``,
        v1 ``memory.memsw.limit_in_bytes``, which must be at least the memory limit). Skipped where
        the kernel has no swap accounting (the kubelet then writes nothing either)."""
        if value is None:
            return
        f = self.abs(path) / ("memory.memsw.limit_in_bytes" if self.version == 1 else "memory.swap.max")
        if not f.exists():
            return
        try:
            f.write_text(str(value))
        except OSError as exc:
            raise HostError(f"cannot set {f} to {value}: {exc.strerror}") from None

    def _mkdirs(self, path: str) -> None:
        parts = self.rel(path).split("/")
        cur = self.mem_root
        for i, part in enumerate(parts):
            parent = cur
            cur = cur / part
            if not cur.exists():
                try:
                    cur.mkdir()
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise HostError(f"cannot create cgroup {cur}: {exc.strerror}") from None
                self.created.append("/".join(parts[: i + 1]))
            if self.version == 2:
                self._enable_memory(parent)

    @staticmethod
    def _enable_memory(d: Path) -> None:
        ctl = d / "cgroup.subtree_control"
        try:
            if "memory" not in ctl.read_text().split():
                ctl.write_text("+memory")
        except OSError as exc:
            raise HostError(f"cannot enable the memory controller in {d}: {exc.strerror}") from None

    def set_limit(self, path: str, limit: int) -> None:
        f = self.abs(path) / ("memory.limit_in_bytes" if self.version == 1 else "memory.max")
        try:
            f.write_text(str(limit))
        except OSError as exc:
            raise HostError(f"cannot set {f} to {limit}: {exc.strerror}") from None

    def limit(self, path: str) -> int | None:
        f = self.abs(path) / ("memory.limit_in_bytes" if self.version == 1 else "memory.max")
        v = f.read_text().strip()
        if v == "max" or (self.version == 1 and int(v) >= V1_UNLIMITED):
            return None
        return int(v)

    def add_pid(self, path: str, pid: int) -> None:
        (self.abs(path) / "cgroup.procs").write_text(str(pid))

    def procs(self, path: str = "") -> list[int]:
        return list(iter_pids(self.abs(path)))

    def remove(self, timeout: float = 10.0) -> list[str]:
        """Kill what is left inside (by pid) and remove the node from every hierarchy."""
        return remove_tree(self.rel(""), timeout=timeout, root=self.root)


def iter_pids(d: Path) -> Iterator[int]:
    """Pids of every process in a cgroup subtree."""
    for dirpath, _dirs, files in os.walk(d):
        if "cgroup.procs" in files:
            try:
                text = (Path(dirpath) / "cgroup.procs").read_text()
            except OSError:
                continue
            for line in text.split():
                yield int(line)


def remove_tree(rel: str, *, timeout: float = 10.0, root: Path = CGROUP_ROOT) -> list[str]:
    """Remove ``rel`` (and everything below it) from every hierarchy, deepest first.

    Processes still inside are sent SIGKILL by pid (read from cgroup.procs), then the
    directories are removed once empty. Returns the paths that could not be removed.
    """
    failed: list[str] = []
    for h in hierarchies(root):
        top = h / rel
        if not top.is_dir():
            continue
        failed += rmdir_tree(top, timeout=timeout, kill=True)
    return failed


def rmdir_tree(top: Path, *, timeout: float = 10.0, kill: bool = False) -> list[str]:
    """rmdir a cgroup directory and its descendants, deepest first, retrying while busy.

    With ``kill``, processes still inside are sent SIGKILL by pid (from cgroup.procs).
    Returns what could not be removed.
    """

    def _kill(d: Path) -> None:
        if kill:
            for pid in set(iter_pids(d)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    failed: list[str] = []
    _kill(top)
    dirs = sorted((Path(dp) for dp, _d, _f in os.walk(top)), key=lambda p: len(p.parts), reverse=True)
    deadline = time.monotonic() + timeout
    for d in dirs:
        while True:
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno == errno.EBUSY and time.monotonic() < deadline:
                    _kill(d)
                    time.sleep(0.05)
                    continue
                failed.append(f"{d}: {exc.strerror}")
                break
    return failed


def leftover_trees(root: Path = CGROUP_ROOT) -> list[Path]:
    """Every ``harness/<name>`` cgroup in any hierarchy, whoever made it (``harness cleanup`` removes
    only those a ledger names, harness.owned)."""
    out = []
    for h in hierarchies(root):
        d = h / PREFIX
        if d.is_dir():
            out.extend(sorted(p for p in d.iterdir() if p.is_dir()))
    return out
