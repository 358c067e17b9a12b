"""The project's containerd instances: paths and config.toml (pure: no daemon is started)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from harness.engines.containerd import (
    DEFAULT_ROOT,
    DEFAULT_RUN_DIR,
    ContainerdInstance,
    default_instance,
    render_config,
)
from harness.errors import HarnessError
from harness.images import PAUSE_IMAGE

CRI = "io.containerd.grpc.v1.cri"


def cfg(inst: ContainerdInstance, restrict: bool = True, runc: str = "/usr/sbin/runc") -> dict[str, Any]:
    return tomllib.loads(render_config(inst, restrict_oom_score_adj=restrict, runc=runc))


def test_default_instance_is_the_harness_backends() -> None:
    d = default_instance()
    assert d.root == DEFAULT_ROOT == Path("/var/lib/harness/containerd")
    assert d.socket == DEFAULT_RUN_DIR / "containerd.sock" == Path("/run/harness/containerd/containerd.sock")
    assert d.state == Path("/run/harness/containerd/state")
    assert d.config == d.state / "config.toml" and d.pidfile == d.state / "containerd.pid"
    assert d.log == d.root / "containerd.log"
    assert d.sandbox_image == PAUSE_IMAGE


def test_a_cluster_instance_shares_no_path_with_the_default() -> None:
    c = ContainerdInstance.under(
        Path("/var/lib/harness/cluster/containerd"), Path("/run/harness/cluster/containerd")
    )
    d = default_instance()
    mine = {c.root, c.state, c.socket, c.config, c.pidfile, c.log, c.cni_conf_dir, c.runc_root}
    theirs = {d.root, d.state, d.socket, d.config, d.pidfile, d.log, d.cni_conf_dir, d.runc_root}
    assert not mine & theirs
    assert all(str(p).startswith(("/var/lib/harness/cluster/", "/run/harness/cluster/")) for p in mine)
    text = render_config(c, restrict_oom_score_adj=True, runc="/usr/sbin/runc")
    for path in (d.root, d.state, d.socket, d.runc_root, d.cni_conf_dir):
        assert f'"{path}"' not in text and f'"{path}/' not in text and f'"{path}.' not in text


def test_paths_must_be_absolute_and_the_socket_short() -> None:
    with pytest.raises(HarnessError, match="absolute"):
        ContainerdInstance(root=Path("rel"), state=Path("/s"), socket=Path("/s/c.sock"))
    with pytest.raises(HarnessError, match="too long"):
        ContainerdInstance.under(Path("/r"), Path("/run/" + "x" * 100))


def test_config_core_addresses_and_no_tcp() -> None:
    inst = ContainerdInstance.under(Path("/var/lib/h/c"), Path("/run/h/c"))
    c = cfg(inst)
    assert c["version"] == 2
    assert c["root"] == "/var/lib/h/c" and c["state"] == "/run/h/c/state"
    assert c["grpc"]["address"] == "/run/h/c/containerd.sock"
    assert c["grpc"]["tcp_address"] == ""
    assert c["ttrpc"]["address"] == "/run/h/c/containerd.sock.ttrpc"
    assert c["debug"]["address"] == "" and c["metrics"]["address"] == ""
    assert c["plugins"]["io.containerd.internal.v1.opt"]["path"] == "/var/lib/h/c/opt"
    cri = c["plugins"][CRI]
    assert cri["disable_tcp_service"] is True
    assert cri["stream_server_address"] == "127.0.0.1"


def test_config_cri_plugin_for_the_kubelet() -> None:
    inst = ContainerdInstance.under(Path("/var/lib/h/c"), Path("/run/h/c"))
    c = cfg(inst, runc="/opt/bin/runc")
    assert CRI not in c["disabled_plugins"]
    cri = c["plugins"][CRI]
    assert cri["sandbox_image"] == PAUSE_IMAGE
    assert cri["containerd"]["snapshotter"] == "overlayfs"
    assert cri["containerd"]["default_runtime_name"] == "runc"
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"] == {
        "SystemdCgroup": False,
        "BinaryName": "/opt/bin/runc",
        "Root": "/run/h/c/state/runc",
    }
    assert cri["cni"]["bin_dir"] == "/usr/lib/cni"
    assert cri["cni"]["conf_dir"] == "/run/h/c/state/cni/net.d"


@pytest.mark.parametrize("restrict", [True, False])
def test_restrict_oom_score_adj_follows_the_host(restrict: bool) -> None:
    inst = ContainerdInstance.under(Path("/var/lib/h/c"), Path("/run/h/c"))
    assert cfg(inst, restrict=restrict)["plugins"][CRI]["restrict_oom_score_adj"] is restrict


def test_config_without_cri_and_with_extra_sections() -> None:
    inst = ContainerdInstance.under(
        Path("/var/lib/h/c"),
        Path("/run/h/c"),
        cri=False,
        extra_toml='[plugins."io.containerd.gc.v1.scheduler"]\n  pause_threshold = 0.05',
        sandbox_image="registry.local/harness/pause:9",
    )
    c = cfg(inst)
    assert CRI in c["disabled_plugins"]
    assert CRI not in c["plugins"]
    assert c["plugins"]["io.containerd.gc.v1.scheduler"]["pause_threshold"] == 0.05


def test_strings_with_quotes_stay_valid_toml() -> None:
    inst = ContainerdInstance.under(Path('/var/lib/we"ird\\dir'), Path("/run/h/c"))
    assert cfg(inst)["root"] == '/var/lib/we"ird\\dir'
