"""Shared fixtures for integration tests: real memory cgroups, the kernel log, the Docker engine.

``memcg``            a fresh memory cgroup limited to 64 MiB (v1 or v2, whichever this host has)
``memcg_factory``    make more of them, with any limit
``kmsg``             a reader of /dev/kmsg positioned at the end *before* the test starts
``leak_binary`` / ``pause_binary``  paths of the static workloads (built with make if missing)
``docker_engine``    (session) the project's own Docker engine, started if it is not answering
                     and stopped at the end if this session started it
``containerd_engine`` (session) the project's own containerd (harness backend instance), the same way
``loopback_lab``     (session) sshd "lab hosts" lab-a 127.0.0.2, lab-b 127.0.0.3, lab-c 127.0.0.4 (lab-c
                     refuses the client key), see tests/integration/_sshd.py; stopped by pid at the end

Every fixture cleans up with a finalizer, whatever the test did: processes left in a cgroup are
killed by pid, then the cgroup directory is removed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.sample.kmsg import KmsgClock, OomKill, OomParser
from harness.sample.kmsg import KmsgRecord as HarnessKmsgRecord
from tests.integration._sample_fixtures import no_swap

REPO = Path(__file__).resolve().parents[2]
WORKLOADS = REPO / "workloads"
MiB = 1 << 20
CGROUP_PREFIX = "harness-test-"


# --------------------------------------------------------------------------- cgroups


def _mountinfo() -> list[tuple[str, str, str, set[str]]]:
    """(root, mountpoint, fstype, superopts) of every mount."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        f = left.split()
        r = right.split()
        if len(f) < 5 or len(r) < 3:
            continue
        out.append((f[3], f[4], r[0], set(r[2].split(","))))
    return out


def memory_cgroup_root() -> tuple[Path, int]:
    """The mount point of the memory controller and the cgroup version (v1 preferred on hybrid hosts)."""
    mounts = _mountinfo()
    for _root, mnt, fstype, opts in mounts:
        if fstype == "cgroup" and "memory" in opts:
            return Path(mnt), 1
    for _root, mnt, fstype, _opts in mounts:
        if fstype == "cgroup2" and "memory" in (Path(mnt) / "cgroup.controllers").read_text().split():
            return Path(mnt), 2
    raise RuntimeError("no memory cgroup controller is mounted on this host")


@dataclass
class MemCgroup:
    """A memory cgroup this test session created (v1 or v2), with helpers to run and inspect it."""

    path: Path
    version: int
    limit: int
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The cgroup path as the kernel prints it (task_memcg=...)."""
        root, _ = memory_cgroup_root()
        return "/" + str(self.path.relative_to(root))

    def read(self, name: str) -> str:
        return (self.path / name).read_text()

    def stat(self) -> dict[str, int]:
        return {k: int(v) for k, v in (ln.split() for ln in self.read("memory.stat").splitlines())}

    def usage(self) -> int:
        return int(self.read("memory.usage_in_bytes" if self.version == 1 else "memory.current"))

    def oom_kills(self) -> int:
        """The cgroup's own OOM kill counter (v1 memory.oom_control, v2 memory.events)."""
        text = self.read("memory.oom_control" if self.version == 1 else "memory.events")
        for ln in text.splitlines():
            k, _, v = ln.partition(" ")
            if k == "oom_kill":
                return int(v)
        return 0

    def anon_bytes(self) -> int:
        s = self.stat()
        return s["rss"] if self.version == 1 else s["anon"]

    def file_bytes(self) -> int:
        s = self.stat()
        return s["cache"] if self.version == 1 else s["file"]

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in self.read("cgroup.procs").split()]
        except FileNotFoundError:
            return []

    def popen(self, argv: Sequence[str | os.PathLike[str]], **kw: Any) -> subprocess.Popen[bytes]:
        """Start argv inside this cgroup (it joins before exec, so nothing runs outside the limit)."""
        procs_file = str(self.path / "cgroup.procs")

        def _join() -> None:
            with open(procs_file, "w") as f:
                f.write("0")

        kw.setdefault("stdout", subprocess.PIPE)
        p: subprocess.Popen[bytes] = subprocess.Popen(list(argv), preexec_fn=_join, **kw)
        self.procs.append(p)
        return p

    def kill_all(self, timeout: float = 10.0) -> None:
        """SIGKILL, by pid, every process still in the cgroup, and reap those we started."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for p in self.procs:
                if p.poll() is None and p.pid in pids:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        p.wait(timeout=1)
            if not pids or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        for p in self.procs:
            if p.stdout:
                p.stdout.close()
            if p.poll() is None:
                p.kill()
                p.wait(timeout=5)

    def remove(self) -> None:
        self.kill_all()
        remove_cgroup_tree(self.path)


def remove_cgroup_tree(path: Path, timeout: float = 10.0) -> None:
    """rmdir a cgroup and its descendants, deepest first; retries while the kernel lets go."""
    from harness.host.cgroups import rmdir_tree

    if not path.exists():
        return
    failed = rmdir_tree(path, timeout=timeout)
    if failed:
        raise OSError("; ".join(failed))


def make_memcg(limit: int, prefix: str = CGROUP_PREFIX) -> MemCgroup:
    root, version = memory_cgroup_root()
    path = root / f"{prefix}{uuid.uuid4().hex[:10]}"
    if version == 2:
        # the memory controller must be enabled for the root's children
        ctl = root / "cgroup.subtree_control"
        if "memory" not in ctl.read_text().split():
            ctl.write_text("+memory")
    path.mkdir()
    cg = MemCgroup(path=path, version=version, limit=limit)
    try:
        if version == 1:
            (path / "memory.limit_in_bytes").write_text(str(limit))
        else:
            (path / "memory.max").write_text(str(limit))
        no_swap(path, version == 2, limit)  # OOM at the limit, even on a host with swap
    except BaseException:
        remove_cgroup_tree(path)
        raise
    return cg


@pytest.fixture
def memcg_factory(request: pytest.FixtureRequest) -> Callable[..., MemCgroup]:
    """Make memory cgroups ``memcg_factory(limit_bytes)``; all are removed after the test."""
    made: list[MemCgroup] = []

    def cleanup() -> None:
        errors = []
        for cg in reversed(made):
            try:
                cg.remove()
            except Exception as exc:  # keep cleaning the others
                errors.append(exc)
        if errors:
            raise errors[0]

    request.addfinalizer(cleanup)

    def factory(limit: int = 64 * MiB) -> MemCgroup:
        cg = make_memcg(limit)
        made.append(cg)
        return cg

    return factory


@pytest.fixture
def memcg(memcg_factory: Callable[..., MemCgroup]) -> MemCgroup:
    """A fresh memory cgroup limited to 64 MiB."""
    cg: MemCgroup = memcg_factory(64 * MiB)
    return cg


# --------------------------------------------------------------------------- kernel log


@dataclass
class KmsgRecord:
    seq: int
    ts_us: int
    message: str


class Kmsg:
    """Reads /dev/kmsg records written after it was opened (it seeks to the end first)."""

    def __init__(self, from_start: bool = False) -> None:
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)  # at the oldest record kept
        if not from_start:
            os.lseek(self.fd, 0, os.SEEK_END)
        self.records: list[KmsgRecord] = []

    def poll(self) -> list[KmsgRecord]:
        new = []
        while True:
            try:
                raw = os.read(self.fd, 8192)
            except BlockingIOError:
                break
            except BrokenPipeError:  # overwritten while we were away: continue with the next record
                continue
            if not raw:
                break
            head, _, msg = raw.decode(errors="replace").partition(";")
            parts = head.split(",")
            new.append(KmsgRecord(int(parts[1]), int(parts[2]), msg.split("\n", 1)[0]))
        self.records.extend(new)
        return new

    def oom_kills(self) -> dict[int, OomKill]:
        """pid -> every OOM kill logged so far, joined by the harness's own :class:`OomParser`.

        The kernel rate-limits the OOM report (``dump_header``, whose summary is the
        ``oom-kill:...task_memcg=`` line) to 10 per 5 s (mm/oom_kill.c ``oom_rs``,
        DEFAULT_RATELIMIT_INTERVAL/BURST), but always prints "Killed process". After many kills in a
        row a kill can therefore arrive "bare", without its cgroup; the ``full_oom_reports`` fixture waits
        for a fresh window first.
        """
        self.poll()
        parser = OomParser()
        out: dict[int, OomKill] = {}
        for r in self.records:
            for kill in parser.feed(HarnessKmsgRecord(6, r.seq, r.ts_us, "-", r.message)):
                out[kill.pid] = kill
        return out

    def wait_for_oom_kill(self, pid: int, timeout: float = 5.0) -> OomKill:
        """The kill of ``pid`` (``task_memcg`` is None if the kernel suppressed its report)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.oom_kills().get(pid)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no 'Killed process {pid}' line in /dev/kmsg within {timeout}s")
            time.sleep(0.02)

    def close(self) -> None:
        os.close(self.fd)


# mm/oom_kill.c: static DEFINE_RATELIMIT_STATE(oom_rs, DEFAULT_RATELIMIT_INTERVAL, DEFAULT_RATELIMIT_BURST)
# guards dump_header(); include/linux/ratelimit_types.h: DEFAULT_RATELIMIT_INTERVAL (5 * HZ),
# DEFAULT_RATELIMIT_BURST 10.
OOM_REPORT_INTERVAL_S = 5.0


def wait_for_full_oom_reports(margin: float = 0.3) -> float:
    """Wait until the kernel's OOM report rate limit has a fresh window; return the seconds waited.

    The window of ``oom_rs`` opens at some kill and lasts 5 s; once 5 s have passed since the last
    kill of any kind, the next kill starts a new window with a burst of 10 full reports. Tests that
    assert the ``oom-kill:`` summary (its cgroups) call this first, so the kills of the tests
    before them cannot have used up the burst. Kernel timestamps and ``CLOCK_MONOTONIC`` share a
    base here (``KmsgClock`` measures the offset exactly).
    """
    clock = KmsgClock()
    with contextlib.suppress(OSError):
        clock.probe()
    k = Kmsg(from_start=True)
    try:
        last = max(
            (
                r.ts_us
                for r in k.poll()
                if "Killed process " in r.message or " invoked oom-killer: " in r.message
            ),
            default=None,
        )
    finally:
        k.close()
    if last is None:
        return 0.0
    wait = clock.to_mono(last) + OOM_REPORT_INTERVAL_S + margin - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    return max(wait, 0.0)


@pytest.fixture
def full_oom_reports() -> float:
    """The next (up to 10) OOM kills get the kernel's full report, ``oom-kill:`` summary included."""
    return wait_for_full_oom_reports()


@pytest.fixture
def kmsg() -> Iterator[Kmsg]:
    k = Kmsg()
    try:
        yield k
    finally:
        k.close()


# --------------------------------------------------------------------------- workloads


def _built(name: str) -> Path:
    path = WORKLOADS / "build" / name
    sources = [WORKLOADS / f"{name}.c", WORKLOADS / "Makefile"]
    if not path.exists() or any(s.stat().st_mtime > path.stat().st_mtime for s in sources):
        subprocess.run(["make", "-s", "-C", str(WORKLOADS)], check=True)
    return path


@pytest.fixture(scope="session")
def leak_binary() -> Path:
    return _built("leak")


@pytest.fixture(scope="session")
def pause_binary() -> Path:
    return _built("pause")


# --------------------------------------------------------------------------- docker


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The project's Docker engine (harness.engines.docker); started here if not answering.

    Skipped only when HARNESS_SKIP_DOCKER=1; a missing daemon is never a reason to skip.
    The engine is stopped at the end of the session if (and only if) this session started it.
    """
    if os.environ.get("HARNESS_SKIP_DOCKER") == "1":
        pytest.skip("HARNESS_SKIP_DOCKER=1")
    from harness.engines.docker import ensure_docker

    engine = ensure_docker()
    try:
        yield engine
    finally:
        if engine.started_by_us:
            engine.stop()


# --------------------------------------------------------------------------- containerd


@pytest.fixture(scope="session")
def containerd_engine() -> Iterator[Any]:
    """The containerd of the harness backend (harness.engines.containerd.default_instance()).

    Started here if its socket does not answer, and stopped at the end of the session if (and
    only if) this session started it. A missing daemon is never a reason to skip.
    """
    from harness.engines.containerd import default_instance, ensure_containerd

    handle = ensure_containerd(default_instance())
    try:
        yield handle
    finally:
        if handle.started_by_us:
            handle.stop()


# --------------------------------------------------------------------------- loopback lab hosts


@pytest.fixture(scope="session")
def loopback_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Three sshd "lab hosts" on loopback addresses; lab-c accepts only another key than the client's."""
    from tests.integration._sshd import LoopbackLab

    lab = LoopbackLab.start(
        tmp_path_factory.mktemp("lab"),
        [("lab-a", "127.0.0.2"), ("lab-b", "127.0.0.3"), ("lab-c", "127.0.0.4")],
    )
    lab.refuse_client_key("lab-c")
    try:
        yield lab
    finally:
        lab.stop()
