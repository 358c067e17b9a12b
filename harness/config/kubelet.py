"""A kubelet profile: a real ``KubeletConfiguration`` (kubelet.config.k8s.io/v1beta1).

The profile file is the very file provisioning deploys to a host, so it is parsed
as the kubelet parses it: every v1beta1 field name is accepted (unknown ones are an
error naming the file and the field, like the kubelet's strict decoding), and
defaults are applied as ``SetDefaults_KubeletConfiguration`` does.

Defaults source: k8s: pkg/kubelet/apis/config/v1beta1/defaults.go and
defaults_linux.go (1.28–1.34). Field list: k8s: staging/src/k8s.io/kubelet/config/v1beta1/types.go.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness import quantity
from harness.config.durations import parse_duration
from harness.config.errors import all_errors, load_yaml_mapping
from harness.errors import InputError, InputErrors

API_VERSION = "kubelet.config.k8s.io/v1beta1"
KIND = "KubeletConfiguration"

# defaults_linux.go: DefaultEvictionHard (1.28–1.34). imagefs.inodesFree appears only
# in post-1.34 snapshots (kubelet-memory-spec.md §5.3), so it is not part of it here.
DEFAULT_EVICTION_HARD: dict[str, str] = {
    "memory.available": "100Mi",
    "nodefs.available": "10%",
    "nodefs.inodesFree": "5%",
    "imagefs.available": "15%",
}
# defaults.go: DefaultNodeAllocatableEnforcement = "pods"
DEFAULT_ENFORCE_NODE_ALLOCATABLE = ["pods"]

ENFORCE_KEYS = {
    "pods",
    "system-reserved",
    "kube-reserved",
    "system-reserved-compressible",  # 1.32+ (PR kubernetes#125982)
    "kube-reserved-compressible",
    "none",
}


class MemorySwap(BaseModel):
    """``memorySwap``: k8s: staging/src/k8s.io/kubelet/config/v1beta1/types.go MemorySwapConfiguration.

    ``swapBehavior`` "" (default) and "NoSwap" give containers no swap; "LimitedSwap" gives Burstable
    containers a share (``model.swap``). "UnlimitedSwap" was removed in 1.30 (KEP-2400)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    swap_behavior: Literal["", "NoSwap", "LimitedSwap"] = Field("", alias="swapBehavior")


class ReservedMemory(BaseModel):
    """One ``reservedMemory`` entry: ``{numaNode: 0, limits: {memory: 1Gi}}``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    numa_node: int = Field(alias="numaNode", ge=0)
    limits: dict[str, str | int]

    @field_validator("limits")
    @classmethod
    def _limits(cls, v: dict[str, str | int]) -> dict[str, str | int]:
        for k, q in v.items():
            if k != "memory" and not k.startswith("hugepages-"):
                raise ValueError(f"reserved memory type {k!r} is not memory or hugepages-<size>")
            quantity.parse(q, what=f"quantity for {k}")
        return v


# Field names of KubeletConfiguration v1beta1 that do not influence node memory
# behaviour. They are accepted verbatim (the profile is deployed as is) but not modelled.
_OTHER_FIELDS = [
    "enableServer", "staticPodPath", "podLogsDir", "syncFrequency", "fileCheckFrequency",
    "httpCheckFrequency", "staticPodURL", "staticPodURLHeader", "address", "port", "readOnlyPort",
    "tlsCertFile", "tlsPrivateKeyFile", "tlsCipherSuites", "tlsMinVersion", "rotateCertificates",
    "serverTLSBootstrap", "authentication", "authorization", "registryPullQPS", "registryBurst",
    "imagePullCredentialsVerificationPolicy", "preloadedImagesVerificationAllowlist",
    "eventRecordQPS", "eventBurst", "enableDebuggingHandlers", "enableContentionProfiling",
    "healthzPort", "healthzBindAddress", "oomScoreAdj", "clusterDomain", "clusterDNS",
    "streamingConnectionIdleTimeout", "nodeStatusReportFrequency", "nodeLeaseDurationSeconds",
    "imageMinimumGCAge", "imageMaximumGCAge", "imageGCHighThresholdPercent",
    "imageGCLowThresholdPercent", "volumeStatsAggPeriod", "kubeletCgroups", "systemCgroups",
    "cpuManagerPolicyOptions", "cpuManagerReconcilePeriod", "runtimeRequestTimeout", "hairpinMode",
    "maxPods", "podCIDR", "resolvConf", "runOnce", "nodeStatusMaxImages", "maxOpenFiles",
    "contentType", "kubeAPIQPS", "kubeAPIBurst", "serializeImagePulls", "maxParallelImagePulls",
    "podsPerCore", "enableControllerAttachDetach", "protectKernelDefaults",
    "makeIPTablesUtilChains", "iptablesMasqueradeBit", "iptablesDropBit", "failSwapOn",
    "containerLogMaxSize", "containerLogMaxFiles", "containerLogMaxWorkers",
    "containerLogMonitorInterval", "configMapAndSecretChangeDetectionStrategy",
    "showHiddenMetricsForVersion", "allowedUnsafeSysctls", "volumePluginDir", "providerID",
    "logging", "enableSystemLogHandler", "enableSystemLogQuery", "shutdownGracePeriod",
    "shutdownGracePeriodCriticalPods", "shutdownGracePeriodByPodPriority", "crashLoopBackOff",
    "enableProfilingHandler", "enableDebugFlagsHandler", "seccompDefault", "registerWithTaints",
    "registerNode", "tracing", "localStorageCapacityIsolation", "containerRuntimeEndpoint",
    "imageServiceEndpoint", "failCgroupV1", "userNamespaces",
]  # fmt: skip


class KubeletConfiguration(BaseModel):
    """The memory-relevant part of KubeletConfiguration, with upstream defaults applied."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    api_version: Literal["kubelet.config.k8s.io/v1beta1"] = Field(
        "kubelet.config.k8s.io/v1beta1", alias="apiVersion"
    )
    kind: Literal["KubeletConfiguration"] = "KubeletConfiguration"

    # --- node allocatable (defaults.go) ---
    kube_reserved: dict[str, str | int] = Field(default_factory=dict, alias="kubeReserved")
    system_reserved: dict[str, str | int] = Field(default_factory=dict, alias="systemReserved")
    kube_reserved_cgroup: str = Field("", alias="kubeReservedCgroup")
    system_reserved_cgroup: str = Field("", alias="systemReservedCgroup")
    # None = key absent -> default ["pods"]; [] stays empty (Go: nil vs empty slice).
    enforce_node_allocatable: list[str] | None = Field(None, alias="enforceNodeAllocatable")
    reserved_system_cpus: str = Field("", alias="reservedSystemCPUs")

    # --- cgroups ---
    cgroups_per_qos: bool = Field(True, alias="cgroupsPerQOS")
    cgroup_driver: Literal["cgroupfs", "systemd"] = Field("cgroupfs", alias="cgroupDriver")
    cgroup_root: str = Field("", alias="cgroupRoot")
    cpu_cfs_quota: bool = Field(True, alias="cpuCFSQuota")
    cpu_cfs_quota_period: str = Field("100ms", alias="cpuCFSQuotaPeriod")
    pod_pids_limit: int = Field(-1, alias="podPidsLimit")
    qos_reserved: dict[str, str] = Field(default_factory=dict, alias="qosReserved")
    memory_throttling_factor: float = Field(0.9, alias="memoryThrottlingFactor", gt=0, le=1)
    single_process_oom_kill: bool | None = Field(None, alias="singleProcessOOMKill")
    memory_swap: MemorySwap = Field(default_factory=MemorySwap, alias="memorySwap")

    # --- eviction ---
    eviction_hard: dict[str, str] | None = Field(None, alias="evictionHard")
    eviction_soft: dict[str, str] = Field(default_factory=dict, alias="evictionSoft")
    eviction_soft_grace_period: dict[str, str] = Field(default_factory=dict, alias="evictionSoftGracePeriod")
    eviction_minimum_reclaim: dict[str, str] = Field(default_factory=dict, alias="evictionMinimumReclaim")
    eviction_pressure_transition_period: str = Field("5m", alias="evictionPressureTransitionPeriod")
    eviction_max_pod_grace_period: int = Field(0, alias="evictionMaxPodGracePeriod")
    merge_default_eviction_settings: bool = Field(False, alias="mergeDefaultEvictionSettings")
    kernel_memcg_notification: bool = Field(False, alias="kernelMemcgNotification")
    node_status_update_frequency: str = Field("10s", alias="nodeStatusUpdateFrequency")

    # --- resource managers ---
    memory_manager_policy: Literal["None", "Static", "none", "static"] = Field(
        "None", alias="memoryManagerPolicy"
    )
    reserved_memory: list[ReservedMemory] = Field(default_factory=list, alias="reservedMemory")
    topology_manager_policy: Literal["none", "best-effort", "restricted", "single-numa-node"] = Field(
        "none", alias="topologyManagerPolicy"
    )
    topology_manager_scope: Literal["container", "pod"] = Field("container", alias="topologyManagerScope")
    topology_manager_policy_options: dict[str, str] = Field(
        default_factory=dict, alias="topologyManagerPolicyOptions"
    )
    cpu_manager_policy: Literal["none", "static"] = Field("none", alias="cpuManagerPolicy")

    feature_gates: dict[str, bool] = Field(default_factory=dict, alias="featureGates")

    # Everything else in v1beta1, accepted and kept verbatim.
    other: dict[str, Any] = Field(default_factory=dict, exclude=True)

    # where the profile came from (for messages)
    source: str = Field("<profile>", exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _split_other(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            other = {k: data.pop(k) for k in list(data) if k in _OTHER_FIELDS}
            data.setdefault("other", {}).update(other)
        return data

    @field_validator("kube_reserved", "system_reserved")
    @classmethod
    def _reserved(cls, v: dict[str, str | int]) -> dict[str, str | int]:
        for k, q in v.items():
            if k not in ("cpu", "memory", "pid", "ephemeral-storage") and not k.startswith("hugepages-"):
                raise ValueError(f"unsupported reserved resource {k!r}")
            if k == "pid":
                int(q)
            else:
                quantity.parse(q, what=f"quantity for {k}")
        return v

    @field_validator("enforce_node_allocatable")
    @classmethod
    def _enforce(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        for k in v:
            if k not in ENFORCE_KEYS:
                raise ValueError(f"invalid option {k!r}, expected one of {sorted(ENFORCE_KEYS)}")
        if "none" in v and len(v) > 1:
            # k8s: pkg/kubelet/apis/config/validation/validation.go
            raise ValueError("'none' cannot be combined with other options")
        return v

    @field_validator(
        "eviction_pressure_transition_period", "cpu_cfs_quota_period", "node_status_update_frequency"
    )
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v

    @field_validator("eviction_soft_grace_period")
    @classmethod
    def _grace(cls, v: dict[str, str]) -> dict[str, str]:
        for val in v.values():
            parse_duration(val)
        return v

    @field_validator("qos_reserved")
    @classmethod
    def _qos_reserved(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            if k != "memory":
                raise ValueError(f"qosReserved supports only memory, got {k!r}")
            if not str(val).endswith("%"):
                raise ValueError(f"qosReserved.memory must be a percentage like '50%', got {val!r}")
            pct = int(str(val)[:-1])
            if not 0 <= pct <= 100:
                raise ValueError(f"qosReserved.memory {val!r} out of range 0%-100%")
        return v

    @model_validator(mode="after")
    def _cross(self) -> KubeletConfiguration:
        enforce = self.enforce_node_allocatable_effective
        if "system-reserved" in enforce and not self.system_reserved_cgroup:
            raise ValueError(
                "enforceNodeAllocatable contains 'system-reserved' but systemReservedCgroup is empty"
            )
        if "kube-reserved" in enforce and not self.kube_reserved_cgroup:
            raise ValueError(
                "enforceNodeAllocatable contains 'kube-reserved' but kubeReservedCgroup is empty"
            )
        # validation.go: "enforceNodeAllocatable (--enforce-node-allocatable) is not supported unless
        # cgroupsPerQOS (--cgroups-per-qos) is set to true"
        if enforce and not self.cgroups_per_qos:
            raise ValueError("enforceNodeAllocatable is not supported unless cgroupsPerQOS is set to true")
        return self

    # ---- effective values (after upstream defaulting) ----
    @property
    def enforce_node_allocatable_effective(self) -> list[str]:
        if self.enforce_node_allocatable is None:
            return list(DEFAULT_ENFORCE_NODE_ALLOCATABLE)
        return [k for k in self.enforce_node_allocatable if k != "none"]

    def eviction_hard_effective(self, kubelet_minor: int) -> dict[str, str]:
        """evictionHard after defaulting.

        defaults.go: ``if obj.EvictionHard == nil { obj.EvictionHard = DefaultEvictionHard }``;
        a user map replaces the defaults entirely, unless ``mergeDefaultEvictionSettings``
        (1.34+) asks for missing keys to be filled from the defaults.
        """
        if self.eviction_hard is None:
            return dict(DEFAULT_EVICTION_HARD)
        merged = dict(self.eviction_hard)
        if self.merge_default_eviction_settings and kubelet_minor >= 34:
            for k, v in DEFAULT_EVICTION_HARD.items():
                merged.setdefault(k, v)
        return merged

    @property
    def swap_behavior(self) -> str:
        """``memorySwap.swapBehavior`` ("" is the default, NoSwap)."""
        return self.memory_swap.swap_behavior

    @property
    def memory_manager_static(self) -> bool:
        return self.memory_manager_policy.lower() == "static"

    @property
    def pressure_transition_seconds(self) -> float:
        return parse_duration(self.eviction_pressure_transition_period)

    @property
    def cfs_period_us(self) -> int:
        return int(parse_duration(self.cpu_cfs_quota_period) * 1_000_000)

    def to_yaml_dict(self) -> dict[str, Any]:
        """The profile as deployed (aliases, unset fields omitted, other fields kept)."""
        d = self.model_dump(by_alias=True, exclude_unset=True)
        d.update(self.other)
        d["apiVersion"] = API_VERSION
        d["kind"] = KIND
        return d


def parse_profile(data: dict[str, Any], source: str = "<profile>") -> KubeletConfiguration:
    if not isinstance(data, dict):
        raise InputError(source, None, "expected a KubeletConfiguration mapping")
    if "apiVersion" not in data:
        raise InputError(source, "apiVersion", f"missing; expected {API_VERSION!r}")
    if data.get("apiVersion") != API_VERSION:
        raise InputError(source, "apiVersion", f"expected {API_VERSION!r}, got {data.get('apiVersion')!r}")
    if data.get("kind") != KIND:
        raise InputError(source, "kind", f"expected {KIND!r}, got {data.get('kind')!r}")
    try:
        cfg = KubeletConfiguration.model_validate(data)
    except ValidationError as exc:
        raise InputErrors(source, all_errors(exc, KubeletConfiguration)) from None
    cfg.source = source
    return cfg


def load_profile(path: str | Path) -> KubeletConfiguration:
    """Load and validate a kubelet profile file (KubeletConfiguration YAML)."""
    return parse_profile(load_yaml_mapping(path), str(path))
