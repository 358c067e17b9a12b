"""Suites and scenarios: what to run, and what the model predicts for it.

One schema serves ``harness model predict`` and ``harness run``::

    apiVersion: harness/v1
    kind: Suite
    name: local
    profile: ../profiles/local.yaml      # KubeletConfiguration, relative to this file
    node: {memoryCapacity: 1Gi, cpus: 2, cgroupVersion: 1, kubeletVersion: "1.33"}
    sampleHz: 10
    scenarios:
      - name: s1-container-limit
        id: S1
        timeout: 60s
        workloads:
          - name: leaker
            placement: pod
            resources: {requests: {memory: 64Mi}, limits: {memory: 128Mi}}
            leak: {chunk: 8Mi, interval: 100ms}

A file of ``kind: Scenario`` holds one scenario with its own ``profile`` and ``node``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness import quantity
from harness.backends import NAMES, BackendName
from harness.config import podschema
from harness.config.durations import parse_duration
from harness.config.errors import all_errors, first_error, load_yaml_mapping
from harness.config.kubelet import KubeletConfiguration, load_profile
from harness.config.node import NodeFacts, detect_local_facts
from harness.config.pod import Pod, load_pods, parse_pod
from harness.errors import InputError, InputErrors

API_VERSION = "harness/v1"

Placement = Literal["pod", "container", "host"]

# Exit code of the leak program when its heap cap is reached (workloads/leak.c).
HEAP_CAP_EXIT_CODE = 3


def _bytes(v: Any) -> int:
    return quantity.to_bytes(v)


def _secs(v: Any) -> float:
    return parse_duration(v)


class Leak(BaseModel):
    """How a workload allocates memory (the leak program's options)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    mode: Literal["anon", "pagecache"] = "anon"
    chunk_bytes: int = Field(4 * 1048576, alias="chunk", gt=0)
    interval_s: float = Field(0.1, alias="interval", ge=0)
    # 0 = leak until killed
    max_bytes: int = Field(0, alias="max", ge=0)
    start_delay_s: float = Field(0.0, alias="startDelay", ge=0)
    # seconds to hold after reaching max, then exit 0; None = hold until stopped
    hold_s: float | None = Field(None, alias="hold")
    processes: int = Field(1, ge=1, le=64)
    # give up (exit HEAP_CAP_EXIT_CODE) at this percentage of the own cgroup's memory limit
    heap_cap_percent: int | None = Field(None, alias="heapCapPercent", gt=0, le=100)
    # fraction of each allocated page that is touched (1.0: allocated == resident)
    touch: float = Field(1.0, ge=0, le=1)

    _b = field_validator("chunk_bytes", "max_bytes", mode="before")(classmethod(lambda c, v: _bytes(v)))
    _d = field_validator("interval_s", "start_delay_s", mode="before")(classmethod(lambda c, v: _secs(v)))

    @field_validator("hold_s", mode="before")
    @classmethod
    def _hold(cls, v: Any) -> float | None:
        return None if v is None else _secs(v)

    @property
    def rate_bytes_per_s(self) -> float:
        """Bytes per second over all processes (inf when interval is 0)."""
        if self.interval_s == 0:
            return math.inf
        return self.chunk_bytes * self.processes / self.interval_s

    def leak_args(self) -> list[str]:
        """Command-line arguments for workloads/leak (see workloads/README.md)."""
        args = [
            f"--chunk={self.chunk_bytes}",
            f"--interval-ms={round(self.interval_s * 1000, 3):g}",
            f"--max={self.max_bytes}",
            f"--start-delay-ms={round(self.start_delay_s * 1000):d}",
            f"--processes={self.processes}",
            f"--touch={self.touch:g}",
        ]
        if self.hold_s is not None:
            args.append(f"--hold-ms={round(self.hold_s * 1000):d}")
        if self.heap_cap_percent is not None:
            args.append(f"--heap-cap-percent={self.heap_cap_percent}")
        if self.mode == "pagecache":
            args.append("--mode=pagecache")
        return args


class WorkloadResources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requests: dict[str, str | int] = Field(default_factory=dict)
    limits: dict[str, str | int] = Field(default_factory=dict)

    @field_validator("requests", "limits")
    @classmethod
    def _q(cls, v: dict[str, Any]) -> dict[str, Any]:
        for k, q in v.items():
            if k not in ("cpu", "memory") and not k.startswith("hugepages-"):
                raise ValueError(f"unsupported resource {k!r}")
            quantity.parse_nonnegative(q, what=f"quantity for {k}")
        return v

    @model_validator(mode="after")
    def _requests_within_limits(self) -> WorkloadResources:
        errs = podschema.requests_above_limits({"requests": self.requests, "limits": self.limits}, "")
        if errs:
            raise ValueError("; ".join(f"{e.field.lstrip('.')}: {e.reason}" for e in errs))
        return self


class Workload(BaseModel):
    """One leaking (or idle) program and where it lives.

    placement ``pod``: a Kubernetes pod (real kubelet), or its mirror in the harness's
    kubepods hierarchy (process/docker/containerd backends). ``container``: a container
    the kubelet does not manage, with its own limit, outside kubepods. ``host``: a plain
    process on the node, outside kubepods (scenario S3).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=50)
    placement: Placement = "pod"
    # Either a pod manifest file (relative to the suite) or the inline fields below.
    pod_file: str | None = Field(None, alias="pod")
    resources: WorkloadResources = Field(default_factory=WorkloadResources)
    priority: int | None = None
    priority_class_name: str = Field("", alias="priorityClassName")
    termination_grace_period_s: int = Field(30, alias="terminationGracePeriodSeconds")
    # oom_score_adj for placement host/container (pods get the kubelet's value)
    oom_score_adj: int = Field(0, alias="oomScoreAdj", ge=-1000, le=1000)
    leak: Leak = Field(default_factory=Leak)
    # The memory request (and limit, where one is set) derived from the node as the kubelet sees it
    # at the scenario's start: "allocatable - 512Mi", "numa0Free + 256Mi" (``model.sizing``), so a
    # scenario exercises the same outcome on any host.
    memory_from_node: str | None = Field(
        None,
        alias="memoryFromNode",
        pattern=r"^\s*(allocatable|numa\d+Free)\s*([+-]\s*[0-9.]+[A-Za-z]*)?\s*$",
    )

    # filled in by the loader when pod_file is used
    pod_manifest: Pod | None = Field(None, exclude=True)

    def to_pod(self, namespace: str = "default") -> Pod:
        """The workload as a v1 Pod (for the model and the kubernetes backend)."""
        if self.pod_manifest is not None:
            return self.pod_manifest
        spec: dict[str, Any] = {
            "containers": [
                {
                    "name": self.name,
                    "image": "registry.local/harness/leak:latest",
                    "resources": self.resources.model_dump(),
                }
            ],
            "terminationGracePeriodSeconds": self.termination_grace_period_s,
            "restartPolicy": "Never",
        }
        if self.priority is not None:
            spec["priority"] = self.priority
        if self.priority_class_name:
            spec["priorityClassName"] = self.priority_class_name
        return parse_pod(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": self.name, "namespace": namespace},
                "spec": spec,
            },
            f"<workload {self.name}>",
        )

    @property
    def memory_limit_bytes(self) -> int:
        """Container memory limit (0 = none) of the (first) container."""
        return self.to_pod().spec.containers[0].resources.limit_bytes("memory")


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=50)
    id: str = ""
    description: str = ""
    profile_file: str | None = Field(None, alias="profile")
    node_overrides: dict[str, Any] = Field(default_factory=dict, alias="node")
    timeout_s: float = Field(60.0, alias="timeout", gt=0)
    backends: list[BackendName] = Field(default_factory=lambda: list(NAMES))  # type: ignore[arg-type]
    # S8: compare every cgroup file the kubelet and the runtime wrote with the model (kubernetes backend)
    check_cgroups: bool = Field(False, alias="checkCgroups")
    # Real kubelet only: set evictionHard memory.available to the node's memory.available at the
    # scenario's start minus this margin (node-wide pressure after draining ~margin, whatever the
    # host's idle usage). The derived profile is written next to the run and used by kubelet and model.
    pressure_margin: str | None = Field(None, alias="pressureMargin")
    # How the workloads start: "serial" (default) launches each and waits until it runs before the
    # next (a scenario may rely on that order, e.g. admission); "parallel" creates them all and
    # waits for them together, and stops them together at the timeout (a node's worth of pods).
    launch: Literal["serial", "parallel"] = "serial"
    # Real kubelet only: the scenario means to exhaust the node's memory (a whole-node OOM, seed
    # 003). The harness's ceiling (harness/cluster/ceiling.py) is not applied to its host workloads,
    # so it runs only on a disposable host (``host.probes.disposable_host``: a `harness lab` VM).
    exhausts_node: bool = Field(False, alias="exhaustsNode")
    workloads: list[Workload] = Field(min_length=1)

    _t = field_validator("timeout_s", mode="before")(classmethod(lambda c, v: _secs(v)))

    # resolved by the loader
    profile: KubeletConfiguration | None = Field(None, exclude=True)
    node: NodeFacts | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _unique(self) -> Scenario:
        names = [w.name for w in self.workloads]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate workload names {sorted(dup)}")
        if self.exhausts_node and self.backends != ["kubernetes"]:
            raise ValueError(
                "exhaustsNode needs backends: [kubernetes] (the other backends' node is a cgroup the "
                "harness draws, which cannot exhaust the host)"
            )
        return self


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    api_version: Literal["harness/v1"] = Field("harness/v1", alias="apiVersion")
    kind: Literal["Suite"] = "Suite"
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=50)
    description: str = ""
    profile_file: str = Field(alias="profile")
    node_overrides: dict[str, Any] = Field(default_factory=dict, alias="node")
    sample_hz: float = Field(10.0, alias="sampleHz", gt=0, le=1000)
    scenarios: list[Scenario] = Field(min_length=1)

    source: str = Field("<suite>", exclude=True)

    @model_validator(mode="after")
    def _unique(self) -> Suite:
        names = [s.name for s in self.scenarios]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate scenario names {sorted(dup)}")
        return self

    def scenario(self, name: str) -> Scenario:
        return self.select(name)[0]

    def select(self, name: str) -> list[Scenario]:
        """Every scenario whose name or catalog id is ``name``, in suite order (an id such as S9 or
        S10 may name several variants)."""
        found = [s for s in self.scenarios if s.name == name or s.id == name]
        if found:
            return found
        raise InputError(
            self.source,
            "scenarios",
            f"no scenario named {name!r}; have " + ", ".join(s.name for s in self.scenarios),
        )


def _resolve(base: Path, rel: str) -> Path:
    p = Path(rel)
    return p if p.is_absolute() else (base / p)


def _node(overrides: dict[str, Any], source: str, field: str, detect: bool) -> NodeFacts:

    data: dict[str, Any] = {}
    if detect:
        data.update(detect_local_facts())
        # a shrunk node keeps the host's CPUs but is one NUMA node of the given size
        if "memoryCapacity" in overrides and "numaNodes" not in overrides:
            data.pop("numaNodes", None)
    data.update(overrides)
    try:
        return NodeFacts.model_validate(data)
    except ValidationError as exc:
        err = first_error(exc, source, NodeFacts)
        raise InputError(source, f"{field}.{err.field}" if err.field else field, err.reason) from None


def load_suite(path: str | Path, *, detect_host: bool = True) -> Suite:
    """Load a Suite (or a single Scenario) file; resolves profile, node facts and pod files."""
    p = Path(path)
    data = load_yaml_mapping(p)
    source = str(p)
    kind = data.get("kind")
    if kind == "Scenario":
        data = dict(data)
        if data.get("apiVersion") != API_VERSION:
            raise InputError(
                source, "apiVersion", f"expected {API_VERSION!r}, got {data.get('apiVersion')!r}"
            )
        data.pop("apiVersion")
        data.pop("kind")
        if "profile" not in data:
            raise InputError(source, "profile", "missing: a Scenario file needs a kubelet profile")
        sdata = {k: v for k, v in data.items() if k not in ("sampleHz",)}
        data = {
            "apiVersion": API_VERSION,
            "kind": "Suite",
            "name": data.get("name", "scenario"),
            "profile": data["profile"],
            "node": data.get("node", {}),
            "sampleHz": data.get("sampleHz", 10),
            "scenarios": [sdata],
        }
        data["scenarios"][0].pop("profile", None)
        data["scenarios"][0].pop("node", None)
    elif kind != "Suite":
        raise InputError(source, "kind", f"expected 'Suite' or 'Scenario', got {kind!r}")
    elif data.get("apiVersion") != API_VERSION:
        raise InputError(source, "apiVersion", f"expected {API_VERSION!r}, got {data.get('apiVersion')!r}")
    if isinstance(data.get("scenarios"), list):
        # a scenario's "profile:"/"node:" keys would also match the resolved Scenario.profile /
        # Scenario.node fields by name: pass them by their field names instead
        ren = {"profile": "profile_file", "node": "node_overrides"}
        data = {
            **data,
            "scenarios": [
                {ren.get(k, k): v for k, v in s.items()} if isinstance(s, dict) else s
                for s in data["scenarios"]
            ],
        }
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        raise InputErrors(source, all_errors(exc, Suite)) from None
    suite.source = source
    base = p.parent
    suite_profile = load_profile(_resolve(base, suite.profile_file))
    for i, sc in enumerate(suite.scenarios):
        sc.profile = load_profile(_resolve(base, sc.profile_file)) if sc.profile_file else suite_profile
        merged = {**suite.node_overrides, **sc.node_overrides}
        field = f"scenarios[{i}].node" if sc.node_overrides else "node"
        sc.node = _node(merged, source, field, detect_host)
        for j, w in enumerate(sc.workloads):
            if w.pod_file:
                pods = load_pods(_resolve(base, w.pod_file))
                if len(pods) != 1:
                    raise InputError(
                        source,
                        f"scenarios[{i}].workloads[{j}].pod",
                        f"{w.pod_file} holds {len(pods)} pods, expected 1",
                    )
                w.pod_manifest = pods[0]
    return suite
