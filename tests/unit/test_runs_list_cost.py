"""What keeps ``harness runs list`` fast on a catalog of 10,000 runs (benchmarks/bench_catalog.py).

No timings here: the tests pin the mechanisms. The killed-run recovery reads only the run.json of
runs the catalog lists as ``running``; a fresh index is neither rebuilt nor rewritten; the CLI
imports a command's module only when that command runs, so ``runs list`` loads no pandas.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

import harness.recovery
from harness.catalog import INDEX_NAME, Catalog
from harness.cli import cli
from harness.procs import proc_start_time


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


def test_runs_list_imports_no_pandas_numpy_or_kubernetes(tmp_path: Path) -> None:
    """The CLI imports a command's module only when it runs: ``runs list`` (and its start-up)
    needs none of the data libraries, the model or the Kubernetes client."""
    results = tmp_path / "results"
    _run(results, "20261101-a", "complete", labels={"lab": "nightly"})
    _run(results, "20261102-b", "running", pid=os.getpid(), pid_start=proc_start_time(os.getpid()))
    code = (
        "import sys\n"
        "from harness.cli import main\n"
        "sys.argv = ['harness', 'runs', 'list', '--results', sys.argv[1]]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "heavy = ('pandas', 'pyarrow', 'numpy', 'kubernetes', 'matplotlib', 'harness.model', 'harness.run')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))\n"
    )
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code, str(results)],
        capture_output=True,
        text=True,
        check=True,
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    assert "20261101-a" in out.stdout and "running" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_every_lazy_command_loads_under_its_name() -> None:
    from harness.cli import _LAZY

    ctx = click.Context(cli)
    for name in _LAZY:
        cmd = cli.get_command(ctx, name)
        assert cmd is not None and cmd.name == name
    assert cli.list_commands(ctx) == sorted(_LAZY)
    runs = cli.get_command(ctx, "runs")
    assert isinstance(runs, click.Group) and sorted(runs.commands) == ["list", "prune", "show"]
