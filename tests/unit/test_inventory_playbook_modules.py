"""Pure logic of the playbooks' own modules (playbooks/library) and of the host-facts mapping."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from harness.provision.facts import to_node_facts
from harness.provision.runner import _Events, playbook_roles

LIB = Path(__file__).resolve().parents[2] / "playbooks" / "library"


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, LIB / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


kc = _module("harness_kubelet_config")
nf = _module("harness_node_facts")
cr = _module("harness_cgroup_root")

BASE = {
    "apiVersion": "kubelet.config.k8s.io/v1beta1",
    "kind": "KubeletConfiguration",
    "systemReserved": {"memory": "1Gi"},
}


# --------------------------------------------------------------------------- manager state resets


def test_no_reset_when_only_unrelated_fields_change() -> None:
    new = {**BASE, "maxPods": 50, "evictionSoft": {"memory.available": "300Mi"}}
    assert kc.state_resets(BASE, new) == {}


def test_memory_policy_change_resets_only_memory_state() -> None:
    new = {
        **BASE,
        "memoryManagerPolicy": "Static",
        "reservedMemory": [{"numaNode": 0, "limits": {"memory": "1124Mi"}}],
    }
    r = kc.state_resets(BASE, new)
    assert set(r) == {"memory_manager_state"}
    assert 'memoryManagerPolicy: "None" -> "Static"' in r["memory_manager_state"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"cpuManagerPolicy": "static"}, {"cpu_manager_state"}),
        ({"reservedSystemCPUs": "0"}, {"cpu_manager_state"}),
        ({"kubeReserved": {"cpu": "500m"}}, {"cpu_manager_state"}),
        ({"kubeReserved": {"memory": "256Mi"}}, {"memory_manager_state"}),
        ({"systemReserved": {"memory": "1Gi", "hugepages-2Mi": "4Mi"}}, {"memory_manager_state"}),
        ({"evictionHard": {"memory.available": "200Mi"}}, {"memory_manager_state"}),
        ({"kubeReserved": {"cpu": "1", "memory": "1Gi"}}, {"cpu_manager_state", "memory_manager_state"}),
    ],
)
def test_reservation_changes_reset_the_managers_that_use_them(
    change: dict[str, Any], expected: set[str]
) -> None:
    assert set(kc.state_resets(BASE, {**BASE, **change})) == expected


def test_defaults_are_the_same_as_absent() -> None:
    assert kc.state_resets(BASE, {**BASE, "cpuManagerPolicy": "none", "memoryManagerPolicy": "None"}) == {}
    assert kc.state_resets(None, {**BASE, "cpuManagerPolicy": "static"}) == {}


def _deploy(
    tmp: Path, profile: str, eff: dict[str, Any], dropin: dict[str, Any] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = kc.deploy(
        str(tmp / "cfg"), str(tmp / "root"), profile, dropin or {"healthzPort": 10348}, eff
    )
    return out


def test_deploy_is_verbatim_idempotent_and_keeps_the_previous(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    p1 = "# comment kept\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
    r1 = _deploy(tmp_path, p1, BASE)
    assert r1["changed"] and not r1["previous"]
    assert (tmp_path / "cfg" / "config.yaml").read_text() == p1
    dropin = json.loads((tmp_path / "cfg" / "config.d" / "50-harness-host.conf").read_text())
    assert dropin == {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "healthzPort": 10348,
    }
    assert _deploy(tmp_path, p1, BASE)["changed"] is False
    # a memory manager change: the old files are kept in previous/, the state file goes
    (tmp_path / "root" / "memory_manager_state").write_text('{"policyName":"None"}')
    (tmp_path / "root" / "cpu_manager_state").write_text('{"policyName":"none"}')
    p2 = p1 + "memoryManagerPolicy: Static\n"
    r2 = _deploy(tmp_path, p2, {**BASE, "memoryManagerPolicy": "Static"})
    assert r2["changed"] and r2["previous"]
    assert set(r2["cleared"]) == {"memory_manager_state"}
    assert not (tmp_path / "root" / "memory_manager_state").exists()
    assert (tmp_path / "root" / "cpu_manager_state").exists()
    assert (tmp_path / "cfg" / "previous" / "config.yaml").read_text() == p1
    # roll back: p1 again, and the state written under Static goes too
    (tmp_path / "root" / "memory_manager_state").write_text('{"policyName":"Static"}')
    rb = kc.rollback(str(tmp_path / "cfg"), str(tmp_path / "root"))
    assert rb["previous"] is True and set(rb["cleared"]) == {"memory_manager_state"}
    assert (tmp_path / "cfg" / "config.yaml").read_text() == p1


def test_rollback_without_previous_removes_the_failed_config(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    _deploy(tmp_path, "kind: KubeletConfiguration\n", BASE)
    rb = kc.rollback(str(tmp_path / "cfg"), str(tmp_path / "root"))
    assert rb["previous"] is False
    assert not (tmp_path / "cfg" / "config.yaml").exists()


# --------------------------------------------------------------------------- node facts


MOUNTINFO_HYBRID = """\
25 1 0:23 / /sys/fs/cgroup rw - tmpfs tmpfs rw
26 25 0:24 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
30 25 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
"""
MOUNTINFO_V2 = "26 1 0:24 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"


def test_cgroup_layout() -> None:
    assert nf.cgroup_layout(MOUNTINFO_HYBRID) == (1, "hybrid")
    assert nf.cgroup_layout(MOUNTINFO_V2) == (2, "unified")
    assert nf.cgroup_layout("30 25 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n") == (
        1,
        "legacy",
    )


def test_capabilities_and_sizes() -> None:
    # CAP_SYS_RESOURCE is bit 24
    assert "CAP_SYS_RESOURCE" in nf.decode_caps(f"{1 << 24:x}")
    assert "CAP_SYS_RESOURCE" not in nf.decode_caps("000001fffeffffff")
    assert nf.binary_si(2 * 1024 * 1024) == "2Mi" and nf.binary_si(1 << 30) == "1Gi"
    assert nf.parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]


def _fake_root(tmp: Path) -> Path:
    (tmp / "proc/self").mkdir(parents=True)
    (tmp / "proc/sys/kernel").mkdir(parents=True)
    (tmp / "proc/meminfo").write_text("MemTotal:       16384000 kB\nSwapTotal:       1048576 kB\n")
    (tmp / "proc/self/mountinfo").write_text(MOUNTINFO_V2)
    (tmp / "proc/self/status").write_text("CapEff:\t000001ffffffffff\n")
    (tmp / "proc/swaps").write_text("Filename Type Size Used Priority\n/swapfile file 1048572 0 -2\n")
    (tmp / "proc/sys/kernel/pid_max").write_text("4194304\n")
    (tmp / "sys/devices/system/cpu").mkdir(parents=True)
    (tmp / "sys/devices/system/cpu/online").write_text("0-7\n")
    for nid, cpus in ((0, "0-3"), (1, "4-7")):
        d = tmp / f"sys/devices/system/node/node{nid}"
        (d / "hugepages/hugepages-2048kB").mkdir(parents=True)
        (d / "meminfo").write_text(f"Node {nid} MemTotal:        8192000 kB\n")
        (d / "cpulist").write_text(cpus + "\n")
        (d / "distance").write_text("10 21\n" if nid == 0 else "21 10\n")
        (d / "hugepages/hugepages-2048kB/nr_hugepages").write_text("16\n" if nid == 0 else "0\n")
    return tmp


def test_facts_from_a_two_node_host_map_onto_node_facts(tmp_path: Path) -> None:
    facts = nf.collect(
        "lab-x",
        "/nonexistent/kubelet",
        "/nonexistent/containerd",
        "/nonexistent/runc",
        str(_fake_root(tmp_path)),
    )
    assert facts["memoryCapacity"] == 16384000 * 1024
    assert facts["swap"] == 1048576 * 1024 and facts["swapDevices"] == ["/swapfile"]
    assert facts["cgroupVersion"] == 2 and facts["cpus"] == 8
    assert "CAP_SYS_RESOURCE" in facts["capabilities"]
    assert "kubeletVersion" not in facts  # no kubelet binary
    node, notes = to_node_facts({**facts, "kubeletVersion": "1.33.4"})
    assert notes == []
    assert node.name == "lab-x" and node.kubelet_version == "1.33"
    assert [(n.id, n.memory_bytes, n.cpus, n.hugepages) for n in node.numa_nodes] == [
        (0, 8192000 * 1024, [0, 1, 2, 3], {"2Mi": 16}),
        (1, 8192000 * 1024, [4, 5, 6, 7], {}),
    ]
    assert node.hugepages_capacity == {"hugepages-2Mi": 16 * 2 * 1024 * 1024}


def test_a_kubelet_outside_the_model_is_noted_not_fatal() -> None:
    node, notes = to_node_facts({"name": "x", "memoryCapacity": 1 << 30, "kubeletVersion": "1.27.3"})
    assert node.kubelet_version == "1.34" and "1.27.3" in notes[0]


# --------------------------------------------------------------------------- cgroup root


def test_cgroup_hierarchies_skip_unified_on_hybrid_hosts(tmp_path: Path) -> None:
    mem = tmp_path / "memory"
    mem.mkdir()
    mi = MOUNTINFO_HYBRID.replace("/sys/fs/cgroup/memory", str(mem)).replace(
        "/sys/fs/cgroup/unified", str(tmp_path / "unified")
    )
    created = cr.ensure("/lab-x/sub", mi)
    assert created == [str(mem / "lab-x"), str(mem / "lab-x" / "sub")]
    assert cr.ensure("/lab-x/sub", mi) == []  # idempotent
    with pytest.raises(ValueError):
        cr.ensure("/../etc", mi)
    removed, failed = cr.remove("/lab-x", mi)
    assert failed == [] and removed == [str(mem / "lab-x" / "sub"), str(mem / "lab-x")]


# --------------------------------------------------------------------------- ansible-runner events


def _ev(kind: str, host: str | None = None, **data: Any) -> dict[str, Any]:
    return {"event": kind, "event_data": {"host": host, **data}}


def test_runner_events_give_one_line_per_host() -> None:
    said: list[str] = []
    ev = _Events(["a", "b", "c"], said.append)
    ev(_ev("runner_on_ok", "a", task="Collect the node facts", role="facts", res={"node_facts": {"cpus": 2}}))
    ev(_ev("runner_on_ok", "a", task="Write config", role="kubelet", res={"changed": True}))
    # a failure rescued by the block's rescue does not fail the host...
    ev(_ev("runner_on_failed", "a", task="Wait until healthy", role="kubelet", res={"msg": "x", "rc": 1}))
    # ...the report task does
    ev(
        _ev(
            "runner_item_on_failed",
            "b",
            task="Import",
            role="images",
            res={"stderr": "ctr: no such file\n", "rc": 1},
        )
    )
    ev(_ev("runner_on_failed", "b", task="Import", role="images", res={"msg": "One or more items failed"}))
    ev(
        _ev(
            "runner_on_unreachable",
            "c",
            task="Collect",
            res={"msg": "Failed to connect: Permission denied (publickey)."},
        )
    )
    ev(
        _ev(
            "playbook_on_stats",
            None,
            processed={"a": 1, "b": 1, "c": 1},
            failures={"b": 1},
            dark={"c": 1},
            rescued={"a": 1},
        )
    )
    a, b, c = (ev.reports[n] for n in "abc")
    assert a.status == "changed" and a.facts == {"cpus": 2} and a.changed_tasks == ["kubelet : Write config"]
    assert b.status == "failed" and b.error == "task 'images : Import' failed: ctr: no such file"
    assert (
        c.status == "unreachable"
        and c.error == "unreachable: Failed to connect: Permission denied (publickey)."
    )
    assert any("[c] unreachable" in s for s in said)


def test_playbook_roles() -> None:
    play = LIB.parent / "site.yml"
    assert playbook_roles(play) == {"containerd", "images", "kubelet", "facts"}
    assert playbook_roles(LIB.parent / "teardown.yml") == {"kubelet", "containerd"}
    assert playbook_roles(LIB.parent / "harness.yml") == {"facts", "harness"}
