"""The kubelet's start with a scenario's profile against the model's startup validation (S9)."""

from __future__ import annotations

from harness.config.kubelet import KubeletConfiguration
from harness.config.node import NodeFacts
from harness.launch.base import KubeletStart
from harness.model.startup import predicted_start_errors
from harness.verdict import Verdict


def kubelet_start_verdict(
    scenario: str, profile: KubeletConfiguration, node: NodeFacts, start: KubeletStart
) -> Verdict:
    errors = predicted_start_errors(profile, node)
    predicted = "refuses to start" if errors else "starts"
    observed = "starts" if start.started else "refuses to start"
    reasons: list[str] = []
    match = predicted == observed
    if not start.started:
        line = start.error or start.log_tail
        if errors and not any(e in line.replace("\\", "") for e in errors):  # klog escapes quotes
            match = False
            reasons.append(f"the kubelet's error is not the model's: model {errors[0]!r}, kubelet {line!r}")
        elif errors:
            reasons.append(f"kubelet: {line}")
    elif errors:
        reasons.append(f"the model expected the kubelet to refuse: {errors[0]}")
    return Verdict.check(
        scenario, "kubelet-start", predicted, observed, match, reasons, observed_t_s=start.seconds
    )
