"""Kernel log (``/dev/kmsg``) follower that turns OOM-killer reports into :class:`OomKill` events.

Layers, from pure to impure:

1. :func:`parse_record` — one ``/dev/kmsg`` record (``prio,seq,ts_usec,flags[,...];message``
   followed by optional ``\\n KEY=value`` continuation lines) into a :class:`KmsgRecord`.
2. :class:`OomParser` — a small state machine fed with records; joins the lines one OOM kill
   prints into one :class:`OomKill`. Understands kernels ≥ 4.19 (``oom-kill:constraint=...``,
   one line, incl. ``global_oom``) and older ones (``Task in X killed as a result of limit of
   Y``), memcg and global OOMs.
3. :class:`KmsgFollower` — a thread reading ``/dev/kmsg`` and feeding the parser.

Starting point: the follower opens ``/dev/kmsg`` and ``lseek(fd, 0, SEEK_END)``, which for this
device means "the next record to be written" (``Documentation/ABI/testing/dev-kmsg``): records
already in the ring buffer are skipped, only OOM kills from *now* on are reported. Use
``from_start=True`` to replay the whole ring buffer instead (``SEEK_SET``).

Timestamps: ``ts_usec`` is printk's ``local_clock()`` in µs, which on Linux follows the
same time base as ``CLOCK_MONOTONIC`` (both stop during suspend; ``local_clock`` is not
NTP-slewed, so the two may drift by a few ppm). :class:`KmsgClock` keeps the offset
``CLOCK_MONOTONIC − ts`` used to convert, estimated as the minimum of
``receipt_time − ts`` over received records (an upper bound, tight to < 1 ms for records read
as they are written) or measured exactly with :meth:`KmsgClock.probe` (writes one line to
``/dev/kmsg`` and reads it back). On the reference VM the measured offset is < 1 ms.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import select
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

log = logging.getLogger(__name__)

KMSG = "/dev/kmsg"

# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class KmsgRecord:
    """One ``/dev/kmsg`` record.

    ``prio`` is the syslog priority+facility number (``facility << 3 | level``); ``ts_usec`` µs
    since boot on the printk clock; ``fields`` the ``KEY=value`` continuation (dictionary) lines.
    """

    prio: int
    seq: int
    ts_usec: int
    flags: str
    message: str
    fields: dict[str, str] = field(default_factory=dict)
    extra: tuple[str, ...] = ()  # further prefix fields, e.g. "caller=T123" (CONFIG_PRINTK_CALLER)

    @property
    def level(self) -> int:
        return self.prio & 7

    @property
    def facility(self) -> int:
        return self.prio >> 3


_ESCAPE_RE = re.compile(r"\\x([0-9a-fA-F]{2})")


def _unescape(text: str) -> str:
    """Undo the kernel's ``\\xNN`` escaping of non-printable bytes in kmsg messages."""
    if "\\x" not in text:
        return text
    return _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), text)


def parse_record(raw: bytes | str) -> KmsgRecord | None:
    """Parse one ``/dev/kmsg`` record; ``None`` if it is not one.

    >>> r = parse_record("6,373,369288502,-;memory: usage 49152kB, limit 49152kB, failcnt 142")
    >>> (r.level, r.seq, r.ts_usec, r.message[:13])
    (6, 373, 369288502, 'memory: usage')
    >>> parse_record("6,1,2,-,caller=T7;hello\\n SUBSYSTEM=mem\\n").fields
    {'SUBSYSTEM': 'mem'}
    """
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    header, sep, rest = text.partition(";")
    if not sep:
        return None
    parts = header.split(",")
    if len(parts) < 4:
        return None
    try:
        prio, seq, ts = int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None
    lines = rest.rstrip("\n").split("\n")
    fields: dict[str, str] = {}
    for cont in lines[1:]:  # continuation lines start with a space: " KEY=value"
        key, eq, value = cont.strip().partition("=")
        if eq:
            fields[key] = _unescape(value)
    return KmsgRecord(
        prio=prio,
        seq=seq,
        ts_usec=ts,
        flags=parts[3],
        message=_unescape(lines[0]),
        fields=fields,
        extra=tuple(parts[4:]),
    )


def parse_dmesg_line(line: str, seq: int = 0) -> KmsgRecord | None:
    """Parse a ``dmesg`` / ``journalctl -k`` style line (``[  81.674970] text``) into a record.

    For captured logs of lab hosts; priority is unknown (6 is assumed).

    >>> parse_dmesg_line("[   81.674970] memory: usage 481280kB").ts_usec
    81674970
    """
    m = re.match(r"^.*?\[\s*(\d+)\.(\d{6})\]\s?(.*)$", line)
    if m is None:
        return None
    return KmsgRecord(6, seq, int(m.group(1)) * 1_000_000 + int(m.group(2)), "-", m.group(3))


# ----------------------------------------------------------------------------- OOM parsing

# linux: mm/oom_kill.c dump_header(): "%s invoked oom-killer: gfp_mask=%#x(%pGg), order=%d,
# oom_score_adj=%hd"
_INVOKED_RE = re.compile(
    r"^(?P<comm>.*) invoked oom-killer: gfp_mask=(?P<gfp>[^,]*(?:\([^)]*\))?), order=(?P<order>-?\d+), "
    r"oom_score_adj=(?P<adj>-?\d+)"
)
# linux ≥ 4.19: mm/oom_kill.c dump_oom_summary() + mm/memcontrol.c mem_cgroup_print_oom_context()
_CONSTRAINT_RE = re.compile(
    r"^oom-kill:constraint=(?P<constraint>[^,]*),nodemask=(?P<nodemask>.*?),cpuset=(?P<cpuset>.*?),"
    r"mems_allowed=(?P<mems>.*?),(?:(?P<global>global_oom)|oom_memcg=(?P<oom_memcg>.*?)),"
    r"task_memcg=(?P<task_memcg>.*?),task=(?P<task>.*),pid=(?P<pid>\d+),uid=(?P<uid>\d+)$"
)
# linux < 4.19: mm/memcontrol.c mem_cgroup_print_oom_info()
_LEGACY_TASK_RE = re.compile(r"^Task in (?P<task_memcg>.*) killed as a result of limit of (?P<oom_memcg>.*)$")
# linux: mm/oom_kill.c __oom_kill_process(): "%s: Killed process %d (%s) total-vm:%lukB,
# anon-rss:%lukB, file-rss:%lukB, shmem-rss:%lukB, UID:%u pgtables:%lukB oom_score_adj:%hd"
_KILLED_RE = re.compile(
    r"^(?:(?P<prefix>.*?): )?Killed process (?P<pid>\d+) \((?P<comm>.*)\)"
    r"(?: total-vm:(?P<vm>\d+)kB)?(?:, anon-rss:(?P<anon>\d+)kB)?(?:, file-rss:(?P<file>\d+)kB)?"
    r"(?:, shmem-rss:(?P<shmem>\d+)kB)?(?:,? UID:(?P<uid>\d+))?(?: pgtables:(?P<pgt>\d+)kB)?"
    r"(?: oom_score_adj:(?P<adj>-?\d+))?"
)
# linux < 5.0 printed a decision line before "Killed process":
# "Memory cgroup out of memory: Kill process 13536 (memorymonster) score 996 or sacrifice child"
_KILL_DECISION_RE = re.compile(r"^(?P<prefix>.*?): Kill process (?P<pid>\d+) \((?P<comm>.*)\) score")
# old kernels: "memorymonster cpuset=/ mems_allowed=0" right after the invoked line
_LEGACY_CPUSET_RE = re.compile(r"^(?P<comm>.*) cpuset=(?P<cpuset>\S*) mems_allowed=(?P<mems>\S*)$")
_OOM_GROUP_RE = re.compile(r"^Tasks in (?P<memcg>\S+) are going to be killed due to memory\.oom\.group set")
_CGROUP_STATS_RE = re.compile(r"^Memory cgroup stats for (?P<memcg>\S+?):?(?: |$)")


@dataclass(frozen=True)
class OomKill:
    """One process killed by the kernel OOM killer, joined from its kmsg lines.

    Sizes are bytes (the kernel prints kB). ``scope`` is ``"memcg"`` when a cgroup limit was hit
    (``constraint == "CONSTRAINT_MEMCG"`` or the "Memory cgroup out of memory" prefix) and
    ``"global"`` otherwise (whole node, cpuset or mempolicy constraint). ``oom_memcg`` is the
    cgroup whose limit was hit (``None`` for a global OOM), ``task_memcg`` the victim's cgroup;
    both are paths relative to the memory hierarchy root as the kernel sees it (a cgroup
    namespace shortens them). ``ts_usec`` is the kernel timestamp of the "Killed process" line;
    ``t_mono``/``t_wall`` its conversion, ``t_mono_received``/``t_wall_received`` when this
    process read it.
    """

    pid: int
    comm: str
    scope: str
    constraint: str | None = None
    oom_memcg: str | None = None
    task_memcg: str | None = None
    cpuset: str | None = None
    mems_allowed: str | None = None
    uid: int | None = None
    oom_score_adj: int | None = None
    total_vm: int | None = None
    anon_rss: int | None = None
    file_rss: int | None = None
    shmem_rss: int | None = None
    pgtables: int | None = None
    invoker_comm: str | None = None
    invoker_pid: int | None = None
    invoker_oom_score_adj: int | None = None
    gfp_mask: str | None = None
    order: int | None = None
    ts_usec: int = 0
    invoked_ts_usec: int | None = None
    seq: int | None = None
    # "modern" (≥4.19 oom-kill: line), "legacy", "bare", or "oom_group" (another task of a
    # memory.oom.group cgroup killed with the victim)
    kernel_format: str = "modern"
    t_mono: float | None = None
    t_wall: float | None = None
    t_mono_received: float | None = None
    t_wall_received: float | None = None

    @property
    def is_global(self) -> bool:
        return self.scope == "global"


def _kb(value: str | None) -> int | None:
    return None if value is None else int(value) * 1024


_CPU_LINE_RE = re.compile(r"^CPU: \d+ (?:UID: \d+ )?PID: (?P<pid>\d+) Comm: (?P<comm>\S+)")


class OomParser:
    """Joins the kmsg lines of OOM kills into :class:`OomKill` events (pure; no I/O).

    Feed records in order with :meth:`feed`; it returns the kills completed by that record.
    A "Killed process" line always completes a kill, even if the start was missed (the event
    then has ``kernel_format="bare"`` unless a constraint line was seen).
    """

    def __init__(self) -> None:
        self._pending: dict[str, object] = {}
        self._last: OomKill | None = None  # the kill just completed
        self._group: tuple[OomKill, str] | None = None  # (victim, cgroup) of a memory.oom.group kill

    def feed(self, record: KmsgRecord) -> list[OomKill]:
        msg = record.message
        if " invoked oom-killer: " in msg:
            m = _INVOKED_RE.match(msg)
            self._group = None
            self._pending = {"invoked_ts_usec": record.ts_usec}
            if m:
                self._pending.update(
                    invoker_comm=m["comm"],
                    gfp_mask=m["gfp"],
                    order=int(m["order"]),
                    invoker_oom_score_adj=int(m["adj"]),
                )
            return []
        if msg.startswith("CPU: ") and "invoker_pid" not in self._pending and self._pending:
            m = _CPU_LINE_RE.match(msg)
            if m:
                self._pending["invoker_pid"] = int(m["pid"])
            return []
        if msg.startswith("oom-kill:"):
            m = _CONSTRAINT_RE.match(msg)
            if m:
                self._pending.update(
                    kernel_format="modern",
                    constraint=m["constraint"],
                    cpuset=m["cpuset"],
                    mems_allowed=m["mems"],
                    oom_memcg=None if m["global"] else m["oom_memcg"],
                    task_memcg=m["task_memcg"],
                    pid=int(m["pid"]),
                    comm=m["task"],
                    uid=int(m["uid"]),
                )
            return []
        if msg.startswith("Task in "):
            m = _LEGACY_TASK_RE.match(msg)
            if m:
                self._pending.update(
                    kernel_format="legacy", task_memcg=m["task_memcg"], oom_memcg=m["oom_memcg"]
                )
            return []
        m4 = _OOM_GROUP_RE.match(msg)
        if m4 and self._last is not None:
            # cgroup v2 memory.oom.group (the kubelet sets it for containers since 1.32): the kernel
            # kills every task of that cgroup and prints "Killed process" again for each, the
            # victim included (mm/oom_kill.c oom_kill_memcg_member)
            self._group = (self._last, m4["memcg"])
            return []
        if "Killed process " in msg:
            m = _KILLED_RE.match(msg)
            if not m:
                return []
            if self._group is not None and not self._pending:
                victim, memcg = self._group
                if int(m["pid"]) == victim.pid:
                    return []  # the same kill, printed again for the group
                self._pending = {
                    "constraint": victim.constraint,
                    "oom_memcg": victim.oom_memcg,
                    "task_memcg": memcg,
                    "invoked_ts_usec": victim.invoked_ts_usec,
                    "kernel_format": "oom_group",
                }
            kill = self._complete(record, m)
            self._last = kill
            return [kill]
        if msg.startswith("Out of memory and no killable processes"):
            self._pending = {}
            return []
        m2 = _KILL_DECISION_RE.match(msg)
        if m2:
            self._pending.setdefault("prefix", m2["prefix"])
            return []
        m3 = _LEGACY_CPUSET_RE.match(msg)
        if m3 and self._pending and "cpuset" not in self._pending:
            self._pending.update(cpuset=m3["cpuset"], mems_allowed=m3["mems"])
        return []

    def _complete(self, record: KmsgRecord, m: re.Match[str]) -> OomKill:
        p = self._pending
        self._pending = {}
        pid = int(m["pid"])
        if p.get("pid") not in (None, pid):  # stale lines of another OOM: keep only the invoker
            log.warning("kmsg: dropping OOM summary of pid %s, kill is of pid %s", p.get("pid"), pid)
            p = {k: v for k, v in p.items() if k.startswith("invoke") or k in ("gfp_mask", "order")}
        prefix = m["prefix"] or str(p.get("prefix") or "")
        constraint = p.get("constraint")
        if constraint is not None:
            memcg = constraint == "CONSTRAINT_MEMCG"
        elif prefix:
            memcg = prefix.startswith("Memory cgroup")
        else:
            memcg = p.get("oom_memcg") is not None
        kwargs: dict[str, object] = {
            k: v
            for k, v in p.items()
            if k in OomKill.__dataclass_fields__ and k not in ("pid", "comm", "uid")
        }
        kwargs.setdefault("kernel_format", "bare")
        adj = m["adj"]
        return OomKill(
            pid=pid,
            comm=m["comm"],
            scope="memcg" if memcg else "global",
            uid=int(m["uid"]) if m["uid"] is not None else p.get("uid"),  # type: ignore[arg-type]
            oom_score_adj=int(adj) if adj is not None else None,
            total_vm=_kb(m["vm"]),
            anon_rss=_kb(m["anon"]),
            file_rss=_kb(m["file"]),
            shmem_rss=_kb(m["shmem"]),
            pgtables=_kb(m["pgt"]),
            ts_usec=record.ts_usec,
            seq=record.seq,
            **kwargs,  # type: ignore[arg-type]
        )


def parse_oom_kills(records: Iterable[KmsgRecord]) -> list[OomKill]:
    """All OOM kills in a sequence of records (convenience over :class:`OomParser`)."""
    parser = OomParser()
    out: list[OomKill] = []
    for rec in records:
        out.extend(parser.feed(rec))
    return out


def parse_kmsg_text(text: str) -> list[KmsgRecord]:
    """Records from captured ``/dev/kmsg`` text (one record per line; continuation lines
    starting with a space are attached to the previous record)."""
    out: list[KmsgRecord] = []
    chunk: list[str] = []

    def flush() -> None:
        if chunk:
            rec = parse_record("\n".join(chunk))
            if rec is not None:
                out.append(rec)
            chunk.clear()

    for line in text.splitlines():
        if line.startswith(" ") and chunk:
            chunk.append(line)
            continue
        flush()
        chunk.append(line)
    flush()
    return out


# ----------------------------------------------------------------------------- clock


class KmsgClock:
    """Converts kmsg ``ts_usec`` to ``CLOCK_MONOTONIC`` and wall time.

    ``offset`` = ``CLOCK_MONOTONIC − ts`` in seconds; starts at 0.0 (the kernel clocks share a
    base) and is refined by :meth:`observe` (passive) or set by :meth:`probe` (active).
    """

    def __init__(self) -> None:
        self.offset: float = 0.0
        self.passive_offset: float | None = None  # min(receipt − ts): an upper bound
        self.probed_offset: float | None = None

    def observe(self, ts_usec: int, t_mono_received: float) -> None:
        delta = t_mono_received - ts_usec / 1e6
        if self.passive_offset is None or delta < self.passive_offset:
            self.passive_offset = delta
            if self.probed_offset is None:
                self.offset = delta

    def to_mono(self, ts_usec: int) -> float:
        return ts_usec / 1e6 + self.offset

    def to_wall(self, ts_usec: int) -> float:
        """Wall time of a kernel timestamp (via the current ``REALTIME − MONOTONIC`` difference)."""
        return self.to_mono(ts_usec) + (time.time() - time.monotonic())

    def probe(self, path: str = KMSG, timeout: float = 2.0) -> float:
        """Measure the offset exactly: write a marker to ``/dev/kmsg`` and read its timestamp back.

        Needs write access to ``/dev/kmsg`` (root). Returns and stores the offset (seconds);
        the uncertainty is the duration of the ``write`` call, a few µs.
        """
        token = f"harness-kmsg-clock-probe {os.getpid()} {time.monotonic_ns()}"
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            os.lseek(fd, 0, os.SEEK_END)
            before = time.monotonic()
            os.write(fd, f"<6>{token}\n".encode())
            after = time.monotonic()
            deadline = after + timeout
            while time.monotonic() < deadline:
                try:
                    rec = parse_record(os.read(fd, 8192))
                except BlockingIOError:
                    select.select([fd], [], [], 0.05)
                    continue
                except OSError as exc:
                    if exc.errno == errno.EPIPE:
                        continue
                    raise
                if rec is not None and token in rec.message:
                    self.probed_offset = (before + after) / 2 - rec.ts_usec / 1e6
                    self.offset = self.probed_offset
                    return self.offset
        finally:
            os.close(fd)
        raise TimeoutError("kmsg clock probe: marker not read back")


# ----------------------------------------------------------------------------- follower


class KmsgFollower:
    """Background thread reading ``/dev/kmsg`` and reporting :class:`OomKill` events.

    >>> with KmsgFollower(on_kill=print) as f:   # doctest: +SKIP
    ...     run_workload()
    >>> f.kills                                  # doctest: +SKIP

    Args:
        on_kill: called from the follower thread for every kill (keep it short).
        path: the device (overridable for tests with a FIFO / file of records).
        from_start: replay the ring buffer instead of starting at "now".
        on_record: optional hook receiving every record (e.g. to archive the raw log).
    """

    def __init__(
        self,
        on_kill: Callable[[OomKill], None] | None = None,
        *,
        path: str = KMSG,
        from_start: bool = False,
        on_record: Callable[[KmsgRecord], None] | None = None,
    ) -> None:
        self.path = path
        self.from_start = from_start
        self.on_kill = on_kill
        self.on_record = on_record
        self.clock = KmsgClock()
        self.parser = OomParser()
        self.lost_records = 0  # records overwritten before we read them (EPIPE)
        self._kills: list[OomKill] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._fd = -1
        self._stop_r, self._stop_w = os.pipe()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def kills(self) -> list[OomKill]:
        with self._lock:
            return list(self._kills)

    def start(self) -> None:
        """Open the device (positioned at "now") and start the thread."""
        if self._thread is not None:
            return
        self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        os.lseek(self._fd, 0, os.SEEK_SET if self.from_start else os.SEEK_END)
        self._thread = threading.Thread(target=self._run, name="harness-kmsg", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                ready, _, _ = select.select([self._fd, self._stop_r], [], [])
                if self._stop_r in ready:
                    self._drain()
                    return
                self._drain()
        except BaseException as exc:
            self.error = exc
            log.exception("kmsg follower failed")

    def _drain(self) -> None:
        while True:
            try:
                raw = os.read(self._fd, 8192)  # one record per read
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # ring buffer overwrote unread records
                    self.lost_records += 1
                    log.warning("kmsg: records lost (ring buffer overrun)")
                    continue
                raise
            if not raw:
                return
            self.handle(raw, time.monotonic(), time.time())

    def handle(self, raw: bytes, t_mono: float, t_wall: float) -> list[OomKill]:
        """Process one raw record received at ``t_mono``/``t_wall`` (public for tests)."""
        rec = parse_record(raw)
        if rec is None:
            return []
        self.clock.observe(rec.ts_usec, t_mono)
        if self.on_record is not None:
            self.on_record(rec)
        kills = self.parser.feed(rec)
        out: list[OomKill] = []
        for kill in kills:
            t_kernel = self.clock.to_mono(kill.ts_usec)
            kill = replace(
                kill,
                t_mono=t_kernel,
                t_wall=t_kernel + (t_wall - t_mono),
                t_mono_received=t_mono,
                t_wall_received=t_wall,
            )
            out.append(kill)
        if out:
            with self._cond:
                self._kills.extend(out)
                self._cond.notify_all()
            if self.on_kill is not None:
                for kill in out:
                    self.on_kill(kill)
        return out

    def wait_for(self, predicate: Callable[[OomKill], bool], timeout: float) -> OomKill | None:
        """Block until a kill matching ``predicate`` has been seen (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for kill in self._kills:
                    if predicate(kill):
                        return kill
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def stop(self) -> None:
        """Stop the thread, close the device; re-raises an error the thread died with."""
        if self._thread is not None:
            os.write(self._stop_w, b"x")
            self._thread.join()
            self._thread = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        for fd in (self._stop_r, self._stop_w):
            if fd >= 0:
                os.close(fd)
        self._stop_r = self._stop_w = -1
        if self.error is not None:
            err, self.error = self.error, None
            raise RuntimeError(f"kmsg follower failed: {err}") from err

    def __enter__(self) -> KmsgFollower:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
