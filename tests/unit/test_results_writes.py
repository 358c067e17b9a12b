"""Nothing lost: one failing table write cannot skip the others, and a table is never half-written."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from harness.results import RunStore, atomic_file
from harness.run import RunResult, _write_results


def test_a_failing_table_write_does_not_skip_the_others(tmp_path: Path) -> None:
    store = RunStore(tmp_path, "r1")
    said: list[str] = []
    run = SimpleNamespace(
        store=store,
        events=SimpleNamespace(events=[{"source": "kmsg", "kind": "oom_kill"}]),
        progress=SimpleNamespace(say=said.append),
    )
    # a column of mixed types: pyarrow refuses it, as it would a value a new field brings
    result = RunResult(
        "r1", store.dir, predictions=[{"workload": "a", "t": 1.5}, {"workload": "b", "t": "x"}]
    )
    outcomes = [{"scenario": "s", "workload": "a", "outcome": "completed"}]
    failed = _write_results(run, "suite", result, outcomes, 1.0)  # type: ignore[arg-type]
    # samples.parquet: the empty progress folder has no samples schema to read, which is fine
    assert "predictions.parquet" in failed
    assert any("could not write predictions.parquet" in s for s in said)
    for name in ("events.parquet", "outcomes.parquet", "verdicts.parquet", "junit.xml"):
        assert (store.dir / name).exists(), name
    assert pd.read_parquet(store.dir / "outcomes.parquet")["outcome"].tolist() == ["completed"]
    assert json.loads((store.dir / "run.json").read_text())["verdicts_total"] == 0
    assert not list(store.dir.glob(".*tmp*"))


def test_a_table_is_replaced_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "t.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(target)

    def half(tmp: Path) -> None:
        tmp.write_bytes(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_file(target, half)
    assert pd.read_parquet(target)["a"].tolist() == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]
