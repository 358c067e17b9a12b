"""The node's baseline as cAdvisor gives it to the kubelet, on both cgroup versions."""

from __future__ import annotations

from pathlib import Path

from harness.launch.kubernetes.node import baseline

MiB = 1 << 20


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
