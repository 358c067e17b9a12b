"""A memory ceiling the harness owns around what the local cluster runs, below the host's memory.

A profile may take the kubelet's own protection away (``enforceNodeAllocatable: []`` leaves
``kubepods`` at the node's capacity, an eviction threshold of 0 never evicts): the pods could then
drain this machine, not only the "node". So, whatever the profile says:

* the cluster's daemons (etcd, kube-apiserver, containerd with its shims, the kubelet) run in the
  harness-owned memory cgroup ``harness-cluster`` limited to :data:`DAEMONS_LIMIT`;
* ``kubepods`` (the kubelet's pods) is lowered to :func:`pod_ceiling` whenever the kubelet (re)starts
  and leaves it higher (the kubelet creates ``kubepods`` at capacity and, with ``pods`` not enforced,
  never lowers it again; with it enforced, allocatable is lower and stays).

Together they stay below the host's MemTotal by :data:`HOST_RESERVE`, so the kernel OOM-kills inside
the harness's cgroups before it runs out of memory for the machine itself.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.errors import HostError
from harness.host.cgroups import CGROUP_ROOT, V1_UNLIMITED, cgroup_version, memory_root

GiB = 1 << 30
CEILING_CGROUP = "harness-cluster"
DAEMONS_LIMIT = 4 * GiB  # etcd (2 GiB backend quota), apiserver, containerd, kubelet: measured < 1 GiB here
HOST_RESERVE = 2 * GiB  # left to the machine (this shell, the harness, other helpers' tools)


def mem_total(meminfo: Path = Path("/proc/meminfo")) -> int:
    m = re.search(r"^MemTotal:\s+(\d+) kB", meminfo.read_text(), re.M)
    if not m:
        raise HostError(f"no MemTotal in {meminfo}")
    return int(m.group(1)) * 1024


def daemons_limit(total: int) -> int:
    """:data:`DAEMONS_LIMIT`, or a third of a small host's memory (a 4 GiB lab VM)."""
    return min(DAEMONS_LIMIT, total // 3)


def host_reserve(total: int) -> int:
    """:data:`HOST_RESERVE`, or an eighth of a small host's memory."""
    return min(HOST_RESERVE, total // 8)


def pod_ceiling(total: int) -> int:
    """The most ``kubepods`` may hold: the host's memory minus the daemons' limit and the reserve
    (both scaled down on hosts under 12 GiB, e.g. the 4 GiB VM lab guests)."""
    ceiling = total - daemons_limit(total) - host_reserve(total)
    if ceiling < GiB:
        raise HostError(f"this host has {total / GiB:.1f} GiB: too little for the local cluster's ceiling")
    return ceiling


def _limit_file(d: Path, version: int) -> Path:
    return d / ("memory.limit_in_bytes" if version == 1 else "memory.max")


def _read_limit(d: Path, version: int) -> int | None:
    v = _limit_file(d, version).read_text().strip()
    if v == "max" or (version == 1 and int(v) >= V1_UNLIMITED):
        return None
    return int(v)


def confine_daemons(pids: list[int], *, root: Path = CGROUP_ROOT) -> Path:
    """Create ``harness-cluster`` (memory controller) with :func:`daemons_limit` and move ``pids``
    there (their future children follow). Returns the cgroup directory."""
    version = cgroup_version(root)
    mem = memory_root(version, root)
    d = mem / CEILING_CGROUP
    try:
        d.mkdir(exist_ok=True)
        if version == 2:
            ctl = mem / "cgroup.subtree_control"
            if "memory" not in ctl.read_text().split():
                ctl.write_text("+memory")
        _limit_file(d, version).write_text(str(daemons_limit(mem_total())))
        for pid in pids:
            (d / "cgroup.procs").write_text(str(pid))
    except OSError as exc:
        raise HostError(f"cannot confine the cluster's daemons in {d}: {exc.strerror}") from None
    return d


def cap_kubepods(
    total: int | None = None, *, root: Path = CGROUP_ROOT, kubepods: str = "kubepods"
) -> int | None:
    """Lower ``kubepods`` (``kubepods.slice`` with the systemd driver) to :func:`pod_ceiling` if the
    kubelet left it higher; returns the limit written (None when it was already at or below the
    ceiling, or does not exist yet)."""
    version = cgroup_version(root)
    kp = memory_root(version, root) / kubepods
    if not kp.is_dir():
        return None
    ceiling = pod_ceiling(mem_total() if total is None else total)
    current = _read_limit(kp, version)
    if current is not None and current <= ceiling:
        return None
    try:
        _limit_file(kp, version).write_text(str(ceiling))
    except OSError as exc:
        raise HostError(f"cannot cap {kp} at {ceiling} bytes: {exc.strerror}") from None
    return ceiling
