"""Bad input is one line naming the file and the field, never a traceback or a silent default."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import quantity
from harness.config.kubelet import load_profile
from harness.config.pod import load_pods
from harness.config.suite import load_suite
from harness.errors import InputError

PROFILE_HEAD = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"


def _alias_bomb(levels: int = 9) -> str:
    """A "billion laughs" document: level n is a list of ten level n-1 aliases."""
    lines = ['a0: &a0 ["lol"]']
    for n in range(1, levels + 1):
        lines.append(f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_in_a_passthrough_kubelet_field_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "bomb.yaml"
    body = "".join("  " + line + "\n" for line in _alias_bomb().splitlines())
    p.write_text(PROFILE_HEAD + "featureGates: {}\nlogging:\n" + body)
    with pytest.raises(InputError) as err:
        load_profile(p)
    msg = str(err.value)
    assert str(p) in msg and "aliases are not allowed" in msg and "line " in msg
    assert "\n" not in msg


def test_a_single_alias_is_refused_too(tmp_path: Path) -> None:
    p = tmp_path / "alias.yaml"
    p.write_text(PROFILE_HEAD + "kubeReserved: &r {memory: 1Gi}\nsystemReserved: *r\n")
    with pytest.raises(InputError, match=r"alias\.yaml: invalid YAML: line 4, column 17: YAML aliases"):
        load_profile(p)


def test_non_utf8_file_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "latin1.yaml"
    p.write_bytes(PROFILE_HEAD.encode() + "# caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError) as err:
        load_profile(p)
    assert str(err.value) == f"{p}: not UTF-8 text: byte 0xe9 at line 3 (offset {len(PROFILE_HEAD) + 5})"


@pytest.mark.parametrize("bad", ["inf", "Infinity", "1e400", "99999Ei", float("nan"), float("inf")])
def test_non_finite_and_absurd_quantities_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="invalid quantity"):
        quantity.parse(bad)  # type: ignore[arg-type]


def test_negative_byte_count_is_refused() -> None:
    with pytest.raises(ValueError, match="must be greater than or equal to 0"):
        quantity.to_bytes("-1Gi")


def _pod(tmp_path: Path, container: str) -> Path:
    p = tmp_path / "pod.yaml"
    p.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
        f"  - name: c\n    image: i\n{container}"
    )
    return p


def test_negative_request_is_refused_with_the_api_servers_message(tmp_path: Path) -> None:
    # before: accepted, and the model gave the container oom_score_adj 1062
    p = _pod(tmp_path, "    resources: {requests: {memory: -1Gi}}\n")
    with pytest.raises(InputError) as err:
        load_pods(p)
    assert str(err.value) == (
        f"{p}: spec.containers[0].resources.requests: quantity for memory '-1Gi': "
        "must be greater than or equal to 0"
    )


def test_misspelt_pod_field_is_an_error_with_did_you_mean(tmp_path: Path) -> None:
    # before: accepted, and the pod was BestEffort
    p = _pod(tmp_path, "    resorces: {requests: {memory: 1Gi}, limits: {memory: 1Gi}}\n")
    with pytest.raises(InputError) as err:
        load_pods(p)
    assert str(err.value) == f"{p}: spec.containers[0].resorces: unknown field (did you mean 'resources'?)"


def test_unknown_fields_are_found_deep_in_fields_the_model_does_not_read(tmp_path: Path) -> None:
    p = _pod(tmp_path, "    livenessProbe: {exec: {comand: [true]}}\n    ports: [{containerPrt: 80}]\n")
    with pytest.raises(InputError) as err:
        load_pods(p)
    assert "spec.containers[0].livenessProbe.exec.comand: unknown field (did you mean 'command'?)" in str(
        err.value
    )
    assert "spec.containers[0].ports[0].containerPrt: unknown field (did you mean 'containerPort'?)" in str(
        err.value
    )


def test_request_above_limit_is_refused_with_the_api_servers_message(tmp_path: Path) -> None:
    p = _pod(tmp_path, "    resources: {requests: {memory: 2Gi}, limits: {memory: 1Gi}}\n")
    with pytest.raises(InputError) as err:
        load_pods(p)
    # k8s: pkg/apis/core/validation/validation.go ValidateResourceRequirements
    assert str(err.value) == (
        f'{p}: spec.containers[0].resources.requests[memory]: Invalid value: "2Gi": '
        "must be less than or equal to memory limit of 1Gi"
    )


def test_every_error_of_a_pod_file_is_listed(tmp_path: Path) -> None:
    p = tmp_path / "pod.yaml"
    p.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labls: {a: b}}\nspec:\n  containers:\n"
        "  - name: c\n    image: i\n    resorces: {}\n"
        "  - name: d\n    image: i\n    resources: {requests: {memory: 2Gi, cpu: '-1'}, limits: {memory: 1Gi}}\n"
    )
    with pytest.raises(InputError) as err:
        load_pods(p)
    lines = str(err.value).splitlines()
    assert lines == [
        f"{p}: 4 errors",
        f"{p}: metadata.labls: unknown field (did you mean 'labels'?)",
        f"{p}: spec.containers[0].resorces: unknown field (did you mean 'resources'?)",
        f"{p}: spec.containers[1].resources.requests: quantity for cpu '-1': must be greater than or equal to 0",
        f'{p}: spec.containers[1].resources.requests[memory]: Invalid value: "2Gi": '
        "must be less than or equal to memory limit of 1Gi",
    ]


def test_suite_workload_request_above_limit_names_the_workload(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    p = tmp_path / "suite.yaml"
    p.write_text(
        f"apiVersion: harness/v1\nkind: Suite\nname: t\nprofile: {root}/profiles/local.yaml\n"
        "node: {memoryCapacity: 1Gi}\nscenarios:\n  - name: s\n    workloads:\n"
        "      - name: w\n        placement: pod\n"
        "        resources: {requests: {memory: 2Gi}, limits: {memory: 1Gi}}\n"
        "      - name: v\n        placement: pod\n        resources: {requests: {memory: -1Mi}}\n"
    )
    with pytest.raises(InputError) as err:
        load_suite(p, detect_host=False)
    msg = str(err.value)
    assert f"{p}: scenarios[0].workloads[0].resources: requests[memory]: " in msg
    assert "must be less than or equal to memory limit of 1Gi" in msg
    assert "scenarios[0].workloads[1].resources.requests: quantity for memory '-1Mi'" in msg
