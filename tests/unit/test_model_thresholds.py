"""Eviction thresholds (spec §5.3-§5.5): parsing, defaults, errors, allocatable copy, resolution."""

from __future__ import annotations

import numpy as np
import pytest

from harness.config.kubelet import KubeletConfiguration
from harness.model.thresholds import (
    ALLOCATABLE_MEMORY_AVAILABLE,
    MEMORY_AVAILABLE,
    ThresholdError,
    go_quantity_string,
    parse_thresholds,
)


def _profile(**kw: object) -> KubeletConfiguration:
    return KubeletConfiguration.model_validate(kw)


def _by_signal(ts):  # type: ignore[no-untyped-def]
    return {(t.signal, t.hard): t for t in ts}


def test_defaults_linux() -> None:
    """No evictionHard: DefaultEvictionHard (memory 100Mi, nodefs 10%, inodes 5%, imagefs 15%) plus
    the allocatable copy of memory.available (enforceNodeAllocatable defaults to [pods])."""
    ts = parse_thresholds(_profile(), 30)
    signals = sorted(t.signal for t in ts)
    assert signals == sorted(
        [
            MEMORY_AVAILABLE,
            "nodefs.available",
            "nodefs.inodesFree",
            "imagefs.available",
            ALLOCATABLE_MEMORY_AVAILABLE,
        ]
    )
    mem = _by_signal(ts)[(MEMORY_AVAILABLE, True)]
    assert mem.value.resolve(1 << 40) == 100 * 1024 * 1024


def test_only_set_keys_when_eviction_hard_given() -> None:
    """A user evictionHard map replaces the defaults entirely (defaults.go), so nodefs is gone."""
    ts = parse_thresholds(_profile(evictionHard={"memory.available": "500Mi"}), 33)
    assert sorted(t.signal for t in ts) == [ALLOCATABLE_MEMORY_AVAILABLE, MEMORY_AVAILABLE]


def test_merge_default_eviction_settings_1_34_only() -> None:
    """mergeDefaultEvictionSettings fills missing keys from the defaults, from 1.34 on."""
    p = _profile(evictionHard={"memory.available": "500Mi"}, mergeDefaultEvictionSettings=True)
    assert "nodefs.available" in {t.signal for t in parse_thresholds(p, 34)}
    assert "nodefs.available" not in {t.signal for t in parse_thresholds(p, 33)}
    mem = _by_signal(parse_thresholds(p, 34))[(MEMORY_AVAILABLE, True)]
    assert mem.value.resolve(0) == 500 * 1024 * 1024  # the user's value wins


@pytest.mark.parametrize("val", ["0%", "100%"])
def test_zero_and_hundred_percent_ignored(val: str) -> None:
    """parseThresholdStatement returns nil for exactly "0%" and "100%" (threshold disabled)."""
    ts = parse_thresholds(_profile(evictionHard={"memory.available": val}), 31)
    assert ts == []


@pytest.mark.parametrize(
    ("hard", "soft", "grace", "message"),
    [
        ({"memory.avail": "1Gi"}, {}, {}, "unsupported eviction signal memory.avail"),
        ({"memory.available": "0Mi"}, {}, {}, "eviction threshold memory.available must be positive: 0"),
        ({"memory.available": "-1Gi"}, {}, {}, "eviction threshold memory.available must be positive: -1Gi"),
        (
            {"memory.available": "-5%"},
            {},
            {},
            "eviction percentage threshold memory.available must be >= 0%: -5%",
        ),
        (
            {"memory.available": "150%"},
            {},
            {},
            "eviction percentage threshold memory.available must be <= 100%: 150%",
        ),
        (
            {"memory.available": "100Mi"},
            {"memory.available": "1Gi"},
            {},
            "grace period must be specified for the soft eviction threshold memory.available",
        ),
    ],
)
def test_errors_exact_text(hard: dict, soft: dict, grace: dict, message: str) -> None:
    """Error texts are the fmt.Errorf strings of helpers.go (quantity printed canonically)."""
    p = _profile(evictionHard=hard, evictionSoft=soft, evictionSoftGracePeriod=grace)
    with pytest.raises(ThresholdError) as exc:
        parse_thresholds(p, 32)
    assert str(exc.value) == message


def test_min_reclaim_errors() -> None:
    """parseMinimumReclaims: '0%' is rejected as not positive; a negative quantity likewise."""
    p = _profile(evictionMinimumReclaim={"memory.available": "0%"})
    with pytest.raises(
        ThresholdError, match=r"^eviction percentage minimum reclaim memory.available must be positive: 0%$"
    ):
        parse_thresholds(p, 32)
    p = _profile(evictionMinimumReclaim={"memory.available": "-1Mi"})
    with pytest.raises(
        ThresholdError, match=r"^negative eviction minimum reclaim specified for memory.available$"
    ):
        parse_thresholds(p, 32)


def test_allocatable_copy_only_hard_and_with_pods() -> None:
    """addAllocatableThresholds copies hard memory.available (with its min-reclaim), not soft ones,
    and only when enforceNodeAllocatable contains pods."""
    p = _profile(
        evictionHard={"memory.available": "200Mi"},
        evictionSoft={"memory.available": "1Gi"},
        evictionSoftGracePeriod={"memory.available": "1m30s"},
        evictionMinimumReclaim={"memory.available": "50Mi"},
    )
    ts = parse_thresholds(p, 31)
    alloc = [t for t in ts if t.signal == ALLOCATABLE_MEMORY_AVAILABLE]
    assert len(alloc) == 1 and alloc[0].hard
    assert alloc[0].value.resolve(0) == 200 << 20 and alloc[0].min_reclaim_bytes(0) == 50 << 20
    soft = _by_signal(ts)[(MEMORY_AVAILABLE, False)]
    assert soft.grace_period_s == 90.0
    p2 = _profile(evictionHard={"memory.available": "200Mi"}, enforceNodeAllocatable=[])
    assert all(t.signal != ALLOCATABLE_MEMORY_AVAILABLE for t in parse_thresholds(p2, 31))


def test_float32_percentage_resolution() -> None:
    """10% is float32(10)/100 = 0.100000001490116...; int64(float64(cap) * float64(pct)) therefore
    exceeds the exact decimal tenth for a large capacity (GetThresholdQuantity)."""
    cap = 16 * 1024**3
    t = _by_signal(parse_thresholds(_profile(evictionHard={"memory.available": "10%"}), 30))[
        (MEMORY_AVAILABLE, True)
    ]
    expected = int(float(cap) * float(np.float32(np.float32(10) / np.float32(100))))
    assert t.value.resolve(cap) == expected
    assert expected == 1717986944 and cap // 10 == 1717986918  # the float32 error is visible


def test_threshold_display_is_go_canonical() -> None:
    """The message prints the parsed Quantity's String(): 1024Mi -> 1Gi, 1000M -> 1G; percentage
    thresholds print the resolved BinarySI value."""
    assert go_quantity_string("1024Mi") == "1Gi"
    assert go_quantity_string("1000M") == "1G"
    assert go_quantity_string("1500000000") == "1500M"
    assert go_quantity_string("100Mi") == "100Mi"
    t = _by_signal(parse_thresholds(_profile(evictionHard={"memory.available": "1024Mi"}), 30))[
        (MEMORY_AVAILABLE, True)
    ]
    assert t.value.display(0) == "1Gi"
    t = _by_signal(parse_thresholds(_profile(evictionHard={"memory.available": "50%"}), 30))[
        (MEMORY_AVAILABLE, True)
    ]
    assert t.value.display(4 * 1024**3) == "2Gi"
