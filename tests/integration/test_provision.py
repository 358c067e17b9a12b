"""Provisioning for real: playbooks/site.yml through ansible-runner against loopback sshd hosts.

lab-a and lab-b get a containerd instance, the workload images and a standalone kubelet 1.33 (no
API server) with per-host directories, socket, ports and cgroup root; lab-c refuses the client's
key. What the playbooks changed is checked with pytest-testinfra over SSH. Then: a second run
changes nothing; a memory manager policy change clears the kubelet's state file; a profile the
kubelet refuses is rolled back with the kubelet's own error. Everything is stopped at the end by
playbooks/teardown.yml (by pid files), and by pid again should that fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.provision import load_inventory, provision
from tests.integration._sshd import LoopbackLab

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PROFILE = """\
# a profile for the loopback lab: deployed byte for byte
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
systemReserved:
  memory: 1Gi
evictionHard:
  memory.available: 100Mi
"""
STATIC = (
    PROFILE + "memoryManagerPolicy: Static\nreservedMemory:\n  - numaNode: 0\n    limits: {memory: 1124Mi}\n"
)
# 500Mi does not add up to systemReserved + evictionHard: the kubelet refuses to start
STATIC_BAD = STATIC.replace("1124Mi", "500Mi")
PORTS = {"lab-a": (10348, 10350), "lab-b": (10448, 10450)}


def lab_kubelet() -> Path:
    """kubelet 1.33.4 built by harness.cluster.build (reused from its cache when it is there)."""
    from harness.cluster.build import build_for, ensure_built

    b = build_for("1.33.4")
    if b.complete(("kubelet",)):
        return b.binary("kubelet")
    return ensure_built("1.33.4", components=("kubelet",)).bin_dir / "kubelet"


@dataclass
class Env:
    lab: LoopbackLab
    base: Path
    kubelet: Path
    results: Path

    def state(self, host: str) -> Path:
        return self.base / "state" / host

    def run_dir(self, host: str) -> Path:
        return self.base / "run" / host

    def profile(self, name: str, text: str) -> Path:
        p = self.base / "profiles" / f"{name}.yaml"
        p.parent.mkdir(exist_ok=True)
        p.write_text(text)
        return p

    def inventory(
        self, profile_a: str = "base", known_hosts: Path | None = None, names: list[str] | None = None
    ) -> Path:
        base_profile = self.profile("base", PROFILE)
        host_vars: dict[str, dict[str, Any]] = {}
        for h in ("lab-a", "lab-b", "lab-c"):
            hz, port = PORTS.get(h, (10548, 10550))
            host_vars[h] = {"kubelet_cgroup_root": f"/{h}", "kubelet_healthz_port": hz, "kubelet_port": port}
        host_vars["lab-a"]["kubelet_profile"] = str(self.base / "profiles" / f"{profile_a}.yaml")
        return self.lab.inventory(
            self.base / "lab.yaml",
            names or ["lab-a", "lab-b", "lab-c"],
            known_hosts=known_hosts,
            defaults_vars={
                "lab_dir": str(self.base / "state" / "{{ inventory_hostname }}"),
                "lab_run_dir": str(self.base / "run" / "{{ inventory_hostname }}"),
                "kubelet_profile": str(base_profile),
                "kubelet_binary_src": str(self.kubelet),
                "kubelet_gomemlimit": "96MiB",
                "kubelet_read_only_port": 0,
            },
            host_vars=host_vars,
        )

    def provision(self, inv: Path, playbook: str = "site.yml", limit: list[str] | None = None) -> Any:
        return provision(load_inventory(inv), self.results, playbook=playbook, limit=limit, forks=3)


def healthz(host: str) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORTS[host][0]}/healthz", timeout=3) as r:
            return str(r.read().decode())
    except OSError as exc:
        return f"error: {exc}"


def _stop_by_pidfile(pidfile: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)


@pytest.fixture(scope="module")
def env(loopback_lab: LoopbackLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("prov")
    e = Env(loopback_lab, base, lab_kubelet(), base / "results")
    e.profile("base", PROFILE)
    try:
        yield e
    finally:
        res = e.provision(e.inventory(names=["lab-a", "lab-b"]), "teardown.yml")
        for h in ("lab-a", "lab-b"):  # should the teardown have failed: by pid, then the cgroups
            _stop_by_pidfile(e.run_dir(h) / "kubelet.pid")
            _stop_by_pidfile(e.run_dir(h) / "containerd" / "containerd.pid")
        left = [
            ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines() if str(base) in ln
        ]
        for m in left:  # what the kubelet mounted, should teardown.yml not have unmounted it
            subprocess.run(["umount", "--recursive", m], check=False)
        assert not res.failed, [r.error for r in res.failed]
        assert left == [], f"teardown.yml left mounts behind: {left}"


@pytest.fixture(scope="module")
def first_run(env: Env) -> Any:
    return env.provision(env.inventory())


def test_site_provisions_both_hosts_and_reports_the_refusing_one(env: Env, first_run: Any) -> None:
    a, b, c = (first_run.hosts[h] for h in ("lab-a", "lab-b", "lab-c"))
    assert a.status == b.status == "changed", (a.error, b.error)
    assert c.status == "unreachable"
    assert c.error.startswith("the server refused key ") and "for user root" in c.error
    assert first_run.status == "partial"
    assert "kubelet : Start the kubelet" in a.changed_tasks
    assert healthz("lab-a") == "ok" and healthz("lab-b") == "ok"
    # ansible-runner's artifacts are kept with the run's results
    events = list(
        (first_run.run_dir / "ansible" / "site" / "artifacts" / "site" / "job_events").glob("*.json")
    )
    assert len(events) > 20


def test_facts_go_into_run_json(first_run: Any) -> None:
    from harness.config.node import detect_local_facts
    from harness.host.probes import probe_negative_oom_score_adj

    run = json.loads((first_run.run_dir / "run.json").read_text())
    assert run["kind"] == "provision" and run["status"] == "partial"
    local = detect_local_facts()
    for h in ("lab-a", "lab-b"):
        rec = run["hosts"][h]
        f = rec["facts"]
        assert f["name"] == h
        assert f["memoryCapacity"] == local["memoryCapacity"]
        assert f["cgroupVersion"] == local["cgroupVersion"]
        assert f["kubeletVersion"] == "1.33.4"
        assert f["containerdVersion"].startswith("1.")
        assert f["negativeOomScoreAdj"] == probe_negative_oom_score_adj()
        assert ("CAP_SYS_RESOURCE" in f["capabilities"]) == probe_negative_oom_score_adj()
        assert [n["id"] for n in f["numaNodes"]] == [n["id"] for n in local.get("numaNodes", [])]
        # and the model's view of them
        assert rec["node"]["memoryCapacity"] == local["memoryCapacity"]
        assert rec["node"]["kubeletVersion"] == "1.33"
    assert run["hosts"]["lab-c"]["status"] == "unreachable" and "facts" not in run["hosts"]["lab-c"]


def _testinfra(env: Env, host: str) -> Any:
    import testinfra

    h = env.lab.hosts[host]
    cfg = env.base / f"ssh_config_{host}"
    cfg.write_text(
        f"Host {host}\n  HostName {h.address}\n  Port {h.port}\n  User root\n  IdentityFile {env.lab.client_key}\n"
        f"  IdentitiesOnly yes\n  UserKnownHostsFile {env.lab.known_hosts}\n  StrictHostKeyChecking yes\n"
    )
    return testinfra.get_host(f"ssh://{host}", ssh_config=str(cfg))


@pytest.mark.parametrize("name", ["lab-a", "lab-b"])
def test_what_the_playbooks_changed(env: Env, first_run: Any, name: str) -> None:
    host = _testinfra(env, name)
    state, run = env.state(name), env.run_dir(name)
    sock = run / "containerd" / "containerd.sock"
    # containerd: its own config, root, socket; answering; the workload images imported
    cfg = host.file(str(state / "containerd" / "config.toml"))
    assert cfg.contains(f'address = "{sock}"') and cfg.contains(f'root = "{state / "containerd" / "root"}"')
    assert "/var/lib/harness" not in cfg.content_string and "/run/harness/" not in cfg.content_string
    assert host.socket(f"unix://{sock}").is_listening
    images = host.run(f"ctr --address {sock} --namespace k8s.io images ls --quiet").stdout.split()
    from harness.images import image_name

    assert {image_name("leak"), image_name("pause"), image_name("leak", "latest")} <= set(images)
    # kubelet: the binary the harness built, the profile byte for byte, this host's drop-in
    kdir = state / "kubelet"
    assert host.file(str(state / "bin" / "kubelet")).sha256sum == host.file(str(env.kubelet)).sha256sum
    assert host.file(str(kdir / "config.yaml")).content_string == PROFILE
    dropin = json.loads(host.file(str(kdir / "config.d" / "50-harness-host.conf")).content_string)
    assert dropin["cgroupRoot"] == f"/{name}"
    assert dropin["healthzPort"] == PORTS[name][0] and dropin["port"] == PORTS[name][1]
    assert dropin["readOnlyPort"] == 0 and dropin["authorization"] == {"mode": "AlwaysAllow"}
    assert dropin["containerRuntimeEndpoint"] == f"unix://{sock}"
    pid = int(host.file(str(run / "kubelet.pid")).content_string)
    assert host.process.get(pid=pid).comm == "kubelet"
    assert host.socket(f"tcp://127.0.0.1:{PORTS[name][0]}").is_listening
    assert host.run(f"curl -fsS http://127.0.0.1:{PORTS[name][0]}/healthz").stdout == "ok"
    # the kubelet runs below this host's cgroup root
    from tests.integration.conftest import memory_cgroup_root

    root, _ = memory_cgroup_root()
    assert host.file(str(root / name / "kubepods")).is_directory
    assert host.file(str(kdir / "root" / "memory_manager_state")).contains('"policyName":"None"')


def test_a_second_run_changes_nothing(env: Env, first_run: Any) -> None:
    res = env.provision(env.inventory(), limit=["lab-a", "lab-b"])
    for h in ("lab-a", "lab-b"):
        rep = res.hosts[h]
        assert rep.status == "ok", (h, rep.error, rep.changed_tasks)
        assert rep.changed == 0 and rep.changed_tasks == []
    assert res.status == "complete"
    assert healthz("lab-a") == healthz("lab-b") == "ok"


def test_memory_manager_change_clears_state_and_a_refused_profile_is_rolled_back(
    env: Env, first_run: Any
) -> None:
    state = env.state("lab-a") / "kubelet"
    env.profile("static", STATIC)
    env.profile("static-bad", STATIC_BAD)
    # None -> Static: the kubelet would refuse its old checkpoint; the role removes it first
    res = env.provision(env.inventory(profile_a="static"), limit=["lab-a"])
    assert res.hosts["lab-a"].status == "changed", res.hosts["lab-a"].error
    assert json.loads((state / "root" / "memory_manager_state").read_text())["policyName"] == "Static"
    assert healthz("lab-a") == "ok"
    # a reservedMemory that does not add up: the kubelet exits, the role restores Static
    res = env.provision(env.inventory(profile_a="static-bad"), limit=["lab-a"])
    rep = res.hosts["lab-a"]
    assert rep.status == "failed"
    assert (
        'the total amount \\"500Mi\\" of type \\"memory\\" is not equal to the value \\"1124Mi\\"'
        in rep.error
    )
    assert "rolled back to the previous configuration, which is healthy" in rep.error
    assert (state / "config.yaml").read_text() == STATIC
    assert healthz("lab-a") == "ok"
    run = json.loads((res.run_dir / "run.json").read_text())
    assert run["hosts"]["lab-a"]["error"] == rep.error and run["status"] == "failed"
    # and back to the base profile: the Static checkpoint goes again
    res = env.provision(env.inventory(profile_a="base"), limit=["lab-a"])
    assert res.hosts["lab-a"].status == "changed", res.hosts["lab-a"].error
    assert json.loads((state / "root" / "memory_manager_state").read_text())["policyName"] == "None"
    assert healthz("lab-a") == "ok"


def test_an_unknown_host_key_is_rejected(env: Env, first_run: Any) -> None:
    empty = env.base / "empty_known_hosts"
    empty.write_text("")
    res = env.provision(env.inventory(known_hosts=empty), playbook="facts.yml", limit=["lab-a", "lab-b"])
    for h in ("lab-a", "lab-b"):
        assert res.hosts[h].status == "unreachable"
        assert res.hosts[h].error.startswith("unknown host key ssh-ed25519 SHA256:")
    assert empty.read_text() == ""


def test_cli_reports_each_host_and_exits_3_when_one_fails(env: Env, first_run: Any) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "provision",
            str(env.inventory()),
            "--playbook",
            "facts.yml",
            "--results",
            str(env.results),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 3, r.stderr  # a lab host failed: exit 3 (README: exit codes)
    lines = r.stdout.splitlines()
    assert any(ln.split()[:2] == ["lab-a", "ok"] for ln in lines)
    assert any(ln.split()[:2] == ["lab-c", "unreachable"] for ln in lines)
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("harness: error:")]
    assert len(err) == 1 and "1 of 3 host(s) failed: lab-c (the server refused key" in err[0]
    assert "Traceback" not in r.stderr


def test_bad_inventory_is_one_line(env: Env, tmp_path: Path) -> None:
    doc = yaml.safe_load(env.inventory().read_text())
    doc["hosts"]["lab-a"]["vars"]["kubelet_profle"] = "x"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    r = subprocess.run(
        [sys.executable, "-m", "harness", "provision", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"harness: error: {bad}: hosts.lab-a.vars.kubelet_profle: unknown role variable (did you mean "
        "'kubelet_profile'?); the playbooks declare theirs in playbooks/roles/*/defaults/main.yml"
    )
