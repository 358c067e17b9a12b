"""The real kubelet: build from the k8s.io/kubernetes module, ``harness cluster up``, the kubelet suite,
a second kubelet version side by side, and ``down`` stopping exactly what ``up`` started.

A cold build (no Go module or build cache) takes minutes; the module's tests share one cluster.
HARNESS_SKIP_KUBELET=1 skips them explicitly (they never skip on their own).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.cluster.ceiling import daemons_limit, host_reserve, mem_total
from tests.e2e.conftest import REPO, harness

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

VERSION = os.environ.get("HARNESS_KUBELET_VERSION", "1.33.4")
OTHER_VERSION = os.environ.get("HARNESS_KUBELET_OTHER_VERSION", "1.32.5")
PROFILE = REPO / "profiles" / "cluster-default.yaml"

if os.environ.get("HARNESS_SKIP_KUBELET") == "1":
    pytest.skip("HARNESS_SKIP_KUBELET=1", allow_module_level=True)


def _cluster_json() -> dict[str, Any]:
    r = harness("cluster", "status", "--json")
    return dict(json.loads(r.stdout))


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, Any]]:
    t = time.monotonic()
    r = harness("cluster", "up", "--version", VERSION, "--profile", str(PROFILE), "--json", timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
    timings = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"cluster up v{VERSION}: {time.monotonic() - t:.0f} s {timings}")
    try:
        yield {"timings": timings}
    finally:
        d = harness("cluster", "down", timeout=300)
        assert d.returncode == 0, d.stderr[-2000:]


@pytest.mark.timeout(3600)
def test_up_gives_a_ready_node_with_the_modelled_allocatable(cluster: dict[str, Any]) -> None:
    st = _cluster_json()
    assert all(c["running"] for c in st["components"].values()), st["components"]
    node = st["node"]
    assert node["conditions"]["Ready"] == "True"
    assert node["kubeletVersion"] == f"v{VERSION}"
    assert st["versions"]["kube-apiserver"] == f"v{VERSION}"
    # allocatable as the model computes it for this host and profile
    r = harness(
        "model", "node", str(PROFILE), "--cgroup-version", "1", "--kubelet-version", VERSION, "--json"
    )
    assert r.returncode == 0, r.stderr
    model = json.loads(r.stdout)
    from harness.quantity import to_bytes

    assert to_bytes(node["allocatable"]["memory"]) == model["allocatable_bytes"]


@pytest.mark.timeout(600)
def test_second_up_changes_nothing(cluster: dict[str, Any]) -> None:
    before = {k: v["pid"] for k, v in _cluster_json()["components"].items()}
    r = harness("cluster", "up", "--version", VERSION, "--profile", str(PROFILE), "--json", timeout=600)
    assert r.returncode == 0, r.stderr
    timings = json.loads(r.stdout.strip().splitlines()[-1])
    assert timings["build"] < 5, "a cached version must not be rebuilt"
    after = {k: v["pid"] for k, v in _cluster_json()["components"].items()}
    assert after == before, "an unchanged up restarted something"


@pytest.mark.timeout(900)
def test_the_ceiling_is_written_after_the_kubelets_own_kubepods_limit(cluster: dict[str, Any]) -> None:
    """A profile that enforces no allocatable makes the kubelet write kubepods at the node's capacity
    (MemTotal), above the harness's ceiling. The kubelet writes it from a goroutine after its healthz
    answers and reports NodeAllocatableEnforced; the cluster caps kubepods only after that event, so
    the limit found afterwards is the ceiling, not the kubelet's capacity."""
    from harness.cluster import Cluster, _event_time
    from harness.cluster.ceiling import pod_ceiling
    from harness.host.cgroups import cgroup_version, memory_root

    pressure = REPO / "profiles" / "cluster-node-pressure.yaml"
    t0 = time.time()
    r = harness("cluster", "up", "--version", VERSION, "--profile", str(pressure), timeout=600)
    try:
        assert r.returncode == 0, r.stderr[-3000:]
        c = Cluster()
        version = cgroup_version()
        kp = memory_root(version) / c.kubepods
        limit = int((kp / ("memory.limit_in_bytes" if version == 1 else "memory.max")).read_text())
        page = os.sysconf("SC_PAGE_SIZE")
        assert limit == pod_ceiling(mem_total()) // page * page < mem_total()
        events = json.loads(c.api_get("/api/v1/events?fieldSelector=reason%3DNodeAllocatableEnforced"))[
            "items"
        ]
        assert any(_event_time(e) >= int(t0) - 1 for e in events), [_event_time(e) for e in events]
    finally:
        back = harness("cluster", "up", "--version", VERSION, "--profile", str(PROFILE), timeout=600)
        assert back.returncode == 0, back.stderr[-2000:]


@pytest.mark.timeout(1800)
def test_kubelet_suite_verdicts_match_the_model(cluster: dict[str, Any], tmp_path: Path) -> None:
    r = harness(
        "run",
        "suites/kubelet.yaml",
        "--backend",
        "kubernetes",
        "--results",
        str(tmp_path),
        "--label",
        "ci=e2e",
        timeout=1700,
    )
    run_dir = next(tmp_path.iterdir())
    v = pd.read_parquet(run_dir / "verdicts.parquet")
    print(v[["scenario", "workload", "predicted", "observed", "passed"]].to_string())
    bad = v[~v.passed]
    assert r.returncode == 0 and bad.empty, (
        bad[["scenario", "workload", "reasons"]].to_string() + r.stderr[-3000:]
    )
    scenarios = set(v.scenario)
    assert {
        "s1-container-limit",
        "s2-slow-past-allocatable",
        "s8-cgroup-values",
        "s9-reserved-memory-mismatch",
    } <= scenarios
    # the kubelet's own evidence is in the run: evictions, loop results and stats
    e = pd.read_parquet(run_dir / "events.parquet")
    kinds = set(e[e.source == "kubelet"].kind)
    assert {"Evicted", "EvictionThresholdMet", "node_condition"} <= kinds
    assert (e.source == "kubelet-stats").any()
    # each eviction sync the kubelet logged (--vmodule=eviction_manager=3, sample.kubeletlog): the
    # loop sleeps 10 s after a sync that evicted nothing, so such syncs start >= 10 s apart, and a
    # sync decides after it starts
    syncs = e[(e.source == "harness") & (e.kind == "kubelet_eviction_syncs")]
    s2 = syncs[syncs.scenario == "s2-slow-past-allocatable"]
    assert len(s2) == 1, syncs[["scenario", "detail"]].to_string()
    rows = json.loads(s2.iloc[0].detail)
    assert len(rows) >= 3 and any(r[2] for r in rows), rows  # S2 evicts: one sync ranked pods
    assert all(r[1] is None or r[1] >= r[0] for r in rows), rows
    quiet = [b[0] - a[0] for a, b in itertools.pairwise(rows) if a[1] is not None and not a[2]]
    assert quiet and min(quiet) >= 10.0, rows
    # the harness's ceiling (harness.cluster.ceiling): S5's 3 GiB host leak runs beside kubepods at the
    # node-pressure profile's capacity (enforceNodeAllocatable: []): kubepods was lowered for it so
    # that the daemons, the pods and the host workloads fit below MemTotal less the reserve
    ceil = e[(e.source == "harness") & (e.kind == "ceiling")]
    assert len(ceil) >= 1, "no kubepods lowered beside S5's host workload"
    room = json.loads(ceil.iloc[0].detail)
    total = mem_total()
    assert room["host_workloads"] >= 3 << 30
    assert room["after"] + room["host_workloads"] + daemons_limit(total) <= total - host_reserve(total)
    assert room["before"] is None or room["before"] > room["after"]
    o = pd.read_parquet(run_dir / "outcomes.parquet")
    assert set(o[o.scenario == "s2-slow-past-allocatable"].outcome) == {"completed", "evicted"}
    assert set(o[o.scenario == "s4-fast-past-kubepods"].outcome) <= {"node_oom_killed", "evicted"}
    # S8 compared real files, not nothing
    cg = pd.read_parquet(run_dir / "cgroups.parquet")
    assert len(cg) >= 20 and cg.match.all()
    # every workload that ran was judged on its as-run timeline (its real start and pace)
    pr = pd.read_parquet(run_dir / "predictions.parquet")
    ran = pr.merge(
        o[o.outcome != "rejected"][["scenario", "workload"]],
        left_on=["scenario", "name"],
        right_on=["scenario", "workload"],
    )
    assert len(ran) >= 15
    assert (ran.basis == "as-run").all(), ran[["scenario", "name", "basis"]].to_string()
    assert (ran.launch_s >= 0).all() and (ran.alloc_rate_bytes_per_s.dropna() > 0).all()
    # the kubelet's own containers and the cluster survive the suite
    assert _cluster_json()["node"]["conditions"]["Ready"] == "True"


PRESSURE_SUITE = """\
apiVersion: harness/v1
kind: Suite
name: pressure-then-besteffort
profile: {profile}
sampleHz: 5
scenarios:
  - name: hog-evicted
    timeout: 60s
    backends: [kubernetes]
    workloads:
      - name: hog
        resources: {{}}
        leak: {{chunk: 64Mi, interval: 500ms, max: 2400Mi}}
  - name: besteffort-right-after
    timeout: 10s
    backends: [kubernetes]
    workloads:
      - name: small
        resources: {{}}
        leak: {{chunk: 16Mi, interval: 100ms, max: 32Mi, hold: 1s}}
"""


@pytest.mark.timeout(900)
def test_a_scenario_right_after_an_eviction_waits_for_the_kubelet_to_admit_besteffort(
    cluster: dict[str, Any], tmp_path: Path
) -> None:
    """The kubelet evicts the hog (its working set crosses the 1Gi allocatable threshold, below the
    kubepods limit), and the run ends the moment it exits. The node object may still say
    MemoryPressure=False then (it is posted every nodeStatusUpdateFrequency), while the eviction
    manager already refuses BestEffort pods: the next scenario must wait for the kubelet itself
    (an admission probe) instead of having its BestEffort pod rejected."""
    suite = tmp_path / "suite.yaml"
    suite.write_text(PRESSURE_SUITE.format(profile=PROFILE))
    results = tmp_path / "results"
    r = harness("run", str(suite), "--backend", "kubernetes", "--results", str(results), timeout=800)
    run_dir = next(results.iterdir())
    v = pd.read_parquet(run_dir / "verdicts.parquet")
    assert r.returncode == 0, (
        v[["scenario", "workload", "observed", "reasons"]].to_string() + r.stderr[-2000:]
    )
    observed = dict(zip(v.workload, v.observed, strict=True))
    observed.pop("kubelet-start", None)  # the kubelet restarts when the previous test left another profile
    assert observed == {"hog": "evicted", "small": "completed"}
    e = pd.read_parquet(run_dir / "events.parquet")
    start = e[(e.kind == "scenario_start") & (e.scenario == "besteffort-right-after")].t_mono.min()
    waited = e[(e.kind == "waiting_for_memory_pressure_to_clear") & (e.t_mono >= start)]
    cleared = e[(e.kind == "memory_pressure_cleared") & (e.t_mono >= start)]
    assert len(waited) == 1 and len(cleared) == 1, "the second scenario did not wait for the kubelet"
    probes = e[(e.kind == "pod_phase") & e.pod.fillna("").str.startswith("probe-besteffort-right-after")]
    assert len(probes) >= 1  # the kubelet itself was asked


def test_a_scenario_that_exhausts_the_node_is_refused_on_a_host_that_is_not_disposable(
    cluster: dict[str, Any], tmp_path: Path
) -> None:
    """suites/vm-node-oom.yaml lifts the harness's ceiling to run a node out of memory; on this
    controller (not a lab VM) it is refused before anything leaks, with the reason, and no pod or
    host workload is left behind."""
    results = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_DISPOSABLE_HOST"}
    r = harness(
        "run",
        "suites/vm-node-oom.yaml",
        "--backend",
        "kubernetes",
        "--results",
        str(results),
        env=env,
        timeout=600,
    )
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]  # the wrong host for this suite
    assert "exhausts the node's memory (exhaustsNode: true)" in r.stderr
    assert "disposable host" in r.stderr
    run_dir = next(results.iterdir())
    e = pd.read_parquet(run_dir / "events.parquet")
    assert not (e.kind == "exhausts_node").any()
    pods = e[e.kind == "pod_phase"].pod.fillna("") if "pod" in e.columns else pd.Series([], dtype=str)
    assert not pods.str.startswith("n1-").any(), "a pod of the refused scenario was created"


@pytest.mark.timeout(3600)
def test_a_second_kubelet_version_builds_side_by_side_and_runs(
    cluster: dict[str, Any], tmp_path: Path
) -> None:
    r = harness(
        "cluster", "up", "--version", OTHER_VERSION, "--profile", str(PROFILE), "--json", timeout=3600
    )
    assert r.returncode == 0, r.stderr[-3000:]
    try:
        st = _cluster_json()
        assert st["node"]["kubeletVersion"] == f"v{OTHER_VERSION}"
        # both versions stay built
        for v in (VERSION, OTHER_VERSION):
            assert (Path("/var/lib/harness/cluster/build") / f"v{v}" / "bin" / "kubelet").is_file()
        run = harness(
            "run", "suites/kubelet.yaml", "--backend", "kubernetes", "--results", str(tmp_path),
            "--scenario", "S1", "--scenario", "S2", "--scenario", "S8", timeout=900,
        )  # fmt: skip
        v = pd.read_parquet(next(tmp_path.iterdir()) / "verdicts.parquet")
        print(v[["scenario", "workload", "predicted", "observed", "passed"]].to_string())
        assert run.returncode == 0 and v.passed.all(), v[~v.passed][["workload", "reasons"]].to_string()
    finally:
        back = harness("cluster", "up", "--version", VERSION, "--profile", str(PROFILE), timeout=900)
        assert back.returncode == 0, back.stderr[-2000:]


@pytest.mark.timeout(900)
def test_down_stops_exactly_what_up_started(cluster: dict[str, Any]) -> None:
    # a bystander whose command line says "kubelet": a name-based kill would take it too
    decoy = subprocess.Popen(["bash", "-c", "exec -a kubelet sleep 600"])
    try:
        pids = {k: v["pid"] for k, v in _cluster_json()["components"].items()}
        assert all(pids.values()), pids
        r = harness("cluster", "down", timeout=300)
        assert r.returncode == 0, r.stderr
        for name, pid in pids.items():
            assert (
                not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
            ), name
        assert decoy.poll() is None, "down killed a process it did not start"
        st = harness("cluster", "status")
        assert st.returncode == 3, st.stdout  # "not running"
        # and the next up brings it back (the module fixture's down then finds nothing to stop)
        up = harness("cluster", "up", "--version", VERSION, "--profile", str(PROFILE), timeout=900)
        assert up.returncode == 0, up.stderr[-2000:]
    finally:
        decoy.kill()
        decoy.wait()
