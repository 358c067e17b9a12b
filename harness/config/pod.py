"""v1 Pod manifests: the subset of fields that decides memory behaviour.

Pods are real manifests (``kubectl apply``-able). Fields the model does not use are
kept (``extra="allow"``) so the same file can be sent to the API server; the fields it
does use are validated, and errors name the file and the field path.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness import quantity
from harness.config import podschema
from harness.config.errors import all_errors, load_yaml_documents
from harness.errors import InputError, InputErrors

# k8s: pkg/apis/scheduling/types.go SystemCriticalPriority = 2 * HighestUserDefinablePriority
SYSTEM_CRITICAL_PRIORITY = 2_000_000_000
# Priorities of the two built-in classes (k8s: pkg/apis/scheduling/types.go)
BUILTIN_PRIORITY_CLASSES = {
    "system-node-critical": SYSTEM_CRITICAL_PRIORITY + 1000,
    "system-cluster-critical": SYSTEM_CRITICAL_PRIORITY,
}


class Resources(BaseModel):
    model_config = ConfigDict(extra="allow")
    requests: dict[str, str | int | float] = Field(default_factory=dict)
    limits: dict[str, str | int | float] = Field(default_factory=dict)

    @field_validator("requests", "limits")
    @classmethod
    def _q(cls, v: dict[str, Any]) -> dict[str, Any]:
        for k, q in v.items():
            quantity.parse_nonnegative(q, what=f"quantity for {k}")
        return v

    def request_bytes(self, name: str = "memory") -> int:
        return quantity.to_bytes(self.requests[name]) if name in self.requests else 0

    def limit_bytes(self, name: str = "memory") -> int:
        return quantity.to_bytes(self.limits[name]) if name in self.limits else 0

    def request_millis(self, name: str = "cpu") -> int:
        return quantity.to_millis(self.requests[name]) if name in self.requests else 0

    def limit_millis(self, name: str = "cpu") -> int:
        return quantity.to_millis(self.limits[name]) if name in self.limits else 0


class Container(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    name: str
    image: str = ""
    resources: Resources = Field(default_factory=Resources)
    # only "Always" is valid, and only on init containers (sidecars, KEP-753)
    restart_policy: Literal["Always"] | None = Field(None, alias="restartPolicy")

    @property
    def is_sidecar(self) -> bool:
        return self.restart_policy == "Always"


class PodSpec(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    containers: list[Container] = Field(min_length=1)
    init_containers: list[Container] = Field(default_factory=list, alias="initContainers")
    priority: int | None = None
    priority_class_name: str = Field("", alias="priorityClassName")
    overhead: dict[str, str | int] = Field(default_factory=dict)
    # pod-level resources (PodLevelResources gate, alpha 1.32, beta 1.34)
    resources: Resources | None = None
    termination_grace_period_seconds: int = Field(30, alias="terminationGracePeriodSeconds")
    restart_policy: Literal["Always", "OnFailure", "Never"] = Field("Always", alias="restartPolicy")
    node_name: str = Field("", alias="nodeName")
    tolerations: list[dict[str, Any]] = Field(default_factory=list)


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    namespace: str = "default"
    uid: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class PodStatus(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    qos_class: str | None = Field(None, alias="qosClass")


class Pod(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    api_version: Literal["v1"] = Field("v1", alias="apiVersion")
    kind: Literal["Pod"] = "Pod"
    metadata: ObjectMeta
    spec: PodSpec
    status: PodStatus | None = None

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def uid(self) -> str:
        if not self.metadata.uid:
            # deterministic per name so model output is reproducible
            self.metadata.uid = str(
                uuid.uuid5(uuid.NAMESPACE_URL, f"harness/{self.metadata.namespace}/{self.name}")
            )
        return self.metadata.uid

    @property
    def effective_priority(self) -> int:
        """spec.priority as the Priority admission plugin would resolve it."""
        if self.spec.priority is not None:
            return self.spec.priority
        return BUILTIN_PRIORITY_CLASSES.get(self.spec.priority_class_name, 0)

    @property
    def is_static(self) -> bool:
        # k8s: pkg/kubelet/types/pod_update.go IsStaticPod: config source annotation != "api"
        src = self.metadata.annotations.get("kubernetes.io/config.source")
        return src is not None and src != "api"

    @property
    def is_mirror(self) -> bool:
        return "kubernetes.io/config.mirror" in self.metadata.annotations

    @property
    def is_critical(self) -> bool:
        """k8s: pkg/kubelet/types/pod_update.go IsCriticalPod."""
        return self.is_static or self.is_mirror or self.effective_priority >= SYSTEM_CRITICAL_PRIORITY

    @property
    def is_node_critical(self) -> bool:
        """IsNodeCriticalPod: critical and priorityClassName == system-node-critical."""
        return self.is_critical and self.spec.priority_class_name == "system-node-critical"


def parse_pod(data: Any, source: str = "<pod>") -> Pod:
    if not isinstance(data, dict):
        raise InputError(source, None, "expected a Pod mapping")
    if data.get("kind", "Pod") != "Pod":
        raise InputError(source, "kind", f"expected 'Pod', got {data.get('kind')!r}")
    # every problem of the manifest at once, as the API server lists them
    errors: list[tuple[str | None, str]] = [(e.field, e.reason) for e in podschema.unknown_fields(data)]
    pod: Pod | None = None
    try:
        pod = Pod.model_validate(data)
    except ValidationError as exc:
        errors += [e for e in all_errors(exc, Pod) if e not in errors]
    errors += [(e.field, e.reason) for e in podschema.pod_requests_above_limits(data)]
    if errors or pod is None:
        raise InputErrors(source, errors)
    return pod


def load_pods(path: str | Path) -> list[Pod]:
    """All Pod documents in a YAML file (multi-document files allowed)."""
    docs = load_yaml_documents(path)
    return [parse_pod(d, f"{path}" + (f"[{i}]" if len(docs) > 1 else "")) for i, d in enumerate(docs)]
