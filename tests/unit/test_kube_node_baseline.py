"""The node's baseline as cAdvisor gives it to the kubelet, on both cgroup versions."""

from __future__ import annotations

import os
from pathlib import Path

from harness.config.suite import load_suite
from harness.launch.kubernetes.node import baseline, free_before_reclaim, unavailable
from harness.model.predict import Baseline, predict_scenario

MiB = 1 << 20
SUITE = Path(__file__).resolve().parents[2] / "suites" / "vm-node-oom.yaml"


def _write(d: Path, **files: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name.replace("_", ".", 1)).write_text(text)


def test_the_v2_root_without_memory_current_is_anon_plus_file(tmp_path: Path) -> None:
    # the v2 root cgroup has memory.stat but no memory.current: its usage is anon + file
    # (rootStatsFromMeminfo); reading memory.current there gave 0, i.e. an empty node
    _write(tmp_path, memory_stat=f"anon {900 * MiB}\nfile {300 * MiB}\ninactive_file {100 * MiB}\nshmem 0\n")
    _write(
        tmp_path / "kubepods.slice",
        memory_current=f"{400 * MiB}\n",
        memory_stat=f"anon {350 * MiB}\nfile {50 * MiB}\ninactive_file {20 * MiB}\n",
    )
    b = baseline("kubepods.slice", root=tmp_path)
    assert b.root_usage == 1200 * MiB
    assert b.root_working_set == 1100 * MiB
    assert b.kubepods_usage == 400 * MiB
    assert b.kubepods_working_set == 380 * MiB


def test_v1_uses_usage_in_bytes_and_total_inactive_file(tmp_path: Path) -> None:
    _write(
        tmp_path,
        memory_usage_in_bytes=f"{2000 * MiB}\n",
        memory_stat=f"cache {800 * MiB}\ninactive_file {1 * MiB}\ntotal_inactive_file {500 * MiB}\n",
    )
    _write(
        tmp_path / "kubepods",
        memory_usage_in_bytes=f"{600 * MiB}\n",
        memory_stat=f"total_inactive_file {100 * MiB}\n",
    )
    b = baseline("kubepods", root=tmp_path)
    assert (b.root_usage, b.root_working_set) == (2000 * MiB, 1500 * MiB)
    assert (b.kubepods_usage, b.kubepods_working_set) == (600 * MiB, 500 * MiB)


def test_the_whole_node_oom_point_is_what_the_kernel_calls_available(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(
        "MemTotal:        4026548 kB\nMemFree:          900000 kB\nMemAvailable:    2900000 kB\n"
    )
    assert unavailable(meminfo) == (4026548 - 2900000) * 1024
    (tmp_path / "bad").write_text("MemTotal: 1 kB\n")
    assert unavailable(tmp_path / "bad") is None
    assert unavailable(tmp_path / "missing") is None


def test_the_model_puts_a_whole_node_oom_where_the_available_memory_ends() -> None:
    """Page cache in the root's usage is reclaimed before the node's global OOM: with the same
    usage, a node whose cache makes most of it available OOMs later."""
    sc = load_suite(SUITE).scenario("N1")
    assert sc.node is not None
    sc.node = sc.node.model_copy(update={"memory_capacity_bytes": 3932 * MiB})  # the VM's MemTotal
    usage = 1500 * MiB
    cache_counted = predict_scenario(sc, kubelet=False, baseline=Baseline(root_usage=usage))
    available = predict_scenario(
        sc, kubelet=False, baseline=Baseline(root_usage=usage, root_unavailable=usage - 600 * MiB)
    )
    t_cache = cache_counted.workload("hostleak").earliest_s
    t_avail = available.workload("hostleak").earliest_s
    assert t_cache is not None and t_avail is not None
    # 600 MiB more room at the leak's 80 MiB/s: ~7.5 s later
    assert 6.5 < t_avail - t_cache < 8.5
    assert available.workload("hostleak").outcome == "node_oom_killed"


def test_the_whole_node_baseline_reads_the_cache_and_where_its_reclaim_starts(tmp_path: Path) -> None:
    _write(
        tmp_path,
        memory_stat=(
            f"anon {700 * MiB}\nfile {700 * MiB}\nactive_file {539 * MiB}\ninactive_file {150 * MiB}\nshmem {11 * MiB}\n"
        ),
    )
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(
        f"MemTotal: {3932 * 1024} kB\nMemFree: {2300 * 1024} kB\nMemAvailable: {3100 * 1024} kB\n"
    )
    zoneinfo = tmp_path / "zoneinfo"
    page = os.sysconf("SC_PAGE_SIZE")
    zoneinfo.write_text(
        "Node 0, zone   Normal\n  pages free     1\n        min      1\n"
        f"        low      {12 * MiB // page}\n        high     1\n"
        "Node 1, zone   Normal\n  pages free     1\n        min      1\n"
        f"        low      {8 * MiB // page}\n        high     1\n"
    )
    # a cgroup drawn around the workloads: its own limit reclaims, no node-wide figures
    drawn = baseline("kubepods.slice", root=tmp_path, meminfo=meminfo, zoneinfo=zoneinfo)
    assert (drawn.root_active_file, drawn.root_inactive_file) == (539 * MiB, 150 * MiB)
    assert drawn.root_free_before_reclaim is None and drawn.root_unavailable is None
    assert free_before_reclaim(meminfo, zoneinfo) == 2280 * MiB
    assert free_before_reclaim(meminfo, tmp_path / "missing") is None
    (tmp_path / "nolow").write_text("Node 0, zone   Normal\n")
    assert free_before_reclaim(meminfo, tmp_path / "nolow") is None


def _n1_on(kernel_other_mib: int, reclaim: bool) -> dict[str, str]:
    """N1 on a 3932 MiB node whose working set at the start holds 539 MiB of active page cache (CI's
    guest after lab.yaml: working set 1239 MiB), with ``kernel_other_mib`` of memory that is
    neither anon nor page cache (slab, page tables)."""
    sc = load_suite(SUITE).scenario("N1")
    assert sc.node is not None
    sc.node = sc.node.model_copy(update={"memory_capacity_bytes": 3932 * MiB})
    anon, active, inactive, low = 700, 539, 150, 20
    free = 3932 - anon - active - inactive - kernel_other_mib
    b = Baseline(
        root_working_set=(anon + active) * MiB,
        root_usage=(anon + active + inactive) * MiB,
        root_unavailable=(anon + kernel_other_mib + 70) * MiB,
        root_active_file=active * MiB,
        root_inactive_file=inactive * MiB,
        root_free_before_reclaim=(free - low) * MiB if reclaim else None,
    )
    return {w.name: w.outcome for w in predict_scenario(sc, kubelet=True, baseline=b).workloads}


def test_the_kernel_reclaims_the_nodes_active_cache_before_memory_available_crosses() -> None:
    """The kubelet's working set counts active page cache; as the leak takes the free memory the
    kernel reclaims that cache, so ``memory.available`` stays above what is neither anon nor cache
    plus the low watermark (250 + 20 MiB here): a 100Mi threshold is never crossed and the kernel
    alone kills, as it did in CI's guest (1000, 935, then the leak; Guaranteed survived)."""
    kept = _n1_on(250, reclaim=False)
    assert "evicted" in kept.values(), kept  # the cache kept in the working set: evictions
    reclaimed = _n1_on(250, reclaim=True)
    assert reclaimed == {
        "besteffort": "node_oom_killed",
        "burstable": "node_oom_killed",
        "guaranteed": "completed",
        "hostleak": "node_oom_killed",
    }


def test_a_node_with_little_else_than_anon_and_cache_still_crosses_the_threshold() -> None:
    # 50 + 20 MiB is under the 100Mi threshold: the working set rises past it before the cache goes
    outcomes = _n1_on(50, reclaim=True)
    assert outcomes["besteffort"] == outcomes["burstable"] == "evicted", outcomes
    assert outcomes["hostleak"] == "node_oom_killed"
