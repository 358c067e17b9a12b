"""A memory ceiling the harness owns around what the local cluster runs, below the host's memory.

A profile may take the kubelet's own protection away (``enforceNodeAllocatable: []`` leaves
``kubepods`` at the node's capacity, an eviction threshold of 0 never evicts): the pods could then
drain this machine, not only the "node". So, whatever the profile says:

* the cluster's daemons (etcd, kube-apiserver, containerd with its shims, the kubelet) run in the
  harness-owned memory cgroup ``harness-cluster`` limited to :data:`DAEMONS_LIMIT`;
* ``kubepods`` (the kubelet's pods) is lowered to :func:`pod_ceiling` whenever the kubelet (re)starts
  and leaves it higher (the kubelet creates ``kubepods`` at capacity and, with ``pods`` not enforced,
  never lowers it again; with it enforced, allocatable is lower and stays).

* workloads with ``placement: host`` (containerd tasks outside ``k8s.io``) run in the scenario's
  harness node cgroup, limited to the sum of their caps (each ``leak.max`` + 64 MiB); for as long as
  a scenario has them, ``kubepods`` is lowered by that much more if it would otherwise leave too
  little (:func:`make_room`), and put back to the kubelet's value at tear-down (:func:`restore`).

Together they stay below the host's MemTotal by :data:`HOST_RESERVE`, so the kernel OOM-kills inside
the harness's cgroups before it runs out of memory for the machine itself: one budget,
``daemons + kubepods + host workloads <= MemTotal - reserve``, in three cgroups rather than one
parent, because the kubelet puts ``kubepods`` at the root of the hierarchy (its ``cgroupRoot`` "/",
what a lab node runs and what the model's cgroup paths describe) and host workloads must stay
outside it (the kubelet would otherwise count them as pods' memory).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError, HostError
from harness.host.cgroups import CGROUP_ROOT, V1_UNLIMITED, cgroup_version, memory_root, write_memory_limit

GiB = 1 << 30
CEILING_CGROUP = "harness-cluster"
DAEMONS_LIMIT = 4 * GiB  # etcd (2 GiB backend quota), apiserver, containerd, kubelet: measured < 1 GiB here
HOST_RESERVE = 2 * GiB  # left to the machine (this shell, the harness, other helpers' tools)


def mem_total(meminfo: Path = Path("/proc/meminfo")) -> int:
    """MemTotal in bytes, as cAdvisor reads it for the machine's memory capacity
    (google/cadvisor machine/machine.go GetMachineMemoryCapacity: ``MemTotal: N kB`` * 1024)."""
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


def pods_room(total: int, host_workloads: int) -> int:
    """The most ``kubepods`` may hold while host workloads capped at ``host_workloads`` bytes in all
    run beside it: :func:`pod_ceiling` less their share."""
    return pod_ceiling(total) - host_workloads


@dataclass(frozen=True)
class Room:
    """What :func:`make_room` did to ``kubepods``: its limit before (None = unlimited), after, and
    what :func:`restore` writes back: ``before``, but never above :func:`pod_ceiling` (a kubelet
    that rewrote kubepods after a restart, before the ceiling was applied again, must not have its
    value put back)."""

    kubepods: Path
    version: int
    before: int | None
    after: int
    restore_to: int


def make_room(
    host_workloads: int,
    total: int | None = None,
    *,
    root: Path = CGROUP_ROOT,
    kubepods: str = "kubepods",
    record: Callable[[Path, str, str], None] | None = None,
) -> Room | None:
    """Lower ``kubepods`` to :func:`pods_room` if its limit is higher, so that the daemons, the pods
    and ``host_workloads`` bytes of host workloads together stay below the host's memory less the
    reserve. None when nothing had to change. Refused (``HarnessError``, nothing written) when the
    room left would be under 1 GiB or under what the pods use now: the host workloads' caps are too
    large for this host.

    ``record(file, before, after)`` is called before the limit is written (the run's ledger, so that
    ``harness cleanup`` puts a SIGKILLed run's limit back: :func:`harness.owned.restore_limit`)."""
    version = cgroup_version(root)
    kp = memory_root(version, root) / kubepods
    if not kp.is_dir() or host_workloads <= 0:
        return None
    total = mem_total() if total is None else total
    room = pods_room(total, host_workloads)
    current = _read_limit(kp, version)
    if current is not None and current <= room:
        return None
    usage_file = kp / ("memory.usage_in_bytes" if version == 1 else "memory.current")
    try:
        usage = int(usage_file.read_text())
    except (OSError, ValueError):
        usage = 0
    if room < max(GiB, usage):
        raise HarnessError(
            f"host workloads capped at {host_workloads / GiB:.2f} GiB in all leave the pods "
            f"{room / GiB:.2f} GiB under the harness's ceiling on this {total / GiB:.1f} GiB host "
            f"(daemons {daemons_limit(total) / GiB:.2f} GiB, reserve {host_reserve(total) / GiB:.2f} GiB, "
            f"pods now use {usage / GiB:.2f} GiB): lower their leak.max"
        )
    ceiling = pod_ceiling(total)
    restore_to = ceiling if current is None else min(current, ceiling)
    file = _limit_file(kp, version)
    if record is not None:
        record(file, str(restore_to), str(room))
    try:
        write_memory_limit(file, room)
    except OSError as exc:
        raise HostError(f"cannot lower {kp} to {room} bytes: {exc.strerror}") from None
    return Room(kp, version, current, room, restore_to)


def restore(room: Room) -> None:
    """Put ``kubepods`` back to the limit :func:`make_room` found, at most the ceiling."""
    value = str(room.restore_to)
    try:
        write_memory_limit(_limit_file(room.kubepods, room.version), value)
    except OSError as exc:
        raise HostError(f"cannot restore {room.kubepods} to {value}: {exc.strerror}") from None


def kubepods_limit_file(root: Path = CGROUP_ROOT, kubepods: str = "kubepods") -> Path:
    """``kubepods``' memory limit file (``memory.limit_in_bytes`` on v1, ``memory.max`` on v2)."""
    version = cgroup_version(root)
    return _limit_file(memory_root(version, root) / kubepods, version)


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
        write_memory_limit(_limit_file(kp, version), ceiling)
    except OSError as exc:
        raise HostError(f"cannot cap {kp} at {ceiling} bytes: {exc.strerror}") from None
    return ceiling
