"""Whether the kubelet starts with a profile on a node, and with which error it refuses (scenario S9)."""

from __future__ import annotations

from harness.config.kubelet import KubeletConfiguration
from harness.config.node import NodeFacts
from harness.model.memorymanager import validate_reserved_memory
from harness.model.node import node_allocatable
from harness.model.topology import validate_options


def predicted_start_errors(profile: KubeletConfiguration, facts: NodeFacts) -> list[str]:
    """Why the model says the kubelet will refuse ``profile`` on ``facts`` ([] = it starts):
    node allocatable validation (pkg/kubelet/cm/container_manager_linux.go validateNodeAllocatable),
    the memory manager's reservedMemory check (pkg/kubelet/cm/memorymanager/policy_static.go via
    validateReservedMemory) and the topology manager's options."""
    return [
        *node_allocatable(profile, facts).errors,
        *validate_reserved_memory(profile, facts),
        *validate_options(profile, facts),
    ]
