"""Live progress on stderr, one whole line at a time (runs, sweeps and lab runs share it; lab hosts
and the sampler threads write from several threads)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from typing import Any


class Progress:
    def __init__(self, stream: Any = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self._lock = threading.Lock()
        self._last_tick = 0.0

    def say(self, msg: str) -> None:
        if self.quiet:
            return
        with self._lock:
            print(msg, file=self.stream, flush=True)

    __call__ = say

    def tick(self, scenario: str, t: float, states: Mapping[str, str], force: bool = False) -> None:
        """At most one status line a second: each workload's state (e.g. ``leaker 512 MiB``)."""
        now = time.monotonic()
        if self.quiet or (not force and now - self._last_tick < 1.0):
            return
        self._last_tick = now
        self.say(f"  [{scenario} t={t:5.1f}s] " + " | ".join(f"{k} {v}" for k, v in states.items()))
