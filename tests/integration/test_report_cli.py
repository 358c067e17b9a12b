"""The CLI of reports, comparisons and the run catalog, on recorded runs and on a fresh labelled run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "runs"
RUNS = sorted(p.name for p in FIXTURES.iterdir() if (p / "run.json").is_file())
PROCESS = [r for r in RUNS if "-process-" in r]
DOCKER = next(r for r in RUNS if "-docker-" in r)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def harness(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    for r in RUNS:
        shutil.copytree(FIXTURES / r, root / r)
    return root


def _plant(results: Path) -> Path:
    r = subprocess.run(
        [
            sys.executable,
            str(FIXTURES / "plant.py"),
            str(results / PROCESS[1]),
            str(results),
            "--outcome",
            "evicted",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return Path(r.stdout.strip())


def test_runs_list_and_filters(results: Path) -> None:
    r = harness("runs", "list", "--results", str(results))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["run", "status", "verdicts"]
    assert [ln.split()[0] for ln in lines[1:]] == RUNS
    assert f"{len(RUNS)} of {len(RUNS)} runs" in r.stderr
    assert (results / ".catalog.json").exists()
    r = harness("runs", "list", "--results", str(results), "backend=docker", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert [d["labels"]["backend"] for d in data] == ["docker"]
    r = harness("runs", "list", "--results", str(results), "night=2", "last:1")
    assert [ln.split()[0] for ln in r.stdout.splitlines()[1:]] == [DOCKER]
    r = harness("runs", "list", "--results", str(results), "backend=kubernetes", "kubelet>=1.33.4")
    assert [ln.split()[0] for ln in r.stdout.splitlines()[1:]] == [x for x in RUNS if "-kubernetes-" in x]
    r = harness("runs", "list", "--results", str(results), "last:x")
    assert r.returncode == 2 and r.stderr.startswith("harness: error: selector: 'last:x'")


def test_compare_identical_behaviour_passes(results: Path, tmp_path: Path) -> None:
    junit, md = tmp_path / "c.xml", tmp_path / "c.md"
    r = harness(
        "compare",
        PROCESS[0],
        PROCESS[1],
        "--results",
        str(results),
        "--junit",
        str(junit),
        "--markdown",
        str(md),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no change beyond tolerance" in r.stdout
    root = ElementTree.parse(junit).getroot()
    assert root.get("failures") == "0" and int(root.get("tests", 0)) > 20
    assert md.read_text().startswith("## harness compare: ✅ no change beyond tolerance")
    # a group (both process runs) against the Docker run: same outcomes, times within 1 s
    r = harness("compare", "backend=process", "backend=docker", "--results", str(results))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "BASE 'backend=process': 2 run(s)" in r.stdout


def test_compare_planted_change_fails_the_gate(results: Path, tmp_path: Path) -> None:
    planted = _plant(results)
    junit, md = tmp_path / "c.xml", tmp_path / "c.md"
    r = harness(
        "compare",
        PROCESS[0],
        planted.name,
        "--results",
        str(results),
        "--junit",
        str(junit),
        "--markdown",
        str(md),
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "CHANGED  outcome  s1-container-limit/leaker: outcome oom_killed -> evicted" in r.stdout
    root = ElementTree.parse(junit).getroot()
    failed = {
        (tc.get("classname"), tc.get("name"))
        for tc in root.iter("testcase")
        if tc.find("failure") is not None
    }
    assert failed == {
        ("harness.compare.outcome", "s1-container-limit/leaker"),
        ("harness.compare.verdict", "s1-container-limit/leaker"),
    }
    assert "❌ behaviour changed" in md.read_text()
    r = harness("compare", PROCESS[0], planted.name, "--results", str(results), "--json")
    data = json.loads(r.stdout)
    assert r.returncode == 1 and data["changed"] is True and data["new"]["runs"] == [planted.name]


def test_compare_and_report_bad_input_exit_2(results: Path) -> None:
    r = harness("compare", "backend=nope", PROCESS[0], "--results", str(results))
    assert r.returncode == 2 and r.stderr.splitlines()[-1].startswith("harness: error: BASE: 'backend=nope'")
    r = harness("compare", PROCESS[0], PROCESS[1], "--results", str(results), "--alpha", "2")
    assert r.returncode == 2 and "--alpha: must be in (0, 1)" in r.stderr
    r = harness("report", "backend=process", "--results", str(results))
    assert r.returncode == 2 and "selects 2 runs" in r.stderr
    r = harness("report", str(results / "missing-run"), "--results", str(results))
    assert r.returncode == 2 and "neither a run folder nor a run id" in r.stderr


def test_report_default_location_and_pngs(results: Path) -> None:
    r = harness("report", "backend=docker", "--results", str(results))
    assert r.returncode == 0, r.stderr
    out = results / DOCKER / "report" / "report.html"
    html = out.read_text()
    assert html.count('src="data:image/png;base64,') == 5
    assert "<script" not in html and "http://" not in html and "https://" not in html
    pngs = sorted(out.parent.glob("report-*.png"))
    assert len(pngs) == 5 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert "plotting s1-container-limit (1/5)" in r.stderr


def test_bad_label_is_rejected_before_running() -> None:
    r = harness("run", "suites/local.yaml", "--label", "novalue")
    assert r.returncode == 2 and "harness: error: --label: 'novalue': expected KEY=VALUE" in r.stderr


@pytest.mark.slow
def test_labelled_run_is_found_by_its_label(tmp_path: Path) -> None:
    """A real (short) run of S5 with --label, then the catalog, a report and a self-compare."""
    res = tmp_path / "results"
    r = harness(
        "run", "suites/local.yaml", "--scenario", "S5", "-q", "--results", str(res), "--label", "nightly=p7"
    )
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = next(res.iterdir())
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["labels"] == {"nightly": "p7"}
    r = harness("runs", "list", "--results", str(res), "nightly=p7", "--json")
    assert [d["id"] for d in json.loads(r.stdout)] == [run_dir.name]
    r = harness("report", "nightly=p7", "--results", str(res))
    assert r.returncode == 0 and (run_dir / "report" / "report-s5-heap-cap.png").exists()
    r = harness("compare", run_dir.name, run_dir.name, "--results", str(res))
    assert r.returncode == 0 and "in both BASE and NEW" in r.stdout
