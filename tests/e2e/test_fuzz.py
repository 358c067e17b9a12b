"""``harness fuzz`` on the real local cluster: 8 random pods under one random kubelet profile, each
compared with the model (admission, cgroup files, oom_score_adj). The cluster is brought up by the
module fixture if it is down; the kubelet gets its configuration back and no pod of the run stays.
HARNESS_SKIP_KUBELET=1 skips explicitly. That a difference is reported and written as a reproducer is
tested on a node state the test controls (tests/unit/test_fuzz.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from harness.cluster import Cluster
from harness.cluster.client import api_client
from harness.launch.base import LABEL_RUN
from harness.launch.kubernetes.pods import NAMESPACE, label_value
from tests.e2e.conftest import harness

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

if os.environ.get("HARNESS_SKIP_KUBELET") == "1":
    pytest.skip("HARNESS_SKIP_KUBELET=1", allow_module_level=True)


def _status() -> dict[str, object]:
    r = harness("cluster", "status", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    return dict(json.loads(r.stdout))


def test_fuzz_small_run_matches_the_model_and_leaves_the_node_as_found(
    local_cluster: None, tmp_path: Path
) -> None:
    before = _status()
    out = tmp_path / "fuzz"
    r = harness("fuzz", "--pods", "8", "--seed", "1", "--out", str(out), "--json", timeout=900)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stderr[-4000:]}\n{r.stdout[-4000:]}"
    rep = json.loads(r.stdout)
    assert rep["complete"] and rep["pods"] == 8
    assert rep["compared"] == 8, rep["pods_detail"]
    assert rep["differences"] == 0
    assert rep["files_compared"] > 0 and rep["oom_scores_compared"] > 0
    details = rep["pods_detail"]
    assert len(details) == 8 and all(p["compared"] for p in details)
    # every admitted pod had its cgroup files and containers' oom_score_adj read
    assert all(p["files"] > 0 and p["oom_scores"] > 0 for p in details if p["observed"]["admitted"])
    # progress per pod, and the same report on disk
    for i in range(8):
        assert f"fuzz-1-{i:04d}" in r.stderr
    assert json.loads((out / "fuzz.json").read_text())["compared"] == 8
    # one random profile, given back afterwards
    (prof,) = rep["profiles"]
    assert yaml.safe_load(Path(prof["path"]).read_text())["kind"] == "KubeletConfiguration"
    after = _status()
    assert after["profile"] == before["profile"]
    assert after["node"]["allocatable"] == before["node"]["allocatable"]  # type: ignore[index]
    # no pod of the run is left
    api = api_client(Cluster())
    try:
        pods = k8s.CoreV1Api(api).list_namespaced_pod(
            NAMESPACE, label_selector=f"{LABEL_RUN}={label_value(rep['run_id'])}"
        )
        assert [p.metadata.name for p in pods.items if p.metadata] == []
    finally:
        api.close()
