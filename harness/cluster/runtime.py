"""The cluster's container runtime: a containerd of its own (root, state, socket), CRI plugin on.

Config (containerd 1.6, ``version = 2``), following local-cluster-notes §3.1:

* root ``<cluster state>/containerd``, state and socket under ``/run/harness/cluster/containerd``;
  no TCP listener (debug and metrics addresses empty; the CRI streaming server stays on 127.0.0.1);
* ``sandbox_image`` = the harness's locally imported pause image (nothing can be pulled);
* runc v2 with ``SystemdCgroup`` matching the kubelet's ``cgroupDriver`` (systemd where systemd is
  PID 1, cgroupfs elsewhere: ``Cluster.cgroup_driver``);
* ``restrict_oom_score_adj = true`` when this host cannot write a negative ``oom_score_adj``
  (no CAP_SYS_RESOURCE): containerd then clamps the kubelet's -997/-998 to the minimum it may set
  instead of failing every Guaranteed container (containerd pkg/cri/server: restrictOOMScoreAdj);
* CNI: one network made of the ``loopback`` plugin only, so the runtime reports NetworkReady and the
  node becomes Ready; no bridge or address appears on the host. A sandbox with no ``eth0`` cannot be
  set up by containerd ("failed to find network info"), so pods run with ``hostNetwork: true``
  (harness.launch.kubernetes).

The daemon itself is :mod:`harness.engines.containerd` (the same code as the containerd backend's).

Images are imported into the CRI namespace ``k8s.io`` (the kubelet's) under their fully qualified names.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.engines.containerd import ContainerdInstance, ensure_containerd, status, stop
from harness.errors import HostError
from harness.images import LEAK_IMAGE, PAUSE_IMAGE, build_all, import_into_containerd
from harness.procs import alive, read_pid

if TYPE_CHECKING:
    from harness.cluster import Cluster

CONTAINERD_NAMESPACE_K8S = "k8s.io"  # the CRI plugin's namespace (containerd pkg/cri/constants)
LOOPBACK_CONFLIST = '{"cniVersion": "0.4.0", "name": "harness-loopback", "plugins": [{"type": "loopback"}]}\n'


def instance(cluster: Cluster) -> Any:
    """The cluster's containerd (harness.engines.containerd): root under the cluster state, socket
    ``/run/harness/cluster/containerd/containerd.sock``, CRI plugin on."""

    return ContainerdInstance.under(
        cluster.state / "containerd",
        cluster.containerd_socket.parent,
        cri=True,
        systemd_cgroup=cluster.cgroup_driver == "systemd",
    )


def _ctr(cluster: Cluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ctr", "--address", str(cluster.containerd_socket), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ensure_cluster_containerd(cluster: Cluster, progress: Callable[[str], None] | None = None) -> None:

    say = progress or (lambda _m: None)
    inst = instance(cluster)
    if not Path(inst.cni_bin_dir, "loopback").exists():
        raise HostError(
            f"{inst.cni_bin_dir}/loopback is missing (Debian package containernetworking-plugins)"
        )
    inst.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    (inst.cni_conf_dir / "10-harness-loopback.conflist").write_text(LOOPBACK_CONFLIST)
    h = ensure_containerd(inst, timeout=60)
    if h.started_by_us:
        say(f"started containerd ({cluster.containerd_socket})")
    import_images(cluster, say)


def import_images(cluster: Cluster, say: Callable[[str], None]) -> None:
    """Import the pause and leak images into ``k8s.io`` unless they are there with the same digest."""

    have = _ctr(cluster, "-n", CONTAINERD_NAMESPACE_K8S, "images", "ls", "-q").stdout.split()
    if PAUSE_IMAGE in have and LEAK_IMAGE in have:
        return
    out = cluster.state / "images"
    tars = build_all(out, "oci")
    for name, tar in tars.items():
        say(f"importing image {name} into containerd namespace {CONTAINERD_NAMESPACE_K8S}")
        import_into_containerd(str(cluster.containerd_socket), CONTAINERD_NAMESPACE_K8S, tar)


def stop_cluster_containerd(cluster: Cluster) -> bool:
    """Stop the cluster's containerd, its shims and their containers, by pid."""

    inst = instance(cluster)
    pid = read_pid(inst.pidfile_path)
    was = pid is not None and alive(pid)
    failed = stop(inst)
    if failed:
        raise HostError("stopping the cluster's containerd: " + "; ".join(failed))
    return was


def cluster_containerd_status(cluster: Cluster) -> dict[str, Any]:

    st: dict[str, Any] = dict(status(instance(cluster)))
    st["running"] = bool(st.get("answering"))
    if st.get("server_version"):
        st["version"] = st["server_version"]
    return st
