"""Pure parts of the SSH side: the agent's parsers, sample files and gaps, host-key policy, suite bundling."""

from __future__ import annotations

import json
from pathlib import Path

import paramiko
import pytest
import yaml

from harness.hosts import remote_sampler as agent
from harness.hosts.lab import suite_files
from harness.hosts.remote import read_samples, sequence_gaps
from harness.hosts.ssh import SSHTarget, UnknownHostKeyError, _Policy


def test_agent_parsers() -> None:
    mi = agent.parse_meminfo("MemTotal:  1024 kB\nMemAvailable:  512 kB\nHugePages_Total: 0\nDirty: 4 kB\n")
    assert mi == {"MemTotal": 1024 * 1024, "MemAvailable": 512 * 1024}
    assert agent.parse_limit("max\n") is None
    assert agent.parse_limit("9223372036854771712\n") is None  # v1 unlimited
    assert agent.parse_limit("134217728\n") == 134217728
    stat = "cache 10\nrss 20\ntotal_rss 30\ntotal_cache 40\n"
    assert agent.parse_flat(stat, ("total_rss", "total_cache")) == {"total_rss": 30, "total_cache": 40}


def test_agent_is_stdlib_only() -> None:
    src = Path(agent.__file__).read_text()
    imports = {ln.split()[1].split(".")[0] for ln in src.splitlines() if ln.startswith(("import ", "from "))}
    assert imports <= {
        "__future__",
        "argparse",
        "contextlib",
        "json",
        "os",
        "signal",
        "socket",
        "subprocess",
        "sys",
        "time",
    }


def test_samples_flatten_and_gaps(tmp_path: Path) -> None:
    f = tmp_path / "s.jsonl"
    lines = [
        {"kind": "header", "version": 1, "hz": 10},
        {"kind": "sample", "seq": 0, "t": 1.0, "wall": 100.0, "meminfo": {"MemAvailable": 5}, "cg": {}},
        {"kind": "cgroup", "name": "run", "state": "found"},
        {
            "kind": "sample",
            "seq": 1,
            "t": 1.1,
            "wall": 100.1,
            "meminfo": {"MemAvailable": 4},
            "cg": {"run": {"usage": 7, "limit": None, "stat": {"total_rss": 3}}},
        },
        {"kind": "sample", "seq": 4, "t": 1.4, "wall": 100.4, "meminfo": {"MemAvailable": 3}, "cg": {}},
    ]
    f.write_text("".join(json.dumps(x) + "\n" for x in lines) + "{not json\n")
    rows, other = read_samples(f)
    assert [(r["seq"], r["source"]) for r in rows] == [(0, "node"), (1, "node"), (1, "run"), (4, "node")]
    assert rows[2]["usage"] == 7 and rows[2]["total_rss"] == 3
    assert [o["kind"] for o in other] == ["header", "cgroup", "corrupt"]
    assert sequence_gaps(rows) == [(2, 3)]
    assert sequence_gaps(rows[:3]) == []


def _target(tmp_path: Path, policy: str) -> SSHTarget:
    return SSHTarget(
        "lab-x",
        "127.0.0.9",
        2222,
        key_file=tmp_path / "k",
        known_hosts=tmp_path / "kh",
        host_key_policy=policy,
    )  # type: ignore[arg-type]


def test_unknown_host_key_is_an_error_with_its_fingerprint(tmp_path: Path) -> None:
    key = paramiko.RSAKey.generate(1024)
    client = paramiko.SSHClient()
    t = _target(tmp_path, "reject")
    with pytest.raises(UnknownHostKeyError) as ei:
        _Policy(t, t.known_hosts).missing_host_key(client, "[127.0.0.9]:2222", key)
    msg = str(ei.value)
    assert msg.startswith("lab-x (root@127.0.0.9:2222): unknown host key ssh-rsa SHA256:")
    assert key.fingerprint in msg and str(tmp_path / "kh") in msg and "ssh-keyscan -p 2222 127.0.0.9" in msg
    assert not t.known_hosts.exists()  # nothing recorded


def test_accept_new_records_the_key(tmp_path: Path) -> None:
    key = paramiko.RSAKey.generate(1024)
    client = paramiko.SSHClient()
    t = _target(tmp_path, "accept-new")
    _Policy(t, t.known_hosts).missing_host_key(client, "[127.0.0.9]:2222", key)
    hk = paramiko.HostKeys(str(t.known_hosts))
    assert hk.lookup("[127.0.0.9]:2222")["ssh-rsa"] == key


def test_suite_files_bundle_the_profile(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "suites").mkdir()
    (tmp_path / "profiles" / "p.yaml").write_text("kind: KubeletConfiguration\n")
    (tmp_path / "profiles" / "q.yaml").write_text("kind: KubeletConfiguration # q\n")
    suite = {
        "apiVersion": "harness/v1",
        "kind": "Suite",
        "name": "s",
        "profile": "../profiles/p.yaml",
        "scenarios": [
            {"name": "a", "workloads": [{"name": "w"}]},
            {"name": "b", "profile": "../profiles/q.yaml", "workloads": [{"name": "w"}]},
        ],
    }
    (tmp_path / "suites" / "s.yaml").write_text(yaml.safe_dump(suite))
    files = suite_files(tmp_path / "suites" / "s.yaml")
    data = yaml.safe_load(files["suite.yaml"])
    assert data["profile"] == "files/0-p.yaml" and data["scenarios"][1]["profile"] == "files/1-q.yaml"
    assert files["files/0-p.yaml"] == b"kind: KubeletConfiguration\n"
    assert files["files/1-q.yaml"].endswith(b"# q\n")
