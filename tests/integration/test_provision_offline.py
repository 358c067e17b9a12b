"""A loopback lab host installs the harness from the controller's wheelhouse, with no package index.

The host (a real sshd on 127.0.33.1, ``tests/integration/_sshd.py``) is marked
``harness_offline: true``: ``harness run --inventory`` builds (or reuses) the wheelhouse on the
controller, ``playbooks/harness.yml`` copies and unpacks it and installs it with the venv's pip
``--no-index --find-links``. The venv is made without ``--system-site-packages``
(``harness_venv_site_packages: false``), so nothing can come from this machine's own Python: every
dependency the harness imports on the host was installed from a wheel of the wheelhouse. pip's own
log (kept on the host) shows it ignored every index and processed only local wheel files. Then the
harness runs a scenario on the host from that install (process backend: a real cgroup, under the
machine-wide lock).

    flock /tmp/harness-shared.lock python3 -m pytest tests/integration/test_provision_offline.py
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.provision.bundle import requirements
from tests.integration._sshd import LoopbackLab

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SUITE = """\
apiVersion: harness/v1
kind: Suite
name: offline
profile: profiles/local.yaml
node: {memoryCapacity: 1Gi}
sampleHz: 5
scenarios:
  - name: tiny-hold
    id: F1
    timeout: 8s
    backends: [process]
    workloads:
      - name: holder
        resources: {requests: {memory: 16Mi}, limits: {memory: 32Mi}}
        leak: {chunk: 1Mi, interval: 100ms, max: 4Mi, hold: 1s}
"""
# what the harness imports on the host (requirement name -> module)
MODULES = {
    "pandas": "pandas",
    "pyarrow": "pyarrow",
    "pydantic": "pydantic",
    "PyYAML": "yaml",
    "click": "click",
}


@pytest.fixture(scope="module")
def offline_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackLab]:
    lab = LoopbackLab.start(tmp_path_factory.mktemp("offline-lab"), [("off-a", "127.0.33.1")])
    try:
        yield lab
    finally:
        lab.stop()


def test_the_harness_is_installed_from_the_wheelhouse_and_runs(
    offline_lab: LoopbackLab, tmp_path: Path
) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "local.yaml").write_bytes((REPO / "profiles" / "local.yaml").read_bytes())
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    state = tmp_path / "state"
    inv = offline_lab.inventory(
        tmp_path / "lab.yaml",
        defaults_vars={
            "lab_dir": str(state / "{{ inventory_hostname }}"),
            "lab_run_dir": str(tmp_path / "run" / "{{ inventory_hostname }}"),
            "harness_offline": True,
            "harness_venv_site_packages": False,
        },
    )
    results = tmp_path / "results"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "run",
            str(suite),
            "--inventory",
            str(inv),
            "--results",
            str(results),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert "harness: 1/1 verdicts match on 1/1 host(s); run complete" in r.stdout

    home = state / "off-a" / "harness"
    # the venv sees nothing of this machine's Python: only what pip installed into it
    cfg = (home / "venv" / "pyvenv.cfg").read_text()
    assert re.search(r"^include-system-site-packages = false$", cfg, re.MULTILINE), cfg

    # pip was told to use no index and took every package from a wheel of the wheelhouse
    log = (home / "pip-install.log").read_text()
    assert "Ignoring indexes:" in log
    assert "Looking in indexes" not in log and "Starting new HTTP" not in log
    assert not re.search(r"https?://(?!127\.)", "\n".join(ln for ln in log.splitlines() if "GET" in ln))
    # no other source of wheels (no find-links from a pip configuration file or the environment)
    assert re.findall(r"Looking in links: (.+)$", log, re.MULTILINE) == [f"{home}/wheelhouse"]
    processed = re.findall(r"Processing (\S+)", log)
    wheels = {p.name for p in (home / "wheelhouse").glob("*.whl")}
    assert processed, log[-3000:]
    for path in processed:  # relative to the install's working directory, the harness home
        assert (home / path).resolve().parent == home / "wheelhouse", path
        assert Path(path).name in wheels, path
    installed = re.findall(r"Successfully installed (.+)$", log, re.MULTILINE)
    assert installed, log[-3000:]
    names = {re.sub(r"-[^-]+$", "", x).lower().replace("_", "-") for x in installed[-1].split()}
    for req in requirements().splitlines():
        name = re.split(r"[<>=!~ ]", req, maxsplit=1)[0].lower().replace("_", "-")
        assert name in names, (name, sorted(names))

    # the host's harness imports its dependencies from that venv
    venv_python = home / "venv" / "bin" / "python"
    probe = "import importlib, json, sys; print(json.dumps({m: importlib.import_module(m).__file__ for m in sys.argv[1:]}))"
    host = offline_lab.hosts["off-a"]
    out = subprocess.run(
        [
            "ssh",
            "-i",
            str(offline_lab.client_key),
            "-o",
            f"UserKnownHostsFile={offline_lab.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-p",
            str(host.port),
            f"root@{host.address}",
            "cd / && " + shlex.join([str(venv_python), "-c", probe, *MODULES.values()]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    files = json.loads(out.stdout)
    for mod, path in files.items():
        assert path.startswith(f"{home}/venv/lib/"), (mod, path)

    # and ran the scenario from that install
    (run_dir,) = results.iterdir()
    run = json.loads((run_dir / "run.json").read_text())
    h = run["hosts"]["off-a"]
    assert h["status"] == "complete" and h["verdicts_passed"] == h["verdicts_total"] == 1
    remote = json.loads((run_dir / "hosts" / "off-a" / "run" / "run.json").read_text())
    assert remote["status"] == "complete"
