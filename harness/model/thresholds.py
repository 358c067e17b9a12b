"""Eviction thresholds: parsing, defaults and resolution against capacity.

Reproduces k8s: pkg/kubelet/eviction/helpers.go ``ParseThresholdConfig``,
``parseThresholdStatement``, ``parsePercentage``, ``parseGracePeriods``,
``parseMinimumReclaims``, ``addAllocatableThresholds`` and
k8s: pkg/kubelet/eviction/api/types.go ``GetThresholdQuantity`` (1.28–1.34).
Defaults: k8s: pkg/kubelet/apis/config/v1beta1/defaults_linux.go (via
``KubeletConfiguration.eviction_hard_effective``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

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


# --- Go resource.Quantity formatting -------------------------------------------------------
# k8s: staging/src/k8s.io/apimachinery/pkg/api/resource/quantity.go (ParseQuantity decides the
# Format from the suffix; String() = CanonicalizeBytes in that format).
_QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
# quantity.go: the error ParseQuantity returns for text that is not a quantity (ErrFormatWrong)
QUANTITY_FORMAT_ERROR = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
_BINARY = ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
# suffix.go: decimal SI suffixes by power of ten (multiples of 3 only)
_DECIMAL_SUFFIX = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}


def quantity_format(text: str) -> str:
    """``BinarySI`` / ``DecimalSI`` / ``DecimalExponent`` as ``ParseQuantity`` assigns it."""
    m = _QUANTITY_RE.match(str(text).strip())
    suffix = m.group(2) if m else ""
    if suffix in _BINARY:
        return "BinarySI"
    if suffix[:1] in ("e", "E"):
        return "DecimalExponent"
    return "DecimalSI"


def format_go_quantity(value: int | Decimal, fmt: str) -> str:
    """``Quantity.String()`` for a value in ``fmt`` (``CanonicalizeBytes``).

    BinarySI: values in (-1024, 1024) and non-integers fall back to DecimalSI; otherwise the
    largest power of 1024 dividing the value. DecimalSI: mantissa with the largest exponent that
    is a multiple of 3 and keeps it an integer (``1500M``, ``1G``, ``100m``).

    >>> format_go_quantity(5473566720, "BinarySI")
    '5220Mi'
    >>> format_go_quantity(1500000000, "DecimalSI")
    '1500M'
    """
    v = Decimal(value)
    if fmt == "BinarySI" and v == v.to_integral_value() and not (-1024 < v < 1024):
        return quantity.format_binary_si(int(v))
    if v == 0:
        return "0"
    exp = 0
    if v == v.to_integral_value():
        n = int(v)
        while exp < 18 and n % 1000 == 0:
            n //= 1000
            exp += 3
        return f"{n}{_DECIMAL_SUFFIX[exp]}"
    # fractional: scale down to milli/micro/nano (Go rounds up beyond nano)
    while exp > -9 and v != v.to_integral_value():
        v *= 1000
        exp -= 3
    n = int(v.to_integral_value(rounding="ROUND_CEILING"))
    return f"{n}{_DECIMAL_SUFFIX[exp]}"


def go_quantity_string(text: str | int | float) -> str:
    """``resource.MustParse(text).String()``: the canonical text the kubelet prints.

    >>> go_quantity_string("1024Mi"), go_quantity_string("100Mi"), go_quantity_string("1000000000")
    ('1Gi', '100Mi', '1G')
    """
    return format_go_quantity(quantity.parse(text), quantity_format(str(text)))


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

        ``getThresholdMetInfo`` returns ``GetThresholdQuantity(value, capacity)``, printed with
        ``%v`` (``Quantity.String()``): a literal is the parsed ``resource.Quantity`` in its
        canonical form and keeps the format of its suffix (``1024Mi`` -> ``1Gi``, ``1000M`` ->
        ``1G``, ``100Mi`` -> ``100Mi``); a percentage is ``resource.NewQuantity(v, BinarySI)``.
        Verified: k8s pkg/kubelet/eviction/helpers.go ``evictionMessage``/``getThresholdMetInfo``
        and pkg/kubelet/eviction/api/types.go ``GetThresholdQuantity``.
        """
        if self.quantity is not None:
            return go_quantity_string(self.text)
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
            # parsePercentage returns strconv.ParseFloat's error unchanged
            raise ThresholdError(
                signal, f'strconv.ParseFloat: parsing "{val.rstrip("%")}": invalid syntax'
            ) from None
        if pct < 0:
            raise ThresholdError(signal, f"eviction percentage threshold {signal} must be >= 0%: {val}")
        if pct > 1:
            raise ThresholdError(signal, f"eviction percentage threshold {signal} must be <= 100%: {val}")
        return Threshold(signal, ThresholdValue(percentage=pct, text=val))
    try:
        q = quantity.parse(val)
    except ValueError:
        raise ThresholdError(signal, QUANTITY_FORMAT_ERROR) from None
    if q <= 0:
        # helpers.go prints &quantity (canonical String()), e.g. "0Mi" -> "0"
        raise ThresholdError(
            signal, f"eviction threshold {signal} must be positive: {go_quantity_string(val)}"
        )
    return Threshold(signal, ThresholdValue(quantity=quantity.to_bytes(val), text=val))


def _parse_min_reclaim(signal: str, val: str, kubelet_minor: int) -> ThresholdValue:
    """``parseMinimumReclaims`` for one entry (error texts verified in helpers.go snapshots)."""
    if signal not in valid_signals(kubelet_minor):
        raise ThresholdError(signal, f"unsupported eviction signal {signal}")
    val = str(val).strip()
    if val.endswith("%"):
        try:
            pct = parse_percentage(val)
        except ValueError:
            raise ThresholdError(
                signal, f'strconv.ParseFloat: parsing "{val.rstrip("%")}": invalid syntax'
            ) from None
        if pct <= 0:
            raise ThresholdError(
                signal, f"eviction percentage minimum reclaim {signal} must be positive: {val}"
            )
        return ThresholdValue(percentage=pct, text=val)
    try:
        q = quantity.parse(val)
    except ValueError:
        raise ThresholdError(signal, QUANTITY_FORMAT_ERROR) from None
    if q < 0:
        raise ThresholdError(signal, f"negative eviction minimum reclaim specified for {signal}")
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
            raise ThresholdError(
                sig, f"invalid eviction grace period specified: {val}, must be a positive value"
            )
        grace[sig] = g
    for sig, val in profile.eviction_soft.items():
        t = parse_threshold_statement(sig, val, kubelet_minor)
        if t is None:
            continue
        if sig not in grace:
            raise ThresholdError(sig, f"grace period must be specified for the soft eviction threshold {sig}")
        results.append(Threshold(t.signal, t.value, grace_period_s=grace[sig]))
    reclaim = {
        sig: _parse_min_reclaim(sig, val, kubelet_minor)
        for sig, val in profile.eviction_minimum_reclaim.items()
    }
    results = [
        Threshold(t.signal, t.value, t.grace_period_s, reclaim.get(t.signal, t.min_reclaim)) for t in results
    ]
    if "pods" in profile.enforce_node_allocatable_effective:
        # addAllocatableThresholds: copy every hard memory.available threshold
        results += [
            Threshold(
                ALLOCATABLE_MEMORY_AVAILABLE, t.value, 0.0, t.min_reclaim, derived_from_allocatable=True
            )
            for t in results
            if t.signal == MEMORY_AVAILABLE and t.hard
        ]
    return results


def hard_memory_available(thresholds: list[Threshold]) -> list[Threshold]:
    return [t for t in thresholds if t.signal == MEMORY_AVAILABLE and t.hard]
