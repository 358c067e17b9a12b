"""Admission against allocatable, critical-pod preemption, init containers' values and the OCI
runtime's cpu.weight (``model.fit``, ``harness model pod``, ``model.cgroups.container_cpu_weight``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from harness.cli import cli
from harness.config.kubelet import parse_profile
from harness.config.node import NodeFacts
from harness.config.pod import parse_pod
from harness.model import cgroups
from harness.model.fit import admit_fit, insufficient, pods_to_preempt
from harness.model.predict import predict_scenario
from tests.unit.test_predict import scenario

ROOT = Path(__file__).resolve().parents[2]
MI = 1 << 20
PROFILE = parse_profile({"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration"})


def pod(
    name: str, mem: str | None = None, prio: int | None = None, limit: bool = False, cls: str = ""
) -> Any:
    res: dict[str, Any] = {}
    if mem:
        res = {"requests": {"memory": mem}}
        if limit:
            res = {"requests": {"memory": mem, "cpu": "100m"}, "limits": {"memory": mem, "cpu": "100m"}}
    spec: dict[str, Any] = {"containers": [{"name": "c", "resources": res}]}
    if prio is not None:
        spec["priority"] = prio
    if cls:
        spec["priorityClassName"] = cls
    return parse_pod({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})


def test_out_of_memory_message_is_the_kubelets() -> None:
    got = insufficient(pod("p", "3Gi"), [pod("q", "2Gi")], {"memory": 4 << 30, "cpu": 2000}, PROFILE, 33)
    assert [(i.reason, i.message) for i in got] == [
        (
            "OutOfmemory",
            "Node didn't have enough resource: memory, requested: 3221225472, used: 2147483648, capacity: 4294967296",
        )
    ]
    assert got[0].insufficient_amount == 1 << 30


def test_critical_pod_preempts_besteffort_and_burstable_before_guaranteed() -> None:
    """preemption.go getPodsToPreempt: BestEffort then Burstable then Guaranteed; within a class the
    pod nearest to the remaining requirement (the 1Gi Burstable covers 1Gi, not the 512Mi one)."""
    running = [pod("g", "1Gi", limit=True), pod("b1", "512Mi"), pod("b2", "1Gi"), pod("be")]
    crit = pod("crit", "3Gi", cls="system-node-critical")
    res = admit_fit(crit, running, {"memory": 4608 * MI}, PROFILE, 33)  # 1Gi short
    assert res.admitted and [p.name for p in res.preempted] == ["b2"]
    # 2.5Gi short: every Burstable pod, then the Guaranteed one
    res = admit_fit(crit, running, {"memory": 3 << 30}, PROFILE, 33)
    assert res.admitted and [p.name for p in res.preempted] == ["b2", "b1", "g"]
    # a non-critical pod is refused instead
    res = admit_fit(pod("n", "3Gi", prio=100), running, {"memory": 3 << 30}, PROFILE, 33)
    assert not res.admitted and res.reason == "OutOfmemory" and not res.preempted


def test_critical_pod_with_nothing_to_preempt_is_unexpected_admission_error() -> None:
    crit = pod("crit", "5Gi", cls="system-cluster-critical")
    res = admit_fit(crit, [], {"memory": 4 << 30}, PROFILE, 33)
    assert not res.admitted and res.reason == "UnexpectedAdmissionError"
    assert res.message == (
        "Unexpected error while attempting to recover from admission failure: preemption: error finding a set "
        "of pods to preempt: no set of running pods found to reclaim resources: [(res: memory, q: 1073741824), ]"
    )


def test_critical_pods_are_not_preempted() -> None:
    other = pod("other-critical", "2Gi", cls="system-node-critical")
    try:
        pods_to_preempt(pod("crit", "3Gi", cls="system-node-critical"), [other], [], PROFILE, 33)
    except Exception as exc:  # pragma: no cover - an empty requirement needs nothing
        raise AssertionError(exc) from exc
    res = admit_fit(pod("crit", "3Gi", cls="system-node-critical"), [other], {"memory": 4 << 30}, PROFILE, 33)
    assert not res.admitted and "no set of running pods" in res.message


def test_predict_critical_pod_preempts_a_running_pod() -> None:
    sc = scenario(
        [
            {
                "name": "filler",
                "resources": {"requests": {"memory": "2Gi"}},
                "leak": {"chunk": "8Mi", "interval": "100ms", "max": "64Mi"},
            },
            {
                "name": "critical",
                "priorityClassName": "system-node-critical",
                "resources": {"requests": {"memory": "2Gi"}},
                "leak": {"chunk": "8Mi", "interval": "100ms", "max": "64Mi", "startDelay": "2s"},
            },
        ],
        {"kubeReserved": {"memory": "512Mi"}, "evictionHard": {"memory.available": "100Mi"}},
        memory="4Gi",
        timeout="10s",
    )
    p = predict_scenario(sc, kubelet=True)
    f, c = p.workload("filler"), p.workload("critical")
    assert f.outcome == "evicted" and "preempted at admission of critical pod critical" in f.mechanism
    assert f.earliest_s == 2.0
    assert c.outcome == "completed"


def _cli(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout


def test_model_pod_refused_pod_shows_admission_not_cgroups(tmp_path: Path) -> None:
    p = tmp_path / "pod.yaml"
    p.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: big}\nspec:\n  containers:\n  - name: app\n"
        "    resources: {requests: {memory: 20Gi}}\n"
    )
    code, out = _cli(
        "model", "pod", str(ROOT / "profiles" / "default.yaml"), str(p), "--memory-capacity", "16Gi", "--json"
    )
    assert code == 0
    d = json.loads(out)
    assert d["admission"]["admitted"] is False and d["admission"]["reason"] == "OutOfmemory"
    assert "pod_cgroup" not in d and "containers" not in d


def test_model_pod_init_container_has_its_own_limits(tmp_path: Path) -> None:
    p = tmp_path / "pod.yaml"
    p.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  initContainers:\n  - name: init\n"
        "    resources: {limits: {memory: 64Mi, cpu: 200m}}\n  containers:\n  - name: app\n"
        "    resources: {requests: {memory: 1Gi}}\n"
    )
    code, out = _cli(
        "model", "pod", str(ROOT / "profiles" / "default.yaml"), str(p), "--memory-capacity", "16Gi", "--json"
    )
    assert code == 0
    d = json.loads(out)
    init = next(c for c in d["containers"] if c["name"] == "init")
    assert init["init"] and init["memory_limit_bytes"] == 64 * MI and init["cpu_quota_us"] == 20000
    assert d["admission"]["admitted"] is True


def test_cpu_weight_by_oci_runtime_and_version() -> None:
    """1 CPU = 1024 shares: linear 39 (runc < 1.3.2, crun < 1.23), quadratic 100 (runc >= 1.3.2, crun >= 1.23)."""

    def facts(**kw: str) -> NodeFacts:
        return NodeFacts.model_validate({"memoryCapacity": "16Gi", **kw})

    assert cgroups.container_cpu_weight(1024, facts(runcVersion="1.1.5")) == 39
    assert cgroups.container_cpu_weight(1024, facts(runcVersion="1.3.2")) == 100
    assert cgroups.container_cpu_weight(1024, facts(ociRuntime="crun", crunVersion="1.21")) == 39
    assert cgroups.container_cpu_weight(1024, facts(ociRuntime="crun", crunVersion="1.23")) == 100
    code, out = _cli(
        "model",
        "pod",
        str(ROOT / "profiles" / "default.yaml"),
        str(ROOT / "tests" / "fixtures" / "pods" / "burstable.yaml"),
        "--memory-capacity",
        "16Gi",
        "--oci-runtime",
        "runc",
        "--runtime-version",
        "1.3.2",
        "--json",
    )
    assert code == 0
    new = json.loads(out)["containers"]
    code, out = _cli(
        "model",
        "pod",
        str(ROOT / "profiles" / "default.yaml"),
        str(ROOT / "tests" / "fixtures" / "pods" / "burstable.yaml"),
        "--memory-capacity",
        "16Gi",
        "--runtime-version",
        "1.1.5",
        "--json",
    )
    old = json.loads(out)["containers"]
    assert [c["cpu_shares"] for c in new] == [c["cpu_shares"] for c in old]
    assert any(n["cpu_weight"] != o["cpu_weight"] for n, o in zip(new, old, strict=True))


def test_explain_names_what_is_not_modelled() -> None:
    code, out = _cli("model", "explain", str(ROOT / "profiles" / "default.yaml"), "--memory-capacity", "16Gi")
    assert code == 0
    assert "Not modelled" in out and "local-storage eviction" in out and "in-place pod resize" in out
    # and the rule for a whole node running out (seed 003, suites/vm-node-oom.yaml)
    assert "MemTotal - MemAvailable" in out and "recorded stall" in out


def _manifest(name: str, spec: dict[str, Any]) -> Any:
    return parse_pod({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})


def test_preemption_counts_a_running_pod_without_its_sidecar_as_the_kubelet_does() -> None:
    """Found by ``harness fuzz --pods 60 --seed 7 --profiles 2`` on kubelet 1.33.4 (pods fuzz-7-0029,
    -0031, -0037): admission's fit counts a sidecar's request on top of the regular containers
    (1150m, 200M), the preemption's GetResourceRequest does not (1100m, 100M); the kubelet's error named
    q: 210 and 389136640 where the model said 160 and 289136640."""

    def c(name: str, requests: dict[str, str], limits: dict[str, str], **kw: str) -> dict[str, Any]:
        return {"name": name, "resources": {"requests": requests, "limits": limits}, **kw}

    with_sidecar = _manifest(
        "fuzz-7-0029",
        {
            "containers": [c("c0", {"memory": "100M"}, {"cpu": "1"}), c("c1", {}, {"cpu": "100m"})],
            "initContainers": [
                c("side0", {"memory": "100M", "cpu": "50m"}, {"memory": "200Mi"}, restartPolicy="Always")
            ],
        },
    )
    plain = _manifest(
        "fuzz-7-0031", {"containers": [c("c0", {"memory": "0.25Gi", "cpu": "250m"}, {"cpu": "1"})]}
    )
    critical = _manifest(
        "fuzz-7-0037",
        {
            "priorityClassName": "system-node-critical",
            "containers": [
                c("c0", {}, {"memory": "129Mi", "cpu": "1000m"}),
                c("c1", {}, {"memory": "200Mi", "cpu": "1000m"}),
                c("c2", {"memory": "524288Ki", "cpu": "10m"}, {"memory": "0.5Gi", "cpu": "10m"}),
            ],
            "initContainers": [
                c("side0", {}, {"memory": "1.5Gi", "cpu": "50m"}, restartPolicy="Always"),
                c("init1", {"memory": "262144Ki", "cpu": "10m"}, {"memory": "0.25Gi", "cpu": "10m"}),
            ],
        },
    )
    alloc = {"memory": 2203328512, "cpu": 1900}
    assert admit_fit(with_sidecar, [], alloc, PROFILE, 33).admitted
    assert [n.used for n in insufficient(critical, [with_sidecar, plain], alloc, PROFILE, 33)] == [
        1400,
        468435456,
    ]
    r = admit_fit(critical, [with_sidecar, plain], alloc, PROFILE, 33)
    assert not r.admitted and r.reason == "UnexpectedAdmissionError"
    assert r.message.endswith(
        "no set of running pods found to reclaim resources: [(res: cpu, q: 210), (res: memory, q: 389136640), ]"
    )
