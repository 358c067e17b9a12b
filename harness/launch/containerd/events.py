"""containerd's task events through ``ctr events``: the line parser and the follower process."""

from __future__ import annotations

import calendar
import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from harness.engines.containerd import ctr_binary


@dataclass
class CtrEvent:
    t_wall: float  # containerd's timestamp of the event (seconds since the epoch)
    namespace: str
    topic: str
    payload: dict[str, Any]

    @property
    def container_id(self) -> str | None:
        cid = self.payload.get("container_id") or self.payload.get("id")
        return str(cid) if cid else None


_EVENT_RE = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d+))? ([+-])(\d\d)(\d\d)(?: \S+)? (\S+) (/\S+) ?(.*)$"
)


def parse_event_line(line: str) -> CtrEvent | None:
    """One line of ``ctr events``: ``2026-11-23 18:38:39.165333581 +0000 UTC harness /tasks/oom {...}``."""
    m = _EVENT_RE.match(line.strip())
    if not m:
        return None
    y, mo, d, hh, mi, ss, frac, sign, oh, om, ns, topic, rest = m.groups()
    t = float(calendar.timegm((int(y), int(mo), int(d), int(hh), int(mi), int(ss), 0, 0, 0)))
    t += int(frac) / 10 ** len(frac) if frac else 0.0
    offset = (int(oh) * 3600 + int(om) * 60) * (1 if sign == "+" else -1)
    try:
        payload = json.loads(rest) if rest.strip() else {}
    except json.JSONDecodeError:
        payload = {"raw": rest}
    return CtrEvent(t - offset, ns, topic, payload if isinstance(payload, dict) else {"value": payload})


def parse_rfc3339(s: str) -> float | None:
    """``2026-11-23T18:38:39.189412313Z`` (nanoseconds kept to float precision) -> epoch seconds."""
    m = re.match(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", s.strip())
    if not m:
        return None
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    t = calendar.timegm((int(y), int(mo), int(d), int(hh), int(mi), int(ss), 0, 0, 0)) + (
        int(frac) / 10 ** len(frac) if frac else 0.0
    )
    if tz != "Z":
        off = int(tz[1:3]) * 3600 + int(tz[4:6]) * 60
        t -= off if tz[0] == "+" else -off
    return float(t)


def wall_to_mono(t_wall: float) -> float:
    """A wall-clock instant on the monotonic clock (both read now; error ~µs)."""
    return time.monotonic() - (time.time() - t_wall)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the harness dies (even by SIGKILL): prctl(PR_SET_PDEATHSIG)."""

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG


class EventFollower:
    """``ctr events`` for one namespace as a child process; calls ``on_event`` from a thread."""

    def __init__(self, address: str, namespace: str, on_event: Any) -> None:

        self.cmd = [
            ctr_binary(),
            "--address",
            address,
            "events",
            f"namespace=={namespace},topic~=/tasks/",
        ]
        self.on_event = on_event
        self.proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self.lines = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            preexec_fn=_die_with_parent,
        )
        self._thread = threading.Thread(target=self._pump, args=(self.proc,), daemon=True)
        self._thread.start()
        # the subscription is live once ctr has connected; give it a moment so no event is missed
        time.sleep(0.15)

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            ev = parse_event_line(line)
            if ev is None:
                continue
            self.lines += 1
            with contextlib.suppress(Exception):
                self.on_event(ev)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Stop the ``ctr events`` process by its pid."""
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=2)
        if p.stdout:
            p.stdout.close()
        self.proc = None


# --------------------------------------------------------------------------- task launch
