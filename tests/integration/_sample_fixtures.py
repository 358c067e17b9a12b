"""Fixtures of the sampling tests: real memory cgroups (v1, or v2 on a unified host) and allocating
processes.

Kept apart from ``conftest.py`` (owned by another test area). Every cgroup is created as
``<memory mount>/harness-test-<random>`` with a memory limit; the finalizer SIGKILLs the
processes this fixture started (by pid), waits for the cgroup to be empty and removes it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.sample.cgroupfs import CgroupPaths, CgroupVersion, detect_host_layout

MiB = 1 << 20

#: A process that touches ``step`` MiB every ``pause`` seconds until killed (bytes * n fills
#: the pages, unlike bytearray(n) which calloc may leave untouched).
ALLOCATOR = (
    "import sys, time\n"
    "step, pause = int(sys.argv[1]), float(sys.argv[2])\n"
    "chunks = []\n"
    "while True:\n"
    "    chunks.append(b'\\x01' * (step << 20))\n"
    "    time.sleep(pause)\n"
)


@dataclass
class SampleCgroup:
    """A memory cgroup created for one test."""

    paths: CgroupPaths
    limit: int
    pids: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def rel(self) -> str:
        return "/" + self.paths.rel

    @property
    def dir(self) -> Path:
        return Path(self.paths.memory_dir)

    def spawn(self, code: str, *args: str) -> subprocess.Popen[bytes]:
        """Start ``python3 -c code args...`` inside this cgroup (it joins before exec)."""
        procs_file = self.paths.procs

        def join() -> None:
            with open(procs_file, "w") as fh:
                fh.write(str(os.getpid()))

        proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            preexec_fn=join,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        self.pids.append(proc.pid)
        return proc

    def allocate(self, step_mib: int = 1, pause: float = 0.01) -> subprocess.Popen[bytes]:
        """Start a process that grows by ``step_mib`` MiB every ``pause`` s until OOM-killed."""
        return self.spawn(ALLOCATOR, str(step_mib), str(pause))

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        deadline = time.monotonic() + 10
        while self.dir.exists():
            try:
                os.rmdir(self.dir)
            except FileNotFoundError:
                break
            except OSError:  # EBUSY while the last task exits
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def memory_version() -> CgroupVersion:
    """The version of this host's memory controller (v1, or v2 on a unified host such as the VM
    lab's guests). The tests of this area run on both and assert each version's own mechanism; a
    host without a writable memory hierarchy fails them (in :func:`make_test_cgroup`), never skips."""
    return detect_host_layout().memory_version


def no_swap(d: Path, v2: bool, limit: int) -> None:
    """Swap off for one test cgroup: v2 ``memory.swap.max`` 0, v1 ``memory.memsw.limit_in_bytes`` =
    the memory limit; nothing where the kernel has no swap accounting (the file is missing)."""
    f = d / ("memory.swap.max" if v2 else "memory.memsw.limit_in_bytes")
    if f.exists():
        f.write_text("0" if v2 else str(limit))


def make_test_cgroup(limit: int = 48 * MiB, parent: str = "") -> SampleCgroup:
    """Create ``harness-test-<random>`` (under ``parent``) in the host's memory hierarchy."""
    mounts = detect_host_layout()
    rel = f"{parent.strip('/')}/harness-test-{uuid.uuid4().hex[:10]}".strip("/")
    paths = CgroupPaths(rel, mounts.memory_version, mounts.root)
    base = os.path.dirname(paths.memory_dir)
    if not os.access(base, os.W_OK):
        pytest.fail(
            f"no writable cgroup {mounts.memory_version.value} memory hierarchy at {base} (run as root)"
        )
    if mounts.memory_version is CgroupVersion.V2:
        # the memory controller must be enabled for the parent's children (as conftest.make_memcg)
        ctl = Path(base, "cgroup.subtree_control")
        if "memory" not in ctl.read_text().split():
            ctl.write_text("+memory")
    os.mkdir(paths.memory_dir)
    cg = SampleCgroup(paths, limit)
    try:
        Path(paths.limit).write_text(str(limit))
        # no swap: on a host with swap (the VM lab) the allocator would swap past its limit instead of
        # being OOM-killed there (what the kubelet's NoSwap writes for a container)
        no_swap(Path(paths.memory_dir), mounts.memory_version is CgroupVersion.V2, limit)
    except BaseException:
        cg.cleanup()
        raise
    return cg


@pytest.fixture
def sample_cgroup_factory() -> Iterator[Callable[..., SampleCgroup]]:
    """Make limited test cgroups; all are cleaned up (processes killed by pid, rmdir) at teardown."""
    made: list[SampleCgroup] = []

    def make(limit: int = 48 * MiB) -> SampleCgroup:
        cg = make_test_cgroup(limit)
        made.append(cg)
        return cg

    try:
        yield make
    finally:
        for cg in reversed(made):
            cg.cleanup()


@pytest.fixture
def sample_cgroup(sample_cgroup_factory: Callable[..., SampleCgroup]) -> SampleCgroup:
    """One 48 MiB memory cgroup."""
    return sample_cgroup_factory()


def wait_until(cond: Callable[[], bool], timeout: float) -> bool:
    """Poll ``cond`` every 20 ms until it holds or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()
