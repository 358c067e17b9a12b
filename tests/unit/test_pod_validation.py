"""The API server's pod-level resources validation (model.validation) against the refusals the real
1.34.2 API server gave the fuzz (stop 27, seed 34), and the fuzz's use of it (pure)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.config.kubelet import KubeletConfiguration, load_profile
from harness.config.node import NodeFacts
from harness.config.pod import parse_pod
from harness.config.suite import Scenario, Workload
from harness.errors import HarnessError
from harness.fuzz.compare import Admission, compare_admission, refused_causes
from harness.fuzz.generate import generate_pods
from harness.fuzz.plan import plan_batches, predict_admissions
from harness.model.resources import get_resource_request
from harness.model.validation import API_REFUSED, pod_resource_errors, refused_fields
from harness.scenario.resolve import refuse_invalid_pods

PROFILE = KubeletConfiguration()
GI = 1 << 30

# what the 1.34.2 API server answered for fuzz-34-0038 (its body, shortened to the fields used)
BODY_0038 = json.dumps(
    {
        "kind": "Status",
        "status": "Failure",
        "message": 'Pod "fuzz-34-0038" is invalid: spec.resources.requests[memory]: Invalid value: "129Mi": '
        "must be greater than or equal to aggregate container requests of 256Mi",
        "reason": "Invalid",
        "details": {
            "name": "fuzz-34-0038",
            "kind": "Pod",
            "causes": [
                {
                    "reason": "FieldValueInvalid",
                    "message": 'Invalid value: "129Mi": must be greater than or equal to aggregate container '
                    "requests of 256Mi",
                    "field": "spec.resources.requests[memory]",
                }
            ],
        },
        "code": 422,
    }
)


def _pod(
    containers: list[dict[str, Any]], resources: dict[str, Any] | None, init: list[Any] | None = None
) -> Any:
    spec: dict[str, Any] = {"containers": containers}
    if resources is not None:
        spec["resources"] = resources
    if init:
        spec["initContainers"] = init
    return parse_pod({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}, "<test>")


def _c(name: str, req: str | None = None, lim: str | None = None, **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if req:
        res["requests"] = {"memory": req}
    if lim:
        res["limits"] = {"memory": lim}
    return {"name": name, "image": "i", "resources": res, **extra}


def test_a_pod_level_request_below_the_containers_aggregate_is_refused_as_the_api_server_does() -> None:
    pod = _pod([_c("a", "128Mi"), _c("b", "128Mi")], {"requests": {"memory": "129Mi"}})
    errors = pod_resource_errors(pod, PROFILE, 34)
    assert [e.field for e in errors] == ["spec.resources.requests[memory]"]
    assert f"{errors[0].field}: {errors[0].reason}" == (
        'spec.resources.requests[memory]: Invalid value: "129Mi": must be greater than or equal to aggregate '
        "container requests of 268435456"
    )
    assert refused_fields(errors) == refused_causes(BODY_0038)
    # the same pod at the aggregate, or above it, is valid
    assert (
        pod_resource_errors(
            _pod([_c("a", "128Mi"), _c("b", "128Mi")], {"requests": {"memory": "256Mi"}}), PROFILE, 34
        )
        == []
    )


def test_the_aggregate_follows_the_sidecar_formula_and_limits_default_requests() -> None:
    # a container with only a limit requests it (defaults.go); a sidecar adds to the regular containers;
    # a regular init container counts only as the max with the others: 100 + 50 = 150 Mi, not 400 Mi
    pod = _pod(
        [_c("a", lim="100Mi")],
        {"requests": {"memory": "150Mi"}},
        init=[_c("side", "50Mi", restartPolicy="Always"), _c("init", "100Mi")],
    )
    assert pod_resource_errors(pod, PROFILE, 34) == []
    pod = _pod(
        [_c("a", lim="100Mi")],
        {"requests": {"memory": "149Mi"}},
        init=[_c("side", "50Mi", restartPolicy="Always"), _c("init", "100Mi")],
    )
    assert [e.field for e in pod_resource_errors(pod, PROFILE, 34)] == ["spec.resources.requests[memory]"]
    # an init container larger than the regular ones with their sidecars sets the aggregate
    pod = _pod([_c("a", "64Mi")], {"requests": {"memory": "100Mi"}}, init=[_c("init", "200Mi")])
    assert [e.reason for e in pod_resource_errors(pod, PROFILE, 34)] == [
        'Invalid value: "100Mi": must be greater than or equal to aggregate container requests of 209715200'
    ]


def test_a_regular_containers_limit_above_the_pod_limit_is_refused_an_init_containers_is_not() -> None:
    pod = _pod([_c("a", "64Mi", "300Mi"), _c("b", "64Mi", "100Mi")], {"limits": {"memory": "256Mi"}})
    errors = pod_resource_errors(pod, PROFILE, 34)
    assert [e.field for e in errors] == ["spec.resources.containers[0][memory].limits"]
    pod = _pod([_c("a", "64Mi", "100Mi")], {"limits": {"memory": "256Mi"}}, init=[_c("i", "64Mi", "300Mi")])
    assert pod_resource_errors(pod, PROFILE, 34) == []
    # a pod-level request defaulted from the containers never breaks the aggregate rule
    pod = _pod([_c("a", "200Mi")], {"limits": {"memory": "256Mi"}})
    assert pod_resource_errors(pod, PROFILE, 34) == []


def test_where_the_gate_is_off_the_api_server_drops_the_field_and_refuses_nothing() -> None:
    pod = _pod([_c("a", "128Mi"), _c("b", "128Mi")], {"requests": {"memory": "129Mi"}})
    assert pod_resource_errors(pod, PROFILE, 33) == []  # alpha in 1.33: off by default
    off = KubeletConfiguration.model_validate({"featureGates": {"PodLevelResources": False}})
    assert pod_resource_errors(pod, off, 34) == []
    assert pod_resource_errors(_pod([_c("a", "128Mi")], None), PROFILE, 34) == []


def test_a_refused_pod_takes_nothing_from_its_batch_mates() -> None:
    """fuzz-34-0023: the kubelet counted 1000m used where the model counted 1625m, because the model
    had admitted pods the API server refused."""
    alloc = {"cpu": 2000, "memory": 4 * GI, "pods": 110}
    refused = _pod(
        [{**_c("a", "128Mi", "128Mi"), "resources": {"requests": {"memory": "128Mi", "cpu": "625m"}}}],
        {"requests": {"memory": "64Mi"}},
    )
    first = _pod(
        [{"name": "a", "image": "i", "resources": {"requests": {"cpu": "1", "memory": "64Mi"}}}], None
    )
    big = _pod(
        [{"name": "a", "image": "i", "resources": {"requests": {"cpu": "2500m", "memory": "64Mi"}}}], None
    )
    out = predict_admissions([first, refused, big], alloc, PROFILE, 34)
    assert out[0].admitted and out[1] == Admission(False, API_REFUSED, "spec.resources.requests[memory]")
    assert not out[2].admitted and "used: 1000," in out[2].message
    # the observed refusal compares equal on its fields; another field is a difference
    assert compare_admission(out[1], Admission(False, API_REFUSED, refused_causes(BODY_0038))) == []
    assert compare_admission(out[1], Admission(False, API_REFUSED, "spec.resources.requests")) != []
    # and it never opens a new batch
    assert plan_batches([first, refused, first], alloc, PROFILE, 34, max_pods=10) == [[0, 1, 2]]
    assert refused_causes("not json") == "not json"


def test_the_fuzz_draws_mostly_valid_pod_level_resources_and_some_the_api_server_refuses() -> None:
    pods = [fp for seed in (1, 34) for fp in generate_pods(seed, 300, prefix="f", pod_level_resources=True)]
    level = [fp for fp in pods if "pod-level" in fp.features]
    refused = [fp for fp in level if "api-refused" in fp.features]
    assert len(level) >= 60 and 5 <= len(refused) <= len(level) // 3
    for fp in level:
        assert bool(pod_resource_errors(fp.pod(), PROFILE, 34)) == ("api-refused" in fp.features)
    fields = {e.field for fp in refused for e in pod_resource_errors(fp.pod(), PROFILE, 34)}
    assert "spec.resources.requests[memory]" in fields
    assert any(f.startswith("spec.resources.containers[") for f in fields)


def test_a_suite_pod_the_api_server_would_refuse_stops_its_scenario_naming_the_field() -> None:

    w = Workload.model_validate({"name": "lvl", "leak": {"chunk": "1Mi", "interval": "100ms", "max": "1Mi"}})
    w.pod_manifest = _pod([_c("a", "128Mi"), _c("b", "128Mi")], {"requests": {"memory": "129Mi"}})
    sc = Scenario(name="s", timeout="5s", workloads=[w])
    sc.profile = PROFILE
    sc.node = NodeFacts.model_validate({"memoryCapacity": 8 * GI, "cpus": 2, "kubeletVersion": "1.34"})
    with pytest.raises(
        HarnessError, match=r"workload lvl: .*spec\.resources\.requests\[memory\]: Invalid value: \"129Mi\""
    ):
        refuse_invalid_pods(sc)
    sc.node = NodeFacts.model_validate({"memoryCapacity": 8 * GI, "cpus": 2, "kubeletVersion": "1.33"})
    refuse_invalid_pods(sc)  # the gate is off in 1.33: the field is dropped, nothing refused


FUZZ_35_0059 = Path(__file__).resolve().parents[1] / "fixtures" / "fuzz-35-0059"


def _fuzz_pod(index: int) -> Any:
    """One pod of the seed-35 reproducer (``harness fuzz --pods 200 --seed 35``, 1.34.2)."""
    return parse_pod(yaml.safe_load((FUZZ_35_0059 / f"fuzz-35-{index:04d}.yaml").read_text()), str(index))


def test_preemption_counts_running_pods_as_the_1_34_kubelet_does() -> None:
    """A cluster-critical pod with pod-level resources is refused after preemption finds too little:
    from 1.34 the kubelet counts a batch-mate's sidecar in its request (GetResourceRequest calls
    PodRequests), up to 1.33 it did not. The model before the fix said cpu 2575 and memory 1086066688
    here: 100m and 64 MiB more, the sidecar's."""
    profile = load_profile(FUZZ_35_0059 / "profile.yaml")
    pods = [_fuzz_pod(i) for i in (47, 50, 53, 56, 59)]
    alloc = {"memory": 3008622592, "cpu": 1750, "pods": 110}  # the node's and the model's, fuzz.json
    out = predict_admissions(pods, alloc, profile, 34)
    assert [a.admitted for a in out] == [True, True, True, True, False]
    # what the real 1.34.2 kubelet answered (harness fuzz --pods 200 --seed 35, profile 2)
    left = "[(res: cpu, q: 2475), (res: memory, q: 1018957824), ]"
    assert out[-1].message.endswith("no set of running pods found to reclaim resources: " + left)


def test_get_resource_request_by_version_sidecars_and_pod_level() -> None:
    def cpu_and_memory(pod: Any, minor: int) -> tuple[int, int]:
        return get_resource_request(pod, "cpu", PROFILE, minor), get_resource_request(
            pod, "memory", PROFILE, minor
        )

    side = _fuzz_pod(50)
    assert cpu_and_memory(side, 33) == (125, 200 << 20)
    assert cpu_and_memory(side, 34) == (225, 264 << 20)
    level = _fuzz_pod(59)
    # pod-level requests name memory only: SkipContainerLevelResources leaves cpu at 0
    assert get_resource_request(level, "memory", PROFILE, 34) == 3073 << 20
    assert get_resource_request(level, "cpu", PROFILE, 34) == 0
    off = KubeletConfiguration.model_validate({"featureGates": {"PodLevelResources": False}})
    assert get_resource_request(level, "cpu", off, 34) == 4125  # c0 4000m + the sidecar's 125m
