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

# k8s: staging/src/k8s.io/apimachinery/pkg/api/resource/quantity.go: Value() and MilliValue() are
# int64; a quantity beyond it cannot be a limit the kubelet writes (math.MaxInt64).
MAX_INT64 = 2**63 - 1
# k8s: staging/src/k8s.io/apimachinery/pkg/api/validation/generic.go IsNegativeErrorMsg, the API
# server's message for a negative request or limit (pkg/apis/core/validation ValidateNonnegativeQuantity)
IS_NEGATIVE_ERROR_MSG = "must be greater than or equal to 0"


def parse(value: str | int | float, *, what: str = "quantity") -> Decimal:
    """Parse a Kubernetes quantity into a Decimal; ValueError names the bad value.

    The client's parser accepts ``inf``, ``NaN`` floats and any exponent; Kubernetes' grammar has
    no infinity and stores the value in an int64, so those are refused here.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid {what} {value!r}")
    try:
        dec = Decimal(_parse_quantity(value))
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise ValueError(f"invalid {what} {value!r}: {exc}") from None
    if not dec.is_finite():
        raise ValueError(f"invalid {what} {value!r}: not a finite number")
    if abs(dec) > MAX_INT64:
        raise ValueError(f"invalid {what} {value!r}: out of range (above 2^63-1)")
    return dec


def parse_nonnegative(value: str | int | float, *, what: str = "quantity") -> Decimal:
    """A request, limit or size: a quantity that is not negative (the API server's message)."""
    dec = parse(value, what=what)
    if dec < 0:
        raise ValueError(f"{what} {value!r}: {IS_NEGATIVE_ERROR_MSG}")
    return dec


def to_bytes(value: str | int | float, *, what: str = "memory quantity") -> int:
    """Parse a memory quantity to whole bytes, rounding up like Quantity.Value()."""
    dec = parse(value, what=what)
    if dec < 0:
        # a byte count is never negative: a -1Gi request gave oom_score_adj 1062 before this
        raise ValueError(f"{what} {value!r}: {IS_NEGATIVE_ERROR_MSG}")
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
