"""The run catalog: labels, selectors and the cached index (run.json files in a temp folder)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from harness.catalog import (
    INDEX_NAME,
    Catalog,
    Filter,
    implicit_labels,
    natural_key,
    parse_labels,
    parse_selector,
    select_runs,
)
from harness.errors import InputError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runs"


def _meta(run_id: str, started: str, **kw: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "schema": 1,
        "run_id": run_id,
        "status": kw.pop("status", "complete"),
        "started": started,
        "suite": "local",
        "backend": kw.pop("backend", "process"),
        "git_revision": "0123456789abcdef0123-dirty",
        "harness_version": "0.1.0",
        "host": {"name": kw.pop("host", "vm"), "kernel": "6.1.0", "cgroupVersion": kw.pop("cgroup", 1)},
        "node": {"s1": {"kubeletVersion": kw.pop("kubelet", "1.34")}},
        "scenarios": ["s1"],
        "verdicts_passed": 1,
        "verdicts_total": 1,
    }
    meta.update(kw)
    return meta


def _write(root: Path, meta: dict[str, Any]) -> Path:
    d = root / meta["run_id"]
    d.mkdir(parents=True, exist_ok=True)
    (d / "run.json").write_text(json.dumps(meta))
    return d


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    _write(root, _meta("20261101T000000Z-local-process-aaaa", "2026-11-01T00:00:00+00:00", kubelet="1.9"))
    _write(
        root,
        _meta(
            "20261102T000000Z-local-docker-bbbb",
            "2026-11-02T00:00:00+00:00",
            backend="docker",
            kubelet="1.10",
            labels={"lab": "nightly"},
        ),
    )
    _write(
        root,
        _meta(
            "20261103T000000Z-local-process-cccc",
            "2026-11-03T00:00:00+00:00",
            kubelet="1.34",
            cgroup=2,
            labels={"lab": "nightly", "kubelet": "1.34.1"},
        ),
    )
    _write(
        root, _meta("20261104T000000Z-local-process-dddd", "2026-11-04T00:00:00+00:00", status="interrupted")
    )
    (root / "not-a-run").mkdir()
    return root


def test_parse_labels_and_errors() -> None:
    assert parse_labels(["kubelet=1.33.4", " lab = nightly "]) == {"kubelet": "1.33.4", "lab": "nightly"}
    for bad in ("novalue", "=x", "k=", "k=a,b", "1k=v", "k y=v"):
        with pytest.raises(InputError, match="--label"):
            parse_labels([bad])


def test_implicit_labels_from_run_json() -> None:
    labels = implicit_labels(_meta("r1", "2026-11-01T10:00:00+00:00", kubelet="1.33", cgroup=2))
    assert labels["kubelet"] == "1.33"
    assert labels["cgroup"] == "v2"
    assert labels["date"] == "2026-11-01"
    assert labels["git"] == "0123456789ab-dirty"
    assert labels["backend"] == "process" and labels["host"] == "vm" and labels["status"] == "complete"
    # a real kubelet's version (kubernetes backend) wins over the modelled one; engine versions too
    real = _meta("r2", "2026-11-01T10:00:00+00:00", kubelet_version="v1.34.2")
    real["host"]["engine"] = {"docker": "20.10.24", "containerd": "1.6.20"}
    labels = implicit_labels(real)
    assert (
        labels["kubelet"] == "1.34.2" and labels["docker"] == "20.10.24" and labels["containerd"] == "1.6.20"
    )


def test_natural_key_orders_versions_and_dates() -> None:
    assert natural_key("1.9") < natural_key("1.10") < natural_key("1.34.1")
    assert natural_key("2026-11-01") < natural_key("2026-11-10")
    assert Filter("kubelet", ">=", "1.10").matches({"kubelet": "1.34"})
    assert not Filter("kubelet", ">=", "1.10").matches({"kubelet": "1.9"})
    assert Filter("kubelet", "=", "1.3*").matches({"kubelet": "1.34"})
    assert Filter("host", "!=", "lab").matches({})  # a missing label differs from anything
    assert not Filter("host", "=", "lab").matches({})
    assert Filter("host", "~", "^lab-[0-9]+$").matches({"host": "lab-7"})


def test_parse_selector_terms_and_errors(tmp_path: Path) -> None:
    sel = parse_selector("kubelet=1.33.*, date>=2026-11-01,last:3,20261101T000000Z")
    assert [str(f) for f in sel.filters] == ["kubelet=1.33.*", "date>=2026-11-01"]
    assert sel.limit == ("last", 3)
    assert sel.refs == ["20261101T000000Z"]
    assert parse_selector(str(tmp_path)).refs == [str(tmp_path)]  # an existing path is a ref
    for bad, msg in (
        ("last:0", "at least 1"),
        ("last:1,first:2", "more than one"),
        ("host~(", "regular"),
        ("=x", "expected KEY=VALUE"),
        ("kubelet=", "expected KEY=VALUE"),
    ):
        with pytest.raises(InputError, match=msg):
            parse_selector(bad)


def test_select_by_labels_and_limits(results: Path) -> None:
    ids = lambda runs: [r.id[-4:] for r in runs]  # noqa: E731
    assert ids(select_runs("", results)) == ["aaaa", "bbbb", "cccc", "dddd"]
    assert ids(select_runs("", results, complete_only=True)) == ["aaaa", "bbbb", "cccc"]
    assert ids(select_runs("status=interrupted", results, complete_only=True)) == ["dddd"]
    assert ids(select_runs("backend=process", results)) == ["aaaa", "cccc", "dddd"]
    assert ids(select_runs("lab=nightly", results)) == ["bbbb", "cccc"]
    # an explicit label overrides the derived one
    assert ids(select_runs("kubelet=1.34.1", results)) == ["cccc"]
    assert ids(select_runs("kubelet>=1.10,kubelet<1.34", results)) == ["bbbb"]
    assert ids(select_runs("date>=2026-11-02,last:2", results)) == ["cccc", "dddd"]
    assert ids(select_runs("first:1", results)) == ["aaaa"]
    assert ids(select_runs("cgroup=v2", results)) == ["cccc"]
    assert select_runs("host=elsewhere", results) == []


def test_select_explicit_runs_and_folders(results: Path, tmp_path: Path) -> None:
    runs = select_runs("20261102T,20261101T000000Z-local-process-aaaa", results)
    assert [r.id[-4:] for r in runs] == ["aaaa", "bbbb"]
    # named explicitly, an interrupted run is taken even with complete_only
    assert [r.id[-4:] for r in select_runs("20261104", results, complete_only=True)] == ["dddd"]
    # a run folder anywhere, and a folder of runs
    other = tmp_path / "elsewhere"
    d = _write(other, _meta("20261201T000000Z-local-process-eeee", "2026-12-01T00:00:00+00:00"))
    assert [r.id for r in select_runs(str(d), results)] == [d.name]
    assert len(select_runs(f"{other}", results)) == 1
    with pytest.raises(InputError, match="neither a run folder nor a run id"):
        select_runs("nosuchrun", results)
    with pytest.raises(InputError, match="matches 4 runs"):
        select_runs("2026110", results.parent / "results")


def test_catalog_index_is_a_cache_only(results: Path) -> None:
    cat = Catalog(results)
    assert len(cat.runs()) == 4 and cat.index_rebuilt == 4
    index = results / INDEX_NAME
    assert index.exists()
    again = Catalog(results)
    assert len(again.runs()) == 4 and again.index_rebuilt == 0  # everything from the index
    # a changed run.json is re-read (its mtime/size changed)
    p = results / "20261101T000000Z-local-process-aaaa" / "run.json"
    meta = json.loads(p.read_text())
    meta["labels"] = {"lab": "rerun"}
    p.write_text(json.dumps(meta))
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    third = Catalog(results)
    assert len(third.runs()) == 4 and third.index_rebuilt == 1
    assert third.runs()[0].labels.get("lab") == "rerun"
    # a corrupt index is ignored and rewritten; a broken run.json is skipped and reported
    index.write_text("{not json")
    (results / "20261102T000000Z-local-docker-bbbb" / "run.json").write_text("{")
    fourth = Catalog(results)
    assert len(fourth.runs()) == 3 and fourth.skipped == ["20261102T000000Z-local-docker-bbbb"]
    assert json.loads(index.read_text())["version"] == 1
    # without the index nothing is written
    index.unlink()
    assert len(Catalog(results, use_index=False).runs()) == 3 and not index.exists()


def test_missing_results_folder_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="results folder does not exist"):
        Catalog(tmp_path / "nope").runs()


def test_recorded_fixture_runs_have_labels() -> None:
    runs = Catalog(FIXTURES, use_index=False).runs()
    local = [r for r in runs if r.labels["suite"] == "local"]
    assert len(local) == 3
    for r in local:
        assert r.labels["purpose"] == "fixture"  # given with 'harness run --label'
        assert r.labels["kubelet"] == "1.34" and r.labels["cgroup"] == "v1"
    assert {r.labels["backend"] for r in local} == {"process", "docker"}
    # runs of the kubernetes backend: the real kubelet's version, not the modelled one
    real = [r for r in runs if r.labels["backend"] == "kubernetes"]
    assert len(real) == 2 and {r.labels["kubelet"] for r in real} == {"1.33.4"}
