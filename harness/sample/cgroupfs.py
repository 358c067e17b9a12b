"""Pure parsers for cgroup v1 and v2 memory (and cpuset) files, plus path helpers.

Every ``parse_*`` function takes the text of one file and returns plain values or
frozen dataclasses; nothing here touches the filesystem except
:func:`detect_host_layout`, which only reads ``/proc/self/mountinfo``.

Units: every memory value is in **bytes**, except v1 ``memory.numa_stat`` which the
kernel prints in pages (see :class:`NumaStat`).

Upstream references:

- kernel ``Documentation/admin-guide/cgroup-v1/memory.rst`` and
  ``Documentation/admin-guide/cgroup-v2.rst`` (file formats),
- cadvisor ``container/libcontainer/handler.go`` ``setMemoryStats`` (working set),
- kubelet ``pkg/kubelet/stats/helper.go`` ``isMemoryUnlimited`` (limit ``> 1<<62`` is unlimited).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

CGROUP_ROOT = "/sys/fs/cgroup"

#: v1 ``memory.limit_in_bytes`` when no limit is set: ``PAGE_COUNTER_MAX * PAGE_SIZE``
#: = ``(LONG_MAX / 4096) * 4096`` on 4 KiB pages (kernel ``mm/page_counter.c``).
V1_UNLIMITED = 9223372036854771712

#: Anything above this is "no limit" (kubelet ``isMemoryUnlimited``: ``v > 1<<62``);
#: covers the v1 sentinel for every page size (64 KiB pages print 9223372036854710272).
UNLIMITED_THRESHOLD = 1 << 62


class CgroupVersion(StrEnum):
    """Which memory controller interface a cgroup exposes."""

    V1 = "v1"
    V2 = "v2"


class CgroupLayout(StrEnum):
    """How the host mounted its cgroup hierarchies (systemd's names in comments)."""

    V1 = "v1"  # "legacy": only v1 hierarchies
    HYBRID = "hybrid"  # v1 controllers + an (often empty) cgroup2 at /sys/fs/cgroup/unified
    V2 = "v2"  # "unified": a single cgroup2 at /sys/fs/cgroup


# --------------------------------------------------------------------------- scalar files


def parse_int(text: str) -> int:
    """Parse a single-integer file (``memory.usage_in_bytes``, ``memory.current``, ``memory.peak``,
    ``memory.max_usage_in_bytes``, ``memory.failcnt``).

    >>> parse_int("45604864\\n")
    45604864
    """
    return int(text.strip())


parse_usage = parse_int
parse_peak = parse_int
parse_failcnt = parse_int


def parse_limit(text: str, version: CgroupVersion | str) -> int | None:
    """Parse a memory limit; ``None`` means unlimited.

    v1 ``memory.limit_in_bytes`` prints :data:`V1_UNLIMITED`; v2 ``memory.max`` prints ``max``.
    Values above ``1<<62`` are treated as unlimited, as the kubelet does.

    >>> parse_limit("9223372036854771712\\n", "v1") is None
    True
    >>> parse_limit("max\\n", "v2") is None
    True
    >>> parse_limit("50331648\\n", "v1")
    50331648
    """
    value = text.strip()
    if CgroupVersion(version) is CgroupVersion.V2 and value == "max":
        return None
    n = int(value)
    return None if n > UNLIMITED_THRESHOLD else n


# --------------------------------------------------------------------------- flat keyed files


def parse_flat_keyed(text: str) -> dict[str, int]:
    """Parse a "flat keyed" file: one ``key value`` pair per line.

    Used by ``memory.stat`` (v1 and v2), ``memory.events``, ``memory.events.local`` and
    v1 ``memory.oom_control``. Lines that are not ``key <int>`` are skipped.

    >>> parse_flat_keyed("anon 4096\\nfile 0\\n")
    {'anon': 4096, 'file': 0}
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        value = value.strip()
        if not key or not value:
            continue
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def parse_memory_stat(text: str) -> dict[str, int]:
    """Parse ``memory.stat`` (v1 or v2) into ``{key: value}`` (bytes, or counts for ``pg*``)."""
    return parse_flat_keyed(text)


@dataclass(frozen=True)
class MemoryStatSummary:
    """The ``memory.stat`` values the harness uses, named the same way for v1 and v2.

    v1 maps ``rss``/``cache``/``mapped_file`` (``total_*`` when hierarchical), v2 maps
    ``anon``/``file``/``file_mapped``. Missing keys are 0.
    """

    rss: int
    cache: int
    inactive_file: int
    active_file: int
    mapped_file: int
    shmem: int
    pgmajfault: int


# v1 key -> v2 key for every field of MemoryStatSummary.
_SUMMARY_KEYS: dict[str, tuple[str, str]] = {
    "rss": ("rss", "anon"),
    "cache": ("cache", "file"),
    "inactive_file": ("inactive_file", "inactive_file"),
    "active_file": ("active_file", "active_file"),
    "mapped_file": ("mapped_file", "file_mapped"),
    "shmem": ("shmem", "shmem"),
    "pgmajfault": ("pgmajfault", "pgmajfault"),
}


def stat_keys(version: CgroupVersion | str, *, hierarchical: bool = True) -> dict[str, str]:
    """Map each :class:`MemoryStatSummary` field to the ``memory.stat`` key to read.

    v1 with ``hierarchical`` (the default, as cAdvisor with ``use_hierarchy=1``) uses the
    ``total_*`` keys, which include descendants; v2 keys are always hierarchical.

    >>> stat_keys("v1")["inactive_file"]
    'total_inactive_file'
    >>> stat_keys("v2")["rss"]
    'anon'
    """
    if CgroupVersion(version) is CgroupVersion.V2:
        return {f: v2 for f, (_, v2) in _SUMMARY_KEYS.items()}
    prefix = "total_" if hierarchical else ""
    return {f: prefix + v1 for f, (v1, _) in _SUMMARY_KEYS.items()}


def summarize_memory_stat(
    stat: Mapping[str, int], version: CgroupVersion | str, *, hierarchical: bool = True
) -> MemoryStatSummary:
    """Pick the summary values out of a parsed ``memory.stat``.

    For v1, a ``total_*`` key that is missing falls back to the local key.
    """
    keys = stat_keys(version, hierarchical=hierarchical)
    values: dict[str, int] = {}
    for fld, key in keys.items():
        if key in stat:
            values[fld] = stat[key]
        else:
            values[fld] = stat.get(key.removeprefix("total_"), 0)
    return MemoryStatSummary(**values)


def working_set(usage: int, stat: Mapping[str, int], version: CgroupVersion | str) -> int:
    """Working set exactly as cAdvisor computes it: ``usage - inactive_file``, clamped at 0.

    v1 subtracts ``total_inactive_file`` (hierarchical), v2 ``inactive_file``; if the key is
    absent nothing is subtracted. (cadvisor ``container/libcontainer/handler.go``
    ``setMemoryStats``: ``inactiveFileKeyName = "total_inactive_file"``, or ``"inactive_file"``
    when ``cgroups.IsCgroup2UnifiedMode()``; ``if workingSet < v { workingSet = 0 }``.)

    >>> working_set(100, {"total_inactive_file": 30}, "v1")
    70
    >>> working_set(100, {"inactive_file": 300}, "v2")
    0
    """
    key = "inactive_file" if CgroupVersion(version) is CgroupVersion.V2 else "total_inactive_file"
    inactive = stat.get(key)
    if inactive is None:
        return usage
    return max(usage - inactive, 0)


def v2_root_usage(stat: Mapping[str, int]) -> int:
    """Usage of the v2 root cgroup, which has no ``memory.current``: ``anon + file``.

    (runc / opencontainers-cgroups ``fs2/memory.go`` ``rootStatsFromMeminfo`` and cAdvisor.)
    """
    return stat.get("anon", 0) + stat.get("file", 0)


# --------------------------------------------------------------------------- OOM state


@dataclass(frozen=True)
class OomControl:
    """v1 ``memory.oom_control``. ``oom_kill`` exists since Linux 4.13 (else ``None``)."""

    oom_kill_disable: bool
    under_oom: bool
    oom_kill: int | None


def parse_oom_control(text: str) -> OomControl:
    """Parse v1 ``memory.oom_control``.

    >>> parse_oom_control("oom_kill_disable 0\\nunder_oom 0\\noom_kill 1\\n")
    OomControl(oom_kill_disable=False, under_oom=False, oom_kill=1)
    """
    kv = parse_flat_keyed(text)
    return OomControl(
        oom_kill_disable=bool(kv.get("oom_kill_disable", 0)),
        under_oom=bool(kv.get("under_oom", 0)),
        oom_kill=kv.get("oom_kill"),
    )


@dataclass(frozen=True)
class MemoryEvents:
    """v2 ``memory.events`` (hierarchical) or ``memory.events.local``.

    ``oom_group_kill`` appeared in Linux 5.17, ``sock_throttled`` in 6.x; keys the kernel does
    not print are 0, unknown keys land in ``extra``.
    """

    low: int = 0
    high: int = 0
    max: int = 0
    oom: int = 0
    oom_kill: int = 0
    oom_group_kill: int = 0
    extra: dict[str, int] = field(default_factory=dict)


_EVENT_KEYS = ("low", "high", "max", "oom", "oom_kill", "oom_group_kill")


def parse_memory_events(text: str) -> MemoryEvents:
    """Parse v2 ``memory.events``.

    >>> parse_memory_events("low 0\\nhigh 0\\nmax 12\\noom 1\\noom_kill 1\\n").oom_kill
    1
    """
    kv = parse_flat_keyed(text)
    known = {k: kv.pop(k) for k in _EVENT_KEYS if k in kv}
    return MemoryEvents(**known, extra=kv)


# --------------------------------------------------------------------------- NUMA


@dataclass(frozen=True)
class NumaStat:
    """``memory.numa_stat``.

    v1 (``total=N N0=a N1=b`` lines, values in **pages**) and v2 (``anon N0=a N1=b`` lines,
    values in **bytes**) are both mapped to ``per_node[key][node]``; ``totals[key]`` is the
    kernel's ``total=`` for v1 and the sum over nodes for v2.
    """

    unit: str  # "pages" (v1) or "bytes" (v2)
    totals: dict[str, int]
    per_node: dict[str, dict[int, int]]

    def bytes_per_node(self, key: str, page_size: int = 4096) -> dict[int, int]:
        """Values of ``key`` per node in bytes, whatever the unit of the source file."""
        scale = page_size if self.unit == "pages" else 1
        return {n: v * scale for n, v in self.per_node.get(key, {}).items()}


def parse_numa_stat(text: str) -> NumaStat:
    """Parse v1 or v2 ``memory.numa_stat`` (the format is recognised per file).

    >>> parse_numa_stat("total=10 N0=4 N1=6\\n").per_node["total"]
    {0: 4, 1: 6}
    >>> parse_numa_stat("anon N0=4096 N1=8192\\n").totals["anon"]
    12288
    """
    totals: dict[str, int] = {}
    per_node: dict[str, dict[int, int]] = {}
    unit = "bytes"
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        first = parts[0]
        if "=" in first:  # v1: "<key>=<total> N0=.. N1=.."
            unit = "pages"
            key, _, total = first.partition("=")
            totals[key] = int(total)
        else:  # v2: "<key> N0=.. N1=.."
            key = first
        nodes: dict[int, int] = {}
        for item in parts[1:]:
            name, _, value = item.partition("=")
            if name.startswith("N") and name[1:].isdigit():
                nodes[int(name[1:])] = int(value)
        per_node[key] = nodes
        if "=" not in first:
            totals[key] = sum(nodes.values())
    return NumaStat(unit=unit, totals=totals, per_node=per_node)


# --------------------------------------------------------------------------- cpuset / cpu


def parse_cpuset_list(text: str) -> tuple[int, ...]:
    """Parse a kernel list (``cpuset.cpus``, ``cpuset.mems``, ``*.effective``): ``"0-3,8"``.

    >>> parse_cpuset_list("0-3,8\\n")
    (0, 1, 2, 3, 8)
    >>> parse_cpuset_list("\\n")
    ()
    """
    out: set[int] = set()
    for item in text.strip().split(","):
        item = item.strip()
        if not item:
            continue
        lo, sep, hi = item.partition("-")
        if sep:
            out.update(range(int(lo), int(hi) + 1))
        else:
            out.add(int(lo))
    return tuple(sorted(out))


def format_cpuset_list(values: tuple[int, ...] | list[int]) -> str:
    """Inverse of :func:`parse_cpuset_list` (``(0, 1, 2, 3, 8)`` → ``"0-3,8"``)."""
    items = sorted(set(values))
    ranges: list[str] = []
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        ranges.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    return ",".join(ranges)


def parse_cpu_max(text: str) -> tuple[int | None, int]:
    """Parse v2 ``cpu.max`` (``"$MAX $PERIOD"``) into ``(quota_us or None, period_us)``.

    >>> parse_cpu_max("max 100000\\n")
    (None, 100000)
    >>> parse_cpu_max("50000 100000\\n")
    (50000, 100000)
    """
    quota, _, period = text.strip().partition(" ")
    return (None if quota == "max" else int(quota)), int(period or "100000")


# --------------------------------------------------------------------------- paths and layout


@dataclass(frozen=True)
class CgroupPaths:
    """Absolute paths of one cgroup's files.

    ``rel`` is the cgroup path relative to the hierarchy root, as printed in
    ``/proc/<pid>/cgroup`` or kmsg ``task_memcg=`` (leading ``/`` optional).

    >>> CgroupPaths("harness/run1/kubepods/burstable/podX/c1", "v1").usage
    '/sys/fs/cgroup/memory/harness/run1/kubepods/burstable/podX/c1/memory.usage_in_bytes'
    >>> CgroupPaths("/kubepods.slice", "v2").usage
    '/sys/fs/cgroup/kubepods.slice/memory.current'
    """

    rel: str
    version: CgroupVersion | str
    root: str = CGROUP_ROOT

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", CgroupVersion(self.version))
        object.__setattr__(self, "rel", self.rel.strip("/"))

    @property
    def is_v1(self) -> bool:
        return self.version is CgroupVersion.V1

    def controller_dir(self, controller: str) -> str:
        """Directory of this cgroup in ``controller``'s hierarchy (v2: the single hierarchy)."""
        base = os.path.join(self.root, controller) if self.is_v1 else self.root
        return os.path.join(base, self.rel) if self.rel else base

    @property
    def memory_dir(self) -> str:
        return self.controller_dir("memory")

    @property
    def cpuset_dir(self) -> str:
        return self.controller_dir("cpuset")

    def _mem(self, v1_name: str, v2_name: str) -> str:
        return os.path.join(self.memory_dir, v1_name if self.is_v1 else v2_name)

    @property
    def usage(self) -> str:
        return self._mem("memory.usage_in_bytes", "memory.current")

    @property
    def stat(self) -> str:
        return self._mem("memory.stat", "memory.stat")

    @property
    def limit(self) -> str:
        return self._mem("memory.limit_in_bytes", "memory.max")

    @property
    def peak(self) -> str:
        return self._mem("memory.max_usage_in_bytes", "memory.peak")

    @property
    def numa_stat(self) -> str:
        return self._mem("memory.numa_stat", "memory.numa_stat")

    @property
    def oom(self) -> str:
        """The file holding the OOM kill counter: v1 ``memory.oom_control``, v2 ``memory.events``."""
        return self._mem("memory.oom_control", "memory.events")

    @property
    def failcnt(self) -> str:
        """v1 ``memory.failcnt``; v2 has no such file (``memory.events`` ``max`` is the closest)."""
        return self._mem("memory.failcnt", "memory.events")

    @property
    def event_control(self) -> str:
        """v1 ``cgroup.event_control`` (eventfd registration); no v2 equivalent."""
        return os.path.join(self.memory_dir, "cgroup.event_control")

    @property
    def procs(self) -> str:
        return os.path.join(self.memory_dir, "cgroup.procs")

    @property
    def cpuset_cpus(self) -> str:
        return os.path.join(self.cpuset_dir, "cpuset.cpus")

    @property
    def cpuset_mems(self) -> str:
        return os.path.join(self.cpuset_dir, "cpuset.mems")


@dataclass(frozen=True)
class CgroupMounts:
    """Where the cgroup hierarchies are mounted, from ``/proc/self/mountinfo``."""

    layout: CgroupLayout
    v1: dict[str, str]  # controller (or "name=systemd") -> mount point
    unified: str | None  # cgroup2 mount point

    @property
    def memory_version(self) -> CgroupVersion:
        """Version of the memory controller: v1 if a v1 hierarchy carries it."""
        return CgroupVersion.V1 if "memory" in self.v1 else CgroupVersion.V2

    @property
    def root(self) -> str:
        """The directory :class:`CgroupPaths` should use as ``root``."""
        if self.memory_version is CgroupVersion.V1:
            return os.path.dirname(self.v1["memory"])
        return self.unified or CGROUP_ROOT


def parse_mountinfo_cgroups(text: str) -> CgroupMounts:
    """Find cgroup mounts in ``/proc/self/mountinfo`` text and classify the layout.

    Line format (``man 5 proc``): ``id parent major:minor root mountpoint opts [optional...] -
    fstype source superopts``. v1 controllers are named in the super options.
    """
    v1: dict[str, str] = {}
    unified: str | None = None
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        rfields = right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        mountpoint = fields[4].replace("\\040", " ")
        fstype, superopts = rfields[0], rfields[2]
        if fstype == "cgroup2":
            unified = mountpoint
        elif fstype == "cgroup":
            for opt in superopts.split(","):
                if (
                    opt in ("rw", "ro")
                    or opt.startswith(("release_agent=", "xattr"))
                    or opt == "clone_children"
                ):
                    continue
                v1.setdefault(opt, mountpoint)
    controllers = {k for k in v1 if not k.startswith("name=")}
    if controllers and unified:
        layout = CgroupLayout.HYBRID
    elif controllers:
        layout = CgroupLayout.V1
    else:
        layout = CgroupLayout.V2
    return CgroupMounts(layout=layout, v1=v1, unified=unified)


def detect_host_layout(mountinfo: str = "/proc/self/mountinfo") -> CgroupMounts:
    """Read ``mountinfo`` and classify this host's cgroup layout (see :func:`parse_mountinfo_cgroups`)."""
    with open(mountinfo, encoding="utf-8") as fh:
        return parse_mountinfo_cgroups(fh.read())


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Parse ``/proc/<pid>/cgroup`` into ``{controller: path}``; the v2 entry has key ``""``.

    >>> parse_proc_cgroup("4:memory:/a/b\\n0::/x\\n")
    {'memory': '/a/b', '': '/x'}
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for ctrl in parts[1].split(",") if parts[1] else [""]:
            out[ctrl] = parts[2]
    return out
