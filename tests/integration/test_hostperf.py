"""The page-fault measurement and the warm-up (harness/hostperf.py) on this host's real cgroups.

Small sizes (128-192 MiB) keep each test under a few seconds. Timing figures are printed, not
asserted (a shared machine's speed varies); what is asserted is what could break: the passes
run the leak inside the cgroup given, every chunk is timed, the scratch cgroups are gone after,
and a warm-up stays inside a parent cgroup's memory limit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import hostperf
from harness.errors import HostError

from .conftest import MemCgroup, memory_cgroup_root

pytestmark = [pytest.mark.integration]

MI = 1 << 20


def _root() -> Path:
    return memory_cgroup_root()[0]


def test_measure_first_touch_and_retouch() -> None:
    rel = f"harness-test-hostperf-{uuid.uuid4().hex[:8]}"
    r = hostperf.measure(128 * MI, cgroup_rel=rel, chunk=32 * MI)
    print(r.describe())
    for p in (r.fresh, r.retouch):
        assert p.bytes == 128 * MI and len(p.chunk_ms) == 4
        assert all(ms > 0 for ms in p.chunk_ms) and p.seconds == pytest.approx(
            sum(p.chunk_ms) / 1e3, rel=1e-3
        )
    d = r.to_dict()
    assert d["fresh_bytes_per_s"] > 0 and d["retouch_bytes_per_s"] > 0 and "cold_slow" in d
    assert not (_root() / rel).exists(), "the scratch cgroup was left behind"


def test_a_probe_larger_than_its_cgroup_fails_cleanly() -> None:
    """The limit is real: a pass that cannot fit is OOM-killed and reported, nothing left."""
    rel = f"harness-test-hostperf-{uuid.uuid4().hex[:8]}"
    with pytest.raises(HostError, match="stopped after"), hostperf.scratch_cgroup(rel, 64 * MI) as cg:
        hostperf.touch_pass(cg, 192 * MI, 32 * MI)
    assert not (_root() / rel).exists()


def test_warm_up_inside_a_limited_parent(memcg_factory: Callable[..., MemCgroup]) -> None:
    """The warm-up's cgroup is a child of the scenario's node: the node's limit confines it."""
    node = memcg_factory(limit=256 * MI)
    rel = str(node.path.relative_to(_root()) / "warmup")
    rec = hostperf.warm_up(rel, 192 * MI, chunk=32 * MI)
    print({k: rec[k] for k in ("bytes", "seconds", "rate_before", "rate_after")})
    assert rec["bytes"] == 192 * MI and len(rec["warm_up"]["chunk_ms"]) == 6
    assert rec["verify"]["bytes"] == 192 * MI  # below VERIFY_BYTES: all of it retouched
    assert rec["rate_before"] > 0 and rec["rate_after"] > 0
    assert not (node.path / "warmup").exists()
    assert node.usage() < 32 * MI, "the warm-up's memory was not released"
    # more than the node allows: the pass is killed at the node's limit, reported, cleaned up
    with pytest.raises(HostError, match="stopped after"):
        hostperf.warm_up(rel, 512 * MI, chunk=32 * MI)
    assert not (node.path / "warmup").exists()


def test_doctor_line() -> None:
    line = hostperf.doctor_line(128 * MI)
    print(line)
    assert line.startswith("host") and "first touch" in line and "retouch" in line


def test_a_run_records_its_page_faults_and_warm_up(tmp_path: Path) -> None:
    """The run pipeline's hooks: run.json ``host.pageFaults`` and ``warm_up`` per scenario, and the
    warm-up happened inside the scenario's node before its workloads (process backend, S11-local)."""
    import json

    from harness.config.suite import load_suite
    from harness.progress import Progress
    from harness.run import run_suite

    suite = load_suite(str(Path(__file__).resolve().parents[2] / "suites" / "sweep-local.yaml"))
    res = run_suite(
        suite, "process", tmp_path, only=["S11-local"], progress=Progress(quiet=True), warm_up="on"
    )
    assert res.status == "complete"
    meta = json.loads((res.run_dir / "run.json").read_text())
    pf = meta["host"]["pageFaults"]
    assert pf["fresh"]["bytes"] == hostperf.RUN_PROBE_BYTES and pf["retouch_bytes_per_s"] > 0
    assert pf["host_coldest"]["ratio"] <= pf["ratio"]
    warm = meta["warm_up"]["limit-vs-deadline"]
    assert warm["done"] and warm["reason"] == "on"
    assert warm["bytes"] == 64 * MI  # the leaker's container limit
    assert warm["cgroup"] == f"harness/{res.run_id}/limit-vs-deadline/warmup"
    events = [json.loads(x) for x in (res.run_dir / "progress" / "events.jsonl").read_text().splitlines()]
    kinds = [e["kind"] for e in events if e["source"] == "harness"]
    assert kinds.index("warm_up") < kinds.index("launched")
    assert not (_root() / "harness" / res.run_id).exists()
