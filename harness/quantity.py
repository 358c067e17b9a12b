"""Kubernetes resource quantities.

Parsing is delegated to the official client (``kubernetes.utils.parse_quantity``),
which implements the same grammar as ``k8s.io/apimachinery/pkg/api/resource``.
Formatting reproduces ``resource.Quantity.String()`` for BinarySI and DecimalSI
quantities, as the kubelet prints them in eviction messages
(k8s: staging/src/k8s.io/apimachinery/pkg/api/resource/quantity.go, ``CanonicalizeBytes``).
"""

from __future__ import annotations

import math
from decimal import Decimal

from kubernetes.utils import parse_quantity as _parse_quantity

_BINARY_SUFFIXES = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]


def parse(value: str | int | float, *, what: str = "quantity") -> Decimal:
    """Parse a Kubernetes quantity into a Decimal; ValueError names the bad value."""
    if isinstance(value, bool):
        raise ValueError(f"invalid {what} {value!r}")
    try:
        return Decimal(_parse_quantity(value))
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise ValueError(f"invalid {what} {value!r}: {exc}") from None


def to_bytes(value: str | int | float, *, what: str = "memory quantity") -> int:
    """Parse a memory quantity to whole bytes, rounding up like Quantity.Value()."""
    dec = parse(value, what=what)
    return int(math.ceil(dec))


def to_millis(value: str | int | float, *, what: str = "cpu quantity") -> int:
    """Parse a CPU quantity to millicores, rounding up like Quantity.MilliValue()."""
    dec = parse(value, what=what)
    return int(math.ceil(dec * 1000))


def format_binary_si(n: int) -> str:
    """Format bytes like ``resource.NewQuantity(n, resource.BinarySI).String()``.

    Go canonicalisation: values strictly between -1024 and 1024 are printed as plain
    decimal; otherwise the largest power of 1024 that divides the value exactly is used.
    """
    if -1024 < n < 1024:
        return str(n)
    exp = 0
    v = n
    while v % 1024 == 0 and exp < len(_BINARY_SUFFIXES) - 1:
        v //= 1024
        exp += 1
    return f"{v}{_BINARY_SUFFIXES[exp]}"


def format_mib(n: int) -> str:
    """Human-friendly MiB rendering for reports (not a Kubernetes format)."""
    return f"{n / 1048576:.1f}Mi"
