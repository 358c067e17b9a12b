"""The sampler re-reads memory.stat only when usage moved, or after STAT_REUSE_S; an idle cgroup
whose memory.stat stays the same is re-read at doubling intervals up to STAT_REUSE_MAX_S."""

from __future__ import annotations

from collections.abc import Iterator
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


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(sampler.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(sampler.zlib, "crc32", lambda data: 0)  # no phase on the first read
    return now


@pytest.fixture
def reader(tmp_path: Path, clock: list[float]) -> Iterator[tuple[sampler._Reader, Path]]:
    """A reader of one fake v1 cgroup (100 MiB used, 40 MiB inactive file) and its folder, made on
    the fake clock (no first-read phase); closed after."""
    d = tmp_path / "memory" / "cg"
    d.mkdir(parents=True)
    _write(d, 100 << 20, 40 << 20)
    r = sampler._Reader("cg", CgroupPaths("cg", "v1", str(tmp_path)), "cgroup", True)
    yield r, d
    r.close()


def test_stat_reused_while_usage_is_unchanged(
    reader: tuple[sampler._Reader, Path], clock: list[float]
) -> None:
    r, d = reader
    ws0 = r.read()[2]
    assert ws0 == 60 << 20
    # stat changes but usage does not: the cached stat is used (within STAT_REUSE_S)
    _write(d, 100 << 20, 10 << 20)
    clock[0] += 0.5
    assert r.read()[2] == ws0
    # usage moves: memory.stat is read again
    _write(d, 101 << 20, 10 << 20)
    assert r.read()[2] == 91 << 20
    # usage unchanged and the values older than STAT_REUSE_S: read again
    _write(d, 101 << 20, 1 << 20)
    clock[0] += sampler.STAT_REUSE_S
    assert r.read()[2] == 100 << 20


def _reread_times(
    r: sampler._Reader, d: Path, clock: list[float], until: float, age_at: float | None = None
) -> list[float]:
    """Times (from the start) at which memory.stat was read again, ticking at 10 Hz; at ``age_at``
    the inactive file pages change without a usage change (LRU aging)."""
    t0, seen, last = clock[0], [], r._last_stat_t
    while clock[0] - t0 < until:
        clock[0] += 0.1
        if age_at is not None and abs(clock[0] - t0 - age_at) < 0.05:
            _write(d, 100 << 20, 20 << 20)
        r.read()
        if r._last_stat_t != last:
            last = r._last_stat_t
            seen.append(round(clock[0] - t0, 1))
    return seen


def test_a_quiet_cgroup_is_reread_at_doubling_intervals_up_to_the_max(
    reader: tuple[sampler._Reader, Path], clock: list[float]
) -> None:
    r, d = reader
    r.read()
    times = _reread_times(r, d, clock, until=20)
    gaps = [round(b - a, 1) for a, b in zip([0.0, *times], times, strict=False)]
    assert gaps[:3] == [1.0, 2.0, 4.0] and set(gaps[3:]) == {sampler.STAT_REUSE_MAX_S}, gaps


def test_aging_seen_within_the_max_and_rereads_go_back_to_every_second(
    reader: tuple[sampler._Reader, Path], clock: list[float]
) -> None:
    r, d = reader
    r.read()
    times = _reread_times(r, d, clock, until=20, age_at=10.0)
    after = [t for t in times if t >= 10.0]
    assert after[0] - 10.0 <= sampler.STAT_REUSE_MAX_S
    assert r.read()[2] == 80 << 20
    # the re-read that saw the change keeps the next one at STAT_REUSE_S
    assert round(after[1] - after[0], 1) == sampler.STAT_REUSE_S


def test_the_sampler_raises_its_open_files_limit_to_the_hard_limit() -> None:
    """500 cgroups keep ~1500 files open: a soft limit of 1024 (a lab host's SSH session) failed
    with EMFILE; the soft limit goes up to the hard one (run in a child, not to change pytest's)."""
    import subprocess
    import sys

    code = (
        "import resource\n"
        "from harness.sample.sampler import raise_open_files_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))\n"
        "after = raise_open_files_limit()\n"
        "print(after[0] == hard, after[1] == hard)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"], out.stdout + out.stderr
