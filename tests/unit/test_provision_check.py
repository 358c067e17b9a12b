"""``harness provision --check --diff``: the kubelet config module in check mode, and the flags'
way from the CLI to ansible-runner (the lab run itself needs the loopback hosts)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from harness.provision.runner import _Events, playbook_options, render_diffs

REPO = Path(__file__).resolve().parents[2]
LIB = REPO / "playbooks" / "library"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("harness_kubelet_config", LIB / "harness_kubelet_config.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_plan_changes_nothing_and_shows_the_kubelet_config_diff(tmp_path: Path) -> None:
    m = _module()
    cfg, root = tmp_path / "etc", tmp_path / "var"
    root.mkdir()
    old = "kind: KubeletConfiguration\nevictionHard:\n  memory.available: 100Mi\nmemoryManagerPolicy: None\n"
    m.deploy(str(cfg), str(root), old, {"port": 10250}, {"memoryManagerPolicy": "None"})
    (root / "memory_manager_state").write_text("{}")
    before = _tree(tmp_path)
    new = old.replace("100Mi", "500Mi").replace("None\n", "Static\n")
    p = m.plan(str(cfg), str(root), new, {"port": 10250}, {"memoryManagerPolicy": "Static"})
    assert _tree(tmp_path) == before  # check mode: not a byte written
    assert p["changed"] is True
    assert "memory_manager_state" in p["would_clear"]
    files = {Path(d["after_header"]).name for d in p["diff"]}
    assert files == {"config.yaml", "effective.json"}  # the drop-in is unchanged
    text = "".join(render_diffs(p["diff"]))
    for line in (
        "-  memory.available: 100Mi\n",
        "+  memory.available: 500Mi\n",
        "-memoryManagerPolicy: None\n",
        "+memoryManagerPolicy: Static\n",
        '-  "memoryManagerPolicy": "None"\n',
        '+  "memoryManagerPolicy": "Static"\n',
    ):
        assert line in text, line  # fmt: skip
    # the same inputs as deployed: nothing to change, no diff
    q = m.plan(str(cfg), str(root), old, {"port": 10250}, {"memoryManagerPolicy": "None"})
    assert q == {"changed": False, "diff": [], "would_clear": {}}


def test_plan_on_a_fresh_host(tmp_path: Path) -> None:
    p = _module().plan(str(tmp_path / "etc"), str(tmp_path), "kind: KubeletConfiguration\n", {}, {})
    assert p["changed"] and all(d["before_header"] == "(absent)" for d in p["diff"])
    assert not (tmp_path / "etc").exists()


def test_playbook_options() -> None:
    assert playbook_options(check=False, diff=False) == {}
    assert playbook_options(check=True, diff=True) == {"cmdline": "--check --diff"}
    assert playbook_options(check=False, diff=True) == {"cmdline": "--diff"}


def test_events_keep_the_diff_of_changed_tasks() -> None:
    ev = _Events(["lab-a"], lambda _m: None)
    diff = [{"before": "a: 1\n", "after": "a: 2\n", "before_header": "/etc/x", "after_header": "/etc/x"}]
    ev(
        {
            "event": "runner_on_ok",
            "event_data": {"host": "lab-a", "task": "Write the profile", "role": "kubelet",
                           "res": {"changed": True, "diff": diff}},
        }
    )  # fmt: skip
    (d,) = ev.reports["lab-a"].diffs
    assert d.startswith("kubelet : Write the profile:\n--- /etc/x\n+++ /etc/x\n") and "-a: 1\n+a: 2\n" in d


def test_a_failed_harness_command_is_reported_by_its_error_line_not_the_daemon_log_it_quotes() -> None:
    # lab ka, a loaded host: `harness cluster up` failed and its last stderr line was an apiserver
    # log line, which the summary showed as the reason
    ev = _Events(["ka-a"], lambda _m: None)
    stderr = (
        "I1207 11:22:58 starting\n[cluster 11:22:58] starting kube-apiserver 1.33.4 on 127.0.0.1:6443\n"
        "harness: error: kube-apiserver /readyz not ready after 180 s; last log lines (kube-apiserver.log):\n"
        "E1207 11:24:59.797416 controller.go:145] Failed to ensure lease exists\n"
        "I1207 11:25:48.784924 cacher.go:847] 1 objects queued in incoming channel.\n"
    )
    ev(
        {
            "event": "runner_on_failed",
            "event_data": {"host": "ka-a", "task": "Start the cluster", "role": "cluster",
                           "res": {"rc": 3, "msg": "non-zero return code", "stderr": stderr}},
        }
    )  # fmt: skip
    err = ev.reports["ka-a"].error
    assert err is not None and err.startswith(
        "task 'cluster : Start the cluster' failed: error: kube-apiserver /readyz not ready after 180 s"
    )
    assert "cacher.go" in err  # the quoted log's last line follows the colon
    ev2 = _Events(["ka-a"], lambda _m: None)
    ev2(
        {
            "event": "runner_on_failed",
            "event_data": {"host": "ka-a", "task": "Copy", "res": {"rc": 1, "stderr": "cp: no space left\n"}},
        }
    )
    assert ev2.reports["ka-a"].error == "task 'Copy' failed: cp: no space left"


def test_cli_passes_check_and_diff_to_ansible_runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Argument plumbing only: ansible-runner is replaced (the real run needs lab hosts)."""
    import ansible_runner

    import harness.provision as prov
    from harness.cli import cli

    seen: dict[str, Any] = {}

    def fake_run(**kw: Any) -> Any:
        seen.update(kw)
        kw["event_handler"](
            {
                "event": "runner_on_ok",
                "event_data": {"host": "lab-a", "task": "Write", "role": "kubelet",
                               "res": {"changed": True, "diff": {"before": "x\n", "after": "y\n"}}},
            }
        )  # fmt: skip
        kw["event_handler"]({"event": "playbook_on_stats", "event_data": {"processed": {"lab-a": 1}}})
        return SimpleNamespace(status="successful", rc=0)

    monkeypatch.setattr(ansible_runner, "run", fake_run)
    monkeypatch.setattr(prov, "preflight", lambda hosts, forks, say: {})
    monkeypatch.setattr(prov, "role_inputs", lambda path, hosts, say: ({}, {}))
    inv = tmp_path / "lab.yaml"
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    key = tmp_path / "id"
    key.write_text("")
    inv.write_text(
        json.dumps(
            {"apiVersion": "harness/v1", "kind": "Inventory",
             "defaults": {"user": "root", "keyFile": str(key), "knownHosts": str(kh),
                          "vars": {"kubelet_profile": str(REPO / "playbooks" / "examples" / "profiles" / "loopback.yaml")}},
             "hosts": {"lab-a": {"address": "127.0.0.2", "port": 2222}}}
        )
    )  # fmt: skip
    r = CliRunner().invoke(
        cli, ["provision", str(inv), "--check", "--diff", "-q", "--results", str(tmp_path / "res")]
    )
    if r.exit_code != 0 and "lab.yaml" in r.output:
        pytest.fail(f"the test's inventory is not valid: {r.output}")
    assert r.exit_code == 0, r.output
    assert seen["cmdline"] == "--check --diff"
    assert "-x\n    +y" in r.output and "check mode: nothing was changed" in r.output
    (run,) = (tmp_path / "res").iterdir()
    assert json.loads((run / "run.json").read_text())["kind"] == "provision-check"
