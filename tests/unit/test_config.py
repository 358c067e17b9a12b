"""Loading and validating profiles, node facts, pods and suites."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import load_profile, load_suite, parse_pod, parse_profile
from harness.config.durations import parse_duration
from harness.config.node import NodeFacts, parse_kubelet_version, parse_numa_memory
from harness.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
KC = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration"}


def test_eviction_hard_defaults_only_when_key_absent() -> None:
    """defaults.go: EvictionHard is defaulted only when nil; a user map replaces it whole."""
    assert parse_profile(dict(KC)).eviction_hard_effective(33) == {
        "memory.available": "100Mi",
        "nodefs.available": "10%",
        "nodefs.inodesFree": "5%",
        "imagefs.available": "15%",
    }
    only = parse_profile({**KC, "evictionHard": {"memory.available": "500Mi"}})
    assert only.eviction_hard_effective(33) == {"memory.available": "500Mi"}


def test_merge_default_eviction_settings_needs_134() -> None:
    cfg = parse_profile(
        {**KC, "evictionHard": {"memory.available": "500Mi"}, "mergeDefaultEvictionSettings": True}
    )
    assert cfg.eviction_hard_effective(34)["nodefs.available"] == "10%"
    assert cfg.eviction_hard_effective(34)["memory.available"] == "500Mi"
    assert "nodefs.available" not in cfg.eviction_hard_effective(33)


def test_enforce_node_allocatable_nil_vs_empty() -> None:
    """Go distinguishes a nil slice (defaulted to [pods]) from an empty one (kept empty)."""
    assert parse_profile(dict(KC)).enforce_node_allocatable_effective == ["pods"]
    assert parse_profile({**KC, "enforceNodeAllocatable": []}).enforce_node_allocatable_effective == []
    assert parse_profile({**KC, "enforceNodeAllocatable": ["none"]}).enforce_node_allocatable_effective == []


def test_unknown_field_names_file_and_field_with_suggestion() -> None:
    with pytest.raises(InputError) as e:
        parse_profile({**KC, "evictonHard": {}}, "lab.yaml")
    assert str(e.value) == "lab.yaml: evictonHard: unknown field (did you mean 'evictionHard'?)"


def test_non_memory_fields_are_accepted_and_kept() -> None:
    cfg = parse_profile({**KC, "port": 10250, "authentication": {"anonymous": {"enabled": False}}})
    assert cfg.to_yaml_dict()["port"] == 10250
    assert cfg.to_yaml_dict()["authentication"] == {"anonymous": {"enabled": False}}


@pytest.mark.parametrize(
    ("patch", "field", "reason"),
    [
        ({"kubeReserved": {"memory": "1Gx"}}, "kubeReserved", "invalid quantity"),
        ({"memoryManagerPolicy": "Dynamic"}, "memoryManagerPolicy", "Input should be"),
        ({"enforceNodeAllocatable": ["pods", "none"]}, "enforceNodeAllocatable", "'none' cannot be combined"),
        (
            {"evictionPressureTransitionPeriod": "5 minutes"},
            "evictionPressureTransitionPeriod",
            "invalid duration",
        ),
        ({"enforceNodeAllocatable": ["pods", "kube-reserved"]}, None, "kubeReservedCgroup is empty"),
        ({"apiVersion": "kubelet.config.k8s.io/v1"}, "apiVersion", "expected"),
    ],
)
def test_invalid_profiles(patch: dict, field: str | None, reason: str) -> None:
    with pytest.raises(InputError) as e:
        parse_profile({**KC, **patch}, "p.yaml")
    assert e.value.file == "p.yaml"
    assert e.value.field == field
    assert reason in e.value.reason


def test_profile_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        load_profile(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [unclosed\n")
    with pytest.raises(InputError, match=r"bad.yaml: invalid YAML: line \d+"):
        load_profile(bad)


def test_shipped_profiles_load() -> None:
    for p in sorted((ROOT / "profiles").glob("*.yaml")):
        load_profile(p)


@pytest.mark.parametrize(
    ("text", "seconds"), [("10s", 10), ("5m", 300), ("1m30s", 90), ("100ms", 0.1), ("0", 0), (2, 2.0)]
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_bad_duration() -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("10 s")


def test_kubelet_versions() -> None:
    assert parse_kubelet_version("v1.33.2") == 33
    assert parse_kubelet_version("1.28") == 28
    with pytest.raises(ValueError, match="outside the modelled range"):
        parse_kubelet_version("1.27")


def test_node_facts_default_single_numa_and_hugepages() -> None:
    f = NodeFacts.model_validate(
        {
            "memoryCapacity": "16Gi",
            "numaNodes": [{"id": 0, "memory": "8Gi", "hugepages": {"2Mi": 512}}, {"id": 1, "memory": "8Gi"}],
        }
    )
    assert f.cgroup_version == 2 and f.kubelet_minor == 34
    assert f.hugepages_capacity == {"hugepages-2Mi": 1 << 30}
    g = NodeFacts.model_validate({"memoryCapacity": "4Gi"})
    assert [n.memory_bytes for n in g.numa_nodes] == [4 << 30]
    assert parse_numa_memory("0=1Gi,1=2Gi")[1] == {"id": 1, "memory": 2 << 30}


def test_pod_critical_and_priority() -> None:
    pod = parse_pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {"priorityClassName": "system-node-critical", "containers": [{"name": "c"}]},
        }
    )
    assert pod.effective_priority == 2_000_001_000
    assert pod.is_critical and pod.is_node_critical
    static = parse_pod(
        {
            "metadata": {"name": "s", "annotations": {"kubernetes.io/config.source": "file"}},
            "spec": {"containers": [{"name": "c"}]},
        }
    )
    assert static.is_static and static.is_critical and not static.is_node_critical


def test_pod_errors_name_field() -> None:
    with pytest.raises(InputError) as e:
        parse_pod(
            {
                "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "x"}}}]},
            },
            "pod.yaml",
        )
    assert e.value.field == "spec.containers[0].resources.limits"


def test_local_suite_loads_and_resolves_profile() -> None:
    suite = load_suite(ROOT / "suites" / "local.yaml")
    assert {s.id for s in suite.scenarios} >= {"S1", "S3", "S4", "S5", "S6"}
    for sc in suite.scenarios:
        assert sc.profile is not None and sc.node is not None
        assert sc.node.memory_capacity_bytes == 1 << 30


def test_suite_errors(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
    )
    s = tmp_path / "s.yaml"
    s.write_text(
        "apiVersion: harness/v1\nkind: Suite\nname: x\nprofile: p.yaml\nscenarios:\n"
        "  - name: a\n    workloads:\n      - name: w\n        leak: {chunk: 8Mx}\n"
    )
    with pytest.raises(InputError) as e:
        load_suite(s)
    assert e.value.field == "scenarios[0].workloads[0].leak.chunk"
    s.write_text(
        "apiVersion: harness/v1\nkind: Suite\nname: x\nprofile: nothere.yaml\nscenarios:\n"
        "  - name: a\n    workloads:\n      - name: w\n"
    )
    with pytest.raises(InputError, match=r"nothere\.yaml: file not found"):
        load_suite(s)


def test_an_id_selects_every_scenario_that_carries_it() -> None:
    # suites/vm-kubelet.yaml has two S9 and two S10 variants; `--scenario S10` ran only the first
    from harness.run import _scenarios

    suite = load_suite(Path(__file__).resolve().parents[2] / "suites" / "vm-kubelet.yaml")
    assert [s.name for s in suite.select("S10")] == ["s10-single-numa-node", "s10-no-numa-alignment"]
    assert [s.name for s in suite.select("s9-static-pinning")] == ["s9-static-pinning"]
    picked = _scenarios(suite, "kubernetes", ["S10", "s10-single-numa-node", "S1"])
    assert [s.name for s in picked] == ["s10-single-numa-node", "s10-no-numa-alignment", "s1-container-limit"]
