"""Pure cgroup parsers against files captured on this v1 host and written to v2 lab-host shape."""

from __future__ import annotations

import doctest
import os
from pathlib import Path

import pytest

from harness.sample import cgroupfs, procfs
from harness.sample.cgroupfs import (
    V1_UNLIMITED,
    CgroupLayout,
    CgroupPaths,
    CgroupVersion,
    MemoryEvents,
    OomControl,
    format_cpuset_list,
    parse_cpu_max,
    parse_cpuset_list,
    parse_failcnt,
    parse_limit,
    parse_memory_events,
    parse_memory_stat,
    parse_mountinfo_cgroups,
    parse_numa_stat,
    parse_oom_control,
    parse_peak,
    parse_proc_cgroup,
    parse_usage,
    stat_keys,
    summarize_memory_stat,
    v2_root_usage,
    working_set,
)

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "cgroup"
V1 = FIX / "v1"
V2 = FIX / "v2"
PEAK_V1 = 45699072


def read(p: Path) -> str:
    return p.read_text()


def test_doctests() -> None:
    for mod in (cgroupfs, procfs):
        result = doctest.testmod(mod)
        assert result.failed == 0, mod.__name__


# ------------------------------------------------------------------ scalar files


def test_v1_usage_peak_failcnt() -> None:
    assert parse_usage(read(V1 / "memory.usage_in_bytes")) == 45604864
    assert parse_peak(read(V1 / "memory.max_usage_in_bytes")) == PEAK_V1
    assert parse_failcnt(read(V1 / "memory.failcnt")) == 0


def test_v2_usage_peak() -> None:
    assert parse_usage(read(V2 / "memory.current")) == 256 << 20
    assert parse_peak(read(V2 / "memory.peak")) == 392 << 20


def test_v1_limits() -> None:
    assert parse_limit(read(V1 / "memory.limit_in_bytes"), "v1") == 48 << 20
    assert parse_limit(read(V1 / "root.memory.limit_in_bytes"), "v1") is None
    assert int(read(V1 / "root.memory.limit_in_bytes")) == V1_UNLIMITED
    # 64 KiB pages print a different sentinel; still unlimited
    assert parse_limit("9223372036854710272\n", CgroupVersion.V1) is None


def test_v2_limits() -> None:
    assert parse_limit(read(V2 / "memory.max"), "v2") == 512 << 20
    assert parse_limit(read(V2 / "memory.high"), "v2") is None
    assert parse_limit(read(V2 / "memory.low"), "v2") == 0
    with pytest.raises(ValueError):
        parse_limit("max\n", "v1")


# ------------------------------------------------------------------ memory.stat


def test_v1_memory_stat_all_keys() -> None:
    stat = parse_memory_stat(read(V1 / "memory.stat"))
    assert stat["rss"] == 36442112
    assert stat["cache"] == 8531968
    assert stat["total_inactive_file"] == 8388608
    assert stat["total_active_file"] == 143360
    assert stat["hierarchical_memory_limit"] == 48 << 20
    assert stat["hierarchical_memsw_limit"] == V1_UNLIMITED
    # every local key has its hierarchical total_ twin (use_hierarchy=1 on this host)
    local = [k for k in stat if not k.startswith(("total_", "hierarchical_"))]
    assert all(f"total_{k}" in stat for k in local)


def test_v2_memory_stat_modern_keys() -> None:
    stat = parse_memory_stat(read(V2 / "memory.stat"))
    for key in (
        "anon",
        "file",
        "kernel",
        "sec_pagetables",
        "zswapped",
        "file_mapped",
        "slab",
        "pgdemote_kswapd",
    ):
        assert key in stat
    assert stat["anon"] + stat["file"] + stat["kernel"] == parse_usage(read(V2 / "memory.current"))
    assert stat["inactive_file"] + stat["active_file"] == stat["file"]


def test_summary_v1_hierarchical_and_local() -> None:
    stat = parse_memory_stat(read(V1 / "memory.stat"))
    s = summarize_memory_stat(stat, "v1")
    assert (s.rss, s.cache, s.inactive_file, s.active_file) == (36442112, 8531968, 8388608, 143360)
    assert (s.mapped_file, s.shmem, s.pgmajfault) == (32768, 0, 4)
    local = summarize_memory_stat({"rss": 1, "total_rss": 5}, "v1", hierarchical=False)
    assert local.rss == 1
    # a missing total_ key falls back to the local key
    assert summarize_memory_stat({"rss": 7}, "v1").rss == 7


def test_summary_v2() -> None:
    s = summarize_memory_stat(parse_memory_stat(read(V2 / "memory.stat")), "v2")
    assert s.rss == 180355072
    assert s.cache == 83886080
    assert s.mapped_file == 10485760
    assert s.pgmajfault == 212
    assert stat_keys("v2")["cache"] == "file"


def test_working_set_v1_uses_total_inactive_file() -> None:
    usage = parse_usage(read(V1 / "memory.usage_in_bytes"))
    stat = parse_memory_stat(read(V1 / "memory.stat"))
    assert working_set(usage, stat, "v1") == usage - stat["total_inactive_file"] == 37216256
    # the local inactive_file is ignored on v1, as cAdvisor does
    assert working_set(100, {"inactive_file": 50}, "v1") == 100


def test_working_set_v2_and_clamp() -> None:
    usage = parse_usage(read(V2 / "memory.current"))
    stat = parse_memory_stat(read(V2 / "memory.stat"))
    assert working_set(usage, stat, "v2") == 205520896
    assert working_set(10, {"inactive_file": 11}, "v2") == 0
    assert working_set(10, {"total_inactive_file": 11}, "v1") == 0


def test_v2_root_usage() -> None:
    stat = parse_memory_stat(read(V2 / "root.memory.stat"))
    assert v2_root_usage(stat) == stat["anon"] + stat["file"]


# ------------------------------------------------------------------ OOM files


def test_v1_oom_control() -> None:
    assert parse_oom_control(read(V1 / "memory.oom_control")) == OomControl(False, False, 0)
    assert parse_oom_control("oom_kill_disable 1\nunder_oom 1\noom_kill 3\n") == OomControl(True, True, 3)
    # kernels < 4.13 have no oom_kill line
    assert parse_oom_control("oom_kill_disable 0\nunder_oom 0\n").oom_kill is None


def test_v2_memory_events() -> None:
    ev = parse_memory_events(read(V2 / "memory.events"))
    assert ev == MemoryEvents(
        low=0, high=0, max=1843, oom=2, oom_kill=2, oom_group_kill=1, extra={"sock_throttled": 0}
    )
    old = parse_memory_events("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert old.oom_group_kill == 0 and old.extra == {}
    assert parse_memory_events(read(V2 / "memory.events.local")).oom_kill == 2


# ------------------------------------------------------------------ NUMA


def test_v1_numa_stat_pages() -> None:
    ns = parse_numa_stat(read(V1 / "memory.numa_stat"))
    assert ns.unit == "pages"
    assert ns.totals["total"] == 10950
    assert ns.per_node["anon"] == {0: 8867}
    assert ns.totals["hierarchical_file"] == 2083
    assert ns.bytes_per_node("anon") == {0: 8867 * 4096}


def test_v2_numa_stat_bytes() -> None:
    ns = parse_numa_stat(read(V2 / "memory.numa_stat"))
    stat = parse_memory_stat(read(V2 / "memory.stat"))
    assert ns.unit == "bytes"
    assert ns.per_node["anon"] == {0: 104857600, 1: 75497472}
    for key in ("anon", "file", "inactive_file", "active_file", "file_mapped"):
        assert ns.totals[key] == stat[key], key
    assert ns.bytes_per_node("file") == ns.per_node["file"]


# ------------------------------------------------------------------ cpuset / cpu


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0-3,8\n", (0, 1, 2, 3, 8)),
        ("0\n", (0,)),
        ("\n", ()),
        ("0-1,4-5,7", (0, 1, 4, 5, 7)),
        ("8,0-3", (0, 1, 2, 3, 8)),
    ],
)
def test_cpuset_list(text: str, expected: tuple[int, ...]) -> None:
    assert parse_cpuset_list(text) == expected


def test_cpuset_fixtures_and_roundtrip() -> None:
    assert parse_cpuset_list(read(V1 / "cpuset.cpus")) == (0, 1)
    assert parse_cpuset_list(read(V1 / "cpuset.mems")) == (0,)
    assert parse_cpuset_list(read(V2 / "cpuset.cpus.effective")) == (0, 1, 2, 3, 8)
    assert parse_cpuset_list(read(V2 / "cpuset.mems.effective")) == (0, 1)
    assert format_cpuset_list([8, 0, 1, 2, 3]) == "0-3,8"
    assert format_cpuset_list([]) == ""


def test_cpu_max() -> None:
    assert parse_cpu_max(read(V2 / "cpu.max")) == (50000, 100000)
    assert parse_cpu_max("max 100000\n") == (None, 100000)


# ------------------------------------------------------------------ paths and layout


def test_paths_v1() -> None:
    p = CgroupPaths("harness/run1/kubepods/burstable/podX/c1", "v1")
    base = "/sys/fs/cgroup/memory/harness/run1/kubepods/burstable/podX/c1"
    assert p.memory_dir == base
    assert p.usage == f"{base}/memory.usage_in_bytes"
    assert p.stat == f"{base}/memory.stat"
    assert p.limit == f"{base}/memory.limit_in_bytes"
    assert p.peak == f"{base}/memory.max_usage_in_bytes"
    assert p.oom == f"{base}/memory.oom_control"
    assert p.failcnt == f"{base}/memory.failcnt"
    assert p.event_control == f"{base}/cgroup.event_control"
    assert p.cpuset_cpus == "/sys/fs/cgroup/cpuset/harness/run1/kubepods/burstable/podX/c1/cpuset.cpus"


def test_paths_v2_and_root() -> None:
    p = CgroupPaths("/kubepods.slice/kubepods-burstable.slice/", CgroupVersion.V2)
    base = "/sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice"
    assert p.rel == "kubepods.slice/kubepods-burstable.slice"
    assert (p.usage, p.limit, p.peak, p.oom) == (
        f"{base}/memory.current",
        f"{base}/memory.max",
        f"{base}/memory.peak",
        f"{base}/memory.events",
    )
    assert p.cpuset_mems == f"{base}/cpuset.mems"
    assert CgroupPaths("", "v1").memory_dir == "/sys/fs/cgroup/memory"
    assert CgroupPaths("/", "v2").memory_dir == "/sys/fs/cgroup"
    assert CgroupPaths("a", "v2", root="/tmp/x").usage == os.path.join("/tmp/x", "a", "memory.current")


def test_layout_hybrid_this_host_fixture() -> None:
    m = parse_mountinfo_cgroups(read(V1 / "mountinfo.hybrid"))
    assert m.layout is CgroupLayout.HYBRID
    assert m.v1["memory"] == "/sys/fs/cgroup/memory"
    assert m.v1["name=systemd"] == "/sys/fs/cgroup/systemd"
    assert m.unified == "/sys/fs/cgroup/unified"
    assert m.memory_version is CgroupVersion.V1
    assert m.root == "/sys/fs/cgroup"


def test_layout_legacy_and_unified() -> None:
    legacy = parse_mountinfo_cgroups(read(V1 / "mountinfo.legacy"))
    assert legacy.layout is CgroupLayout.V1 and legacy.unified is None
    unified = parse_mountinfo_cgroups(read(V2 / "mountinfo.systemd"))
    assert unified.layout is CgroupLayout.V2
    assert unified.v1 == {}
    assert unified.memory_version is CgroupVersion.V2
    assert unified.root == "/sys/fs/cgroup"


def test_layout_combined_controllers() -> None:
    text = (
        "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:10 - cgroup cgroup rw,cpu,cpuacct\n"
        "31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid shared:11 - cgroup cgroup rw,memory\n"
    )
    m = parse_mountinfo_cgroups(text)
    assert m.v1["cpu"] == m.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert m.layout is CgroupLayout.V1


def test_proc_cgroup() -> None:
    text = "9:name=systemd:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/x\n0::/\n"
    assert parse_proc_cgroup(text) == {
        "name=systemd": "/",
        "memory": "/process_api/abc",
        "cpu": "/x",
        "cpuacct": "/x",
        "": "/",
    }


def test_meminfo_fixture() -> None:
    mi = procfs.parse_meminfo(read(FIX / "meminfo.debian12"))
    assert mi["MemTotal"] > 20 << 30
    assert mi["HugePages_Total"] == 0  # no unit: not scaled
    sub = procfs.parse_meminfo(read(FIX / "meminfo.debian12"), procfs.MEMINFO_FIELDS)
    assert set(sub) == set(procfs.MEMINFO_FIELDS)
