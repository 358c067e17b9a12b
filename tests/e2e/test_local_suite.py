"""The main job, end to end: ``harness run suites/local.yaml`` on this host.

Real kernel OOM kills in real cgroups (process backend) and in real Docker containers
(docker backend, with the project's own engine started on demand). Each verdict must
match the model and the results directory must hold every promised file.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

from .conftest import harness, require_docker

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _only_run(results: Path) -> Path:
    runs = [p for p in results.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def _check_run(run: Path, backend: str) -> pd.DataFrame:
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "complete"
    assert meta["backend"] == backend
    assert meta["host"]["kernel"] and meta["host"]["cgroupVersion"] in (1, 2)
    assert "negativeOomScoreAdj" in meta["host"]
    for name in ("samples", "events", "outcomes", "verdicts", "predictions"):
        assert (run / f"{name}.parquet").is_file(), name
    verdicts = pd.read_parquet(run / "verdicts.parquet")
    failed = verdicts[~verdicts["passed"]]
    assert failed.empty, failed[["scenario", "workload", "predicted", "observed", "reasons"]].to_string()
    assert set(verdicts["scenario"]) == {
        "s1-container-limit",
        "s4-kubepods-fast",
        "s3-host-drains-node",
        "s5-heap-cap",
        "s6-page-cache",
    }
    junit = ET.parse(run / "junit.xml").getroot()
    assert int(junit.get("tests", "0")) == len(verdicts) and junit.get("failures") == "0"

    events = pd.read_parquet(run / "events.parquet")
    kills = events[(events["source"] == "kmsg") & (events["kind"] == "oom_kill")]
    # S1 leaker, S4 bystander, S3 besteffort + burstable + hostleak: five kernel kills
    assert len(kills) >= 5
    samples = pd.read_parquet(run / "samples.parquet")
    s1 = samples[samples["key"] == "s1-container-limit/leaker"]
    assert len(s1) >= 5
    assert s1["usage"].max() > 100 << 20  # rose towards the 128Mi limit
    s6 = samples[samples["key"] == "s6-page-cache/writer"]
    # page cache: usage reaches the limit region, working set stays small
    assert s6["usage"].max() > 96 << 20
    # while usage sits at the limit, most of the page cache is inactive, so the working set stays
    # well below usage in most samples. How much the kernel keeps active varies: 46-69 MiB of 128
    # were seen, and once (CI, 2026-12-07) 117 MiB active for one second of the 3.6 s at the limit,
    # which is why the median is used here and not the maximum
    at_limit = s6[s6["usage"] > 96 << 20]
    assert at_limit["working_set"].median() < 0.75 * s6["usage"].max(), at_limit[["usage", "working_set"]]
    return verdicts


def test_local_suite_process_backend(tmp_path: Path) -> None:
    r = harness("run", "suites/local.yaml", "--backend", "process", "--results", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "verdicts match" in r.stdout
    v = _check_run(_only_run(tmp_path), "process")
    outcomes = dict(zip(v["scenario"] + "/" + v["workload"], v["observed"], strict=True))
    assert outcomes["s1-container-limit/leaker"] == "oom_killed"
    assert outcomes["s4-kubepods-fast/bystander"] == "node_oom_killed"
    assert outcomes["s4-kubepods-fast/leaker"] == "completed"
    assert outcomes["s5-heap-cap/capped"] == "runtime_failed"


def test_local_suite_docker_backend(tmp_path: Path) -> None:
    require_docker()
    r = harness("run", "suites/local.yaml", "--backend", "docker", "--results", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    run = _only_run(tmp_path)
    _check_run(run, "docker")
    events = pd.read_parquet(run / "events.parquet")
    # Docker's own exit records: S1's leaker exited 137 with State.OOMKilled
    exits = events[(events["source"] == "runtime") & (events["workload"] == "leaker")]
    assert any('"OOMKilled": true' in str(d) for d in exits["detail"])


def test_bad_suite_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "s.yaml"
    bad.write_text("apiVersion: harness/v1\nkind: Suite\nname: x\nprofile: nothere.yaml\nscenarios: []\n")
    r = harness("run", str(bad), "--results", str(tmp_path / "r"))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("harness: error: ")
    assert "Traceback" not in r.stderr
