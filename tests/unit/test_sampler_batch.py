"""The sampler's tick buffer (shared row tails) converts to the same Arrow batch as plain rows."""

from __future__ import annotations

from harness.sample.sampler import COLUMNS, rows_to_batch, ticks_to_batch


def test_ticks_to_batch_equals_rows_to_batch() -> None:
    n_tail = len(COLUMNS) - 3
    idle = ("cgroup", "idle", "/sys/fs/cgroup/memory/idle", "v1", 5, 4, *([1] * 7), None, None, 0, False)
    idle = idle + (None,) * (n_tail - len(idle))
    ticks = []
    for tick in range(4):
        busy = ("cgroup", "busy", "/b", "v1", 100 + tick, 90 + tick, *([tick] * 7), 1 << 20, None, tick, True)
        busy = busy + (None,) * (n_tail - len(busy))
        node = ("node", "node", "/proc/meminfo", *([None] * 14), 1 << 30, 2, 3, 4 + tick, 5)
        ticks.append(((1000.0 + tick / 10, 1.7e9 + tick / 10, tick), [idle, busy, node][: 1 + tick % 3]))
    rows = [head + t for head, tails in ticks for t in tails]
    assert ticks_to_batch(ticks).equals(rows_to_batch(rows))
    assert ticks_to_batch(ticks).num_rows == len(rows) == 1 + 2 + 3 + 1
