"""The leak program's JSON lines from a container's CRI log file."""

from __future__ import annotations

from pathlib import Path

from harness.launch.base import EventSink, Handle
from harness.launch.kubernetes.pods import NAMESPACE

# kubelet: pkg/kubelet/kuberuntime/kuberuntime_manager.go podLogsRootDirectory
POD_LOG_DIR = Path("/var/log/pods")


class LogReader:
    def __init__(self, root: Path = POD_LOG_DIR) -> None:
        self.root = root
        self._pos: dict[str, int] = {}

    def read(self, h: Handle, events: EventSink | None) -> None:
        """New complete lines of the workload's container log into the handle (milestones as events)."""
        if h.pod is None:
            return
        d = self.root / f"{NAMESPACE}_{h.pod.name}_{h.pod.uid}" / h.workload
        try:
            logs = sorted(d.glob("*.log"))
        except OSError:
            return
        for f in logs[:1]:
            key = str(f)
            pos = self._pos.get(key, 0)
            try:
                with open(f, "rb") as fh:
                    fh.seek(pos)
                    data = fh.read()
            except OSError:
                return
            end = data.rfind(b"\n")
            if end < 0:
                return
            self._pos[key] = pos + end + 1
            for raw in data[: end + 1].splitlines():
                # CRI log format: "<RFC3339Nano> <stdout|stderr> <P|F> <line>"
                parts = raw.decode(errors="replace").split(" ", 3)
                if len(parts) < 4:
                    continue
                ev = h.take_line(parts[3])
                if ev is not None and events is not None:
                    h.add_milestone(events, ev)

    def clear(self) -> None:
        self._pos.clear()
