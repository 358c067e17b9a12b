"""A scenario that exhausts the node: only on the real kubelet, only on a disposable host."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from harness.config.suite import Scenario, load_suite
from harness.host.probes import disposable_host

REPO = Path(__file__).resolve().parents[2]


def _scenario(**extra: object) -> dict[str, object]:
    return {
        "name": "n",
        "workloads": [
            {"name": "h", "placement": "host", "leak": {"chunk": "1Mi", "interval": "1s", "max": "1Gi"}}
        ],
        **extra,
    }


def test_exhausts_node_needs_the_kubernetes_backend_alone() -> None:
    with pytest.raises(ValidationError, match="exhaustsNode needs backends: \\[kubernetes\\]"):
        Scenario.model_validate(_scenario(exhaustsNode=True))
    with pytest.raises(ValidationError, match="exhaustsNode needs"):
        Scenario.model_validate(_scenario(exhaustsNode=True, backends=["kubernetes", "process"]))
    assert Scenario.model_validate(_scenario(exhaustsNode=True, backends=["kubernetes"])).exhausts_node
    assert not Scenario.model_validate(_scenario()).exhausts_node


def test_the_vm_node_oom_suite_declares_it() -> None:
    assert load_suite(REPO / "suites" / "vm-node-oom.yaml").scenario("N1").exhausts_node


def test_a_lab_vm_or_an_operator_marks_a_host_disposable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HARNESS_DISPOSABLE_HOST", raising=False)
    markers = (tmp_path / "harness-seed", tmp_path / "harness-seed.service")
    assert disposable_host(markers) is None
    markers[0].write_text("#!/bin/sh\n")
    assert disposable_host(markers) is None  # both, not one
    markers[1].write_text("[Unit]\n")
    assert disposable_host(markers) == "a harness lab VM"
    (tmp_path / "harness-seed").unlink()
    monkeypatch.setenv("HARNESS_DISPOSABLE_HOST", "1")
    assert disposable_host(markers) == "HARNESS_DISPOSABLE_HOST=1"
    monkeypatch.setenv("HARNESS_DISPOSABLE_HOST", "yes")
    assert disposable_host(markers) is None
    # this controller is not one
    monkeypatch.delenv("HARNESS_DISPOSABLE_HOST")
    assert disposable_host() is None
