"""Node capacity, allocatable and the ``kubepods`` limits (kubelet-memory-spec.md §1).

Sources (verified against a 1.3x snapshot of each):

* capacity — k8s: pkg/kubelet/cadvisor/util.go ``CapacityFromMachineInfo``: memory = MemTotal
  (``NewQuantity(MemoryCapacity, BinarySI)``), cpu = ``NewMilliQuantity(NumCores*1000, DecimalSI)``,
  ``hugepages-<size>`` = page size × pages. "internal capacity" adds ``pid`` (pid max,
  k8s: pkg/kubelet/stats/pidlimit) and is used only for the top-level cgroups.
* reservation — k8s: pkg/kubelet/cm/node_container_manager_linux.go ``GetNodeAllocatableReservation``
  + k8s: pkg/kubelet/cm/helpers.go ``hardEvictionReservation`` (hard ``memory.available`` only;
  ``nodefs.available`` -> ephemeral-storage is not modelled because NodeFacts has no disk size).
* status.allocatable — k8s: pkg/kubelet/nodestatus/setters.go ``MachineInfo``: capacity − reservation
  clamped at 0, then every hugepage capacity is subtracted from memory (clamped at 0).
* kubepods limits — ``enforceNodeAllocatableCgroups`` / ``getNodeAllocatableAbsoluteImpl``: internal
  capacity − systemReserved − kubeReserved (clamped at 0) when ``cgroupsPerQOS`` and ``pods`` is
  enforced, else the raw internal capacity. No eviction threshold and no hugepages subtracted.
* startup validation — ``validateNodeAllocatable``:
  ``invalid Node Allocatable configuration. Resource %q has a reservation of %v but capacity of %v.
  Expected capacity >= reservation.`` The quantities are printed with ``%v`` on a
  ``resource.Quantity`` *value* (its ``String()`` has a pointer receiver), i.e. as the Go struct
  ``{{<int64> <scale>} {<nil>}  <Format>}``; a real log line reads
  ``... reservation of {{2609905664 0} {<nil>}  BinarySI} but capacity of {{1003839488 0} {<nil>}  BinarySI}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness import quantity
from harness.config.kubelet import KubeletConfiguration
from harness.config.node import NodeFacts
from harness.model.thresholds import MEMORY_AVAILABLE, parse_thresholds

MEMORY = "memory"
CPU = "cpu"
PID = "pid"
HUGEPAGES_PREFIX = "hugepages-"


@dataclass(frozen=True)
class NodeAllocatable:
    capacity: dict[str, int]  # internal capacity: memory bytes, cpu millis, pid, hugepages-* bytes
    reservation: dict[str, int]  # GetNodeAllocatableReservation (zero entries dropped)
    allocatable: dict[str, int]  # status.allocatable
    kubepods_limits: dict[str, int]  # limits written on the kubepods cgroup
    errors: list[str] = field(default_factory=list)
    # GetNodeAllocatableAbsolute (capacity − system − kube reserved, no eviction, no hugepages);
    # what QOSReserved and MemoryQoS use as "allocatable"
    allocatable_absolute: dict[str, int] = field(default_factory=dict)

    @property
    def memory_capacity(self) -> int:
        return self.capacity[MEMORY]

    @property
    def allocatable_memory(self) -> int:
        return self.allocatable[MEMORY]

    @property
    def kubepods_memory_limit(self) -> int:
        return self.kubepods_limits[MEMORY]


# ---------------------------------------------------------------------------------------------
# Go resource.Quantity value representation, for the exact validation error text


@dataclass(frozen=True)
class GoQuantity:
    """``resource.Quantity`` in its int64 fast-path form: ``value × 10^scale`` and a Format."""

    value: int = 0
    scale: int = 0
    format: str = ""  # "BinarySI" | "DecimalSI" | "DecimalExponent" | "" (zero Quantity{})

    def add(self, other: GoQuantity) -> GoQuantity:
        """``Quantity.Add`` → ``int64Amount.Add`` (apimachinery/pkg/api/resource/amount.go):
        a zero receiver adopts the other's Format (and value/scale); different scales are
        aligned to the smaller one."""
        fmt = other.format if self.value == 0 else self.format
        if other.value == 0:
            return GoQuantity(self.value, self.scale, fmt)
        if self.value == 0:
            return GoQuantity(other.value, other.scale, fmt)
        if self.scale == other.scale:
            return GoQuantity(self.value + other.value, self.scale, fmt)
        if self.scale > other.scale:
            return GoQuantity(self.value * 10 ** (self.scale - other.scale) + other.value, other.scale, fmt)
        return GoQuantity(self.value + other.value * 10 ** (other.scale - self.scale), self.scale, fmt)

    def go_v(self) -> str:
        """``fmt.Sprintf("%v", q)`` of a Quantity value: ``{{value scale} {<nil>} <s> Format}``
        with an empty cached string ``s`` (cleared by Add; never set by NewQuantity)."""
        return f"{{{{{self.value} {self.scale}}} {{<nil>}}  {self.format}}}"


_DECIMAL_SUFFIX = {"": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18, "m": -3, "u": -6, "n": -9}
_BINARY_SUFFIX = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_QTY_RE = re.compile(r"^([+-]?)(\d*)(?:\.(\d*))?([a-zA-Z]*|[eE][+-]?\d+)$")


def go_quantity(text: str | int) -> GoQuantity:
    """``resource.ParseQuantity`` fast path (apimachinery quantity.go): the (value, scale, format)
    the parsed Quantity carries. Falls back to whole units with scale 0 when off the fast path."""
    s = str(text).strip()
    m = _QTY_RE.match(s)
    if not m:
        return GoQuantity(quantity.to_bytes(s), 0, "DecimalSI")
    sign, num, denom, suffix = m.group(1), m.group(2) or "0", m.group(3) or "", m.group(4)
    if suffix in _BINARY_SUFFIX:
        exp = _BINARY_SUFFIX[suffix]
        if denom:
            return GoQuantity(quantity.to_bytes(s), 0, "BinarySI")
        value = int(num) << exp
        return GoQuantity(-value if sign == "-" else value, 0, "BinarySI")
    if suffix in _DECIMAL_SUFFIX:
        scale, fmt = _DECIMAL_SUFFIX[suffix], "DecimalSI"
    else:  # e/E exponent
        scale, fmt = int(suffix[1:]), "DecimalExponent"
    scale -= len(denom)
    if scale < -9 or len(num) + len(denom) > 18:
        return GoQuantity(quantity.to_bytes(s), 0, fmt)
    value = int(num + denom)
    return GoQuantity(-value if sign == "-" else value, scale, fmt)


# ---------------------------------------------------------------------------------------------


def _reserved_value(name: str, raw: str | int) -> int:
    if name == PID:
        return int(raw)
    if name == CPU:
        return quantity.to_millis(raw)
    return quantity.to_bytes(raw, what=f"quantity for {name}")


def reserved(profile: KubeletConfiguration) -> tuple[dict[str, int], dict[str, int]]:
    """(systemReserved, kubeReserved) as ints: memory/hugepages bytes, cpu millis, pid count."""
    sys_r = {k: _reserved_value(k, v) for k, v in profile.system_reserved.items()}
    kube_r = {k: _reserved_value(k, v) for k, v in profile.kube_reserved.items()}
    return sys_r, kube_r


def status_capacity(facts: NodeFacts) -> dict[str, int]:
    """``CapacityFromMachineInfo``: memory, cpu, hugepages-* (ephemeral-storage not modelled)."""
    cap = {MEMORY: facts.memory_capacity_bytes, CPU: facts.cpus * 1000}
    cap.update(facts.hugepages_capacity)
    return cap


def internal_capacity(facts: NodeFacts) -> dict[str, int]:
    """Capacity + ``pid``: k8s: pkg/kubelet/stats/pidlimit/pidlimit_linux.go ``Stats`` MaxPID, the
    smaller of /proc/sys/kernel/pid_max and /proc/sys/kernel/threads-max ("both specify the system-wide
    limit on the number of tasks"; a 4 GiB VM has pid_max 4194304 but threads-max ~31000)."""
    cap = status_capacity(facts)
    cap[PID] = min(facts.pid_max, facts.threads_max) if facts.threads_max else facts.pid_max
    return cap


def hard_eviction_reservation(
    profile: KubeletConfiguration, facts: NodeFacts, kubelet_minor: int
) -> tuple[dict[str, int], dict[str, GoQuantity]]:
    """``hardEvictionReservation``: hard ``memory.available`` → memory (literal or
    ``int64(capacity × fraction)``); returns ints and the Go quantities for messages."""
    out: dict[str, int] = {}
    goq: dict[str, GoQuantity] = {}
    for t in parse_thresholds(profile, kubelet_minor):
        if t.signal != MEMORY_AVAILABLE or not t.hard:
            continue
        v = t.value.resolve(facts.memory_capacity_bytes)
        out[MEMORY] = v
        # GetThresholdQuantity: a literal keeps its parsed Quantity, a percentage becomes
        # NewQuantity(v, BinarySI)
        goq[MEMORY] = (
            go_quantity(t.value.text) if t.value.quantity is not None else GoQuantity(v, 0, "BinarySI")
        )
    return out, goq


def _capacity_go(name: str, value: int) -> GoQuantity:
    if name == CPU:
        return GoQuantity(value, -3, "DecimalSI")  # NewMilliQuantity(cores*1000, DecimalSI)
    return GoQuantity(value, 0, "BinarySI")  # NewQuantity(bytes, BinarySI)


def node_allocatable(profile: KubeletConfiguration, facts: NodeFacts) -> NodeAllocatable:
    """Capacity, reservation, status.allocatable and kubepods limits for this profile and node."""
    minor = facts.kubelet_minor
    sys_r, kube_r = reserved(profile)
    evict, evict_go = hard_eviction_reservation(profile, facts, minor)
    cap = status_capacity(facts)
    icap = internal_capacity(facts)

    # GetNodeAllocatableReservation: over status capacity keys, zero entries dropped
    reservation: dict[str, int] = {}
    reservation_go: dict[str, GoQuantity] = {}
    for k in cap:
        v = sys_r.get(k, 0) + kube_r.get(k, 0) + evict.get(k, 0)
        if v != 0:
            reservation[k] = v
            g = GoQuantity(0, 0, "DecimalSI")  # resource.NewQuantity(0, DecimalSI)
            for src_map, raw_map in ((sys_r, profile.system_reserved), (kube_r, profile.kube_reserved)):
                g = g.add(go_quantity(raw_map[k]) if k in src_map else GoQuantity())
            g = g.add(evict_go.get(k, GoQuantity()))
            reservation_go[k] = g

    errors = [
        f"invalid Node Allocatable configuration. Resource {_go_q(k)} has a reservation of "
        f"{reservation_go[k].go_v()} but capacity of {_capacity_go(k, cap[k]).go_v()}. "
        "Expected capacity >= reservation."
        for k in sorted(reservation)
        if cap[k] - reservation[k] < 0
    ]
    # validateNodeAllocatable joins all resource errors into one message
    if len(errors) > 1:
        parts = [e.removeprefix("invalid Node Allocatable configuration. ") for e in errors]
        errors = ["invalid Node Allocatable configuration. " + " ".join(parts)]

    # setters.go MachineInfo
    alloc = {k: max(0, v - reservation.get(k, 0)) for k, v in cap.items()}
    for k, v in cap.items():
        if k.startswith(HUGEPAGES_PREFIX):
            alloc[MEMORY] = max(0, alloc[MEMORY] - v)

    absolute_internal = {k: max(0, v - sys_r.get(k, 0) - kube_r.get(k, 0)) for k, v in icap.items()}
    enforce_pods = profile.cgroups_per_qos and "pods" in profile.enforce_node_allocatable_effective
    kubepods = dict(absolute_internal) if enforce_pods else dict(icap)
    return NodeAllocatable(
        capacity=icap,
        reservation=reservation,
        allocatable=alloc,
        kubepods_limits=kubepods,
        errors=errors,
        allocatable_absolute={k: v for k, v in absolute_internal.items() if k != PID},
    )


def _go_q(s: str) -> str:
    """Go ``%q`` of a plain resource name."""
    return '"' + s + '"'
