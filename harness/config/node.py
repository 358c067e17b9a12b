"""Node facts the model needs that a KubeletConfiguration does not hold.

They come from a host facts file (YAML/JSON, e.g. written by the Ansible ``facts``
role), from CLI flags, or from this host (``NodeFacts.detect()``). Defaults follow the
issue: cgroup v2 and the newest supported kubelet minor.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness import quantity
from harness.config.errors import all_errors, load_yaml_mapping
from harness.errors import InputErrors

SUPPORTED_MINORS = range(28, 35)  # kubelet 1.28 .. 1.34
NEWEST_MINOR = SUPPORTED_MINORS[-1]


def parse_kubelet_version(v: str | int | float) -> int:
    """'1.33', 'v1.33.2', '1.33.0-alpha.1' or 33 -> minor 33."""
    s = str(v).strip()
    m = re.fullmatch(r"v?1\.(\d+)(?:\.\d+)?(?:[-+].*)?", s) or re.fullmatch(r"(\d+)", s)
    if not m:
        raise ValueError(f"invalid kubelet version {v!r} (expected e.g. 1.33 or v1.33.2)")
    minor = int(m.group(1))
    if minor not in SUPPORTED_MINORS:
        raise ValueError(
            f"kubelet 1.{minor} is outside the modelled range 1.{SUPPORTED_MINORS[0]}-1.{NEWEST_MINOR}"
        )
    return minor


class NumaNode(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    id: int = Field(ge=0)
    memory_bytes: int = Field(alias="memory", ge=0)
    # page size (e.g. "2Mi", "1Gi") -> number of pages on this NUMA node
    hugepages: dict[str, int] = Field(default_factory=dict)
    cpus: list[int] = Field(default_factory=list)
    distances: list[int] = Field(default_factory=list)

    @field_validator("memory_bytes", mode="before")
    @classmethod
    def _mem(cls, v: Any) -> int:
        return quantity.to_bytes(v)


class NodeFacts(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = "node"
    memory_capacity_bytes: int = Field(alias="memoryCapacity", gt=0)  # MemTotal
    cpus: int = Field(2, gt=0)
    numa_nodes: list[NumaNode] = Field(default_factory=list, alias="numaNodes")
    cgroup_version: int = Field(2, alias="cgroupVersion")
    kubelet_version: str = Field(f"1.{NEWEST_MINOR}", alias="kubeletVersion")
    page_size: int = Field(4096, alias="pageSize")
    pid_max: int = Field(4194304, alias="pidMax")
    # /proc/sys/kernel/threads-max: the kubelet's pid capacity is the smaller of the two (model.node)
    threads_max: int | None = Field(None, alias="threadsMax", gt=0)
    # whether the container runtime applies the kubelet's hugetlb limits to containers: containerd's
    # CRI plugin does only with disable_hugetlb_controller = false (default true)
    runtime_hugetlb: bool = Field(False, alias="runtimeHugetlb")
    swap_bytes: int = Field(0, alias="swap")
    # whether the swap controller exists for the kubelet (k8s: kuberuntime_container_linux.go
    # swapControllerAvailable): v1 memory.memsw.limit_in_bytes (swap accounting), v2 memory.swap.max
    # in the kubelet's own cgroup. Debian's kernels have both.
    swap_controller: bool = Field(True, alias="swapController")
    kernel: str = ""
    # False where writing a negative oom_score_adj is refused (no CAP_SYS_RESOURCE)
    negative_oom_score_adj: bool = Field(True, alias="negativeOomScoreAdj")
    # The OCI runtime and its version decide a container's cgroup v2 cpu.weight (spec §4.6): runc
    # >= 1.3.2 and crun >= 1.23 convert CRI cpu_shares with the new quadratic formula
    # (``model.cgroups.container_cpu_weight``). Detected from ``runc --version`` on this host.
    oci_runtime: Literal["runc", "crun"] = Field("runc", alias="ociRuntime")
    runc_version: str = Field("1.1.5", alias="runcVersion")
    crun_version: str = Field("1.21", alias="crunVersion")

    @field_validator("memory_capacity_bytes", "swap_bytes", mode="before")
    @classmethod
    def _q(cls, v: Any) -> int:
        return quantity.to_bytes(v)

    @field_validator("cgroup_version")
    @classmethod
    def _cg(cls, v: int) -> int:
        if v not in (1, 2):
            raise ValueError("cgroupVersion must be 1 or 2")
        return v

    @field_validator("kubelet_version")
    @classmethod
    def _kv(cls, v: str) -> str:
        return f"1.{parse_kubelet_version(v)}"

    @model_validator(mode="after")
    def _numa(self) -> NodeFacts:
        if not self.numa_nodes:
            self.numa_nodes = [
                NumaNode.model_validate(
                    {"id": 0, "memory": self.memory_capacity_bytes, "cpus": list(range(self.cpus))}
                )
            ]
        ids = [n.id for n in self.numa_nodes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"numaNodes has duplicate ids {ids}")
        return self

    @property
    def kubelet_minor(self) -> int:
        return parse_kubelet_version(self.kubelet_version)

    @property
    def hugepages_capacity(self) -> dict[str, int]:
        """``hugepages-<size>`` -> bytes, summed over NUMA nodes (cAdvisor capacity)."""
        out: dict[str, int] = {}
        for n in self.numa_nodes:
            for size, count in n.hugepages.items():
                key = f"hugepages-{size}"
                out[key] = out.get(key, 0) + quantity.to_bytes(size) * count
        return out

    @classmethod
    def detect(cls, **overrides: Any) -> NodeFacts:
        """Facts of the machine this runs on (MemTotal, CPUs, NUMA, cgroup version)."""
        return cls.model_validate({**detect_local_facts(), **overrides})


def detect_local_facts(root: str = "/") -> dict[str, Any]:
    r = Path(root)
    meminfo = (r / "proc/meminfo").read_text()
    m = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.M)
    mem = int(m.group(1)) * 1024 if m else 0
    swap_m = re.search(r"^SwapTotal:\s+(\d+) kB", meminfo, re.M)
    facts: dict[str, Any] = {
        "name": os.uname().nodename.lower(),
        "memoryCapacity": mem,
        "cpus": os.cpu_count() or 1,
        "cgroupVersion": 2 if (r / "sys/fs/cgroup/cgroup.controllers").exists() else 1,
        "swap": int(swap_m.group(1)) * 1024 if swap_m else 0,
        "swapController": swap_controller(r),
        "kernel": os.uname().release,
        "pageSize": os.sysconf("SC_PAGE_SIZE"),
    }
    nodes = []
    base = r / "sys/devices/system/node"
    for d in sorted(base.glob("node[0-9]*"), key=lambda p: int(p.name[4:])):
        nid = int(d.name[4:])
        nm = re.search(r"MemTotal:\s+(\d+) kB", (d / "meminfo").read_text())
        hp: dict[str, int] = {}
        for hd in (d / "hugepages").glob("hugepages-*kB"):
            kb = int(hd.name.split("-")[1][:-2])
            # every size the kernel supports, 0 pages included: cAdvisor reports them all, so the
            # kubelet's capacity and memory-manager state list hugepages-2Mi: 0 and hugepages-1Gi: 0
            hp[quantity.format_binary_si(kb * 1024)] = int((hd / "nr_hugepages").read_text())
        cpus = _parse_cpulist((d / "cpulist").read_text()) if (d / "cpulist").exists() else []
        dist = [int(x) for x in (d / "distance").read_text().split()] if (d / "distance").exists() else []
        nodes.append(
            {
                "id": nid,
                "memory": int(nm.group(1)) * 1024 if nm else 0,
                "hugepages": hp,
                "cpus": cpus,
                "distances": dist,
            }
        )
    if nodes:
        facts["numaNodes"] = nodes
    pid_max = r / "proc/sys/kernel/pid_max"
    if pid_max.exists():
        facts["pidMax"] = int(pid_max.read_text())
    threads_max = r / "proc/sys/kernel/threads-max"
    if threads_max.exists():
        facts["threadsMax"] = int(threads_max.read_text())
    for runtime in ("runc", "crun"):
        v = runtime_version(runtime) if root == "/" else None
        if v:
            facts[f"{runtime}Version"] = v
    return facts


def swap_controller(root: Path) -> bool:
    """k8s: pkg/kubelet/kuberuntime/kuberuntime_container_linux.go ``swapControllerAvailable``, for a
    kubelet in this process's cgroup: v1 ``memory/memory.memsw.limit_in_bytes``, v2
    ``<own cgroup>/memory.swap.max`` (the root cgroup has none, so a process there sees none)."""
    cg = root / "sys/fs/cgroup"
    if not (cg / "cgroup.controllers").exists():
        return (cg / "memory/memory.memsw.limit_in_bytes").exists()
    try:
        own = next(
            line.split(":", 2)[2]
            for line in (root / "proc/self/cgroup").read_text().splitlines()
            if line.startswith("0::")
        )
    except (OSError, StopIteration):
        return False
    return (cg / own.strip().lstrip("/") / "memory.swap.max").exists()


def runtime_version(binary: str) -> str | None:
    """``runc --version`` / ``crun --version`` of this host (first line ``<binary> version X.Y.Z``),
    None when it is not installed or does not answer."""
    path = shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin:/bin:" + os.environ.get("PATH", ""))
    if path is None:
        return None
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(rf"{binary} version (\d+\.\d+(?:\.\d+)?)", out)
    return m.group(1) if m else None


def _parse_cpulist(s: str) -> list[int]:
    out: list[int] = []
    for part in s.strip().split(","):
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def parse_numa_memory(spec: str) -> list[dict[str, Any]]:
    """CLI ``--numa-memory 0=8Gi,1=8Gi`` -> numaNodes entries."""
    out = []
    for part in spec.split(","):
        if "=" not in part:
            raise ValueError(f"invalid --numa-memory entry {part!r}, expected ID=QUANTITY")
        nid, q = part.split("=", 1)
        out.append({"id": int(nid), "memory": quantity.to_bytes(q.strip())})
    return out


def parse_facts(data: dict[str, Any], source: str = "<facts>") -> NodeFacts:
    try:
        return NodeFacts.model_validate(data)
    except ValidationError as exc:
        raise InputErrors(source, all_errors(exc, NodeFacts)) from None


def load_facts(path: str | Path) -> NodeFacts:
    return parse_facts(load_yaml_mapping(path), str(path))
