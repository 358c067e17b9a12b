"""Predictions are byte-identical to those of the model before its speed-up (tests/fixtures/
predict_golden.json: the SHA-256 of each prediction's canonical JSON, every field, computed with the
model of main b72c2da by ``scripts/predict_golden.py``): the suites in suites/*.yaml and seeded
random scenarios (planned, as-run, baselines, stale stats, ...) and the 110-pod suite of
benchmarks/bench_pods.py (planned and as run). ``PREDICT_GOLDEN_ALL=1`` checks all
300 random scenarios of the fixture instead of the first 40. A deliberate change of the model's
predictions regenerates the fixture (``scripts/predict_golden.py hashes``) and says why."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.predict_cases import digest, pods_cases, random_cases, suite_cases

GOLDEN = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "predict_golden.json").read_text())
RANDOM = 300 if os.environ.get("PREDICT_GOLDEN_ALL") else 40
CASES: list[tuple[str, Callable[[], str]]] = [*suite_cases(), *random_cases(RANDOM), *pods_cases()]


def test_the_fixture_covers_every_case() -> None:
    assert {name for name, _ in CASES} <= GOLDEN.keys()
    assert sum(k.startswith("suite:") for k in GOLDEN) >= 50


@pytest.mark.parametrize("case", CASES, ids=[name for name, _ in CASES])
def test_prediction_is_unchanged(case: tuple[str, Callable[[], str]]) -> None:
    name, run = case
    assert digest(run()) == GOLDEN[name], name
