"""High-rate sampler of cgroup memory files and ``/proc/meminfo``.

One background thread runs one batched pass per tick (default 10 Hz) over every
registered cgroup and the node. Files are opened once per registration and read with
``os.pread(fd, n, 0)``: kernfs and procfs regenerate the text on every read at offset 0,
so values are fresh, and the open/close cost (about 30 µs per file on the reference
machine, see ``docs/design.md`` "Performance targets") is paid once. Only the few
``memory.stat`` keys the harness needs are extracted, with one pre-compiled regular
expression per cgroup version.

Rows are buffered as tuples and appended every ``flush_interval`` seconds as an Arrow
IPC record batch to ``<progress_dir>/samples.arrows`` (flushed and fsync'ed), so a crash
loses at most about one second. :func:`read_progress` reads such a stream back, tolerating
a truncated tail, and :func:`finalize` writes ``samples.parquet``.

Static values (the memory limit) are read once at registration. A cgroup that disappears
(reads fail with ``ENODEV``, as they do on an open fd after ``rmdir``, or ``ENOENT``) is
recorded as a :class:`CgroupGone` event and unregistered.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import json
import logging
import os
import re
import resource
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from harness.results import atomic_file
from harness.sample.cgroupfs import (
    CgroupPaths,
    CgroupVersion,
    detect_host_layout,
    parse_limit,
    stat_keys,
)
from harness.sample.procfs import MEMINFO_FIELDS

log = logging.getLogger(__name__)

SAMPLES_STREAM = "samples.arrows"
EVENTS_FILE = "sampler_events.jsonl"

#: The row schema of ``samples.parquet``. Memory values are bytes; ``pgmajfault`` a count.
#: ``scope`` is ``"cgroup"`` (a registered cgroup) or ``"node"`` (``/proc/meminfo`` plus the
#: optional node cgroup). Columns that do not apply to a row are null: ``mem_*``/``cached``/
#: ``buffers`` on cgroup rows, ``oom`` on v1, ``under_oom`` on v2, ``limit`` when unlimited.
SCHEMA = pa.schema(
    [
        pa.field("t_mono", pa.float64(), nullable=False),  # CLOCK_MONOTONIC, seconds
        pa.field("t_wall", pa.float64(), nullable=False),  # CLOCK_REALTIME, seconds since epoch
        pa.field("tick", pa.int64(), nullable=False),
        pa.field("scope", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),  # workload / cgroup name given at register()
        pa.field("path", pa.string(), nullable=False),  # memory cgroup directory (or /proc/meminfo)
        pa.field("version", pa.string()),  # "v1" / "v2"
        pa.field("usage", pa.int64()),
        pa.field("working_set", pa.int64()),
        pa.field("rss", pa.int64()),  # v1 (total_)rss, v2 anon
        pa.field("cache", pa.int64()),  # v1 (total_)cache, v2 file
        pa.field("inactive_file", pa.int64()),
        pa.field("active_file", pa.int64()),
        pa.field("mapped_file", pa.int64()),  # v1 (total_)mapped_file, v2 file_mapped
        pa.field("shmem", pa.int64()),
        pa.field("pgmajfault", pa.int64()),
        pa.field("limit", pa.int64()),  # read once at registration; null = unlimited
        pa.field("oom", pa.int64()),  # v2 memory.events "oom"
        pa.field("oom_kill", pa.int64()),  # v1 oom_control / v2 memory.events "oom_kill"
        pa.field("under_oom", pa.bool_()),  # v1 oom_control
        pa.field("mem_total", pa.int64()),
        pa.field("mem_free", pa.int64()),
        pa.field("mem_available", pa.int64()),
        pa.field("cached", pa.int64()),
        pa.field("buffers", pa.int64()),
    ]
)
COLUMNS = tuple(SCHEMA.names)

_STAT_FIELDS = ("rss", "cache", "inactive_file", "active_file", "mapped_file", "shmem", "pgmajfault")
_GONE_ERRNOS = {errno.ENODEV, errno.ENOENT, errno.ESTALE}
_MEMINFO_RE = re.compile(rb"^(" + b"|".join(f.encode() for f in MEMINFO_FIELDS) + rb"):\s+(\d+)", re.M)
_READ_SMALL = 128
_NO_MEMINFO = (None,) * 5
_NO_CGROUP = (None,) * 14  # version .. under_oom
_NO_OOM = (None,) * 3  # oom, oom_kill, under_oom
_READ_STAT = 16384
pread = os.pread


def _meminfo_values(data: bytes) -> tuple[int | None, ...]:
    """``(MemTotal, MemFree, MemAvailable, Cached, Buffers)`` in bytes from ``/proc/meminfo``.

    The kernel prints these five first, in the order MemTotal, MemFree, MemAvailable, Buffers,
    Cached (fs/proc/meminfo.c ``meminfo_proc_show``, since 3.14): one ``split`` of the head reads
    them (≈1 µs, a regex over the whole file ≈6 µs). Any other layout goes through the regex.
    """
    tok = data.split(None, 15)
    if tok[0:15:3] == _MEMINFO_HEAD and tok[2:15:3] == _KB5:
        total, free, avail, buffers, cached = (int(v) * 1024 for v in tok[1:15:3])
        return total, free, avail, cached, buffers
    mi = {k: int(v) * 1024 for k, v in _MEMINFO_RE.findall(data)}
    return (
        mi.get(b"MemTotal"),
        mi.get(b"MemFree"),
        mi.get(b"MemAvailable"),
        mi.get(b"Cached"),
        mi.get(b"Buffers"),
    )


_MEMINFO_HEAD = [b"MemTotal:", b"MemFree:", b"MemAvailable:", b"Buffers:", b"Cached:"]
_KB5 = [b"kB"] * 5

# Highest rate of the node-level readings: /proc/meminfo and the hierarchy root's cgroup files,
# whose reads cost the kernel a pass over machine-wide counters (see _Reader.node_level). At the
# default 10 Hz they are in every tick; at 100 Hz in every tenth, each row with its own times.
NODE_HZ = 10.0

# Longest reuse of a cgroup's memory.stat values while its usage does not change.
STAT_REUSE_S = 1.0
# An idle cgroup whose memory.stat did not change at its last re-read waits twice as long for the
# next, up to this; any change (of usage, or of the stat values) brings it back to STAT_REUSE_S.
# Anonymous memory held still (most of a node's pods) never ages, and these re-reads were half of
# the cost of 500 idle cgroups at 10 Hz (README, "Scale"). A change after a long quiet spell is
# still seen within 4 s, finer than the kubelet's own view: cAdvisor's housekeeping refreshes a
# container's stats every 10 s (cadvisor manager.go, --housekeeping_interval default 10s; the
# kubelet's default in k8s.io/kubernetes cmd/kubelet/app/options).
STAT_REUSE_MAX_S = 4.0


@dataclass(frozen=True)
class CgroupGone:
    """A registered cgroup vanished while sampling (it was unregistered)."""

    key: str
    path: str
    t_mono: float
    t_wall: float
    tick: int
    reason: str


class _Reader:
    """Kept-open fds and pre-computed parsing state for one cgroup."""

    def __init__(self, key: str, paths: CgroupPaths, scope: str, hierarchical: bool) -> None:
        self.key = key
        self.scope = scope
        self.paths = paths
        self.path = paths.memory_dir
        self.version = CgroupVersion(paths.version)
        # The hierarchy root: reading its usage and memory.stat makes the kernel gather the whole
        # machine's counters (measured here: ≈25 µs and ≈75 µs per read in a thread woken at
        # 100 Hz, against ≈1 µs and ≈10 µs for an idle child), so it is read at the node rate.
        self.node_level = paths.rel == ""
        v2 = self.version is CgroupVersion.V2
        keys = stat_keys(self.version, hierarchical=hierarchical)
        wanted = [keys[f] for f in _STAT_FIELDS]
        # v2 root: no memory.current; usage = anon + file (runc fs2 rootStatsFromMeminfo)
        self.v2_root = v2 and not os.path.exists(paths.usage)
        if self.v2_root:
            wanted += ["anon", "file"]
        self.needles = [f"\n{k} ".encode() for k in wanted]
        self.v2 = v2
        self.version_str = self.version.value
        self.fds: list[int] = []
        # memory.stat is the costly read (≈10 µs of kernel time per v1 cgroup). When usage has
        # not moved since the last stat read, the stat values are reused for up to
        # ``STAT_REUSE_S``: an idle cgroup's counters only shift by LRU aging, which the
        # kubelet itself sees at most every 10 s (cAdvisor housekeeping).
        self._last_usage = -1
        self._last_out: tuple[object, ...] = ()
        self._last_full: tuple[object, ...] = ()
        # the row tail ("cgroup", key, path, *values, *no meminfo) built for ``_tail_of``
        self._tail_of: tuple[object, ...] | None = None
        self._tail: tuple[object, ...] = ()
        # the raw usage text (v2 root: memory.stat) behind ``_tail``, for the batched fast path
        self._raw: bytes | None = None
        # due time of this reader's pending entry in the sampler's stat schedule (0: none)
        self._due = 0.0
        self._last_stat_t = 0.0
        # how long the current stat values may be reused (STAT_REUSE_S .. STAT_REUSE_MAX_S)
        self._reuse_s = STAT_REUSE_S
        self._last_vals: list[int] = []
        # The first stat read counts as done up to 0.9 x STAT_REUSE_S earlier, by a phase from the
        # path: cgroups registered together then re-read memory.stat in different ticks instead of
        # all in one (500 v1 stat reads take ≈5 ms: a missed tick at 100 Hz).
        self._stat_phase = (zlib.crc32(self.path.encode()) % 1000) / 1000 * 0.9
        try:
            self.fd_usage = -1 if self.v2_root else self._open(paths.usage)
            self.fd_stat = self._open(paths.stat)
            self.fd_oom = self._open(paths.oom) if os.path.exists(paths.oom) else -1
            limit_path = paths.limit
            self.limit = (
                parse_limit(Path(limit_path).read_text(), self.version)
                if os.path.exists(limit_path)
                else None
            )
        except BaseException:
            self.close()
            raise

    def _open(self, path: str) -> int:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.fds.append(fd)
        return fd

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()

    def read(
        self, oom_counters: bool = True, now: float | None = None, usage: int | None = None
    ) -> tuple[object, ...]:
        """``(version, usage, working_set, rss, cache, inactive_file, active_file, mapped_file, shmem,
        pgmajfault, limit, oom, oom_kill, under_oom)``; raises OSError.

        Hot path (runs per cgroup per tick; ``now`` is the tick's monotonic time, read once per
        tick by the caller). While usage has not moved and the stat values are fresh enough, the
        previous result tuple is returned as is: one ``pread`` and one ``int()`` per cgroup, no new
        objects (with OOM counters off). Otherwise ``bytes.find`` of each ``"\\n<key> "`` picks the
        7 keys out of ``memory.stat`` (≈5.5 µs for v1, vs ≈7.5 µs for ``dict(zip(...split()))``
        and ≈9 µs for a regex). A missing key reads as 0 (and the working set then equals usage,
        as in cAdvisor).
        """
        if now is None:
            now = time.monotonic()
        if usage is None:  # else read by the caller (Sampler._sample's fast path)
            usage = -1 if self.v2_root else int(os.pread(self.fd_usage, _READ_SMALL, 0))
        if usage >= 0 and usage == self._last_usage and now - self._last_stat_t < self._reuse_s:
            base = self._last_out
        else:
            data = b"\n" + os.pread(self.fd_stat, _READ_STAT, 0)
            find = data.find
            vals = []
            for k in self.needles:  # b"\n<key> "
                i = find(k)
                if i < 0:
                    vals.append(-1)
                    continue
                i += len(k)
                vals.append(int(data[i : find(b"\n", i)]))
            if not self._last_stat_t:
                now -= self._stat_phase * STAT_REUSE_S
            elif usage == self._last_usage and vals == self._last_vals:  # a quiet re-read
                self._reuse_s = min(self._reuse_s * 2, max(STAT_REUSE_MAX_S, STAT_REUSE_S))
            else:
                self._reuse_s = STAT_REUSE_S
            self._last_vals = vals
            self._last_usage, self._last_stat_t = usage, now
            if self.v2_root:
                usage = max(vals[-2], 0) + max(vals[-1], 0)
            inactive = vals[2]
            ws = usage if inactive < 0 else max(usage - inactive, 0)
            base = self._last_out = (
                self.version_str, usage, ws, *[max(v, 0) for v in vals[:7]], self.limit,
            )  # fmt: skip
            self._last_full = base + _NO_OOM
        if not (oom_counters and self.fd_oom >= 0):
            return self._last_full
        oom = oom_kill = None
        under: bool | None = None
        otoks = iter(os.pread(self.fd_oom, 512, 0).split())
        counters = dict(zip(otoks, otoks, strict=False))
        if b"oom_kill" in counters:
            oom_kill = int(counters[b"oom_kill"])
        if self.v2:
            oom = int(counters.get(b"oom", 0))
        elif b"under_oom" in counters:
            under = counters[b"under_oom"] != b"0"
        return (*base, oom, oom_kill, under)


def raise_open_files_limit() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; returns (soft, hard) after.

    The sampler keeps 2-3 files open per cgroup (usage, memory.stat, OOM counters): a node's worth
    of cgroups (500) needs ~1500, above the usual soft limit of 1024. A lab host's SSH session
    (Debian 12 guest) had exactly that, and 500 cgroups failed with EMFILE. Raising the soft limit
    up to the hard one needs no privilege (setrlimit(2)); Go's runtime does the same at start."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


class Sampler:
    """Samples registered cgroups and the node at a fixed rate in a background thread.

    >>> s = Sampler("results/run1/progress", rate_hz=10)            # doctest: +SKIP
    >>> s.register("leaker", CgroupPaths("harness/run1/leaker", "v1"))  # doctest: +SKIP
    >>> with s: ...                                                  # doctest: +SKIP
    >>> df = finalize("results/run1/progress", "results/run1/samples.parquet")  # doctest: +SKIP

    Args:
        progress_dir: directory receiving ``samples.arrows`` and ``sampler_events.jsonl``.
        rate_hz: ticks per second.
        node_cgroup: the cgroup reported in the ``node`` row (the root, or the cgroup that
            confines the harness); ``None`` reports only ``/proc/meminfo``.
        meminfo_path: ``/proc/meminfo`` (overridable for tests).
        flush_interval: seconds between appends to the stream.
        fsync: fsync the stream after each append (survives a host crash, not only ours).
        hierarchical: v1 only; use the ``total_*`` ``memory.stat`` keys (as cAdvisor does).
        on_gone: called (from the sampler thread) when a cgroup disappears.
        oom_counters: read ``memory.oom_control`` / ``memory.events`` every tick (columns ``oom``,
            ``oom_kill``, ``under_oom``); turn off when an :class:`~harness.sample.oomwatch.OomWatcher`
            watches them by event, to save one read per cgroup per tick.
        node_hz: highest rate of the node row and of a registered hierarchy root (``rel == ""``):
            above it, those rows are in the ticks at most every ``1 / node_hz`` s (each stamped
            with its own tick's times), the other cgroups' rows in every tick.
    """

    def __init__(
        self,
        progress_dir: str | os.PathLike[str],
        *,
        rate_hz: float = 10.0,
        node_cgroup: CgroupPaths | None = None,
        meminfo_path: str = "/proc/meminfo",
        flush_interval: float = 1.0,
        fsync: bool = True,
        hierarchical: bool = True,
        on_gone: Callable[[CgroupGone], None] | None = None,
        oom_counters: bool = True,
        node_hz: float = NODE_HZ,
    ) -> None:
        if rate_hz <= 0 or node_hz <= 0:
            raise ValueError(f"rate_hz and node_hz must be positive, got {rate_hz} and {node_hz}")
        raise_open_files_limit()
        self.progress_dir = Path(progress_dir)
        self.progress_dir.mkdir(parents=True, exist_ok=True)
        self.period = 1.0 / rate_hz
        self._node_period = 1.0 / node_hz
        self._node_every = rate_hz <= node_hz  # every tick reads the node (the default 10 Hz)
        self._next_node = 0.0
        self.flush_interval = flush_interval
        self.fsync = fsync
        self.hierarchical = hierarchical
        self.on_gone = on_gone
        self.oom_counters = oom_counters
        self._lock = threading.Lock()
        self._readers: dict[str, _Reader] = {}
        # The batched fast path (OOM counters off): the readers in registration order with their
        # usage fds, the raw usage texts and row tails of the last tick, and a heap of
        # (due time, index) of the memory.stat re-reads; rebuilt when the readers change.
        self._dirty = True
        self._order: list[_Reader] = []
        self._fds: list[int] = []
        self._raws: list[bytes | None] = []
        self._cg_tails: list[tuple[object, ...]] = []
        self._stat_due: list[tuple[float, int]] = []
        self._node_readers: list[_Reader] = []
        # buffered ticks: ((t_mono, t_wall, tick), row tails); see _sample
        self._ticks: list[tuple[tuple[float, float, int], list[tuple[object, ...]]]] = []
        self._gone: list[CgroupGone] = []
        self._tick = 0
        self.missed_ticks = 0
        self._meminfo_fd = os.open(meminfo_path, os.O_RDONLY | os.O_CLOEXEC)
        self._node = _Reader("node", node_cgroup, "node", hierarchical) if node_cgroup else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sink = open(self.progress_dir / SAMPLES_STREAM, "ab")  # noqa: SIM115 - closed in close()
        # appending to an existing file starts a second stream; read_progress reads them all
        self._writer: ipc.RecordBatchStreamWriter | None = ipc.new_stream(self._sink, SCHEMA)
        self._events = open(self.progress_dir / EVENTS_FILE, "a", encoding="utf-8")  # noqa: SIM115
        self._last_flush = time.monotonic()
        self._closed = False
        self.error: BaseException | None = None

    # ------------------------------------------------------------------ registration

    def register(
        self, key: str, cgroup: CgroupPaths | str, version: CgroupVersion | str | None = None
    ) -> None:
        """Start sampling ``cgroup`` under the name ``key`` (replaces an earlier ``key``).

        ``cgroup`` is a :class:`CgroupPaths` or a relative cgroup path; for a path the version is
        ``version`` or the host's (from ``/proc/self/mountinfo``). Raises ``OSError`` if the files
        cannot be opened (e.g. the cgroup does not exist).
        """
        if isinstance(cgroup, str):
            if version is None:
                mounts = detect_host_layout()
                cgroup = CgroupPaths(cgroup, mounts.memory_version, mounts.root)
            else:
                cgroup = CgroupPaths(cgroup, version)
        reader = _Reader(key, cgroup, "cgroup", self.hierarchical)
        with self._lock:
            old = self._readers.pop(key, None)
            self._readers[key] = reader
            self._dirty = True
        if old is not None:
            old.close()

    def unregister(self, key: str) -> bool:
        """Stop sampling ``key``; returns False if it was not registered (e.g. already gone)."""
        with self._lock:
            reader = self._readers.pop(key, None)
            self._dirty = True
        if reader is None:
            return False
        reader.close()
        return True

    @property
    def keys(self) -> list[str]:
        with self._lock:
            return list(self._readers)

    @property
    def gone(self) -> list[CgroupGone]:
        with self._lock:
            return list(self._gone)

    @property
    def ticks(self) -> int:
        return self._tick

    # ------------------------------------------------------------------ sampling

    def sample_once(self) -> list[tuple[object, ...]]:
        """Run one tick synchronously; returns its rows (also buffered for the stream)."""
        head, tails = self._sample()
        return [head + t for t in tails]

    def _sample(self) -> tuple[tuple[float, float, int], list[tuple[object, ...]]]:
        """One tick: ``((t_mono, t_wall, tick), [row tail per cgroup and the node])``.

        A row is ``head + tail``; the tick is buffered as the pair, not as rows, and a cgroup
        whose values did not change contributes the very same tail object as in the last tick,
        so that an idle node allocates almost nothing per tick and :func:`ticks_to_batch`
        converts each distinct tail to Arrow once. The node row and the hierarchy root's rows are
        only in the ticks of the node rate (``node_hz``), each with its own tick's times.
        """
        t_mono = time.monotonic()
        t_wall = time.time()
        gone: list[CgroupGone] = []
        with self._lock:
            tick = self._tick
            self._tick += 1
            node_tick = self._node_every or t_mono >= self._next_node
            if node_tick:
                # the next reading one node period later, allowing half a tick of wake-up jitter
                self._next_node = t_mono + self._node_period - self.period / 2
            cg_tails = None
            if not self.oom_counters:
                cg_tails = self._sample_batched(t_mono, node_tick)
            if cg_tails is None:  # OOM counters on, or a cgroup went away: one reader at a time
                cg_tails = self._sample_each(t_mono, t_wall, tick, gone, node_tick)
            tails = [*cg_tails, self._node_tail(t_mono)] if node_tick else cg_tails
            head = (t_mono, t_wall, tick)
            self._gone.extend(gone)
            self._ticks.append((head, tails))
        for event in gone:
            self._events.write(json.dumps({"event": "cgroup_gone", **asdict(event)}) + "\n")
            self._events.flush()
            if self.on_gone is not None:
                self.on_gone(event)
        return head, tails

    def _rebuild(self) -> None:
        """The fast path's arrays from the registered readers (called under the lock)."""
        self._order = [r for r in self._readers.values() if not r.node_level]
        self._node_readers = [r for r in self._readers.values() if r.node_level]
        self._fds = [r.fd_usage for r in self._order]  # the root (v2: no memory.current) is node-level
        self._raws = [r._raw for r in self._order]
        self._cg_tails = [r._tail for r in self._order]
        self._stat_due = []
        for i, r in enumerate(self._order):
            r._due = 0.0
            if r._raw is not None:
                r._due = r._last_stat_t + r._reuse_s
                self._stat_due.append((r._due, i))
        heapq.heapify(self._stat_due)
        self._dirty = False

    def _sample_batched(self, t_mono: float, node_tick: bool) -> list[tuple[object, ...]] | None:
        """The cgroup row tails of one tick with OOM counters off; None if a read failed.

        Hot path (cgroups x Hz times a second), without a Python loop over idle cgroups: one
        ``pread`` of each usage file through ``map``, one list comparison with the last tick's raw
        texts, then only the cgroups whose usage moved or whose ``memory.stat`` is due (a heap of
        due times, ``STAT_REUSE_S``) go through :meth:`_Reader.read`. A tick where nothing moved
        reuses the last tick's list of tails. Node-level readers are read in node ticks only.
        """
        if self._dirty:
            self._rebuild()
        try:
            raws: list[bytes | None] = list(
                map(pread, self._fds, itertools.repeat(_READ_SMALL), itertools.repeat(0))
            )
            node_tails = [self._tail_of_reader(r, t_mono) for r in self._node_readers] if node_tick else []
        except OSError:
            self._dirty = True
            return None  # a cgroup went away: _sample_each finds and reports it
        if node_tails:
            return [*self._batched_tails(raws, t_mono), *node_tails]
        return self._batched_tails(raws, t_mono)

    @staticmethod
    def _tail_of_reader(r: _Reader, t_mono: float) -> tuple[object, ...]:
        values = r.read(False, t_mono)
        if values is not r._tail_of:
            r._tail_of = values
            r._tail = ("cgroup", r.key, r.path, *values, *_NO_MEMINFO)
        return r._tail

    def _batched_tails(self, raws: list[bytes | None], t_mono: float) -> list[tuple[object, ...]]:
        """The row tails of the batched readers from this tick's raw usage texts."""
        due = self._stat_due
        last = self._raws
        if raws == last and not (due and due[0][0] <= t_mono):
            return self._cg_tails
        todo = (
            {i for i, (a, b) in enumerate(zip(raws, last, strict=True)) if a != b} if raws != last else set()
        )
        while due and due[0][0] <= t_mono:
            _, i = heapq.heappop(due)
            todo.add(i)
            self._order[i]._due = 0.0
        tails = list(self._cg_tails)
        order = self._order
        for i in todo:
            r = order[i]
            raw = raws[i]
            assert raw is not None  # read just now
            values = r.read(False, t_mono, int(raw))
            if values is not r._tail_of:
                r._tail_of = values
                r._tail = ("cgroup", r.key, r.path, *values, *_NO_MEMINFO)
            r._raw = raw
            tails[i] = r._tail
            if not r._due:  # one pending schedule entry per reader
                r._due = r._last_stat_t + r._reuse_s
                heapq.heappush(due, (r._due, i))
        self._raws = raws
        self._cg_tails = tails
        return tails

    def _sample_each(
        self, t_mono: float, t_wall: float, tick: int, gone: list[CgroupGone], node_tick: bool
    ) -> list[tuple[object, ...]]:
        """The cgroup row tails of one tick, one reader at a time (OOM counters, a vanished cgroup)."""
        tails: list[tuple[object, ...]] = []
        append = tails.append
        oom_counters = self.oom_counters
        self._dirty = True  # the fast path's raw texts are not kept here
        for key, reader in list(self._readers.items()):
            reader._raw = None
            if reader.node_level and not node_tick:
                continue
            try:
                values = reader.read(oom_counters, t_mono)
            except OSError as exc:
                reason = errno.errorcode.get(exc.errno or 0, str(exc)) if exc.errno else str(exc)
                if exc.errno not in _GONE_ERRNOS:
                    log.warning("sampler: unexpected error reading %s: %s", reader.path, exc)
                gone.append(CgroupGone(key, reader.path, t_mono, t_wall, tick, reason))
                del self._readers[key]
                reader.close()
                continue
            if values is not reader._tail_of:  # unchanged values: reuse the row's tail
                reader._tail_of = values
                reader._tail = ("cgroup", key, reader.path, *values, *_NO_MEMINFO)
            append(reader._tail)
        return tails

    def _node_tail(self, t_mono: float) -> tuple[object, ...]:
        meminfo = _meminfo_values(os.pread(self._meminfo_fd, 8192, 0))
        node = self._node
        if node is None:
            return ("node", "node", "/proc/meminfo", *_NO_CGROUP, *meminfo)
        try:
            values = node.read(self.oom_counters, t_mono)
        except OSError as exc:  # the node cgroup must not vanish; keep meminfo going
            log.warning("sampler: cannot read node cgroup %s: %s", node.path, exc)
            return ("node", "node", node.path, *_NO_CGROUP, *meminfo)
        return ("node", "node", node.path, *values, *meminfo)

    def flush(self) -> int:
        """Append buffered rows to the stream now; returns the number of rows written."""
        with self._lock:
            ticks, self._ticks = self._ticks, []
        self._last_flush = time.monotonic()
        if not ticks or self._writer is None:
            return 0
        batch = ticks_to_batch(ticks)
        self._writer.write_batch(batch)
        self._sink.flush()
        if self.fsync:
            os.fsync(self._sink.fileno())
        return batch.num_rows

    # ------------------------------------------------------------------ thread

    def start(self) -> None:
        """Start the background thread (idempotent)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="harness-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_t = time.monotonic()
        try:
            while not self._stop.is_set():
                self._sample()
                now = time.monotonic()
                if now - self._last_flush >= self.flush_interval:
                    self.flush()
                    now = time.monotonic()
                next_t += self.period
                if next_t < now:  # overran: skip the ticks we cannot honour, keep the grid
                    skipped = int((now - next_t) / self.period) + 1
                    self.missed_ticks += skipped
                    next_t += skipped * self.period
                # time.sleep, not Event.wait: a timed Event.wait costs ~0.1 ms CPU per call here
                # (condition + timed lock); stop() is honoured within one period (≤ 0.1 s slices)
                while not self._stop.is_set() and (delay := next_t - time.monotonic()) > 0:
                    time.sleep(min(delay, 0.1))
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
            log.exception("sampler thread failed")

    def stop(self) -> None:
        """Stop the thread and flush; re-raises an error the thread died with."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()
        if self.error is not None:
            err, self.error = self.error, None
            raise RuntimeError(f"sampler thread failed: {err}") from err

    def close(self) -> None:
        """Stop, flush, and release every fd and file (idempotent)."""
        if self._closed:
            return
        try:
            self.stop()
        finally:
            self._closed = True
            with self._lock:
                readers = list(self._readers.values())
                self._readers.clear()
            for r in readers:
                r.close()
            if self._node is not None:
                self._node.close()
            os.close(self._meminfo_fd)
            if self._writer is not None:
                self._writer.close()
            self._sink.close()
            self._events.close()

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------- reading back


def rows_to_batch(rows: list[tuple[object, ...]]) -> pa.RecordBatch:
    """Turn row tuples (in :data:`COLUMNS` order) into a record batch of :data:`SCHEMA`."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in COLUMNS]
    arrays = [pa.array(col, type=fld.type) for col, fld in zip(columns, SCHEMA, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


def ticks_to_batch(ticks: list[tuple[tuple[float, float, int], list[tuple[object, ...]]]]) -> pa.RecordBatch:
    """The rows ``head + tail`` of buffered ticks as a record batch of :data:`SCHEMA`.

    Same result as :func:`rows_to_batch` on the concatenated rows, but each distinct tail object
    (an idle cgroup repeats the same one tick after tick) is converted once and the table is
    assembled with Arrow's ``take``: the per-row work is C-level iteration over object ids.
    """
    counts = [len(tails) for _, tails in ticks]
    flat = list(itertools.chain.from_iterable(tails for _, tails in ticks))
    ids = np.fromiter(map(id, flat), dtype=np.uint64, count=len(flat))
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    uniq = [flat[i] for i in first.tolist()]
    heads = list(zip(*(h for h, _ in ticks), strict=True))
    n_head = len(heads)
    reps = np.repeat(np.arange(len(ticks)), counts)
    arrays: list[pa.Array] = [
        pa.array(np.asarray(heads[col])[reps], type=fld.type)
        for col, fld in enumerate(SCHEMA)
        if col < n_head
    ]
    # the distinct tails as one batch (columns by a C-level transpose), gathered by one take
    tail_fields = list(SCHEMA)[n_head:]
    tail_cols = list(zip(*uniq, strict=True)) if uniq else [() for _ in tail_fields]
    distinct = pa.RecordBatch.from_arrays(
        [pa.array(c, type=f.type) for c, f in zip(tail_cols, tail_fields, strict=True)],
        schema=pa.schema(tail_fields),
    )
    arrays += distinct.take(pa.array(inverse.reshape(-1).astype(np.int64))).columns
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


def _iter_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """Batches of every stream concatenated in ``path``; stops quietly at a truncated tail."""
    with pa.memory_map(str(path)) as source:
        while source.tell() < source.size():
            try:
                reader = ipc.open_stream(source)
                yield from reader
            except (pa.ArrowInvalid, OSError) as exc:
                log.warning("samples stream %s: stopping at truncated data (%s)", path, exc)
                return


def read_progress(progress_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Read the samples streamed so far (also after a crash) into a DataFrame of :data:`SCHEMA`."""
    path = Path(progress_dir) / SAMPLES_STREAM
    batches = list(_iter_batches(path)) if path.exists() else []
    table = pa.Table.from_batches(batches, schema=SCHEMA)
    return table.to_pandas(types_mapper=_PANDAS_TYPES.get)


# nullable pandas dtypes, so int columns with nulls stay integers
_PANDAS_TYPES = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype(), pa.string(): pd.StringDtype()}


def read_gone_events(progress_dir: str | os.PathLike[str]) -> list[CgroupGone]:
    """The :class:`CgroupGone` events recorded in ``progress_dir``."""
    path = Path(progress_dir) / EVENTS_FILE
    out: list[CgroupGone] = []
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # torn last line after a crash
        if rec.pop("event", None) == "cgroup_gone":
            out.append(CgroupGone(**rec))
    return out


def finalize(
    progress_dir: str | os.PathLike[str], out_path: str | os.PathLike[str] | None = None
) -> pd.DataFrame:
    """Read the progress stream, sort by ``(tick, scope, key)`` and write ``samples.parquet``.

    ``out_path`` defaults to ``<progress_dir>/../samples.parquet``.
    """
    df = read_progress(progress_dir)
    df = df.sort_values(["tick", "scope", "key"], kind="stable").reset_index(drop=True)
    target = Path(out_path) if out_path is not None else Path(progress_dir).parent / "samples.parquet"
    table = pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False)
    atomic_file(target, lambda tmp: pq.write_table(table, tmp))
    return df
