"""QoS class and effective pod requests/limits (spec §2.1–2.3)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.config.kubelet import KubeletConfiguration
from harness.config.pod import Pod
from harness.model.qos import pod_qos
from harness.model.resources import (
    container_limit_bytes,
    container_request_bytes,
    limits_declared,
    pod_limits,
    pod_requests,
)

Mi, Gi = 1 << 20, 1 << 30
DEFAULT = KubeletConfiguration()


def ctr(name: str, req: dict[str, Any] | None = None, lim: dict[str, Any] | None = None, **kw: Any) -> dict:
    return {"name": name, "resources": {"requests": req or {}, "limits": lim or {}}, **kw}


def mkpod(containers: list[dict], init: list[dict] | None = None, **spec: Any) -> Pod:
    status = spec.pop("status", None)
    d: dict[str, Any] = {
        "metadata": {"name": "p"},
        "spec": {"containers": containers, "initContainers": init or [], **spec},
    }
    if status:
        d["status"] = status
    return Pod.model_validate(d)


def test_no_resources_is_besteffort() -> None:
    assert pod_qos(mkpod([ctr("a"), ctr("b")]), DEFAULT, 34) == "BestEffort"


def test_limits_only_is_guaranteed_because_the_api_defaults_requests() -> None:
    """SetDefaults_Pod copies limits into missing requests, so cpu+memory limits alone → Guaranteed."""
    pod = mkpod([ctr("a", lim={"cpu": "1", "memory": "1Gi"})])
    assert pod_qos(pod, DEFAULT, 30) == "Guaranteed"
    assert container_request_bytes(pod, "a") == Gi


def test_guaranteed_needs_both_cpu_and_memory_limits_in_every_container() -> None:
    """§2.1 step 2: a container with only a memory limit makes the pod Burstable."""
    pod = mkpod([ctr("a", lim={"cpu": "1", "memory": "1Gi"}), ctr("b", lim={"memory": "1Gi"})])
    assert pod_qos(pod, DEFAULT, 30) == "Burstable"


def test_requests_below_limits_is_burstable() -> None:
    pod = mkpod([ctr("a", req={"cpu": "500m", "memory": "1Gi"}, lim={"cpu": "1", "memory": "1Gi"})])
    assert pod_qos(pod, DEFAULT, 30) == "Burstable"


def test_init_containers_count_for_qos() -> None:
    """Init containers are part of the QoS computation: an init container without resources next to a
    Guaranteed main container makes the pod Burstable."""
    pod = mkpod([ctr("a", lim={"cpu": "1", "memory": "1Gi"})], init=[ctr("i")])
    assert pod_qos(pod, DEFAULT, 30) == "Burstable"


def test_zero_quantities_do_not_count() -> None:
    """Only strictly positive quantities count: explicit zeros stay BestEffort."""
    pod = mkpod([ctr("a", req={"cpu": "0", "memory": "0"})])
    assert pod_qos(pod, DEFAULT, 30) == "BestEffort"


def test_non_cpu_memory_resources_are_ignored_for_qos() -> None:
    pod = mkpod([ctr("a", req={"ephemeral-storage": "1Gi"})])
    assert pod_qos(pod, DEFAULT, 30) == "BestEffort"


def test_status_qos_class_is_honoured() -> None:
    """GetPodQOS returns status.qosClass when set (frozen across in-place resize)."""
    pod = mkpod([ctr("a")], status={"qosClass": "Burstable"})
    assert pod_qos(pod, DEFAULT, 34) == "Burstable"


def test_pod_level_resources_decide_qos_when_gate_on() -> None:
    """§2.2: with PodLevelResources (β on in 1.34) only pod-level resources count; in 1.33 (α off) the
    field is dropped and the resource-less containers make the pod BestEffort."""
    pod = mkpod([ctr("a")], resources={"limits": {"cpu": "1", "memory": "1Gi"}})
    assert pod_qos(pod, DEFAULT, 34) == "Guaranteed"
    assert pod_qos(pod, DEFAULT, 33) == "BestEffort"
    gate_on = KubeletConfiguration.model_validate({"featureGates": {"PodLevelResources": True}})
    assert pod_qos(pod, gate_on, 33) == "Guaranteed"
    # pod-level memory only: Burstable
    pod2 = mkpod([ctr("a", lim={"cpu": "1", "memory": "1Gi"})], resources={"requests": {"memory": "1Gi"}})
    assert pod_qos(pod2, DEFAULT, 34) == "Burstable"


# ---- §2.3 effective requests ---------------------------------------------------------------


def sidecar_pod() -> Pod:
    """regular: 100Mi + 200Mi; init order: sidecar s1 50Mi, init i1 500Mi, sidecar s2 30Mi, init i2 100Mi."""
    return mkpod(
        [ctr("a", req={"memory": "100Mi"}), ctr("b", req={"memory": "200Mi"})],
        init=[
            ctr("s1", req={"memory": "50Mi"}, restartPolicy="Always"),
            ctr("i1", req={"memory": "500Mi"}),
            ctr("s2", req={"memory": "30Mi"}, restartPolicy="Always"),
            ctr("i2", req={"memory": "100Mi"}),
        ],
    )


def test_sidecar_formula() -> None:
    """KEP-753: regular+sidecars = 300+50+30 = 380Mi; init peaks: s1→50, i1→500+50=550, s2→80, i2→100+80=180;
    pod request = max(380, 550) = 550Mi."""
    assert pod_requests(sidecar_pod(), DEFAULT, 30)["memory"] == 550 * Mi


def test_without_sidecar_gate_restartable_inits_are_plain_inits() -> None:
    """1.28: SidecarContainers is alpha/off, the API server drops restartPolicy: max(300, 500) = 500Mi."""
    assert pod_requests(sidecar_pod(), DEFAULT, 28)["memory"] == 500 * Mi


def test_overhead_added_to_requests_and_only_to_nonzero_limits() -> None:
    pod = mkpod(
        [ctr("a", req={"cpu": "100m", "memory": "100Mi"}, lim={"memory": "200Mi"})],
        overhead={"cpu": "250m", "memory": "64Mi"},
    )
    assert pod_requests(pod, DEFAULT, 30) == {"cpu": 350, "memory": 164 * Mi}
    # PodLimits adds overhead only to limits that exist and are non-zero: no cpu limit appears
    assert pod_limits(pod, DEFAULT, 30) == {"memory": 264 * Mi}


def test_pod_level_requests_replace_container_aggregate() -> None:
    pod = mkpod(
        [ctr("a", req={"memory": "100Mi"}), ctr("b", req={"memory": "100Mi"})],
        resources={"requests": {"memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    )
    assert pod_requests(pod, DEFAULT, 34)["memory"] == Gi
    assert pod_limits(pod, DEFAULT, 34)["memory"] == 2 * Gi
    assert pod_requests(pod, DEFAULT, 33)["memory"] == 200 * Mi


def test_cpu_requests_are_rounded_up_to_millicores_after_summing() -> None:
    """Quantities are summed exactly then MilliValue() rounds up: 0.0005 + 0.0005 cpu = 1m, not 2m."""
    pod = mkpod([ctr("a", req={"cpu": "0.0005"}), ctr("b", req={"cpu": "0.0005"})])
    assert pod_requests(pod, DEFAULT, 30)["cpu"] == 1


def test_limits_declared_follow_container_fn_semantics() -> None:
    """ResourceConfigForPod: one container without a memory limit → memory limit not declared; a
    pod-level limit (gate on) declares it again."""
    pod = mkpod([ctr("a", lim={"memory": "1Gi"}), ctr("b", req={"memory": "1Gi"})])
    assert limits_declared(pod, DEFAULT, 30) == (False, False)
    pod_level = mkpod([ctr("a"), ctr("b")], resources={"limits": {"memory": "1Gi"}})
    assert limits_declared(pod_level, DEFAULT, 34) == (False, True)


def test_container_limit_bytes() -> None:
    pod = mkpod([ctr("a", lim={"memory": "1500Mi"})])
    assert container_limit_bytes(pod, "a") == 1500 * Mi
    with pytest.raises(KeyError):
        container_limit_bytes(pod, "nope")
