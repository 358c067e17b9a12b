"""``launch: parallel`` on the local cluster: the pods are created together, every one is started,
sampled and classified, and they are stopped together at the timeout."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import REPO, harness

if os.environ.get("HARNESS_SKIP_KUBELET") == "1":
    pytest.skip("HARNESS_SKIP_KUBELET=1", allow_module_level=True)

PODS = 6


def _suite(path: Path) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "harness/v1",
                "kind": "Suite",
                "name": "parallel",
                "profile": str(REPO / "profiles" / "cluster-default.yaml"),
                "scenarios": [
                    {
                        "name": "s-parallel",
                        "timeout": "25s",
                        "backends": ["kubernetes"],
                        "launch": "parallel",
                        "workloads": [
                            {
                                "name": f"hold-{i}",
                                "resources": {"requests": {"memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                                "leak": {"chunk": "8Mi", "interval": "100ms", "max": "16Mi"},
                            }
                            for i in range(PODS)
                        ],
                    }
                ],
            },
            sort_keys=False,
        )
    )


@pytest.mark.timeout(600)
def test_parallel_launch_creates_the_pods_together_and_classifies_each(
    local_cluster: None, tmp_path: Path
) -> None:
    suite = tmp_path / "suite.yaml"
    _suite(suite)
    results = tmp_path / "results"
    r = harness("run", str(suite), "--backend", "kubernetes", "--results", str(results), timeout=500)
    run_dir = next(results.iterdir())
    v = pd.read_parquet(run_dir / "verdicts.parquet")
    assert r.returncode == 0, v[["workload", "observed", "reasons"]].to_string() + r.stderr[-2000:]
    names = {f"hold-{i}" for i in range(PODS)}
    observed = {w: o for w, o in zip(v.workload, v.observed, strict=True) if w in names}
    assert observed == dict.fromkeys(names, "completed")
    e = pd.read_parquet(run_dir / "events.parquet")
    created = e[(e.source == "harness") & (e.kind == "pod_created")]
    started = e[(e.source == "kubelet") & (e.kind == "Started") & e.object.fillna("").str.contains("-hold-")]
    assert set(created.workload) == names and len(started) >= PODS
    # serial launching would see PODS - 1 containers started before the last pod is created
    assert int((started.t_mono < created.t_mono.max()).sum()) <= PODS // 2, (
        created[["t_mono", "workload"]].to_string() + "\n" + started[["t_mono", "object"]].to_string()
    )
    # stopped together at the timeout: each pod's processes were seen gone (or its exit reported)
    # before the wait's deadline, and the tear-down removed every pod from the API
    stopped = e[(e.source == "harness") & (e.kind == "pods_stopped")]
    assert len(stopped) == 1 and int(stopped.stopped.iloc[0]) == PODS and int(stopped.not_seen.iloc[0]) == 0
    deleted = e[(e.source == "harness") & (e.kind == "pods_deleted")]
    assert len(deleted) == 1 and int(deleted.deleted.iloc[0]) == PODS, deleted.to_string()
    # every pod's own cgroup was sampled from its start on
    s = pd.read_parquet(run_dir / "samples.parquet", columns=["key", "usage"])
    per_key = s.groupby("key").usage.max()
    for n in names:
        assert per_key.get(f"s-parallel/{n}", 0) >= 16 << 20, per_key.to_string()
