"""The lab inventory: validation with file + field errors, defaults, paths, --limit, Ansible's view."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.errors import InputError
from harness.provision.inventory import known_role_variables, load_inventory, parse_inventory

REPO = Path(__file__).resolve().parents[2]


def _write(tmp: Path, doc: dict[str, Any], name: str = "lab.yaml") -> Path:
    (tmp / "keys").mkdir(exist_ok=True)
    (tmp / "keys" / "id").write_text("not read at load time\n")
    p = tmp / name
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def _doc(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "harness/v1",
        "kind": "Inventory",
        "defaults": {"keyFile": "keys/id", "knownHosts": "keys/known_hosts", "connectTimeout": "5s"},
        "hosts": {
            "lab-a": {"address": "127.0.0.2", "port": 2222, "vars": {"kubelet_cgroup_root": "/lab-a"}},
            "lab-b": {"address": "127.0.0.3", "user": "admin", "become": True},
        },
        "groups": {"kubelet133": ["lab-a", "lab-b"]},
    }
    doc.update(over)
    return doc


def test_defaults_apply_and_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    inv = load_inventory(_write(tmp_path, _doc()))
    a, b = inv.hosts["lab-a"], inv.hosts["lab-b"]
    assert a.target.port == 2222 and b.target.port == 22
    assert a.target.user == "root" and b.target.user == "admin"
    assert a.target.key_file == (tmp_path / "keys" / "id").resolve()
    assert a.target.known_hosts == (tmp_path / "keys" / "known_hosts").resolve()
    assert a.target.connect_timeout == 5.0
    assert a.target.host_key_policy == "reject"  # checked by default
    assert b.become and not a.become
    assert a.groups == ["kubelet133"]
    assert a.target.known_hosts_name == "[127.0.0.2]:2222" and b.target.known_hosts_name == "127.0.0.3"


def test_python_controller_means_this_interpreter(tmp_path: Path) -> None:
    doc = _doc()
    doc["defaults"]["python"] = "controller"
    inv = load_inventory(_write(tmp_path, doc))
    assert inv.hosts["lab-a"].target.python == sys.executable
    assert inv.hosts["lab-a"].vars["harness_python"] == sys.executable


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (lambda d: d["hosts"]["lab-a"].update(adress="x"), "hosts.lab-a.adress", "did you mean 'address'"),
        (lambda d: d["defaults"].update(knownHost="x"), "defaults.knownHost", "did you mean 'knownHosts'"),
        (lambda d: d["hosts"]["lab-a"].pop("address"), "hosts.lab-a.address", "Field required"),
        (lambda d: d["hosts"]["lab-a"].update(port=70000), "hosts.lab-a.port", "less than or equal to 65535"),
        (
            lambda d: d["hosts"]["lab-a"].update(hostKeyPolicy="yes"),
            "hosts.lab-a.hostKeyPolicy",
            "accept-new",
        ),
        (lambda d: d["hosts"]["lab-a"].update(address="not an address!"), "hosts.lab-a.address", "neither"),
        (
            lambda d: d["hosts"]["lab-a"]["vars"].update(kubelet_profle="x"),
            "hosts.lab-a.vars.kubelet_profle",
            "did you mean 'kubelet_profile'",
        ),
        (
            lambda d: d["defaults"].update(vars={"containerd_sockt": "/x"}),
            "defaults.vars.containerd_sockt",
            "unknown role variable",
        ),
        (lambda d: d["groups"].update(g=["lab-a", "lab-bb"]), "groups.g[1]", "did you mean 'lab-b'"),
        (
            lambda d: d["hosts"]["lab-b"].update(address="127.0.0.2", port=2222),
            "hosts.lab-b.address",
            "also host",
        ),
        (lambda d: d["defaults"].pop("keyFile"), "hosts.lab-a.keyFile", "missing"),
        (
            lambda d: d["defaults"].pop("knownHosts"),
            "hosts.lab-a.knownHosts",
            "~/.ssh/known_hosts is not used unless named",
        ),
        (
            lambda d: d["hosts"]["lab-a"]["vars"].update(kubelet_profile="nope.yaml"),
            "hosts.lab-a.vars.kubelet_profile",
            "does not exist",
        ),
        (lambda d: d.update(kind="Suite"), "kind", "Inventory"),
    ],
)
def test_errors_name_file_and_field(tmp_path: Path, mutate: Any, field: str, reason: str) -> None:
    doc = _doc()
    mutate(doc)
    p = _write(tmp_path, doc)
    with pytest.raises(InputError) as ei:
        load_inventory(p)
    assert ei.value.file == str(p)
    assert ei.value.field == field
    assert reason in ei.value.reason


def test_connection_variables_and_known_role_variables_are_accepted(tmp_path: Path) -> None:
    known = known_role_variables()
    # every role's defaults and the shared layout are known
    for name in (
        "lab_dir",
        "containerd_root",
        "images_archives",
        "kubelet_profile",
        "facts_kubelet_binary",
        "harness_home",
    ):
        assert name in known
    doc = _doc()
    doc["hosts"]["lab-a"]["vars"].update(ansible_python_interpreter="/usr/bin/python3", lab_dir="/srv/lab-a")
    inv = load_inventory(_write(tmp_path, doc))
    assert inv.hosts["lab-a"].vars["lab_dir"] == "/srv/lab-a"


def test_profile_path_resolved(tmp_path: Path) -> None:
    prof = tmp_path / "profiles" / "p.yaml"
    prof.parent.mkdir()
    prof.write_text("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n")
    doc = _doc()
    doc["defaults"]["vars"] = {"kubelet_profile": "profiles/p.yaml"}
    inv = load_inventory(_write(tmp_path, doc))
    assert inv.hosts["lab-b"].vars["kubelet_profile"] == str(prof.resolve())


def test_limit_by_host_group_and_errors(tmp_path: Path) -> None:
    inv = load_inventory(_write(tmp_path, _doc()))
    assert [h.name for h in inv.select(None)] == ["lab-a", "lab-b"]
    assert [h.name for h in inv.select(["lab-b"])] == ["lab-b"]
    assert [h.name for h in inv.select(["kubelet133"])] == ["lab-a", "lab-b"]
    assert [h.name for h in inv.select(["lab-a,lab-b"])] == ["lab-a", "lab-b"]
    with pytest.raises(InputError, match="did you mean 'lab-a'"):
        inv.select(["lab-aa"])


def test_ansible_inventory_checks_host_keys_and_uses_host_vars(tmp_path: Path) -> None:
    doc = _doc()
    doc["defaults"]["vars"] = {"lab_dir": "/srv/{{ inventory_hostname }}"}
    doc["hosts"]["lab-b"]["hostKeyPolicy"] = "accept-new"
    inv = load_inventory(_write(tmp_path, doc))
    out = inv.ansible_inventory(extra_host_vars={"lab-a": {"kubelet_binary_src": "/x/kubelet"}})
    a = out["all"]["hosts"]["lab-a"]
    b = out["all"]["hosts"]["lab-b"]
    assert a["ansible_host"] == "127.0.0.2" and a["ansible_port"] == 2222 and a["ansible_user"] == "root"
    assert "StrictHostKeyChecking=yes" in a["ansible_ssh_common_args"]
    assert (
        f"UserKnownHostsFile={(tmp_path / 'keys' / 'known_hosts').resolve()}" in a["ansible_ssh_common_args"]
    )
    assert "StrictHostKeyChecking=accept-new" in b["ansible_ssh_common_args"]
    # defaults.vars land on every host (host vars outrank playbooks/group_vars/all.yml)
    assert a["lab_dir"] == b["lab_dir"] == "/srv/{{ inventory_hostname }}"
    assert a["kubelet_binary_src"] == "/x/kubelet" and "kubelet_binary_src" not in b
    assert b["lab_become"] is True
    assert out["all"]["children"]["kubelet133"]["hosts"] == {"lab-a": None, "lab-b": None}
    only_b = inv.ansible_inventory([inv.hosts["lab-b"]])
    assert list(only_b["all"]["hosts"]) == ["lab-b"]


def test_the_example_inventory_loads() -> None:
    inv = parse_inventory(
        yaml.safe_load((REPO / "playbooks" / "examples" / "loopback-lab.yaml").read_text()),
        "loopback-lab.yaml",
        REPO / "playbooks" / "examples",
    )
    assert len(inv.hosts) >= 2
    addrs = {h.target.address for h in inv.hosts.values()}
    assert all(a.startswith("127.") for a in addrs)
