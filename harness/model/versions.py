"""Feature gates and version-dependent knobs (kubelet-memory-spec.md §0).

``gate_enabled`` answers "is this gate on for this kubelet minor with this profile": the
profile's ``featureGates`` override the per-version default. A gate that does not exist in
a version (or is unknown to the model) is off.

Defaults source: web: content/en/docs/reference/command-line-tools-reference/feature-gates/*.md
(one page per gate, with the stage table per version) and k8s: pkg/features/kube_features.go.
Rows marked [verified] were read in those pages (spec §0); [inferred] rows are not used by the
memory model for anything decisive and were not re-read.
"""

from __future__ import annotations

from harness.config.kubelet import KubeletConfiguration
from harness.config.node import SUPPORTED_MINORS

_MINORS = tuple(SUPPORTED_MINORS)  # 28 .. 34


def _row(*defaults: bool | None) -> dict[int, bool | None]:
    """Per-minor defaults for 1.28 .. 1.34 (None = the gate does not exist in that version)."""
    assert len(defaults) == len(_MINORS)
    return dict(zip(_MINORS, defaults, strict=True))


_OFF = _row(False, False, False, False, False, False, False)
_ON = _row(True, True, True, True, True, True, True)

# name -> minor -> default. Versions:    1.28   1.29   1.30   1.31   1.32   1.33   1.34
GATE_DEFAULTS: dict[str, dict[int, bool | None]] = {
    # feature-gates/SidecarContainers.md: alpha 1.28 (off), beta 1.29 (on), GA 1.33 [verified]
    "SidecarContainers": _row(False, True, True, True, True, True, True),
    # feature-gates/PodLevelResources.md: alpha 1.32 (off), beta 1.34 (on) [verified]
    "PodLevelResources": _row(None, None, None, None, False, False, True),
    # feature-gates/MemoryQoS.md: alpha since 1.22, off throughout [verified]
    "MemoryQoS": _OFF,
    # k8s: pkg/features/kube_features.go QOSReserved: alpha since 1.11, off [stage inferred]
    "QOSReserved": _OFF,
    # feature-gates/MemoryManager.md: beta (on) 1.22, GA 1.32 [verified]
    "MemoryManager": _ON,
    # feature-gates/TopologyManagerPolicyOptions.md: beta (on) 1.28, GA 1.32 [verified]
    "TopologyManagerPolicyOptions": _ON,
    # feature-gates/DisableCPUQuotaWithExclusiveCPUs.md: beta (on) from 1.33 [verified]
    "DisableCPUQuotaWithExclusiveCPUs": _row(None, None, None, None, None, True, True),
    # PR kubernetes#122890: added 1.32, default off [verified]
    "AllowOverwriteTerminationGracePeriodSeconds": _row(None, None, None, None, False, False, False),
    # k8s: pkg/features/kube_features.go CPUCFSQuotaPeriod: alpha since 1.12, off [inferred]
    "CPUCFSQuotaPeriod": _OFF,
    # feature-gates/NodeSwap.md: beta off 1.28-1.29, beta on 1.30, GA 1.34 [inferred]
    "NodeSwap": _row(False, False, True, True, True, True, True),
    # feature-gates/InPlacePodVerticalScaling.md: alpha 1.27, beta on 1.33 [inferred]
    "InPlacePodVerticalScaling": _row(False, False, False, False, False, True, True),
}


def gate_exists(name: str, kubelet_minor: int) -> bool:
    return GATE_DEFAULTS.get(name, {}).get(kubelet_minor) is not None


def gate_default(name: str, kubelet_minor: int) -> bool:
    return bool(GATE_DEFAULTS.get(name, {}).get(kubelet_minor))


def gate_enabled(name: str, profile: KubeletConfiguration, kubelet_minor: int) -> bool:
    """Whether feature gate ``name`` is on: the profile's ``featureGates`` override the default.

    A gate absent from that kubelet version (or unknown to the model) is off; the real kubelet
    refuses to start with an unknown gate in ``featureGates``.
    """
    if not gate_exists(name, kubelet_minor):
        return False
    if name in profile.feature_gates:
        return bool(profile.feature_gates[name])
    return gate_default(name, kubelet_minor)


def hard_eviction_grace_override_s(kubelet_minor: int) -> int:
    """Grace period given to a pod evicted for a *hard* threshold (spec §0, §5.9).

    0 up to 1.30, 1 s from 1.31 (PR kubernetes#124063, "went in for 1.31").
    """
    return 0 if kubelet_minor <= 30 else 1


def sidecar_oom_score_rule(profile: KubeletConfiguration, kubelet_minor: int) -> bool:
    """Whether a sidecar's oom_score_adj is capped by the smallest regular container (spec §3.2).

    The branch came with PR kubernetes#128029. It is in v1.32.5's pkg/kubelet/qos/policy.go
    ``GetContainerOOMScoreAdjust`` behind ``features.SidecarContainers`` (beta, on by default), and in
    v1.33.4's without the gate check (the gate is GA). Found by the upgrade gate on the real kubelet:
    1.32.5 gave a sidecar 979, the app's value, where this model said 999 (read from the module
    sources that ``harness cluster build`` downloads).
    """
    if kubelet_minor >= 33:
        return True
    return kubelet_minor >= 32 and gate_enabled("SidecarContainers", profile, kubelet_minor)


def single_process_oom_kill_configurable(kubelet_minor: int) -> bool:
    """``singleProcessOOMKill`` exists from 1.32 (PR kubernetes#126096)."""
    return kubelet_minor >= 32
