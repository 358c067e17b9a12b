"""``harness upgrade-check`` on the real local cluster: two kubelet versions, the S12 suite.

The sidecar's oom_score_adj rule came in 1.32 (kubernetes PR #128029; gated in 1.32, GA in 1.33):
between a version before 1.32 and one from 1.32 the gate must fail with exactly that line (one
repeat); the same version twice (A/A, two runs per side) must pass.
Versions: HARNESS_KUBELET_VERSION (default 1.33.4) and HARNESS_KUBELET_OTHER_VERSION (default
1.32.5), the ones the kubelet tests already build. HARNESS_SKIP_KUBELET=1 skips explicitly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, harness

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

VERSION = os.environ.get("HARNESS_KUBELET_VERSION", "1.33.4")
OTHER_VERSION = os.environ.get("HARNESS_KUBELET_OTHER_VERSION", "1.32.5")
SUITE = REPO / "suites" / "upgrade.yaml"

if os.environ.get("HARNESS_SKIP_KUBELET") == "1":
    pytest.skip("HARNESS_SKIP_KUBELET=1", allow_module_level=True)


def _minor(v: str) -> int:
    return int(v.split(".")[1])


def _sidecar_values() -> dict[str, int]:
    """The model's sidecar oom_score_adj on this host for both versions (what the kubelet must apply)."""
    from harness.config.kubelet import load_profile
    from harness.config.node import NodeFacts, detect_local_facts
    from harness.config.pod import load_pods
    from harness.model.oom import container_oom_score_adj

    (pod,) = load_pods(REPO / "suites" / "pods" / "sidecar.yaml")
    profile = load_profile(REPO / "profiles" / "cluster-default.yaml")
    out = {}
    for v in (OTHER_VERSION, VERSION):
        facts = NodeFacts.model_validate({**detect_local_facts(), "kubeletVersion": v})
        out[v] = container_oom_score_adj(
            pod, "sidecar", facts.memory_capacity_bytes, profile, facts.kubelet_minor
        )
    return out


@pytest.fixture(scope="module")
def cluster_down_after() -> Iterator[None]:
    yield
    d = harness("cluster", "down", timeout=300)
    assert d.returncode == 0, d.stderr[-2000:]


@pytest.mark.timeout(3600)
def test_upgrade_check_flags_the_sidecar_rule_only_where_the_kubelet_changed_it(
    cluster_down_after: None, tmp_path: Path
) -> None:
    values = _sidecar_values()
    r = harness(
        "upgrade-check",
        "--from",
        OTHER_VERSION,
        "--to",
        VERSION,
        "--suite",
        str(SUITE),
        "--repeats",
        "1",
        "-o",
        str(tmp_path / "check"),
        timeout=3600,
    )
    print(r.stdout[-4000:], r.stderr[-4000:])
    assert r.returncode in (0, 1), r.stderr[-3000:]
    changed = [x.strip() for x in r.stdout.splitlines() if x.strip().startswith("CHANGED")]
    if (_minor(OTHER_VERSION) >= 32) == (
        _minor(VERSION) >= 32
    ):  # the rule is in 1.32.5 (gated, on) and 1.33+
        assert values[OTHER_VERSION] == values[VERSION]
        assert r.returncode == 0 and not changed, r.stdout
    else:
        assert values[OTHER_VERSION] != values[VERSION]
        assert r.returncode == 1
        assert [x.split("  [")[0] for x in changed] == [
            "CHANGED  cgroup   s12-sidecar-oom-score/kubepods/burstable/pod<uid>/sidecar [app]: "
            f"oom_score_adj {values[OTHER_VERSION]} -> {values[VERSION]}"
        ], r.stdout
    out = tmp_path / "check"
    state = json.loads((out / "upgrade.json").read_text())
    assert [(s["side"], s["version"], s["run_rc"]) for s in state["steps"]] == [
        ("from", OTHER_VERSION, 0),
        ("to", VERSION, 0),
    ]
    html = (out / "report.html").read_text()
    assert html.count('<img src="data:image/png;base64,') == 2  # one scenario, both sides
    # each side's run recorded the sidecar's value the model gives its version (verdicts passed)
    import pandas as pd

    for side, v in (("from", OTHER_VERSION), ("to", VERSION)):
        (run,) = [
            p
            for p in (out / "runs").iterdir()
            if json.loads((p / "run.json").read_text())["labels"]["side"] == side
        ]
        cg = pd.read_parquet(run / "cgroups.parquet")
        row = cg[(cg["file"] == "oom_score_adj") & cg["path"].str.endswith("/sidecar")]
        assert row["observed"].tolist() == [str(values[v])], cg[cg["file"] == "oom_score_adj"]


@pytest.mark.timeout(3600)
def test_a_a_passes(cluster_down_after: None, tmp_path: Path) -> None:
    """The same kubelet twice, 2 runs per side (A B A B) with the statistical tests on from 2 runs:
    the gate measures the noise within each side and finds no change."""
    r = harness(
        "upgrade-check",
        "--from",
        VERSION,
        "--to",
        VERSION,
        "--suite",
        str(SUITE),
        "--repeats",
        "2",
        "--min-repeats",
        "2",
        "-o",
        str(tmp_path / "aa"),
        timeout=3600,
    )
    print(r.stdout[-4000:], r.stderr[-4000:])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "no change beyond tolerance" in r.stdout
    out = tmp_path / "aa"
    state = json.loads((out / "upgrade.json").read_text())
    assert [(s["side"], s["version"], s["run_rc"]) for s in state["steps"]] == [
        ("from", VERSION, 0),
        ("to", VERSION, 0),
    ] * 2
    result = json.loads((out / "compare.json").read_text())
    assert len(result["base"]["runs"]) == len(result["new"]["runs"]) == 2
    assert not result["changed"] and not [f for f in result["findings"] if f["changed"]]
    outcomes = [f for f in result["findings"] if f["check"] == "outcome"]
    assert outcomes and all(f["noise"] for f in outcomes), outcomes  # measured within each side
    sidecar = [
        f
        for f in result["findings"]
        if f["check"] == "cgroup" and f["subject"].endswith("/sidecar [app] oom_score_adj")
    ]
    assert len(sidecar) == 1 and sidecar[0]["base"] == sidecar[0]["new"], sidecar
