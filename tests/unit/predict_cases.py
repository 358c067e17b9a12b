"""Prediction cases for the model's equality checks (tests/unit/test_predict_golden.py,
tests/unit/test_predict_scale.py, scripts/predict_golden.py): random scenarios drawn from a seed,
the repository's suites, and the 110-pod suite of benchmarks/bench_pods.py.

Every case is a function returning the prediction's canonical JSON text (or the error it raised, as
text): two model versions give the same predictions when every case gives the same text.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.config.kubelet import parse_profile
from harness.config.node import NodeFacts
from harness.config.suite import Scenario, load_suite
from harness.model import housekeeping as hk
from harness.model.predict import Baseline, predict_scenario
from harness.model.schedule import ProcSchedule, Schedule
from harness.model.sizing import size_workloads

REPO = Path(__file__).resolve().parents[2]
MI = 1 << 20

PROFILES: list[dict[str, Any]] = [
    {},
    {
        "kubeReserved": {"memory": "512Mi"},
        "systemReserved": {"memory": "256Mi"},
        "evictionHard": {"memory.available": "256Mi"},
    },
    {
        "kubeReserved": {"memory": "256Mi"},
        "systemReserved": {"memory": "256Mi"},
        "evictionHard": {"memory.available": "300Mi"},
        "evictionSoft": {"memory.available": "600Mi"},
        "evictionSoftGracePeriod": {"memory.available": "10s"},
        "evictionPressureTransitionPeriod": "30s",
    },
    {
        "systemReserved": {"memory": "1Gi"},
        "evictionHard": {"memory.available": "10%"},
        "kernelMemcgNotification": True,
    },
    {
        "kubeReserved": {"memory": "512Mi"},
        "evictionHard": {"memory.available": "512Mi"},
        "enforceNodeAllocatable": ["pods"],
        "evictionMaxPodGracePeriod": 5,
        "evictionSoft": {"memory.available": "1Gi"},
        "evictionSoftGracePeriod": {"memory.available": "5s"},
    },
]


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=repr)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _q(rng: random.Random, lo_mi: int, hi_mi: int) -> str:
    return f"{rng.randint(lo_mi, hi_mi)}Mi"


def random_workload(rng: random.Random, i: int) -> dict[str, Any]:
    placement = rng.choices(["pod", "host", "container"], weights=[8, 1, 1])[0]
    w: dict[str, Any] = {"name": f"w{i}", "placement": placement}
    leak: dict[str, Any] = {
        "chunk": _q(rng, 1, 96),
        "interval": rng.choice(["100ms", "200ms", "250ms", "500ms", "1s"]),
    }
    if rng.random() < 0.4:
        leak["max"] = _q(rng, 16, 1536)
        if rng.random() < 0.5:
            leak["hold"] = rng.choice(["1s", "5s", "20s"])
    if rng.random() < 0.4:
        leak["startDelay"] = rng.choice(["1s", "3s", "7.5s", "20s"])
    if rng.random() < 0.2:
        leak["processes"] = rng.randint(2, 3)
    if rng.random() < 0.1:
        leak["mode"] = "pagecache"
    if rng.random() < 0.1:
        leak["heapCapPercent"] = rng.choice([50, 80, 95])
    if rng.random() < 0.1:
        leak["touch"] = rng.choice([0.5, 0.25])
    w["leak"] = leak
    if placement == "pod":
        qos = rng.choice(["BestEffort", "Burstable", "Guaranteed"])
        if qos == "Burstable":
            req = rng.randint(16, 1024)
            res: dict[str, Any] = {"requests": {"memory": f"{req}Mi"}}
            if rng.random() < 0.6:
                res["limits"] = {"memory": f"{req + rng.randint(0, 2048)}Mi"}
            if rng.random() < 0.3:
                res["requests"]["cpu"] = f"{rng.randint(10, 500)}m"
            w["resources"] = res
        elif qos == "Guaranteed":
            mem = f"{rng.randint(64, 1536)}Mi"
            cpu = f"{rng.randint(100, 1000)}m"
            w["resources"] = {"requests": {"memory": mem, "cpu": cpu}, "limits": {"memory": mem, "cpu": cpu}}
        if rng.random() < 0.3:
            w["priority"] = rng.choice([0, 100, 1000, 2000000000])
        if rng.random() < 0.2:
            w["terminationGracePeriodSeconds"] = rng.choice([0, 5, 60])
    elif placement == "container":
        w["resources"] = {"limits": {"memory": _q(rng, 64, 2048)}}
    else:
        w["oomScoreAdj"] = rng.choice([0, 500, -500, 1000])
    return w


def random_scenario(seed: int, pods: int | None = None) -> tuple[Scenario, dict[str, Any]]:
    """A random scenario and the keyword arguments of its ``predict_scenario`` call."""
    rng = random.Random(seed)
    n = pods if pods is not None else rng.randint(1, 8)
    workloads = [random_workload(rng, i) for i in range(n)]
    sc = Scenario.model_validate(
        {"name": f"r{seed}", "timeout": rng.choice(["30s", "60s", "90s"]), "workloads": workloads}
    )
    sc.profile = parse_profile(
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            **rng.choice(PROFILES),
        }
    )
    sc.node = NodeFacts.model_validate(
        {
            "memoryCapacity": rng.choice(["2Gi", "3Gi", "4Gi", "6Gi"]),
            "cgroupVersion": rng.choice([1, 2, 2]),
            "kubeletVersion": rng.choice(["1.28", "1.30", "1.31", "1.32", "1.33", "1.34"]),
            "negativeOomScoreAdj": rng.random() < 0.8,
        }
    )
    kw: dict[str, Any] = {"kubelet": rng.random() < 0.75}
    if rng.random() < 0.2:
        gi = rng.randint(0, 512) * MI
        kw["baseline"] = Baseline(root_working_set=gi, root_usage=gi, kubepods_working_set=gi // 2)
    if rng.random() < 0.15:
        kw["stats_age_s"] = rng.choice([0.5, 2.0, 7.0])
    if rng.random() < 0.1:
        kw["phases"] = rng.choice([1, 4, 7])
    if rng.random() < 0.1:
        kw["pod_stats"] = False
    if rng.random() < 0.3:
        kw["schedules"] = synthetic_schedules(sc, rng)
        if kw["kubelet"] and rng.random() < 0.5:
            kw["housekeeping"] = recorded_housekeeping(sc, rng)
    # drawn last, so that the cases drawn before it stay the same: a whole node whose page cache
    # the kernel reclaims (Baseline.root_free_before_reclaim)
    if "baseline" in kw and rng.random() < 0.5:
        b = kw["baseline"]
        cap = sc.node.memory_capacity_bytes
        active = rng.randint(0, 512) * MI
        b.root_working_set += active
        b.root_active_file = active
        b.root_inactive_file = rng.randint(0, 256) * MI
        b.root_unavailable = b.root_usage + rng.randint(0, 256) * MI
        b.root_usage += active + b.root_inactive_file
        b.root_free_before_reclaim = max(0, cap - b.root_usage - rng.randint(0, 300) * MI)
    return sc, kw


def synthetic_schedules(sc: Scenario, rng: random.Random, share: float = 0.8) -> dict[str, Schedule]:
    """As-run schedules as the leak program would report them: a launch latency, chunks that take a
    while (sometimes longer than the interval), reports that stop somewhere before the timeout."""
    out: dict[str, Schedule] = {}
    for w in sc.workloads:
        if rng.random() > share:
            continue
        leak = w.leak
        start = leak.start_delay_s + rng.uniform(0.05, 4.0)
        procs = {}
        for p in range(leak.processes):
            iv = leak.interval_s
            chunks = int((sc.timeout_s - start) / max(iv, 0.05))
            if leak.max_bytes:
                chunks = min(chunks, -(-leak.max_bytes // leak.chunk_bytes))
            chunks = rng.randint(0, max(0, chunks))
            slow = rng.choice([0.2, 0.6, 1.5])  # chunk duration as a fraction of the interval
            due, done, t = [], [], start + rng.uniform(0, 0.05)
            for k in range(chunks):
                d = start + k * iv
                began = max(d, t)
                t = began + max(iv, 0.02) * slow * rng.uniform(0.5, 1.5)
                due.append(d)
                done.append(t)
            procs[p] = ProcSchedule(start_s=start, interval_s=iv, due_s=due, done_s=done)
        out[w.name] = Schedule(procs=procs, planned_start_s=leak.start_delay_s, chunk_bytes=leak.chunk_bytes)
    return out


def recorded_housekeeping(sc: Scenario, rng: random.Random) -> list[hk.Schedule]:
    """Two recorded housekeeping schedules (earliest and latest), as ``hk.from_summaries`` gives."""
    early: dict[str, list[float]] = {}
    late: dict[str, list[float]] = {}
    for w in sc.workloads:
        if w.placement != "pod" or rng.random() < 0.1:
            continue
        t = w.leak.start_delay_s + rng.uniform(0.5, 5.0)
        ts = []
        while t < sc.timeout_s + 30 * hk.HOUSEKEEPING_INTERVAL_S:
            ts.append(float(int(t)))
            t += rng.uniform(9.0, 11.0)
        early[w.name] = ts
        late[w.name] = [x + rng.uniform(0.0, 0.999) for x in ts]
    return [hk.Schedule("earliest", early), hk.Schedule("latest", late)]


def predict_text(sc: Scenario, kw: dict[str, Any]) -> str:
    try:
        return canonical(predict_scenario(sc, **kw).to_dict())
    except Exception as exc:  # the same error is the same prediction
        return canonical({"error": f"{type(exc).__name__}: {exc}"})


# --------------------------------------------------------------------------------------
# The 110-pod suite of benchmarks/bench_pods.py

# MemTotal of the local cluster's host (profiles/cluster-default.yaml: 24684092 kB), so that the
# suite's node does not depend on the machine the check runs on.
POD_SUITE_NODE = {"memoryCapacity": 24684092 * 1024, "cgroupVersion": 2, "kubeletVersion": "1.33"}


def pods_suite_doc(pods: int = 110, hold: str = "16Mi") -> dict[str, Any]:
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from bench_pods import suite_doc
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    doc = suite_doc(pods, hold)
    doc["node"] = dict(POD_SUITE_NODE)
    return doc


def pods_scenario(pods: int = 110, tmp: Path | None = None) -> Scenario:
    import tempfile

    import yaml

    d = tmp or Path(tempfile.mkdtemp(prefix="predict-pods-"))
    path = d / f"pods{pods}.yaml"
    path.write_text(yaml.safe_dump(pods_suite_doc(pods), sort_keys=False))
    return size_workloads(load_suite(path, detect_host=False).scenarios[0])


def pods_schedules(sc: Scenario, seed: int = 0) -> dict[str, Schedule]:
    """Leak schedules for every workload of the pods suite, as a loaded node reports them."""
    return synthetic_schedules(sc, random.Random(seed), share=1.0)


# --------------------------------------------------------------------------------------
# All cases


# Host facts for the suites that take them from the host (``load_suite`` detects them): fixed, so the
# cases do not depend on the machine (a two-NUMA-node host, cgroup v2, the local cluster's MemTotal).
HOST_FACTS: dict[str, Any] = {
    "name": "golden",
    "memoryCapacity": 24684092 * 1024,
    "cpus": 8,
    "cgroupVersion": 2,
    "swap": 0,
    "swapController": True,
    "kernel": "6.1.0",
    "pageSize": 4096,
    "numaNodes": [
        {
            "id": 0,
            "memory": 12342046 * 1024,
            "hugepages": {"2Mi": 0, "1Gi": 0},
            "cpus": [0, 1, 2, 3],
            "distances": [10, 20],
        },
        {
            "id": 1,
            "memory": 12342046 * 1024,
            "hugepages": {"2Mi": 0, "1Gi": 0},
            "cpus": [4, 5, 6, 7],
            "distances": [20, 10],
        },
    ],
    "pidMax": 4194304,
    "threadsMax": 192735,
}


def load_suite_fixed_host(path: Path) -> Any:
    """``load_suite`` with ``HOST_FACTS`` in place of the detected ones."""
    from unittest import mock

    import harness.config.suite as suite_mod

    with mock.patch.object(suite_mod, "detect_local_facts", lambda: dict(HOST_FACTS)):
        return load_suite(path)


def suite_cases() -> Iterator[tuple[str, Callable[[], str]]]:
    for path in sorted((REPO / "suites").glob("*.yaml")):
        try:
            suite = load_suite_fixed_host(path)
        except Exception:
            continue  # does not load (a pod file or profile missing): not a case
        for sc in suite.scenarios:
            for kubelet in (True, False):

                def run(sc: Scenario = sc, kubelet: bool = kubelet) -> str:
                    try:
                        sized = size_workloads(sc)
                    except Exception as exc:
                        return canonical({"error": f"{type(exc).__name__}: {exc}"})
                    return predict_text(sized, {"kubelet": kubelet})

                yield f"suite:{path.name}:{sc.name}:{'kubelet' if kubelet else 'kernel'}", run


def random_cases(count: int, seed0: int = 1000) -> Iterator[tuple[str, Callable[[], str]]]:
    for seed in range(seed0, seed0 + count):

        def run(seed: int = seed) -> str:
            try:
                sc, kw = random_scenario(seed)
            except Exception as exc:
                return canonical({"invalid": f"{type(exc).__name__}: {exc}"})
            return predict_text(sc, kw)

        yield f"random:{seed}", run


def pods_cases() -> Iterator[tuple[str, Callable[[], str]]]:
    def planned() -> str:
        return predict_text(pods_scenario(), {"kubelet": True})

    def as_run() -> str:
        sc = pods_scenario()
        rng = random.Random(0)
        return predict_text(
            sc,
            {
                "kubelet": True,
                "schedules": pods_schedules(sc),
                "housekeeping": recorded_housekeeping(sc, rng),
            },
        )

    yield "pods110:planned", planned
    yield "pods110:as-run", as_run
