"""What keeps ``harness runs list`` fast on a catalog of 10,000 runs (benchmarks/bench_catalog.py).

No timings here: the tests pin the mechanisms. The killed-run recovery reads only the run.json of
runs the catalog lists as ``running``; a fresh index is neither rebuilt nor rewritten.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import harness.recovery
from harness.catalog import INDEX_NAME, Catalog
from harness.cli import cli


def _run(root: Path, run_id: str, status: str, **kw: Any) -> Path:
    d = root / run_id
    d.mkdir(parents=True)
    meta = {"run_id": run_id, "status": status, "started": f"2026-11-0{run_id[7]}T00:00:00+00:00", **kw}
    (d / "run.json").write_text(json.dumps(meta))
    return d


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import harness.run
    import harness.scenario.steps

    monkeypatch.setattr(harness.run, "ACTIVE_DIR", tmp_path / "active")
    monkeypatch.setattr(harness.scenario.steps, "WORKDIR", tmp_path / "work")
    root = tmp_path / "results"
    _run(root, "20261101-a", "complete")
    _run(root, "20261102-b", "interrupted")
    # a run whose process is gone: no process has this pid with this start time
    _run(root, "20261103-dead", "running", pid=2**22 + 17, pid_start=1)
    return root


def test_runs_list_reads_only_the_running_runs_again(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[str] = []
    recover_run = harness.recovery.recover_run

    def spy(run_dir: Path, say: Any = print) -> bool:
        read.append(run_dir.name)
        return recover_run(run_dir, say)

    monkeypatch.setattr(harness.recovery, "recover_run", spy)
    res = CliRunner().invoke(cli, ["runs", "list", "--results", str(results), "--json"])
    assert res.exit_code == 0, res.output
    assert read == ["20261103-dead"]  # not every run.json of the folder
    statuses = {r["id"]: r["status"] for r in json.loads(res.stdout)}
    assert statuses == {"20261101-a": "complete", "20261102-b": "interrupted", "20261103-dead": "killed"}
    assert json.loads((results / "20261103-dead" / "run.json").read_text())["status"] == "killed"
    # once killed it is no longer a candidate
    read.clear()
    assert CliRunner().invoke(cli, ["runs", "list", "--results", str(results)]).exit_code == 0
    assert read == []


def test_a_fresh_index_is_neither_rebuilt_nor_rewritten(results: Path) -> None:
    Catalog(results).runs()
    index = results / INDEX_NAME
    before = index.stat().st_mtime_ns, index.read_bytes()
    again = Catalog(results)
    assert len(again.runs()) == 3 and again.index_rebuilt == 0
    assert again.running_folders() == ["20261103-dead"]
    assert (index.stat().st_mtime_ns, index.read_bytes()) == before
