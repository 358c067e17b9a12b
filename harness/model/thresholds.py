"""Eviction thresholds: parsing, defaults and resolution against capacity.

Reproduces k8s: pkg/kubelet/eviction/helpers.go ``ParseThresholdConfig``,
``parseThresholdStatement``, ``parsePercentage``, ``parseGracePeriods``,
``parseMinimumReclaims``, ``addAllocatableThresholds`` and
k8s: pkg/kubelet/eviction/api/types.go ``GetThresholdQuantity`` (1.28–1.34).
Defaults: k8s: pkg/kubelet/apis/config/v1beta1/defaults_linux.go (via
``KubeletConfiguration.eviction_hard_effective``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness import quantity
from harness.config.durations import parse_duration
from harness.config.kubelet import KubeletConfiguration

MEMORY_AVAILABLE = "memory.available"
ALLOCATABLE_MEMORY_AVAILABLE = "allocatableMemory.available"
MEMORY_SIGNALS = (MEMORY_AVAILABLE, ALLOCATABLE_MEMORY_AVAILABLE)

# k8s: pkg/kubelet/eviction/api/types.go OpForSignal (every operator is LessThan)
_SIGNALS_BASE = (
    MEMORY_AVAILABLE,
    ALLOCATABLE_MEMORY_AVAILABLE,
    "nodefs.available",
    "nodefs.inodesFree",
    "imagefs.available",
    "imagefs.inodesFree",
    "pid.available",
)
# containerfs.* signals: KubeletSeparateDiskGC, added in 1.29 (spec §5.1)
_SIGNALS_129 = ("containerfs.available", "containerfs.inodesFree")


def valid_signals(kubelet_minor: int) -> tuple[str, ...]:
    return _SIGNALS_BASE + (_SIGNALS_129 if kubelet_minor >= 29 else ())


class ThresholdError(ValueError):
    """A threshold the kubelet refuses; ``field`` names the config key."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class ThresholdValue:
    """Either a literal quantity (bytes / count) or a percentage (a float32 fraction)."""

    quantity: int | None = None
    percentage: float | None = None  # float32 fraction, as in evictionapi.ThresholdValue
    text: str = ""

    def resolve(self, capacity: int) -> int:
        """``GetThresholdQuantity``: literal, or ``int64(float64(capacity) * float64(percentage))``."""
        if self.quantity is not None:
            return self.quantity
        assert self.percentage is not None
        return int(float(capacity) * float(self.percentage))

    def display(self, capacity: int) -> str:
        """How the kubelet prints the threshold quantity in eviction messages.

        A literal prints as the parsed ``resource.Quantity`` (its original text in canonical
        form); a percentage as ``resource.NewQuantity(v, BinarySI)``.
        """
        if self.quantity is not None:
            return quantity.format_binary_si(self.quantity) if self.text.endswith("i") else self.text
        return quantity.format_binary_si(self.resolve(capacity))


@dataclass(frozen=True)
class Threshold:
    signal: str
    value: ThresholdValue
    grace_period_s: float = 0.0
    min_reclaim: ThresholdValue | None = None
    # True for the copy made by addAllocatableThresholds
    derived_from_allocatable: bool = False

    @property
    def hard(self) -> bool:
        """``isHardEvictionThreshold``: grace period == 0."""
        return self.grace_period_s == 0

    def min_reclaim_bytes(self, capacity: int) -> int:
        return self.min_reclaim.resolve(capacity) if self.min_reclaim else 0

    def describe(self) -> str:
        kind = "hard" if self.hard else f"soft (grace {self.grace_period_s:g}s)"
        return f"{self.signal}<{self.value.text} [{kind}]"


def parse_percentage(text: str) -> float:
    """``parsePercentage``: ``float32(ParseFloat(trimmed, 32)) / 100`` in float32."""
    v = np.float32(float(text.rstrip("%")))
    return float(np.float32(v / np.float32(100)))


def parse_threshold_statement(signal: str, val: str, kubelet_minor: int) -> Threshold | None:
    """One ``signal<value`` statement; None when the kubelet ignores it (0% / 100%)."""
    if signal not in valid_signals(kubelet_minor):
        raise ThresholdError(signal, f"unsupported eviction signal {signal}")
    val = str(val).strip()
    if val.endswith("%"):
        if val in ("0%", "100%"):
            return None
        try:
            pct = parse_percentage(val)
        except ValueError:
            raise ThresholdError(signal, f"invalid percentage {val!r}") from None
        if pct < 0:
            raise ThresholdError(signal, f"eviction percentage threshold {signal} must be >= 0%: {val}")
        if pct > 1:
            raise ThresholdError(signal, f"eviction percentage threshold {signal} must be <= 100%: {val}")
        return Threshold(signal, ThresholdValue(percentage=pct, text=val))
    try:
        q = quantity.parse(val)
    except ValueError as exc:
        raise ThresholdError(signal, str(exc)) from None
    if q <= 0:
        raise ThresholdError(signal, f"eviction threshold {signal} must be positive: {val}")
    return Threshold(signal, ThresholdValue(quantity=quantity.to_bytes(val), text=val))


def _parse_min_reclaim(signal: str, val: str, kubelet_minor: int) -> ThresholdValue:
    if signal not in valid_signals(kubelet_minor):
        raise ThresholdError(signal, f"unsupported eviction signal {signal}")
    val = str(val).strip()
    if val.endswith("%"):
        pct = parse_percentage(val)
        if pct < 0:
            raise ThresholdError(signal, f"negative percentage minimum reclaim specified for {signal}")
        return ThresholdValue(percentage=pct, text=val)
    q = quantity.parse(val)
    if q < 0:
        raise ThresholdError(signal, f"negative reclaim specified for {signal}")
    return ThresholdValue(quantity=quantity.to_bytes(val), text=val)


def parse_thresholds(profile: KubeletConfiguration, kubelet_minor: int) -> list[Threshold]:
    """``ParseThresholdConfig`` for a profile: hard, then soft, then allocatable copies.

    Raises ThresholdError with the kubelet's error text for invalid input.
    """
    results: list[Threshold] = []
    for sig, val in profile.eviction_hard_effective(kubelet_minor).items():
        t = parse_threshold_statement(sig, val, kubelet_minor)
        if t:
            results.append(t)
    grace: dict[str, float] = {}
    for sig, val in profile.eviction_soft_grace_period.items():
        if sig not in valid_signals(kubelet_minor):
            raise ThresholdError(sig, f"unsupported eviction signal {sig}")
        g = parse_duration(val)
        if g < 0:
            raise ThresholdError(sig, f"invalid eviction grace period specified: {val}, must be a positive value")
        grace[sig] = g
    for sig, val in profile.eviction_soft.items():
        t = parse_threshold_statement(sig, val, kubelet_minor)
        if t is None:
            continue
        if sig not in grace:
            raise ThresholdError(sig, f"grace period must be specified for the soft eviction threshold {sig}")
        results.append(Threshold(t.signal, t.value, grace_period_s=grace[sig]))
    reclaim = {
        sig: _parse_min_reclaim(sig, val, kubelet_minor) for sig, val in profile.eviction_minimum_reclaim.items()
    }
    results = [
        Threshold(t.signal, t.value, t.grace_period_s, reclaim.get(t.signal, t.min_reclaim)) for t in results
    ]
    if "pods" in profile.enforce_node_allocatable_effective:
        # addAllocatableThresholds: copy every hard memory.available threshold
        results += [
            Threshold(ALLOCATABLE_MEMORY_AVAILABLE, t.value, 0.0, t.min_reclaim, derived_from_allocatable=True)
            for t in results
            if t.signal == MEMORY_AVAILABLE and t.hard
        ]
    return results


def hard_memory_available(thresholds: list[Threshold]) -> list[Threshold]:
    return [t for t in thresholds if t.signal == MEMORY_AVAILABLE and t.hard]
