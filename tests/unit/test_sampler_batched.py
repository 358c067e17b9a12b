"""The batched fast path (OOM counters off) records the same rows as reading each cgroup in turn.

A fake v1 tree of plain files (no ``memory.oom_control``, so both paths return the same values);
a fake clock drives the ``STAT_REUSE_S`` schedule. Usage moves, ``memory.stat`` moves without
usage (re-read only when due), cgroups are registered and unregistered between ticks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.sample import sampler
from harness.sample.cgroupfs import CgroupPaths

MEMINFO_FIX = Path(__file__).resolve().parents[1] / "fixtures" / "cgroup" / "meminfo.debian12"


def _write(d: Path, usage: int, inactive: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "memory.usage_in_bytes").write_text(f"{usage}\n")
    (d / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (d / "memory.stat").write_text(
        f"cache 0\nrss 0\nshmem 0\nmapped_file 0\ninactive_file 0\nactive_file 0\npgmajfault 0\n"
        f"total_cache {inactive}\ntotal_rss {usage - inactive}\ntotal_shmem 0\ntotal_mapped_file 0\n"
        f"total_pgmajfault 0\ntotal_inactive_file {inactive}\ntotal_active_file 0\n"
    )


def test_batched_rows_equal_per_cgroup_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(sampler.time, "monotonic", lambda: now[0])
    # every cgroup's first stat read undated (phase 0): the phase comes from the path's CRC, and
    # tmp_path differs per run; a phase near 0.2 s made c2's stat due at tick 8 itself
    monkeypatch.setattr(sampler.zlib, "crc32", lambda data: 0)
    root = tmp_path / "memory"
    names = [f"c{i}" for i in range(5)]
    for i, n in enumerate(names):
        _write(root / n, (100 + i) << 20, 10 << 20)
    _write(root, 1 << 30, 100 << 20)  # the node cgroup
    node = CgroupPaths("", "v1", str(tmp_path))
    fast = sampler.Sampler(
        tmp_path / "a", node_cgroup=node, meminfo_path=str(MEMINFO_FIX), oom_counters=False
    )
    each = sampler.Sampler(tmp_path / "b", node_cgroup=node, meminfo_path=str(MEMINFO_FIX), oom_counters=True)
    both = (fast, each)
    try:
        for s in both:
            for n in names[:4]:
                s.register(n, CgroupPaths(n, "v1", str(tmp_path)))
        rows: dict[int, list[list[tuple[object, ...]]]] = {0: [], 1: []}
        for tick in range(40):
            now[0] += 0.1
            if tick == 5:  # usage moves
                _write(root / "c1", 200 << 20, 10 << 20)
            if tick == 8:  # LRU aging without a usage change: seen once memory.stat is due
                _write(root / "c2", 102 << 20, 50 << 20)
            if tick == 12:
                for s in both:
                    s.register("c4", CgroupPaths("c4", "v1", str(tmp_path)))
            if tick == 20:
                for s in both:
                    assert s.unregister("c0")
            if tick == 25:
                _write(root / "c3", 50 << 20, 1 << 20)
            for k, s in enumerate(both):
                rows[k].append([r[3:] for r in s.sample_once()])  # without the tick's own times
        assert rows[0] == rows[1]
        ws = {r[1]: r[5] for r in rows[0][-1]}
        assert ws["c1"] == 190 << 20 and ws["c2"] == 52 << 20 and ws["c3"] == 49 << 20
        # the stat change of c2 (tick 8) appears within STAT_REUSE_S, not at once
        seen = next(
            t for t, tick_rows in enumerate(rows[0]) if {r[1]: r[5] for r in tick_rows}["c2"] == 52 << 20
        )
        assert 8 < seen <= 8 + 10
    finally:
        for s in both:
            s.close()


def test_batched_reads_every_tick_without_reuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampler, "STAT_REUSE_S", 0.0)
    _write(tmp_path / "memory" / "c", 100 << 20, 10 << 20)
    s = sampler.Sampler(tmp_path / "p", meminfo_path=str(MEMINFO_FIX), oom_counters=False)
    try:
        s.register("c", CgroupPaths("c", "v1", str(tmp_path)))
        assert s.sample_once()[0][3 + 5] == 90 << 20
        _write(tmp_path / "memory" / "c", 100 << 20, 40 << 20)  # stat only: read at the next tick
        assert s.sample_once()[0][3 + 5] == 60 << 20
    finally:
        s.close()


@pytest.mark.parametrize("oom_counters", [False, True])
def test_node_level_rows_at_the_node_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, oom_counters: bool
) -> None:
    """At 100 Hz the node row and a registered hierarchy root are read at 10 Hz (their own ticks'
    times), every other cgroup in every tick; at 10 Hz everything is in every tick."""
    now = [1000.0]
    monkeypatch.setattr(sampler.time, "monotonic", lambda: now[0])
    _write(tmp_path / "memory", 1 << 30, 100 << 20)
    _write(tmp_path / "memory" / "c", 100 << 20, 10 << 20)
    for hz, every in ((100.0, 10), (10.0, 1)):
        s = sampler.Sampler(
            tmp_path / f"p{hz:g}{oom_counters}",
            rate_hz=hz,
            node_cgroup=CgroupPaths("", "v1", str(tmp_path)),
            meminfo_path=str(MEMINFO_FIX),
            oom_counters=oom_counters,
        )
        try:
            s.register("root", CgroupPaths("", "v1", str(tmp_path)))
            s.register("c", CgroupPaths("c", "v1", str(tmp_path)))
            keys_per_tick = []
            for _ in range(50):
                now[0] += 1 / hz
                keys_per_tick.append(sorted(r[4] for r in s.sample_once()))
        finally:
            s.close()
        node_ticks = [i for i, keys in enumerate(keys_per_tick) if keys == ["c", "node", "root"]]
        assert all(keys in (["c"], ["c", "node", "root"]) for keys in keys_per_tick)
        assert node_ticks == list(range(0, 50, every)), (hz, node_ticks)
