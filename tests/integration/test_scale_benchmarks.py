"""The scale benchmarks run, with their smallest parameters, and print their figures.

Not timed: the figures are printed by the benchmarks (see the README's benchmarks section); these
tests keep the scripts working as the code they measure changes. The sampler benchmark creates
and removes its own uniquely named cgroups (``harness-bench-<random>``), the others write only
to their own temp folders.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _bench(name: str, *args: str, timeout: float = 300) -> str:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / name), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_bench_sampler_smallest() -> None:
    out = _bench(
        "bench_sampler.py", "--seconds", "0.5", "--rates", "10", "--counts", "10", "--oom-counters", "off"
    )
    rows = [line.split() for line in out.splitlines() if line.split()[:1] == ["10"]]
    assert len(rows) == 1, out
    cgroups, oom, rate, cpu, tick_us, ticks, missed, per_cg = rows[0]
    assert int(missed) >= 0
    assert (cgroups, oom, rate) == ("10", "off", "10")
    assert float(cpu) > 0 and float(tick_us) > 0 and float(per_cg) > 0
    done, expected = (int(x) for x in ticks.split("/"))
    assert done >= 1 and expected >= 1


def test_bench_catalog_smallest() -> None:
    out = _bench("bench_catalog.py", "--runs", "20", "--per-night", "2", "--compare", "5", "--trend", "8")
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["runs"] == 20
    assert len(figures["figures"]) == 5
    for label, fig in figures["figures"].items():
        assert fig["seconds"] > 0 and fig["peak_rss_mib"] > 0, label
        assert fig["exit"] in (0, 1), label


def test_bench_report_smallest() -> None:
    out = _bench("bench_report.py", "--minutes", "0.5", "--workloads", "1")
    (row,) = json.loads(out.strip().splitlines()[-1])
    assert row["rows"] == 0.5 * 60 * 10 * (1 + 2 + 1)  # workload, node and kubepods cgroups, meminfo
    assert row["html_kib"] > 0 and row["png_kib"] > 0 and row["render_s"] > 0


def test_bench_pods_suite_is_valid() -> None:
    # without --run it only writes and validates the N-pod suite (the run needs the local cluster)
    out = _bench("bench_pods.py", "--pods", "3")
    assert "3 pods" in out, out
