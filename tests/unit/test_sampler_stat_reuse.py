"""The sampler re-reads memory.stat only when usage moved, or after STAT_REUSE_S."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.sample import sampler
from harness.sample.cgroupfs import CgroupPaths


def _write(d: Path, usage: int, inactive: int) -> None:
    (d / "memory.usage_in_bytes").write_text(f"{usage}\n")
    (d / "memory.stat").write_text(
        f"cache 0\nrss 0\nshmem 0\nmapped_file 0\ninactive_file 0\nactive_file 0\npgmajfault 0\n"
        f"total_cache {inactive}\ntotal_rss {usage - inactive}\ntotal_shmem 0\ntotal_mapped_file 0\n"
        f"total_pgmajfault 0\ntotal_inactive_file {inactive}\ntotal_active_file 0\n"
    )


def test_stat_reused_while_usage_is_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "memory" / "cg"
    d.mkdir(parents=True)
    _write(d, 100 << 20, 40 << 20)
    r = sampler._Reader("cg", CgroupPaths("cg", "v1", str(tmp_path)), "cgroup", True)
    try:
        ws0 = r.read()[2]
        assert ws0 == 60 << 20
        # stat changes but usage does not: the cached stat is used (within STAT_REUSE_S)
        _write(d, 100 << 20, 10 << 20)
        assert r.read()[2] == ws0
        # usage moves: memory.stat is read again
        _write(d, 101 << 20, 10 << 20)
        assert r.read()[2] == 91 << 20
        # usage unchanged but the cache is older than STAT_REUSE_S: read again
        _write(d, 101 << 20, 1 << 20)
        monkeypatch.setattr(sampler, "STAT_REUSE_S", 0.0)
        assert r.read()[2] == 100 << 20
    finally:
        r.close()
