"""Pure logic of the local cluster: the wrapper module, version stamps, kubelet configuration,
manager state clearing, error extraction, credentials and pid-file safety (real files and
processes, no daemons)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from harness.cluster import Cluster, kubelet_error
from harness.cluster.build import _run, ldflags, normalize_version, staging_modules, wrapper_go_mod
from harness.cluster.daemon import Daemon
from harness.cluster.pki import ensure_pki, kubeconfig
from harness.errors import HarnessError
from harness.procs import proc_start_time

REPO = Path(__file__).resolve().parents[2]

K8S_GO_MOD = """module k8s.io/kubernetes

go 1.24.0

require (
\tk8s.io/api v0.0.0
\tgithub.com/google/cadvisor v0.52.1
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/kubelet => ./staging/src/k8s.io/kubelet
)
"""


def test_staging_modules_are_read_from_the_kubernetes_go_mod() -> None:
    assert staging_modules(K8S_GO_MOD) == ["k8s.io/api", "k8s.io/client-go", "k8s.io/kubelet"]


def test_wrapper_replaces_each_staging_module_with_its_published_twin() -> None:
    text = wrapper_go_mod("1.33.4", staging_modules(K8S_GO_MOD), "1.24.0")
    assert "require k8s.io/kubernetes v1.33.4" in text
    assert "\tk8s.io/client-go => k8s.io/client-go v0.33.4" in text
    assert "go 1.24.0" in text
    assert "cadvisor" not in text


def test_version_stamp_sets_both_version_packages() -> None:
    flags = ldflags("1.32.5")
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {pkg}.gitVersion=v1.32.5" in flags
        assert f"-X {pkg}.gitMinor=32" in flags


@pytest.mark.parametrize("bad", ["1.33", "latest", "v2.0.0", "1.33.4-rc.1"])
def test_bad_versions_are_refused(bad: str) -> None:
    with pytest.raises(HarnessError, match="expected a release"):
        normalize_version(bad)
    assert normalize_version("v1.33.4") == "1.33.4"


def test_a_module_the_proxy_does_not_serve_is_named_in_the_error(tmp_path: Path) -> None:
    msg = (
        "k8s.io/endpointslice/metrics: k8s.io/endpointslice@v0.33.5: reading "
        "https://proxy.golang.org/k8s.io/endpointslice/@v/v0.33.5.zip: 403 Forbidden"
    )
    with pytest.raises(HarnessError, match=r"does not serve k8s.io/endpointslice@v0.33.5"):
        _run(["sh", "-c", f"echo '{msg}'; exit 1"], tmp_path, {}, tmp_path / "log", "go get")


def test_kubelet_config_keeps_the_profile_and_adds_only_local_fields(tmp_path: Path) -> None:
    c = Cluster(state=tmp_path, run_dir=tmp_path / "run")
    profile = REPO / "profiles" / "cluster-default.yaml"
    cfg = c.kubelet_config(profile, "1.33.4")
    src = yaml.safe_load(profile.read_text())
    for k, v in src.items():
        assert cfg[k] == v
    assert cfg["cgroupDriver"] == "cgroupfs"
    assert cfg["address"] == "127.0.0.1" and cfg["healthzBindAddress"] == "127.0.0.1"
    assert cfg["readOnlyPort"] == 0
    assert cfg["failCgroupV1"] is False
    assert cfg["authentication"]["anonymous"]["enabled"] is False
    # failCgroupV1 does not exist before 1.31: a 1.30 kubelet would refuse the unknown field
    assert "failCgroupV1" not in c.kubelet_config(profile, "1.30.14")


def test_profile_fields_win_over_the_gc_defaults(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nimageGCHighThresholdPercent: 85\n"
    )
    cfg = Cluster(state=tmp_path).kubelet_config(p, "1.33.4")
    assert cfg["imageGCHighThresholdPercent"] == 85
    assert cfg["imageGCLowThresholdPercent"] == 99


def test_manager_state_files_are_cleared_only_when_their_inputs_change(tmp_path: Path) -> None:
    c = Cluster(state=tmp_path)
    c.kubelet_root.mkdir(parents=True)
    old = {"memoryManagerPolicy": "None", "evictionHard": {"memory.available": "1Gi"}}
    c.kubelet_config_path.write_text(yaml.safe_dump(old))
    for name in ("memory_manager_state", "cpu_manager_state"):
        (c.kubelet_root / name).write_text("{}")
    assert c._clear_manager_state({**old, "evictionPressureTransitionPeriod": "1m"}) == []
    assert (c.kubelet_root / "memory_manager_state").exists()
    removed = c._clear_manager_state({**old, "memoryManagerPolicy": "Static"})
    assert sorted(removed) == ["cpu_manager_state", "memory_manager_state"]
    assert not (c.kubelet_root / "memory_manager_state").exists()


def test_kubelet_error_is_the_line_that_says_why_it_stopped() -> None:
    log = "\n".join(
        [
            'I1123 18:53:04.0 20416 server.go:1] "Starting"',
            'E1123 18:53:04.1 20416 log.go:32] "RuntimeConfig from runtime service failed"',
            'E1123 18:53:04.2 20416 run.go:72] "command failed" err="failed to run Kubelet: the total amount"',
        ]
    )
    assert "failed to run Kubelet: the total amount" in kubelet_error(log)
    assert kubelet_error("") == ""


def test_pki_chain_names_and_idempotence(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki", "harness-node")
    ca = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    for name in ("apiserver", "admin", "kubelet", "kubelet-serving", "apiserver-kubelet-client"):
        cert = x509.load_pem_x509_certificate(pki.crt(name).read_bytes())
        cert.verify_directly_issued_by(ca)
        assert cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=300)
        assert oct(pki.key(name).stat().st_mode & 0o777) == "0o600"
    admin = x509.load_pem_x509_certificate(pki.crt("admin").read_bytes())
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    kubelet = x509.load_pem_x509_certificate(pki.crt("kubelet").read_bytes())
    assert kubelet.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:harness-node"
    api = x509.load_pem_x509_certificate(pki.crt("apiserver").read_bytes())
    sans = api.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    before = pki.crt("admin").read_bytes()
    ensure_pki(tmp_path / "pki", "harness-node")
    assert pki.crt("admin").read_bytes() == before, "a second up must keep the credentials"
    kc = yaml.safe_load(kubeconfig("https://127.0.0.1:6443", pki, "harness", "admin"))
    assert kc["users"][0]["user"]["client-certificate"] == str(pki.crt("admin"))


def test_daemon_is_stopped_by_its_pid_and_a_reused_pid_is_not_trusted(tmp_path: Path) -> None:
    d = Daemon("sleeper", tmp_path / "sleeper.log", tmp_path / "sleeper.json")
    pid = d.start([sys.executable, "-c", "import time; time.sleep(60)"])
    assert d.running() and d.pid() == pid
    assert d.start(["false"]) == pid, "start of a running daemon must not start a second one"
    # a pid file whose start time does not match (pid reused by another process) is not trusted
    other = subprocess.Popen(["sleep", "60"])
    try:
        stale = Daemon("stale", tmp_path / "s.log", tmp_path / "s.json")
        stale.pidfile.write_text(f'{{"pid": {other.pid}, "start": {proc_start_time(other.pid) - 1}}}')
        assert stale.pid() is None
        assert stale.stop() is False
        assert other.poll() is None, "stop() signalled a process it did not start"
    finally:
        other.kill()
        other.wait()
    t = time.monotonic()
    assert d.stop(timeout=5)
    assert time.monotonic() - t < 5
    assert proc_start_time(pid) is None
    assert not d.pidfile.exists()


def test_the_ceiling_waits_for_this_kubelets_allocatable_enforcement(monkeypatch: Any) -> None:
    """``wait_allocatable_enforced`` takes only a NodeAllocatableEnforced event from after the
    kubelet's start: an earlier kubelet's event does not count, and without a new one it gives up
    at its timeout and says so (the cap is then written anyway)."""
    from harness.cluster import Cluster, _event_time

    said: list[str] = []
    c = Cluster(progress=said.append)
    events: list[dict[str, Any]] = [{"lastTimestamp": "2026-12-07T10:00:00Z"}]  # the last kubelet's
    asked: list[str] = []

    def api_get(path: str, timeout: float = 5.0) -> str:
        asked.append(path)
        return json.dumps({"items": events})

    monkeypatch.setattr(c, "api_get", api_get)
    start = _event_time({"lastTimestamp": "2026-12-07T10:05:00Z"})
    assert not c.wait_allocatable_enforced(start, timeout=0.5)
    assert "NodeAllocatableEnforced" in said[-1] and "capping kubepods now" in said[-1]
    assert "reason=NodeAllocatableEnforced" in asked[0] and f"involvedObject.name={c.node_name}" in asked[0]
    events.append({"lastTimestamp": None, "eventTime": "2026-12-07T10:05:01.250000Z"})
    said.clear()
    assert c.wait_allocatable_enforced(start, timeout=5.0)
    assert said == []
    assert _event_time({}) == 0.0
