"""OOM kill counters of cgroups, watched by event: a second source independent of kmsg.

- cgroup v1: an ``eventfd`` registered through ``cgroup.event_control`` on
  ``memory.oom_control`` (kernel ``Documentation/admin-guide/cgroup-v1/memory.rst`` §10 "OOM
  Control"); the kernel signals it when the cgroup enters OOM (and when the cgroup is removed).
  The notification precedes the kill, so after a wake-up ``oom_kill`` is re-read every few ms
  until it moves (at most ``settle`` seconds).
- cgroup v2: ``inotify`` ``IN_MODIFY`` on ``memory.events`` (the kernel calls
  ``cgroup_file_notify`` whenever a counter changes, at most every 10 ms; this is how
  containerd detects OOM on v2).
- Fallback (``mode="poll"``, or when registration fails): re-read the counters every
  ``poll_interval``. A slow safety poll also runs in event mode, so a lost wake-up costs latency,
  not a missed kill.

Each increment is reported as one :class:`OomCounterChange` (``old`` → ``new``; a jump of 2
means two kills between reads).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import re
import select
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from harness.sample.cgroupfs import CgroupPaths, CgroupVersion

log = logging.getLogger(__name__)

_IN_MODIFY = 0x00000002
_IN_ATTRIB = 0x00000004  # link count changed: sent on unlink while we hold the file open
_IN_DELETE_SELF = 0x00000400
_IN_IGNORED = 0x00008000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_INOTIFY_EVENT = struct.Struct("iIII")
_COUNTER_RE = re.compile(rb"^(oom_kill|oom|oom_group_kill) (\d+)$", re.M)
_GONE_ERRNOS = {errno.ENODEV, errno.ENOENT, errno.ESTALE}


@dataclass(frozen=True)
class OomCounterChange:
    """An OOM counter of a watched cgroup moved from ``old`` to ``new``.

    ``counter`` is ``"oom_kill"`` (v1 ``memory.oom_control``, v2 ``memory.events``), or on v2
    also ``"oom"`` / ``"oom_group_kill"``. ``source`` is ``"eventfd"``, ``"inotify"`` or ``"poll"``.
    """

    cgroup: str
    path: str
    counter: str
    old: int
    new: int
    t_mono: float
    t_wall: float
    source: str


def read_counters(text: bytes) -> dict[str, int]:
    """OOM counters from ``memory.oom_control`` (v1) or ``memory.events`` (v2) bytes.

    >>> read_counters(b"oom_kill_disable 0\\nunder_oom 0\\noom_kill 2\\n")
    {'oom_kill': 2}
    """
    return {k.decode(): int(v) for k, v in _COUNTER_RE.findall(text)}


class _Watched:
    def __init__(self, key: str, paths: CgroupPaths) -> None:
        self.key = key
        self.paths = paths
        self.version = CgroupVersion(paths.version)
        self.fd = os.open(paths.oom, os.O_RDONLY | os.O_CLOEXEC)
        self.counters = read_counters(os.pread(self.fd, 512, 0))
        self.efd = -1
        self.wd = -1
        self.settle_until = 0.0

    def close(self) -> None:
        for fd in (self.fd, self.efd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.fd = self.efd = -1


class _Inotify:
    """Minimal ctypes binding of inotify(7)."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self.fd: int = fd

    def add(self, path: str, mask: int) -> int:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), ctypes.c_uint32(mask))
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        return int(wd)

    def remove(self, wd: int) -> None:
        self._libc.inotify_rm_watch(self.fd, wd)

    def read(self) -> list[tuple[int, int]]:
        """Pending ``(wd, mask)`` events."""
        out: list[tuple[int, int]] = []
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            off = 0
            while off + _INOTIFY_EVENT.size <= len(buf):
                wd, mask, _cookie, length = _INOTIFY_EVENT.unpack_from(buf, off)
                out.append((wd, mask))
                off += _INOTIFY_EVENT.size + length

    def close(self) -> None:
        os.close(self.fd)


class OomWatcher:
    """Watches the OOM counters of registered cgroups in a background thread.

    >>> w = OomWatcher(on_change=print)                      # doctest: +SKIP
    >>> w.add("leaker", CgroupPaths("harness/run1/leaker", "v1"))  # doctest: +SKIP
    >>> with w: ...                                          # doctest: +SKIP

    Args:
        on_change: called from the watcher thread for every counter change.
        mode: ``"event"`` (eventfd / inotify, with a slow safety poll), ``"poll"``, or ``"auto"``
            (event, falling back to polling per cgroup when registration fails).
        poll_interval: seconds between polls in ``"poll"`` mode.
        safety_poll: seconds between safety polls in event mode.
        settle: v1 only: how long to keep re-reading ``oom_kill`` after an eventfd wake-up.
        on_gone: called with the key of a watched cgroup that disappeared (it is removed).
    """

    def __init__(
        self,
        on_change: Callable[[OomCounterChange], None] | None = None,
        *,
        mode: str = "auto",
        poll_interval: float = 0.05,
        safety_poll: float = 1.0,
        settle: float = 0.5,
        on_gone: Callable[[str], None] | None = None,
    ) -> None:
        if mode not in ("auto", "event", "poll"):
            raise ValueError(f"mode must be auto, event or poll, not {mode!r}")
        self.mode = mode
        self.on_change = on_change
        self.on_gone = on_gone
        self.poll_interval = poll_interval
        self.safety_poll = safety_poll
        self.settle = settle
        self._lock = threading.Condition()
        self._watched: dict[str, _Watched] = {}
        self._by_efd: dict[int, _Watched] = {}
        self._by_wd: dict[int, _Watched] = {}
        self._changes: list[OomCounterChange] = []
        self.gone: list[str] = []
        self._epoll = select.epoll()
        self._stop_r, self._stop_w = os.pipe()
        self._epoll.register(self._stop_r, select.EPOLLIN)
        self._inotify: _Inotify | None = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    # ------------------------------------------------------------------ registration

    def add(self, key: str, paths: CgroupPaths) -> str:
        """Watch ``paths``'s OOM counters under ``key``; returns the mechanism used
        (``"eventfd"``, ``"inotify"`` or ``"poll"``). Raises ``OSError`` if the file is missing."""
        w = _Watched(key, paths)
        source = "poll"
        if self.mode != "poll":
            try:
                source = self._arm(w)
            except OSError as exc:
                if self.mode == "event":
                    w.close()
                    raise
                log.warning("oomwatch: %s: event registration failed (%s); polling", paths.oom, exc)
        with self._lock:
            old = self._watched.pop(key, None)
            self._watched[key] = w
            if old is not None:
                self._forget(old)
        return source

    def _arm(self, w: _Watched) -> str:
        if w.version is CgroupVersion.V1:
            w.efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            with open(w.paths.event_control, "w", encoding="ascii") as ctl:
                ctl.write(f"{w.efd} {w.fd}")
            with self._lock:
                self._by_efd[w.efd] = w
            self._epoll.register(w.efd, select.EPOLLIN)
            return "eventfd"
        if self._inotify is None:
            self._inotify = _Inotify()
            self._epoll.register(self._inotify.fd, select.EPOLLIN)
        w.wd = self._inotify.add(w.paths.oom, _IN_MODIFY | _IN_ATTRIB | _IN_DELETE_SELF)
        with self._lock:
            self._by_wd[w.wd] = w
        return "inotify"

    def remove(self, key: str) -> bool:
        """Stop watching ``key``; False if it was not watched."""
        with self._lock:
            w = self._watched.pop(key, None)
            if w is None:
                return False
            self._forget(w)
        return True

    def _forget(self, w: _Watched) -> None:  # caller holds the lock
        if w.efd >= 0:
            self._by_efd.pop(w.efd, None)
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(w.efd)
        if w.wd >= 0:
            self._by_wd.pop(w.wd, None)
            if self._inotify is not None:
                self._inotify.remove(w.wd)
        w.close()

    @property
    def changes(self) -> list[OomCounterChange]:
        with self._lock:
            return list(self._changes)

    def counters(self, key: str) -> dict[str, int]:
        with self._lock:
            return dict(self._watched[key].counters)

    # ------------------------------------------------------------------ checking

    def _check(self, w: _Watched, source: str) -> bool:
        """Re-read ``w``'s counters, record changes; returns True if anything moved."""
        t_mono, t_wall = time.monotonic(), time.time()
        try:
            new = read_counters(os.pread(w.fd, 512, 0))
        except OSError as exc:
            # EBADF: removed (fd closed) while a settle re-read was pending; not an error
            if exc.errno not in _GONE_ERRNOS and exc.errno != errno.EBADF:
                log.warning("oomwatch: reading %s: %s", w.paths.oom, exc)
            self._drop_gone(w)
            return False
        changes = [
            OomCounterChange(
                w.key, w.paths.memory_dir, name, w.counters.get(name, 0), value, t_mono, t_wall, source
            )
            for name, value in new.items()
            if value != w.counters.get(name, 0)
        ]
        w.counters = new
        if changes:
            with self._lock:
                self._changes.extend(changes)
                self._lock.notify_all()
            if self.on_change is not None:
                for change in changes:
                    self.on_change(change)
        return bool(changes)

    def _drop_gone(self, w: _Watched) -> None:
        with self._lock:
            if self._watched.get(w.key) is w:
                del self._watched[w.key]
                self._forget(w)
                self.gone.append(w.key)
                self._lock.notify_all()
            else:
                return
        if self.on_gone is not None:
            self.on_gone(w.key)

    # ------------------------------------------------------------------ thread

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="harness-oomwatch", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            self.error = exc
            log.exception("oomwatch thread failed")

    def _loop(self) -> None:
        next_poll = time.monotonic()
        while True:
            now = time.monotonic()
            with self._lock:
                watched = list(self._watched.values())
            settling = [w for w in watched if w.settle_until > now]
            interval = self.poll_interval if self.mode == "poll" else self.safety_poll
            polled = [w for w in watched if w.efd < 0 and w.wd < 0]
            if polled and self.mode != "poll":
                interval = min(interval, self.poll_interval)
            timeout = max(next_poll - now, 0.0)
            if settling:
                timeout = min(timeout, 0.002)
            for fd, _ in self._epoll.poll(timeout):
                if fd == self._stop_r:
                    return
                self._on_ready(fd)
            now = time.monotonic()
            for w in settling:
                if w.settle_until > 0 and self._check(w, "eventfd"):
                    w.settle_until = 0.0
            if now >= next_poll:
                for w in watched:
                    source = "poll"
                    if self._check(w, source) and w.settle_until:
                        w.settle_until = 0.0
                next_poll = now + interval

    def _on_ready(self, fd: int) -> None:
        if self._inotify is not None and fd == self._inotify.fd:
            for wd, mask in self._inotify.read():
                with self._lock:
                    w = self._by_wd.get(wd)
                if w is None:
                    continue
                if mask & (_IN_ATTRIB | _IN_DELETE_SELF | _IN_IGNORED) and not os.path.exists(w.paths.oom):
                    self._drop_gone(w)
                else:
                    self._check(w, "inotify")
            return
        with self._lock:
            w = self._by_efd.get(fd)
        if w is None:
            return
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(fd)
        if not os.path.exists(w.paths.memory_dir):  # v1 signals the eventfd on rmdir too
            self._drop_gone(w)
            return
        if not self._check(w, "eventfd"):
            w.settle_until = time.monotonic() + self.settle

    def wait_for(
        self, predicate: Callable[[OomCounterChange], bool], timeout: float
    ) -> OomCounterChange | None:
        """Block until a change matching ``predicate`` was recorded (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for change in self._changes:
                    if predicate(change):
                        return change
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._lock.wait(remaining)

    def stop(self) -> None:
        """Stop the thread and release every fd; re-raises an error the thread died with."""
        if self._thread is not None:
            os.write(self._stop_w, b"x")
            self._thread.join()
            self._thread = None
        with self._lock:
            for w in list(self._watched.values()):
                self._forget(w)
            self._watched.clear()
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        if self._stop_r >= 0:
            self._epoll.close()
            os.close(self._stop_r)
            os.close(self._stop_w)
            self._stop_r = self._stop_w = -1
        if self.error is not None:
            err, self.error = self.error, None
            raise RuntimeError(f"oomwatch thread failed: {err}") from err

    def __enter__(self) -> OomWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
