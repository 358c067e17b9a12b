"""A VM lab host end to end: the image (built once per session), a booted VM reached with its
known host key, provisioning (containerd with SystemdCgroup, the kubelet as a systemd unit with
cgroupDriver: systemd, the harness from the offline wheelhouse), a suite run on the VM with the
process backend (cgroup v2: memory.events, memory.stat v2, PSI), teardown by pid.

Real QEMU (TCG where KVM cannot run a stock kernel), real sshd, real Ansible. Skipped only with
HARNESS_SKIP_VM=1. Uses only its own lab (a unique name), ports chosen free on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest

from harness.config.suite import load_suite
from harness.hosts.ssh import SSHHost
from harness.model.predict import Baseline, predict_scenario
from harness.provision.inventory import load_inventory
from tests.e2e.conftest import REPO, harness

pytestmark = [
    pytest.mark.skipif(os.environ.get("HARNESS_SKIP_VM") == "1", reason="HARNESS_SKIP_VM=1"),
    # TCG: provisioning and the first deployment (162 MiB wheelhouse, pip in the guest) take minutes
    pytest.mark.timeout(3600),
]


@pytest.fixture(scope="session")
def lab_image() -> str:
    res = harness("lab", "image", timeout=1200)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()[0]


@pytest.fixture(scope="module")
def vm(lab_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    # with swap: every container must still be OOM-killed at its limit (the kubelet's NoSwap)
    res = harness("lab", "up", name, "--hosts", "1", "--sockets", "2", "--memory", "4Gi", "--swap", "1Gi")
    try:
        assert res.returncode == 0, res.stderr
        yield Path(res.stdout.strip().splitlines()[-1])
    finally:
        down = harness("lab", "down", name, timeout=120)
        assert down.returncode == 0, down.stderr
        st = harness("lab", "status", "--json")
        assert name not in st.stdout


def _ssh(inventory: Path, cmd: str) -> str:
    inv = load_inventory(inventory)
    (host,) = inv.hosts.values()
    with SSHHost(host.target) as ssh:
        return ssh.run(cmd, timeout=60, check=True).stdout


def test_vm_is_a_multi_socket_cgroup_v2_systemd_host(vm: Path) -> None:
    inv = load_inventory(vm)
    (host,) = inv.hosts.values()
    assert host.target.host_key_policy == "reject"  # the first connection already knows the key
    out = _ssh(
        vm,
        "stat -fc %T /sys/fs/cgroup; numactl -H | head -1; cat /proc/1/comm; cat /proc/pressure/memory | head -1; timeout 5 curl -sS http://1.1.1.1 >/dev/null 2>&1 && echo online || echo offline",
    )
    lines = out.split()
    assert lines[0] == "cgroup2fs"
    assert "available: 2 nodes" in out
    assert "systemd" in lines
    assert "some avg10=" in out
    assert lines[-1] == "offline"
    swap_kib = int(_ssh(vm, "awk '/^SwapTotal:/ {print $2}' /proc/meminfo").strip())
    assert swap_kib > 512 * 1024  # the --swap disk is on
    # `harness lab ssh`: OpenSSH with the lab's key and strictly checked known host key; stdin passes
    lab = vm.parent.name
    r = harness(
        "lab",
        "ssh",
        lab,
        "--",
        "cat > /root/in.txt; stat -fc %T /sys/fs/cgroup; cat /root/in.txt",
        input="from stdin\n",
    )
    assert r.returncode == 0 and r.stdout.split() == ["cgroup2fs", "from", "stdin"], r.stdout + r.stderr


def test_a_cgroup_v1_lab_host_boots_with_the_v1_hierarchies(lab_image: str) -> None:
    """``lab up --cgroup 1``: the guest boots with systemd on the legacy hierarchy (tmpfs with one
    mount per controller, memory.usage_in_bytes), for labs that still run cgroup v1 nodes."""
    name = f"e2e-c1-{uuid.uuid4().hex[:6]}"
    res = harness("lab", "up", name, "--hosts", "1", "--sockets", "1", "--memory", "1Gi", "--cgroup", "1")
    try:
        assert res.returncode == 0, res.stderr
        inv = Path(res.stdout.strip().splitlines()[-1])
        out = _ssh(
            inv,
            "stat -fc %T /sys/fs/cgroup; cat /proc/1/comm; cat /sys/fs/cgroup/memory/memory.usage_in_bytes",
        )
        fs, init, usage = out.split()
        assert (fs, init) == ("tmpfs", "systemd")
        assert int(usage) > 0
    finally:
        down = harness("lab", "down", name, timeout=120)
        assert down.returncode == 0, down.stderr


def test_provision_and_run_s1_on_the_vm(vm: Path, tmp_path: Path) -> None:
    prov = harness("provision", str(vm), "--results", str(tmp_path), timeout=1800)
    assert prov.returncode == 0, prov.stderr[-3000:]
    (run_json,) = tmp_path.glob("*provision-site*/run.json")
    rec = json.loads(run_json.read_text())
    (host,) = rec["hosts"].values()
    assert host["facts"]["cgroupVersion"] == 2
    assert len(host["facts"].get("numaNodes", [])) == 2
    unit = _ssh(
        vm,
        "systemctl is-active harness-kubelet-$(hostname).service; "
        "grep -rh cgroupDriver /var/lib/harness-lab/*/kubelet/config.d/; "
        "grep -h SystemdCgroup /var/lib/harness-lab/*/containerd/config.toml; "
        "test -d /sys/fs/cgroup/kubepods.slice && echo kubepods.slice",
    )
    assert unit.startswith("active")
    assert '"cgroupDriver": "systemd"' in unit
    assert "SystemdCgroup = true" in unit
    assert "kubepods.slice" in unit.split()  # the systemd driver's slice, not /kubepods

    run = harness(
        "run",
        "suites/local.yaml",
        "--scenario",
        "S1",
        "--inventory",
        str(vm),
        "--results",
        str(tmp_path),
        timeout=1800,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "verdicts match" in run.stdout + run.stderr
    # the harness came from the wheelhouse: pip had no index to reach
    pipped = _ssh(vm, "ls /var/lib/harness-lab/*/harness/wheelhouse/ | grep -c '\\.whl$'")
    assert int(pipped.strip()) > 10


# Tests that ran on this controller's cgroup v1 and must pass on cgroup v2 too (issue 17): the
# sampler (v2 files, PSI), the OOM watch (inotify on memory.events, the safety poll for a removed
# cgroup), /dev/kmsg kills attributed to v2 paths, and the kubelet's swap limits with real swap.
GUEST_TESTS = (
    "tests/integration/test_kmsg_follow.py",
    "tests/integration/test_sampler.py",
    "tests/integration/test_swap_limits.py",
)
GUEST_FILES = (
    "pyproject.toml",
    "tests/__init__.py",
    "tests/integration/__init__.py",
    "tests/integration/conftest.py",
    "tests/integration/_sample_fixtures.py",
    *GUEST_TESTS,
    "suites/local.yaml",
    "profiles/local.yaml",
    *(str(p.relative_to(REPO)) for p in sorted((REPO / "tests/fixtures/cgroup").rglob("*")) if p.is_file()),
    "workloads/Makefile",
    "workloads/leak.c",
    "workloads/pause.c",
    "workloads/build/leak",  # after their sources: conftest rebuilds a binary older than them
    "workloads/build/pause",
)
TEST_WHEELS = ("pytest", "pytest-timeout", "pluggy", "iniconfig", "pygments", "packaging")


def test_sampling_and_oom_tests_pass_on_cgroup_v2_in_the_vm(vm: Path, tmp_path: Path) -> None:
    """The sampling, OOM-watch, kmsg and swap-limit integration tests run inside the guest (cgroup v2,
    systemd, swap) with the deployed harness and pytest installed there from wheels (no index):
    every test passes, none skips."""
    wheels = tmp_path / "wheels"
    pins = [f"{n}=={metadata.version(n)}" for n in TEST_WHEELS]
    dl = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), *pins],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert dl.returncode == 0, dl.stderr[-2000:]
    inv = load_inventory(vm)
    (host,) = inv.hosts.values()
    with SSHHost(host.target) as ssh:
        home = ssh.run("ls -d /var/lib/harness-lab/*/harness", timeout=30).stdout.strip()
        if not home:  # this module's provisioning test did not run first: deploy the harness
            prov = harness("provision", str(vm), "--playbook", "harness.yml", "--results", str(tmp_path))
            assert prov.returncode == 0, prov.stderr[-3000:]
            home = ssh.run("ls -d /var/lib/harness-lab/*/harness", timeout=30, check=True).stdout.strip()
        base = "/root/harness-guest-tests"
        ssh.run(f"rm -rf {base}", timeout=30, check=True)
        for rel in GUEST_FILES:
            ssh.mkdirs(str(Path(base, rel).parent))
            ssh.put(REPO / rel, f"{base}/{rel}")
        ssh.mkdirs(f"{base}/wheels")
        for whl in sorted(wheels.glob("*.whl")):
            ssh.put(whl, f"{base}/wheels/{whl.name}")
        venv = f"{home}/venv/bin"
        pip = ssh.run(
            f"PIP_CONFIG_FILE=/dev/null {venv}/pip install -q --disable-pip-version-check --no-index "
            f"--find-links {base}/wheels {' '.join(pins[:2])}",
            timeout=600,
        )
        assert pip.rc == 0, pip.stderr[-2000:]
        res = ssh.run(
            f"cd {base} && {venv}/python -m pytest -q -rfEs -p no:cacheprovider {' '.join(GUEST_TESTS)}",
            timeout=1800,
        )
    print(res.stdout[-4000:])
    lines = res.stdout.strip().splitlines()
    summary = lines[-1] if lines else ""
    failed = [ln for ln in lines if ln.startswith(("FAILED", "ERROR", "SKIPPED"))]
    assert res.rc == 0, "\n".join(failed) + "\n" + res.stdout[-5000:] + res.stderr[-2000:]
    assert "passed" in summary and "skipped" not in summary and "failed" not in summary, summary
    assert int(summary.split()[0]) >= 15, summary


@pytest.fixture(scope="module")
def vm_cluster(vm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The harness's cluster inside the guest (etcd, kube-apiserver, containerd, kubelet 1.33.4 built
    on the controller), started once for the kubelet tests below."""
    out = tmp_path_factory.mktemp("cluster")
    prov = harness("provision", str(vm), "--playbook", "cluster.yml", "--results", str(out), timeout=1800)
    assert prov.returncode == 0, prov.stderr[-3000:]
    return vm


def test_real_kubelet_in_the_vm_s1_and_an_eviction(vm_cluster: Path, tmp_path: Path) -> None:
    """S1 (kernel OOM in the container, with swap on the node: NoSwap) and S2 (the kubelet evicts
    a BestEffort pod); the rest of suites/vm-kubelet.yaml is run by hand (README), not in CI."""
    run = harness(
        "run",
        "suites/vm-kubelet.yaml",
        "--scenario",
        "S1",
        "--scenario",
        "S2",
        "--backend",
        "kubernetes",
        "--inventory",
        str(vm_cluster),
        "--results",
        str(tmp_path),
        timeout=1800,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "observed oom_killed" in out  # S1 leaker
    assert "observed evicted" in out  # S2 slowleak


def test_numa_memoryqos_and_swap_on_the_real_kubelet_in_the_vm(vm_cluster: Path, tmp_path: Path) -> None:
    """suites/lab.yaml: the Static memory manager on two NUMA nodes under each topology policy
    (state file and cpuset.mems), MemoryQoS and LimitedSwap cgroup values, OOM5's heap cap."""
    run = harness(
        "run",
        "suites/lab.yaml",
        "--backend",
        "kubernetes",
        "--inventory",
        str(vm_cluster),
        "--results",
        str(tmp_path),
        timeout=1800,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    (run_dir,) = [d for d in tmp_path.iterdir() if (d / "verdicts.parquet").exists()]
    verdicts = pd.read_parquet(run_dir / "verdicts.parquet")
    assert verdicts["passed"].all(), verdicts[~verdicts["passed"]][["scenario", "workload", "reasons"]]
    # L1-L4: the kubelet's memory_manager_state and every container's cpuset.mems as modelled
    mm = verdicts[verdicts["workload"] == "memory-manager-state"]
    assert sorted(mm["scenario"].str[:2]) == ["l1", "l2", "l3", "l4"]
    # L5, L7: every cgroup file (MemoryQoS memory.min/high, LimitedSwap memory.swap.max) as modelled
    assert (verdicts["workload"] == "cgroups").sum() == 2
    outcomes = pd.read_parquet(run_dir / "outcomes.parquet").set_index(["scenario", "workload"])
    l2 = outcomes.loc[("l2-single-numa-node-rejects-a-wide-pod", "wide")]
    assert l2["outcome"] == "rejected" and "TopologyAffinityError" in str(l2["evidence"])
    assert outcomes.loc[("l3-restricted-admits-a-wide-pod", "wide"), "outcome"] == "completed"
    # L8 (seed 003 OOM5): the runtime's own heap cap, read from the container's v2 memory.max
    assert outcomes.loc[("l8-runtime-heap-cap", "capped"), "outcome"] == "runtime_failed"


def test_a_host_process_exhausts_the_vm_and_the_global_oom_killer_picks_by_oom_score_adj(
    vm_cluster: Path, tmp_path: Path
) -> None:
    """suites/vm-node-oom.yaml N1 (seed 003 OOM3 on a real node): a process outside Kubernetes leaks
    until the VM itself is out of memory. Swap is switched off for it (the suite's node has none):
    the kernel's global OOM killer (no memory cgroup limit involved) kills with the guest's real
    oom_score_adj values, and each workload's outcome, time and victim role match the model's.

    The guest first gets ~1000 MiB of *active* page cache (a file read twice): the kubelet's working
    set counts it, and the kernel reclaims it as the leak takes the free memory. A model that kept
    it in memory.available predicted evictions here (it did in CI's guest); the test checks that
    the run's recorded baseline would have made that model wrong, so it really tests the reclaim."""
    swaps = _ssh(vm_cluster, "swapon --show=NAME --noheadings").split()
    assert swaps, "the lab VM has its swap disk on (lab up --swap 1Gi)"
    cache = "/var/tmp/harness-active-cache"
    _ssh(
        vm_cluster, f"head -c 1000M /dev/zero > {cache} && cat {cache} > /dev/null && cat {cache} > /dev/null"
    )
    _ssh(vm_cluster, "swapoff -a")
    try:
        run = harness(
            "run",
            "suites/vm-node-oom.yaml",
            "--backend",
            "kubernetes",
            "--inventory",
            str(vm_cluster),
            "--results",
            str(tmp_path),
            timeout=1800,
        )
    finally:
        _ssh(vm_cluster, "swapon " + " ".join(swaps) + f"; rm -f {cache}")  # the swap disk is not in fstab
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    (run_dir,) = [d for d in tmp_path.iterdir() if (d / "verdicts.parquet").exists()]
    verdicts = pd.read_parquet(run_dir / "verdicts.parquet")
    assert verdicts["passed"].all(), verdicts[~verdicts["passed"]][["scenario", "workload", "reasons"]]
    outcomes = pd.read_parquet(run_dir / "outcomes.parquet").set_index("workload")
    # the leak itself dies in a node-wide OOM (not a cgroup's), after the pods the kernel prefers
    assert outcomes.loc["hostleak", "outcome"] == "node_oom_killed", outcomes.loc["hostleak"].to_dict()
    assert not outcomes.loc["hostleak", "victim"]
    # the Guaranteed pod (oom_score_adj -997 here: the guest has CAP_SYS_RESOURCE) is never the
    # kernel's choice
    assert outcomes.loc["guaranteed", "outcome"] != "node_oom_killed"
    # the run met the case: its baseline had the active cache, and without the reclaim the model
    # would have predicted evictions on it
    e = pd.read_parquet(run_dir / "events.parquet")
    (b,) = e[(e.source == "harness") & (e.kind == "baseline")].to_dict("records")
    assert b["root_active_file"] >= 800 << 20, b
    fields = {f: int(b[f]) for f in Baseline.__dataclass_fields__ if f in b and pd.notna(b[f])}
    (host,) = json.loads((run_dir / "run.json").read_text())["hosts"].values()
    sc = load_suite(REPO / "suites" / "vm-node-oom.yaml").scenario("N1")
    assert sc.node is not None
    # the node as the run resolved it (scenario.resolve.real_node): the guest's memory, cgroup v2
    sc.node = sc.node.model_copy(
        update={"memory_capacity_bytes": host["facts"]["memoryCapacity"], "cgroup_version": 2}
    )
    reclaimed = predict_scenario(sc, kubelet=True, baseline=Baseline(**fields))
    assert {a.outcome for w in reclaimed.workloads for a in w.alternatives} <= {
        "node_oom_killed",
        "completed",
    }
    kept_cache = Baseline(**fields)
    kept_cache.root_free_before_reclaim = None  # the model before the reclaim: the cache stays
    kept = predict_scenario(sc, kubelet=True, baseline=kept_cache)
    assert kept.workload("besteffort").outcome == "evicted", kept.to_dict()
    # the node is usable afterwards: the cluster's daemons survived the OOM (-999 / adj 0 but small)
    status = _ssh(vm_cluster, "/var/lib/harness-lab/*/harness/venv/bin/python -m harness cluster status")
    assert status.count("running") >= 4, status
