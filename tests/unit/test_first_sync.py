"""The loop phase a run gives the model (``pipeline.first_sync_s``) from the kubelet's logged syncs."""

from __future__ import annotations

import pytest

from harness.scenario.pipeline import first_sync_s


def test_the_first_sync_at_or_after_the_start() -> None:
    # S2 of a kubelet-suite run, 2026-12-07: [start, decision] in scenario seconds
    assert first_sync_s([(-5.9, -5.89), (4.133, 4.144), (14.144, 14.155)]) == 4.133
    assert first_sync_s(None) is None
    assert first_sync_s([]) is None


def test_a_scenario_shorter_than_the_loop_takes_the_next_sync_after_the_last_one() -> None:
    """S4 lasts ~4 s: no sync of its own. The next is due whole 10 s periods after the last one
    before it (a sync at -6.3 s gives 3.7 s; one at -16.3 s too)."""
    assert first_sync_s([(-6.3, -6.29)]) == pytest.approx(3.7)
    assert first_sync_s([(-26.3, -26.29), (-16.3, -16.29)]) == pytest.approx(3.7)
    assert first_sync_s([(-10.0, None)]) == pytest.approx(0.0)
