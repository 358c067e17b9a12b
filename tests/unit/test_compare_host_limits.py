"""A memory limit that differs because the nodes differ is not a kubelet change (issue 20): each run
records its model's limits (``expected_limits``, ``model.layout.sampled_limits``) and ``compare``
reports a difference where every run had its own model's value, one no kubelet version changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from harness.catalog import select_runs
from harness.compare import compare_groups, load_group
from harness.config.suite import load_suite
from harness.errors import InputError
from harness.model import layout as layout_mod
from harness.model.layout import node_layout, sampled_limits

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "runs"
KUBELET_RUN = "20261123T184541Z-kubelet-kubernetes-28da"
SC = "s2-slow-past-allocatable"
KUBEPODS = 3264802816  # the fixture run's sampled kubepods limit


def test_the_model_limits_of_the_sampled_cgroups_and_their_version_independence() -> None:
    sc = load_suite(REPO / "suites" / "kubelet.yaml").scenario("S2")
    got = sampled_limits(sc, kubelet=True)
    lay = node_layout(sc, kubelet=True)
    assert got["kubepods"].value == lay.limits["kubepods"]
    assert got["ballast"].value == lay.workloads["ballast"].memory_limit_bytes
    assert got["slowleak"].value is None  # BestEffort: no limit
    assert all(v.same_in_every_version for v in got.values())


def test_a_limit_one_version_sets_otherwise_is_not_version_free(monkeypatch: pytest.MonkeyPatch) -> None:
    sc = load_suite(REPO / "suites" / "kubelet.yaml").scenario("S2")
    real = layout_mod.node_layout

    def shifted(scenario: Any, *, kubelet: bool = False) -> Any:
        out = real(scenario, kubelet=kubelet)
        if scenario.node.kubelet_version == "1.30":
            out.limits["kubepods"] = (out.limits["kubepods"] or 0) + 4096
        if scenario.node.kubelet_version == "1.28":
            raise InputError("profile", None, "not in 1.28")
        return out

    monkeypatch.setattr(layout_mod, "node_layout", shifted)
    got = sampled_limits(sc, kubelet=True)
    # 1.30 differs on kubepods; 1.28 refuses the profile, so nothing is known to be the same
    assert not got["kubepods"].same_in_every_version and not got["ballast"].same_in_every_version


def _run(
    tmp: Path, as_name: str, kubepods: int, model: int | None, same: bool = True, ceiling: int | None = None
) -> Path:
    """The fixture run as another node: its sampled kubepods limit ``kubepods``, and, when ``model``
    is given, the model's limits recorded as a run does (event ``expected_limits``)."""
    d = tmp / as_name
    shutil.copytree(FIXTURES / KUBELET_RUN, d)
    meta = json.loads((d / "run.json").read_text())
    meta["run_id"] = as_name
    (d / "run.json").write_text(json.dumps(meta))
    s = pd.read_parquet(d / "samples.parquet")
    s.loc[s["key"].astype(str).str.endswith("/kubepods"), "limit"] = kubepods
    s.to_parquet(d / "samples.parquet", index=False)
    if model is not None:
        e = pd.read_parquet(d / "events.parquet")
        rows = [
            {
                "source": "harness",
                "kind": "expected_limits",
                "scenario": sc,
                "detail": json.dumps(
                    {
                        "kubepods": [model, same] + ([ceiling] if ceiling else []),
                        "ballast": [1887436800, True],
                    }
                ),
            }
            for sc in (SC, "s4-fast-past-kubepods")
        ]
        pd.concat([e, pd.DataFrame(rows)], ignore_index=True).to_parquet(d / "events.parquet", index=False)
        assert "expected_limits" in set(
            pq.read_table(d / "events.parquet", columns=["kind"])["kind"].to_pylist()
        )
    return d


def _compare(a: Path, b: Path) -> Any:
    ga, gb = (load_group(d.name, select_runs(str(d), d.parent)) for d in (a, b))
    return compare_groups(ga, gb)


def _cgroup_changes(c: Any) -> list[str]:
    return [f.summary for f in c.changes if f.check == "cgroup"]


def test_two_nodes_each_with_its_models_limit_are_not_a_change(tmp_path: Path) -> None:
    other = KUBEPODS + 8192  # a guest whose MemTotal is 8 KiB larger
    c = _compare(_run(tmp_path, "a", KUBEPODS, KUBEPODS), _run(tmp_path, "b", other, other))
    assert _cgroup_changes(c) == []
    host = [f for f in c.findings if f.check == "cgroup" and f.test == "each side's model"]
    assert len(host) == 2 and all(not f.changed for f in host)
    assert f"{SC}/kubepods: memory limit {KUBEPODS} -> {other}" in host[0].summary + host[1].summary
    assert "the nodes differ" in host[0].note


def test_a_limit_off_its_model_or_version_dependent_or_unrecorded_stays_a_change(tmp_path: Path) -> None:
    other = KUBEPODS + 8192
    base = _run(tmp_path, "a", KUBEPODS, KUBEPODS)
    # NEW's kubelet set what its own model did not say: a change
    off = _run(tmp_path, "b", other, KUBEPODS)
    assert len(_cgroup_changes(_compare(base, off))) == 2
    # the model gives another value in another version: a kubelet change the gate must show
    versioned = _run(tmp_path, "c", other, other, same=False)
    assert len(_cgroup_changes(_compare(base, versioned))) == 2
    # an older run that recorded no model limits: as before, a change
    old = _run(tmp_path, "d", other, None)
    assert len(_cgroup_changes(_compare(base, old))) == 2


def test_each_hosts_own_ceiling_on_kubepods_is_the_hosts_value(tmp_path: Path) -> None:
    # labs ka and kb (2026-12-07): S1 sampled the harness's ceiling on kubepods, 2233622528 and
    # 2233626624 (pod_ceiling of MemTotals 8 KiB apart), under the kubelet's 2244567040 / 2244575232
    ka, kb = 2233622528, 2233626624
    base = _run(tmp_path, "a", ka, ka + 10944512, ceiling=ka)
    new = _run(tmp_path, "b", kb, kb + 10948608, ceiling=kb)
    c = _compare(base, new)
    assert _cgroup_changes(c) == []
    assert any("or the harness's own ceiling" in f.note for f in c.findings if f.check == "cgroup")
    # the ceiling recorded, but NEW sampled neither it nor its model's value: still a change
    off = _run(tmp_path, "c", kb + 4096, kb + 10948608, ceiling=kb)
    assert len(_cgroup_changes(_compare(base, off))) == 2
    # two-field events of older runs: the ceiling unknown, a change as before
    old = _run(tmp_path, "d", kb, kb + 10948608)
    assert len(_cgroup_changes(_compare(base, old))) == 2
