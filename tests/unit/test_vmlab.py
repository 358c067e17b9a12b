"""Pure logic of harness/vmlab: the QEMU command line, the inventory, the image cache key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.errors import InputError
from harness.provision.inventory import parse_inventory
from harness.vmlab.image import ImageSpec, missing_package, mmdebstrap_argv
from harness.vmlab.lab import LabOptions, host_names, inventory_data
from harness.vmlab.qemu import TCG_ACCEL, VMSpec, check_topology, kernel_cmdline, qemu_argv
from harness.vmlab.seed import known_hosts_line, new_keypair, setup_script

GiB = 1024**3


def _spec(tmp: Path, **kw: object) -> VMSpec:
    base: dict[str, object] = dict(
        name="lab-a",
        memory=4 * GiB,
        cpus=2,
        sockets=2,
        ssh_port=40022,
        overlay=tmp / "overlay.qcow2",
        seed=tmp / "seed.raw",
        kernel=tmp / "vmlinuz",
        initrd=tmp / "initrd.img",
        console_log=tmp / "console.log",
    )
    base.update(kw)
    return VMSpec(**base)  # type: ignore[arg-type]


def _values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_numa_node_per_socket_with_its_memory_and_cpus(tmp_path: Path) -> None:
    argv = qemu_argv(_spec(tmp_path, cpus=4, sockets=2), TCG_ACCEL)
    assert _values(argv, "-smp") == ["4,sockets=2,cores=2,threads=1"]
    assert _values(argv, "-numa") == [
        "node,nodeid=0,cpus=0-1,memdev=mem0",
        "node,nodeid=1,cpus=2-3,memdev=mem1",
    ]
    assert _values(argv, "-object") == [
        "memory-backend-ram,id=mem0,size=2048M",
        "memory-backend-ram,id=mem1,size=2048M",
    ]
    assert _values(argv, "-m") == ["4096M"]


def test_network_is_restricted_and_forwarded_on_loopback_only(tmp_path: Path) -> None:
    argv = qemu_argv(_spec(tmp_path), TCG_ACCEL)
    (netdev,) = _values(argv, "-netdev")
    assert netdev == "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22"
    assert not any("tap" in a or "bridge" in a for a in argv)


def test_swap_disk_and_cgroup_v1(tmp_path: Path) -> None:
    spec = _spec(tmp_path, swap=tmp_path / "swap.raw", cgroup=1)
    argv = qemu_argv(spec, TCG_ACCEL)
    assert "virtio-blk-pci,drive=swap,serial=hswap" in _values(argv, "-device")
    assert "systemd.unified_cgroup_hierarchy=0" in kernel_cmdline(spec)
    no_swap = qemu_argv(_spec(tmp_path), TCG_ACCEL)
    assert not any("hswap" in a for a in no_swap)
    assert "unified_cgroup_hierarchy" not in kernel_cmdline(_spec(tmp_path))


def test_topology_errors_name_the_flag() -> None:
    with pytest.raises(InputError, match="--cpus"):
        check_topology(4 * GiB, 3, 2)
    with pytest.raises(InputError, match="--memory"):
        check_topology(4 * GiB + 1024 * 1024, 2, 2)
    check_topology(4 * GiB, 2, 2)


def test_inventory_is_valid_and_exact(tmp_path: Path) -> None:
    opts = LabOptions(hosts=2, swap=2 * GiB)
    names = host_names("lab", 2)
    assert names == ["lab-a", "lab-b"]
    data = inventory_data("lab", {"lab-a": 40001, "lab-b": 40002}, opts)
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "client_ed25519").write_text("x")
    inv = parse_inventory(data, str(tmp_path / "inventory.yaml"), tmp_path)
    a = inv.hosts["lab-a"]
    assert (a.target.address, a.target.port, a.target.host_key_policy) == ("127.0.0.1", 40001, "reject")
    assert a.target.known_hosts == tmp_path / "keys" / "known_hosts"
    assert a.vars["kubelet_host_config"] == {"cgroupDriver": "systemd", "failSwapOn": False}
    assert a.vars["containerd_systemd_cgroup"] is True
    assert inv.groups == {"lab_lab": ["lab-a", "lab-b"]}
    no_swap = inventory_data("lab", {"lab-a": 40001}, LabOptions())
    assert "failSwapOn" not in no_swap["defaults"]["vars"]["kubelet_host_config"]
    assert a.vars["kubelet_build_version"] == "1.33.4"
    older = inventory_data("lab", {"lab-a": 40001}, LabOptions(kubelet_version="1.32.5"))
    assert older["defaults"]["vars"]["kubelet_build_version"] == "1.32.5"


def test_lab_up_refuses_a_kubelet_version_that_is_not_a_release() -> None:
    from click.testing import CliRunner

    from harness.cli import cli

    res = CliRunner().invoke(cli, ["lab", "up", "x", "--kubelet-version", "1.33"])
    assert res.exit_code == 2
    assert "--kubelet-version" in res.output and "expected a release like 1.33.4" in res.output


def test_known_hosts_line_matches_what_ssh_looks_up() -> None:
    kp = new_keypair()
    assert kp.public_openssh.startswith("ssh-ed25519 ")
    assert kp.private_openssh.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert (
        known_hosts_line("127.0.0.1", 40001, kp.public_openssh) == f"[127.0.0.1]:40001 {kp.public_openssh}\n"
    )
    assert known_hosts_line("10.0.0.1", 22, "k").startswith("10.0.0.1 k")


def test_setup_script_enables_swap_only_when_asked() -> None:
    assert "swapon /dev/disk/by-id/virtio-hswap" in setup_script("lab-a", swap=True)
    assert "swapon" not in setup_script("lab-a", swap=False)
    assert "echo lab-a > /etc/hostname" in setup_script("lab-a", swap=False)


def test_image_key_changes_with_inputs(tmp_path: Path) -> None:
    src = tmp_path / "debian.sources"
    src.write_text("Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\n")
    a = ImageSpec(sources=src)
    assert a.key() == ImageSpec(sources=src).key()
    assert a.key() != ImageSpec(sources=src, packages=(*a.packages, "htop")).key()
    assert a.key() != ImageSpec(sources=src, disk_size="8G").key()
    before = a.key()
    src.write_text(src.read_text().replace("main", "main contrib"))
    assert before != ImageSpec(sources=src).key()
    argv = mmdebstrap_argv(a, tmp_path / "rootfs", tmp_path / "hook.sh")
    assert argv[-1] == str(src) and "--variant=minbase" in argv


def test_missing_package_is_named() -> None:
    assert missing_package("E: Unable to locate package nosuchpkg\nE: apt-get failed") == "nosuchpkg"
    assert missing_package("E: Package 'foo' has no installation candidate") == "foo"
    assert missing_package("E: some other failure") is None


def _lab(root: Path, name: str, ports: dict[str, int]) -> None:
    """A lab's folder as ``lab up`` leaves it: its registry and its inventory (with the key)."""
    d = root / "labs" / name
    (d / "keys").mkdir(parents=True)
    (d / "keys" / "client_ed25519").write_text("x")
    inv = d / "inventory.yaml"
    inv.write_text(yaml.safe_dump(inventory_data(name, ports, LabOptions())))
    (d / "lab.json").write_text(
        json.dumps({"name": name, "inventory": str(inv), "hosts": {h: {"port": p} for h, p in ports.items()}})
    )


def test_lab_ssh_uses_the_labs_key_and_known_hosts_strictly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.vmlab import lab as vmlab

    monkeypatch.setattr(vmlab, "LAB_ROOT", tmp_path)
    _lab(tmp_path, "one", {"one-a": 40001})
    _lab(tmp_path, "two", {"two-a": 40002, "two-b": 40003})
    argv = vmlab.ssh_argv("one")
    keys = tmp_path / "labs" / "one" / "keys"
    assert argv[0] == "ssh" and argv[-1] == "root@127.0.0.1"
    opts = " ".join(argv)
    assert f"UserKnownHostsFile={keys / 'known_hosts'}" in opts and "StrictHostKeyChecking=yes" in opts
    assert (
        argv[argv.index("-i") + 1] == str(keys / "client_ed25519") and argv[argv.index("-p") + 1] == "40001"
    )
    assert vmlab.ssh_argv("two", "two-b")[argv.index("-p") + 1] == "40003"
    with pytest.raises(InputError, match="two-a, two-b"):
        vmlab.ssh_argv("two")  # several hosts: one must be named
    with pytest.raises(InputError, match="no host 'x'"):
        vmlab.ssh_argv("two", "x")
    with pytest.raises(InputError, match=r"no lab 'three'.*one, two"):
        vmlab.ssh_argv("three")
