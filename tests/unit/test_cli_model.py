"""The ``harness model`` commands: the JSON contract other tools rely on, and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from harness.cli import cli

ROOT = Path(__file__).resolve().parents[2]
AKS = str(ROOT / "profiles" / "aks-ds2v2.yaml")
SEED_MEMTOTAL = "7291510784"  # 7120616 KiB, the 7-GiB AKS DS2_v2 node of seeds/003


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_model_node_json_reproduces_the_seed_node() -> None:
    """seeds/003: kubepods memory.limit_in_bytes 5573943296 = MemTotal - kube-reserved 1638Mi."""
    code, out, _ = run("model", "node", AKS, "--memory-capacity", SEED_MEMTOTAL, "--json")
    assert code == 0
    d = json.loads(out)
    assert d["capacity_bytes"] == 7291510784
    assert d["kubepods_limit_bytes"] == 5573943296
    assert d["allocatable_bytes"] == 5573943296 - 750 * 1048576
    assert {"signal": "memory.available", "bytes": 750 * 1048576}.items() <= d["eviction_hard"][0].items()
    assert d["errors"] == []


def test_model_node_reserved_memory_mismatch_exits_2(tmp_path: Path) -> None:
    """spec §6.2: reservedMemory must add up to kube + system reserved + eviction-hard (5Gi + 100Mi)."""
    p = tmp_path / "mm.yaml"
    p.write_text(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nmemoryManagerPolicy: Static\n"
        "kubeReserved: {memory: 4Gi}\nsystemReserved: {memory: 1Gi}\n"
        "reservedMemory: [{numaNode: 0, limits: {memory: 3Gi}}, {numaNode: 1, limits: {memory: 2Gi}}]\n"
    )
    code, out, err = run("model", "node", str(p), "--numa-memory", "0=64Gi,1=64Gi", "--json")
    assert code == 2
    d = json.loads(out)
    msg = 'the total amount "5Gi" of type "memory" is not equal to the value "5220Mi" determined by Node Allocatable feature'
    assert d["errors"] == [msg]
    assert msg in err


def test_model_pod_json_fields(tmp_path: Path) -> None:
    """1Gi request on a 16Gi node: oom_score_adj 1000 - 1000*1Gi/16Gi = 938 (spec §3.2)."""
    pod = tmp_path / "pod.yaml"
    pod.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - name: app\n"
        "    resources: {requests: {memory: 1Gi, cpu: 500m}, limits: {memory: 2Gi, cpu: '1'}}\n"
    )
    code, out, _ = run(
        "model",
        "pod",
        str(ROOT / "profiles" / "default.yaml"),
        str(pod),
        "--memory-capacity",
        "16Gi",
        "--cgroup-version",
        "1",
        "--json",
    )
    assert code == 0, out
    d = json.loads(out)
    assert d["qos_class"] == "Burstable"
    assert set(d["pod_cgroup"]) >= {
        "memory_limit_bytes",
        "cpu_shares",
        "cpu_weight",
        "cpu_quota_us",
        "memory_min_bytes",
    }
    assert d["pod_cgroup"]["memory_limit_bytes"] == 2 << 30
    assert d["pod_cgroup"]["cpu_shares"] == 512
    assert d["pod_cgroup"]["cpu_quota_us"] == 100000
    (c,) = d["containers"]
    assert c["name"] == "app" and c["oom_score_adj"] == 938
    assert c["memory_limit_bytes"] == 2 << 30 and c["memory_high_bytes"] is None
    assert c["cpu_shares"] == 512


def test_model_predict_json(tmp_path: Path) -> None:
    code, out, _ = run(
        "model",
        "predict",
        str(ROOT / "suites" / "local.yaml"),
        "--scenario",
        "S1",
        "--backend",
        "process",
        "--json",
    )
    assert code == 0
    d = json.loads(out)
    (w,) = d["workloads"]
    assert set(w) >= {"name", "outcome", "earliest_s", "latest_s", "mechanism", "victims"}
    assert w["outcome"] == "oom_killed"


def test_model_explain_walks_from_capacity_to_kubepods() -> None:
    code, out, _ = run("model", "explain", AKS, "--memory-capacity", SEED_MEMTOTAL)
    assert code == 0
    lines = out.splitlines()
    order = [
        next(i for i, line in enumerate(lines) if key in line)
        for key in ("capacity (MemTotal)", "kubeReserved", "evictionHard", "= allocatable", "kubepods cgroup")
    ]
    assert order == sorted(order)
    assert "5315" in out  # MiB, as the seed article says


def test_bad_profile_is_exit_2_one_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nevictonHard: {}\n")
    code, _, err = run("model", "node", str(p), "--memory-capacity", "8Gi")
    assert code == 2
    assert err.strip() == f"harness: error: {p}: evictonHard: unknown field (did you mean 'evictionHard'?)"
