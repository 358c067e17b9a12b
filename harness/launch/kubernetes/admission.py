"""Every scenario starts on a node whose kubelet admits BestEffort pods."""

from __future__ import annotations

import json
import time
from typing import Any

from harness.errors import HarnessError
from harness.launch.base import ScenarioContext
from harness.launch.kubernetes.pods import NAMESPACE, delete_pods, dns_name, label_value, probe_manifest
from harness.owned import run_ledger


class AdmissionGate:
    def __init__(self, core: Any, api: Any, cluster: Any) -> None:
        self.core = core
        self.api = api
        self.cluster = cluster
        self._probes = 0  # admission probes created (unique names)

    def wait_no_memory_pressure(self, ctx: ScenarioContext) -> None:
        """Start every scenario on a node without MemoryPressure: after an eviction the condition
        stays for evictionPressureTransitionPeriod (pkg/kubelet/eviction/eviction_manager.go
        synchronize: thresholdsFirstObservedAt / nodeConditionsLastObservedAt), and meanwhile the
        kubelet refuses BestEffort pods at admission, which would change the scenario."""
        prof = ctx.scenario.profile
        period = prof.pressure_transition_seconds if prof is not None else 300.0
        deadline = time.monotonic() + period + 30
        waited = False
        while time.monotonic() < deadline:
            try:
                node = json.loads(self.cluster.api_get(f"/api/v1/nodes/{self.cluster.node_name}", timeout=5))
            except Exception:
                return
            conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
            # The node object can lag the kubelet by a status update (nodeStatusUpdateFrequency):
            # right after an eviction it may still say False while the eviction manager refuses
            # BestEffort pods. When it says False, ask the kubelet itself with a probe pod.
            rejected = None if conds.get("MemoryPressure") == "True" else self.probe(ctx)
            if conds.get("MemoryPressure") != "True" and rejected is None:
                if waited:
                    ctx.events.add("harness", "memory_pressure_cleared")
                return
            if not waited:
                ctx.events.add(
                    "harness",
                    "waiting_for_memory_pressure_to_clear",
                    seconds=period,
                    detail=rejected or "node condition MemoryPressure=True",
                )
                waited = True
            time.sleep(1.0)
        raise HarnessError(
            f"node {self.cluster.node_name} still under MemoryPressure {period + 30:.0f} s after the previous "
            "scenario: something outside the harness uses the node's memory"
        )

    def probe(self, ctx: ScenarioContext, timeout: float = 30.0) -> str | None:
        """Whether the kubelet admits a BestEffort pod now: its eviction manager's Admit refuses them
        while its own MemoryPressure condition is set (pkg/kubelet/eviction/eviction_manager.go
        ``Admit``). Returns the rejection message, None when admitted. The probe (the pause image)
        is deleted before returning."""
        name = dns_name("probe", ctx.scenario.name[:24], ctx.run_id[-8:], f"{self._probes}")
        self._probes += 1
        led = run_ledger(ctx.run_id)
        led.add("pod", namespace=NAMESPACE, name=name, run=label_value(ctx.run_id))
        self.core.create_namespaced_pod(NAMESPACE, probe_manifest(ctx, name, self.cluster.node_name))
        verdict: str | None = None
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                pod = self.api.sanitize_for_serialization(self.core.read_namespaced_pod(name, NAMESPACE))
                st = pod.get("status", {})
                if st.get("phase") == "Failed":
                    verdict = f"{st.get('reason') or 'Failed'}: {st.get('message') or ''}".strip()
                    break
                if st.get("phase") == "Running" or st.get("conditions") or st.get("startTime"):
                    break  # the kubelet admitted it and started syncing it
                time.sleep(0.1)
            else:
                raise HarnessError(
                    f"probe pod {NAMESPACE}/{name}: no answer from the kubelet in {timeout:.0f} s"
                )
        finally:
            if not delete_pods(self.core, [name], timeout=60):
                led.release("pod", namespace=NAMESPACE, name=name, run=label_value(ctx.run_id))
        return verdict
