"""When the kubelet's eviction manager really ran: its syncs, read from the kubelet's own log.

The model runs the eviction loop every ``evictionMonitoringPeriod`` (10 s) from an unknown phase.
The real loop sleeps 10 s *after* each ``synchronize`` returns (1.33 pkg/kubelet/eviction/
eviction_manager.go ``Start``: ``m.synchronize(...)`` then ``time.Sleep(monitoringInterval)``),
and ``synchronize`` first fetches the summary stats, so on a loaded node every period is 10 s plus
the time a sync took, and a decision comes some time after its sync began. The kubelet logs the
start of each sync at ``-v=3`` (``klog.V(3).InfoS("Eviction manager: synchronize housekeeping")``;
the harness starts it with ``--vmodule=eviction_manager=3``, which raises that file alone) and
its decision: ``"no resources are starved"`` (V(3)), ``"pods ranked for eviction"`` or
``"unable to evict any pods"``. A sync that evicted then waits for the pod's cleanup (no sleep;
``waitForPodsCleanup``), which shows as the next sync's early start.

A log read back from before a scenario may hold syncs of an earlier kubelet process (the harness
restarts the kubelet for each profile, and one that refuses to start logs no sync): those say
nothing of the running loop's phase, so only the syncs of the process that logged the last one are
kept, told apart by the pid in klog's header.

Pure parsing; the kubernetes backend reads the log (``launch.kubernetes``)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

# klog's text header: Lmmdd hh:mm:ss.uuuuuu threadid file:line] msg (k8s.io/klog/v2
# internal/buffer FormatHeader, whose "threadid" is the process's pid, os.Getpid()); the year is not
# in it, and the time is the kubelet's local time
_HEADER = re.compile(r"^([IWEF])(\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6})\s+(\d+)\s+([\w.]+):(\d+)\] (.*)$")

SYNC_START = "Eviction manager: synchronize housekeeping"
# where one sync's decision is made (the ranking, or nothing starved)
SYNC_DECIDED = (
    "Eviction manager: no resources are starved",
    "Eviction manager: pods ranked for eviction",
    "Eviction manager: unable to evict any pods from the node",
)


@dataclass(frozen=True)
class KlogLine:
    severity: str
    t_wall: float
    source: str  # file:line
    message: str
    pid: int = 0


@dataclass(frozen=True)
class EvictionSync:
    """One run of ``synchronize``: when it started and when it decided (None: no line said so)."""

    start_wall: float
    decided_wall: float | None
    ranked: bool  # it ranked pods (an eviction was attempted)
    pid: int = 0  # the kubelet process that logged it


def parse_line(line: str, near_wall: float) -> KlogLine | None:
    """One klog text line, its time placed in the year that puts it nearest to ``near_wall``."""
    m = _HEADER.match(line)
    if m is None:
        return None
    sev, mo, dd, hh, mi, ss, us, pid, src, lineno, msg = m.groups()
    year = time.localtime(near_wall).tm_year
    best = None
    for y in (year - 1, year, year + 1):
        try:
            t = time.mktime((y, int(mo), int(dd), int(hh), int(mi), int(ss), 0, 0, -1)) + int(us) / 1e6
        except (OverflowError, ValueError):
            continue
        if best is None or abs(t - near_wall) < abs(best - near_wall):
            best = t
    if best is None:
        return None
    return KlogLine(sev, best, f"{src}:{lineno}", msg, int(pid))


def eviction_syncs(text: str, since_wall: float, until_wall: float) -> list[EvictionSync]:
    """The eviction manager's syncs that started in ``[since_wall, until_wall]``, of the kubelet
    process that logged the last of them (an earlier process's syncs are dropped)."""
    out: list[EvictionSync] = []
    start: float | None = None
    decided: float | None = None
    ranked = False
    pid = 0
    for raw in text.splitlines():
        if "eviction_manager.go" not in raw:
            continue
        kl = parse_line(raw, since_wall)
        if kl is None:
            continue
        if kl.message.startswith(f'"{SYNC_START}"'):
            if start is not None:
                out.append(EvictionSync(start, decided, ranked, pid))
            start, decided, ranked, pid = kl.t_wall, None, False, kl.pid
        elif start is not None and decided is None and kl.pid == pid:
            for d in SYNC_DECIDED:
                if kl.message.startswith(f'"{d}"'):
                    decided, ranked = kl.t_wall, d != SYNC_DECIDED[0]
    if start is not None:
        out.append(EvictionSync(start, decided, ranked, pid))
    within = [s for s in out if since_wall <= s.start_wall <= until_wall]
    return [s for s in within if s.pid == within[-1].pid] if within else []
