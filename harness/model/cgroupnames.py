"""Where the kubelet's cgroups are, by cgroup driver.

The model names cgroups as the ``cgroupfs`` driver does (``kubepods/burstable/pod<uid>``). With the
``systemd`` driver the same cgroup is a slice:

* k8s: pkg/kubelet/cm/cgroup_manager_linux.go ``CgroupName.ToSystemd``: each component has ``-``
  replaced by ``_`` (``escapeSystemdCgroupName``), the components are joined with ``-`` and suffixed
  ``.slice``, then expanded by runc's libcontainer/cgroups/systemd ``ExpandSlice``:
  ``kubepods-burstable-pod1234_ab.slice`` -> ``kubepods.slice/kubepods-burstable.slice/
  kubepods-burstable-pod1234_ab.slice``.
* A container of the CRI plugin of containerd is the scope ``cri-containerd-<id>.scope`` in its pod's
  slice (containerd: internal/cri/server/container_create_linux.go ``getCgroupsPath``:
  ``<pod slice>:cri-containerd:<id>``, which runc's systemd driver turns into that scope); with
  ``cgroupfs`` it is the directory ``<id>`` in the pod's cgroup.

Paths here are relative to the cgroup root (no leading ``/``).
"""

from __future__ import annotations

from typing import Literal

Driver = Literal["cgroupfs", "systemd"]
CRI_CONTAINERD_PREFIX = "cri-containerd"  # containerd's CRI plugin (getCgroupsPath)


def expand_slice(name: str) -> str:
    """runc libcontainer/cgroups/systemd ``ExpandSlice``, without its leading ``/``."""
    if not name.endswith(".slice") or "/" in name:
        raise ValueError(f"invalid slice name {name!r}")
    base = name.removesuffix(".slice")
    if base == "-":
        return ""
    if base.endswith("-") or "--" in base or base.startswith("-"):
        raise ValueError(f"invalid slice name {name!r}")
    parts = base.split("-")
    return "/".join("-".join(parts[: i + 1]) + ".slice" for i in range(len(parts)))


def kubelet_cgroup(model_path: str, driver: Driver) -> str:
    """The kubelet's cgroup (kubepods, a QoS tier, a pod) named in the model's cgroupfs form, as
    ``driver`` names it on the host."""
    path = model_path.strip("/")
    if driver == "cgroupfs" or not path:
        return path
    parts = [p.replace("-", "_") for p in path.split("/")]
    return expand_slice("-".join(parts) + ".slice")


def pod_cgroup(uid: str, qos: str, driver: Driver) -> str:
    """A pod's cgroup (k8s: pkg/kubelet/cm/pod_container_manager_linux.go ``GetPodContainerName``:
    Guaranteed pods directly under kubepods, the others under their QoS tier)."""
    q = qos.lower()
    model = f"kubepods/pod{uid}" if q == "guaranteed" else f"kubepods/{q}/pod{uid}"
    return kubelet_cgroup(model, driver)


def container_dir(container_id: str, driver: Driver) -> str:
    """The directory of a CRI container in its pod's cgroup."""
    return f"{CRI_CONTAINERD_PREFIX}-{container_id}.scope" if driver == "systemd" else container_id
