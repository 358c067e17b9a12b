"""The sampler against real v1 memory cgroups (integration) and a fake v2 tree (files in tmp)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from harness.sample.cgroupfs import CgroupPaths
from harness.sample.sampler import (
    COLUMNS,
    SAMPLES_STREAM,
    SCHEMA,
    CgroupGone,
    Sampler,
    finalize,
    read_gone_events,
    read_progress,
)

from ._sample_fixtures import MiB, SampleCgroup, sample_cgroup, sample_cgroup_factory, wait_until

__all__ = ["sample_cgroup", "sample_cgroup_factory"]  # fixtures used by name below

V2_FIX = Path(__file__).resolve().parents[1] / "fixtures" / "cgroup" / "v2"
MEMINFO_FIX = Path(__file__).resolve().parents[1] / "fixtures" / "cgroup" / "meminfo.debian12"


# ---------------------------------------------------------------------- fake v2 tree (no kernel)


def fake_v2_tree(root: Path, rel: str) -> CgroupPaths:
    d = root / rel
    d.mkdir(parents=True)
    for name in ("memory.current", "memory.stat", "memory.max", "memory.events"):
        (d / name).write_text((V2_FIX / name).read_text())
    (root / "memory.stat").write_text((V2_FIX / "root.memory.stat").read_text())
    return CgroupPaths(rel, "v2", root=str(root))


@pytest.mark.timeout(30)
def test_v2_rows_from_fixture_tree(tmp_path: Path) -> None:
    paths = fake_v2_tree(tmp_path / "cg", "kubepods.slice/pod1/c1")
    s = Sampler(
        tmp_path / "progress",
        node_cgroup=CgroupPaths("", "v2", root=str(tmp_path / "cg")),
        meminfo_path=str(MEMINFO_FIX),
    )
    try:
        s.register("c1", paths)
        rows = s.sample_once()
        s.flush()
    finally:
        s.close()
    assert len(rows) == 2
    row = dict(zip(COLUMNS, rows[0], strict=True))
    assert row["scope"] == "cgroup" and row["key"] == "c1" and row["version"] == "v2"
    assert row["usage"] == 268435456
    assert row["working_set"] == 205520896
    assert (row["rss"], row["cache"], row["inactive_file"], row["active_file"]) == (
        180355072,
        83886080,
        62914560,
        20971520,
    )
    assert (row["mapped_file"], row["shmem"], row["pgmajfault"]) == (10485760, 0, 212)
    assert row["limit"] == 512 * MiB
    assert (row["oom"], row["oom_kill"], row["under_oom"]) == (2, 2, None)
    assert row["mem_total"] is None
    node = dict(zip(COLUMNS, rows[1], strict=True))
    assert node["scope"] == "node"
    # v2 root: no memory.current, usage = anon + file; no memory.max -> unlimited
    assert node["usage"] == 6442450944 + 10737418240
    assert node["working_set"] == node["usage"] - 7516192768
    assert node["limit"] is None and node["oom_kill"] is None
    assert node["mem_total"] is not None and node["mem_total"] > 20 << 30
    df = read_progress(tmp_path / "progress")
    assert list(df.columns) == list(SCHEMA.names)
    assert len(df) == 2


def test_stream_survives_truncation(tmp_path: Path) -> None:
    paths = fake_v2_tree(tmp_path / "cg", "c1")
    prog = tmp_path / "progress"
    s = Sampler(prog, meminfo_path=str(MEMINFO_FIX))
    s.register("c1", paths)
    for _ in range(3):
        s.sample_once()
    s.flush()
    for _ in range(2):
        s.sample_once()
    s.flush()
    s.close()
    stream = prog / SAMPLES_STREAM
    full = stream.read_bytes()
    assert len(read_progress(prog)) == 10
    stream.write_bytes(full[:-50])  # a crash in the middle of the last batch
    assert len(read_progress(prog)) == 6
    # a second sampler appending to the same progress dir starts a new stream in the file
    stream.write_bytes(full)
    s2 = Sampler(prog, meminfo_path=str(MEMINFO_FIX))
    s2.sample_once()
    s2.close()
    df = finalize(prog, tmp_path / "samples.parquet")
    assert len(df) == 11
    assert pq.read_schema(tmp_path / "samples.parquet").names == list(SCHEMA.names)


def test_missing_cgroup_raises(tmp_path: Path) -> None:
    s = Sampler(tmp_path / "p", meminfo_path=str(MEMINFO_FIX))
    try:
        with pytest.raises(FileNotFoundError):
            s.register("nope", CgroupPaths("nope", "v2", root=str(tmp_path)))
        assert s.keys == []
    finally:
        s.close()


# ---------------------------------------------------------------------- real cgroups (v1, or v2 on a unified host)


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_usage_rises_to_limit_then_oom(sample_cgroup: SampleCgroup, tmp_path: Path) -> None:
    cg = sample_cgroup
    prog = tmp_path / "progress"
    with Sampler(prog, rate_hz=50, node_cgroup=CgroupPaths("", cg.paths.version, cg.paths.root)) as s:
        s.register("leaker", cg.paths)
        proc = cg.allocate(step_mib=1, pause=0.02)
        rc = proc.wait(30)
        time.sleep(0.2)
    assert rc == -9
    df = finalize(prog)
    rows = df[df.scope == "cgroup"]
    assert (rows.key == "leaker").all()
    assert (rows.limit == cg.limit).all()
    assert rows.usage.max() >= cg.limit - 2 * MiB
    assert rows.usage.max() <= cg.limit
    # rising: the usage in the first quarter is well below the peak
    first = rows.usage.iloc[: max(len(rows) // 4, 1)].max()
    assert first < rows.usage.max() - 8 * MiB
    assert rows.oom_kill.iloc[0] == 0 and rows.oom_kill.iloc[-1] == 1
    assert (rows.working_set <= rows.usage).all()
    assert rows.rss.max() > 30 * MiB
    # ticks are monotonic and spaced at ~20 ms
    assert rows.t_mono.is_monotonic_increasing
    gaps = rows.t_mono.diff().dropna()
    assert gaps.median() == pytest.approx(0.02, abs=0.005)
    # the node row (meminfo + the root cgroup) at the node rate (NODE_HZ, 10 Hz), in its own ticks
    node = df[df.scope == "node"]
    assert len(node) >= len(rows) // 5 - 2
    node_gaps = node.t_mono.diff().dropna()
    assert node_gaps.median() == pytest.approx(0.1, abs=0.02) and node_gaps.min() >= 0.085
    assert node.mem_total.notna().all() and node.usage.notna().all()
    assert (Path(prog).parent / "samples.parquet").exists()


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_cgroup_removed_mid_run(sample_cgroup_factory: Callable[..., SampleCgroup], tmp_path: Path) -> None:
    keep = sample_cgroup_factory(32 * MiB)
    doomed = sample_cgroup_factory(32 * MiB)
    prog = tmp_path / "progress"
    seen: list[CgroupGone] = []
    with Sampler(prog, rate_hz=100, on_gone=seen.append) as s:
        s.register("keep", keep.paths)
        s.register("doomed", doomed.paths)
        assert wait_until(lambda: s.ticks > 10, 5)
        os.rmdir(doomed.dir)  # empty cgroup: rmdir works even though the sampler holds fds
        assert wait_until(lambda: bool(s.gone), 5)
        tick_gone = s.gone[0].tick
        assert wait_until(lambda: s.ticks > tick_gone + 10, 5)
        assert s.keys == ["keep"]
        # register / unregister while running
        s.register("again", keep.paths)
        assert wait_until(lambda: s.ticks > tick_gone + 20, 5)
        assert s.unregister("again") and not s.unregister("again")
    assert seen == s.gone
    (g,) = s.gone
    assert g.key == "doomed" and g.reason == "ENODEV" and g.path == str(doomed.dir)
    assert read_gone_events(prog) == [g]
    df = read_progress(prog)
    doomed_rows = df[df.key == "doomed"]
    assert len(doomed_rows) > 0 and doomed_rows.tick.max() < g.tick
    assert (df[df.key == "keep"].tick.max()) > g.tick + 10
    assert len(df[df.key == "again"]) >= 5


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_crash_loses_at_most_a_second(sample_cgroup: SampleCgroup, tmp_path: Path) -> None:
    prog = tmp_path / "progress"
    s = Sampler(prog, rate_hz=20, flush_interval=0.5)
    s.register("c", sample_cgroup.paths)
    s.start()
    time.sleep(2.2)
    # read while running, as after a crash: everything older than ~flush_interval is on disk
    t_read = time.monotonic()
    df = read_progress(prog)
    s.close()
    assert len(df) > 0
    lag = t_read - float(pd.Series(df.t_mono).max())
    # flush_interval 0.5 s: what a crash loses is under a second (the test's name), also when
    # a loaded TCG guest delays a flush
    assert lag < 1.0
