"""``harness run SUITE --inventory``: a scenario on two loopback hosts in parallel, results merged.

lab-a and lab-b run the S1 scenario (a container exceeding its own limit, really OOM-killed by the
kernel in a harness cgroup) at the same time; lab-c refuses the client's key and is reported
while the other two complete. Then a run during which lab-a's SSH connections are killed: the
controller reconnects once, the run on the host goes on, and nothing it wrote or sampled is lost.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.integration._sshd import LoopbackLab

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SUITE = """\
apiVersion: harness/v1
kind: Suite
name: lab-s1
profile: profiles/local.yaml
node: {memoryCapacity: 1Gi}
sampleHz: 10
scenarios:
  - name: s1-container-limit
    id: S1
    timeout: 20s
    backends: [process]
    workloads:
      - name: leaker
        resources: {requests: {memory: 32Mi}, limits: {memory: 128Mi}}
        leak: {chunk: 8Mi, interval: 100ms}
"""


@pytest.fixture(scope="module")
def lab_files(loopback_lab: LoopbackLab, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("labrun")
    (base / "profiles").mkdir()
    (base / "profiles" / "local.yaml").write_bytes((REPO / "profiles" / "local.yaml").read_bytes())
    suite = base / "suite.yaml"
    suite.write_text(SUITE)
    inv = loopback_lab.inventory(
        base / "lab.yaml",
        defaults_vars={
            "lab_dir": str(base / "state" / "{{ inventory_hostname }}"),
            "lab_run_dir": str(base / "run" / "{{ inventory_hostname }}"),
        },
    )
    return suite, inv


def test_scenario_on_two_hosts_in_parallel_and_a_refusing_host(
    lab_files: tuple[Path, Path], tmp_path: Path
) -> None:
    suite, inv = lab_files
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
            "--forks",
            "3",
            "--results",
            str(results),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # lab-c failed: exit 3 (a lab host failed) with one error line naming it; the other two completed
    assert r.returncode == 3, r.stderr[-3000:]
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("harness: error:")]
    assert len(err) == 1 and "1 of 3 host(s) failed: lab-c: the server refused key" in err[0]
    assert "harness: 2/2 verdicts match on 2/3 host(s); run partial" in r.stdout
    # progress of both remote runs, prefixed by host, interleaved
    for h in ("lab-a", "lab-b"):
        assert f"[{h}]   ok   leaker         predicted oom_killed       observed oom_killed" in r.stderr
    (run_dir,) = results.iterdir()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["kind"] == "lab" and run["status"] == "partial"
    hosts = run["hosts"]
    assert hosts["lab-c"]["status"] == "unreachable" and "refused key" in hosts["lab-c"]["error"]
    for h in ("lab-a", "lab-b"):
        assert hosts[h]["status"] == "complete" and hosts[h]["exit_code"] == 0
        assert hosts[h]["verdicts_passed"] == hosts[h]["verdicts_total"] == 1
        assert hosts[h]["facts"]["name"] == h and hosts[h]["facts"]["memoryCapacity"] > 0
        assert hosts[h]["connection"] == []
        # the host's own run directory, fetched by SFTP
        remote = json.loads((run_dir / "hosts" / h / "run" / "run.json").read_text())
        assert remote["run_id"] == hosts[h]["remote_run_id"] and remote["status"] == "complete"
    assert hosts["lab-a"]["remote_run_id"] != hosts["lab-b"]["remote_run_id"]
    # merged tables: every row tagged with its host
    verdicts = pd.read_parquet(run_dir / "verdicts.parquet")
    assert sorted(verdicts["host"]) == ["lab-a", "lab-b"]
    assert verdicts["observed"].tolist() == ["oom_killed", "oom_killed"]
    samples = pd.read_parquet(run_dir / "samples.parquet")
    assert set(samples["host"]) == {"lab-a", "lab-b"}
    for h in ("lab-a", "lab-b"):
        own = pd.read_parquet(run_dir / "hosts" / h / "run" / "samples.parquet")
        assert (samples["host"] == h).sum() == len(own)
    # the remote sampler: node memory and the run's cgroup, from both hosts
    rs = pd.read_parquet(run_dir / "remote_samples.parquet")
    assert {(h, s) for h, s in zip(rs["host"], rs["source"], strict=True)} >= {
        ("lab-a", "node"),
        ("lab-b", "node"),
    }
    assert hosts["lab-a"]["sampling"]["missing_seq"] == [] and hosts["lab-a"]["sampling"]["rows"] > 0
    junit = (run_dir / "junit.xml").read_text()
    assert (
        'name="lab-a.s1-container-limit/leaker"' in junit
        and 'name="lab-b.s1-container-limit/leaker"' in junit
    )


class _DropWhenRunning(io.StringIO):
    """Progress sink that kills lab-a's SSH connections once its scenario is under way."""

    def __init__(self, lab: LoopbackLab) -> None:
        super().__init__()
        self.lab = lab
        self.dropped: list[int] = []
        self.lock = threading.Lock()

    def write(self, s: str) -> int:
        with self.lock:
            if not self.dropped and s.startswith("[lab-a]   [s1-container-limit t="):
                self.dropped = self.lab.hosts["lab-a"].drop_connections()
        return super().write(s)


def test_connection_dropped_mid_run_is_recorded_and_nothing_is_lost(
    loopback_lab: LoopbackLab, lab_files: tuple[Path, Path], tmp_path: Path
) -> None:
    from harness.hosts.lab import run_on_inventory
    from harness.provision import load_inventory

    suite, inv = lab_files
    sink = _DropWhenRunning(loopback_lab)
    res: Any = run_on_inventory(
        suite,
        load_inventory(inv),
        tmp_path / "results",
        limit=["lab-a", "lab-b"],
        forks=2,
        remote_hz=20,
        stream=sink,
    )
    assert sink.dropped, "lab-a's connection was never dropped"
    assert res.status == "complete", {h: (r.status, r.error) for h, r in res.hosts.items()}
    a = res.hosts["lab-a"]
    kinds = [c["kind"] for c in a.connection]
    assert "connection_lost" in kinds and "reconnected" in kinds and "reconnect_failed" not in kinds
    assert any(c["kind"] == "gap" and c["reconnected"] for c in a.connection)
    assert res.hosts["lab-b"].connection == []
    # the whole remote output arrived once: the log on the host equals what the controller kept
    run = json.loads((res.run_dir / "run.json").read_text())
    remote_log = Path(inv.parent / "state" / "lab-a" / "harness" / "runs" / res.run_id / "job" / "output.log")
    assert (res.run_dir / "hosts" / "lab-a" / "output.log").read_bytes() == remote_log.read_bytes()
    # every sampler tick the host took is here exactly once
    assert run["hosts"]["lab-a"]["sampling"]["missing_seq"] == []
    spool = inv.parent / "state" / "lab-a" / "harness" / "runs" / res.run_id / "sampler" / "samples.jsonl"
    assert (res.run_dir / "hosts" / "lab-a" / "remote_samples.jsonl").read_bytes() == spool.read_bytes()
    # the run itself went on and its results are complete
    assert run["hosts"]["lab-a"]["verdicts_passed"] == 1
    events = pd.read_parquet(res.run_dir / "events.parquet")
    ssh_rows = events[(events["host"] == "lab-a") & (events["source"] == "ssh")]
    assert {"connection_lost", "reconnected", "gap"} <= set(ssh_rows["kind"])


HOLD_SUITE = """\
apiVersion: harness/v1
kind: Suite
name: lab-hold
profile: profiles/local.yaml
node: {memoryCapacity: 1Gi}
sampleHz: 10
scenarios:
  - name: hold
    id: H1
    description: A pod holds 16Mi for 15 s and exits; long enough for a lab host to die under it.
    timeout: 40s
    backends: [process]
    workloads:
      - name: holder
        resources: {requests: {memory: 32Mi}, limits: {memory: 64Mi}}
        leak: {chunk: 4Mi, interval: 100ms, max: 16Mi, hold: 15s}
"""


def _lab_processes(marker: str) -> list[int]:
    """Pids whose command line names ``marker`` (read only: to see that a host's run ended)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    out.append(int(d.name))
            except OSError:
                continue
    return out


def test_a_lab_host_that_dies_mid_run_leaves_the_others_complete(
    loopback_lab: LoopbackLab, lab_files: tuple[Path, Path], tmp_path: Path
) -> None:
    """lab-a's sshd (the listener this test started, and its connections, by pid) is killed once
    lab-a's scenario is under way, 14 s before it would end: lab-b's results are complete, lab-a is
    recorded as lost, and the run exits 3 with one error line naming lab-a."""
    _, inv = lab_files
    suite = inv.parent / "hold.yaml"
    suite.write_text(HOLD_SUITE)
    results = tmp_path / "results"
    host = loopback_lab.hosts["lab-a"]
    err_lines: list[str] = []
    killed: list[int] = []
    job_pid: int | None = None
    with open(tmp_path / "stdout", "w") as out:
        p = subprocess.Popen(
            [
                *(sys.executable, "-m", "harness", "run", str(suite), "--inventory", str(inv)),
                *("--limit", "lab-a", "--limit", "lab-b", "--forks", "2", "--results", str(results)),
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert p.stderr is not None
            for line in p.stderr:
                err_lines.append(line)
                m = re.match(r"\[lab-a\] started: .* \(pid (\d+)\)", line)
                if m:
                    job_pid = int(m.group(1))
                if not killed and line.startswith("[lab-a]   [hold t="):
                    # the host dies: its sshd and every connection, by the pids this test owns
                    assert host.proc is not None
                    conns = host.connection_pids()
                    os.kill(host.proc.pid, signal.SIGKILL)
                    for pid in conns:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    host.proc.wait(10)
                    killed = [host.proc.pid, *conns]
            p.wait(timeout=300)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(30)
            host.proc = None
            host.start()  # the module's other tests use lab-a again
    err = "".join(err_lines)
    print(err)
    assert killed, "lab-a's scenario never started"
    assert p.returncode == 3, err[-3000:]
    errors = [ln for ln in err_lines if ln.startswith("harness: error:")]
    assert len(errors) == 1 and "1 of 2 host(s) failed: lab-a: lost the remote run" in errors[0], errors
    assert "Traceback" not in err
    (run_dir,) = results.iterdir()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "partial"
    hosts = run["hosts"]
    a, b = hosts["lab-a"], hosts["lab-b"]
    assert a["status"] == "failed" and "lost the remote run" in a["error"]
    assert any(c.get("kind") == "gap" and c.get("reconnected") is False for c in a["connection"]), a
    # lab-b: complete, as if nothing had happened to lab-a
    assert b["status"] == "complete" and b["exit_code"] == 0 and b["connection"] == []
    assert b["verdicts_passed"] == b["verdicts_total"] == 1
    remote = json.loads((run_dir / "hosts" / "lab-b" / "run" / "run.json").read_text())
    assert remote["status"] == "complete" and remote["run_id"] == b["remote_run_id"]
    verdicts = pd.read_parquet(run_dir / "verdicts.parquet")
    assert verdicts["host"].tolist() == ["lab-b"] and verdicts["passed"].all()
    samples = pd.read_parquet(run_dir / "samples.parquet")
    own = pd.read_parquet(run_dir / "hosts" / "lab-b" / "run" / "samples.parquet")
    assert (samples["host"] == "lab-b").sum() == len(own) > 0
    assert b["sampling"]["missing_seq"] == [] and b["sampling"]["rows"] > 0
    # what lab-a received before it died is kept
    assert (run_dir / "hosts" / "lab-a" / "output.log").stat().st_size > 0
    # lab-a's own run (detached on the host, which here is this machine) ends by itself: nothing left
    assert job_pid is not None
    state = str(inv.parent / "state" / "lab-a")
    end = time.monotonic() + 90
    while _lab_processes(state) and time.monotonic() < end:
        time.sleep(0.5)
    assert not _lab_processes(state), f"lab-a's run left processes: {_lab_processes(state)}"


def _running(pid: int, wait: float = 10.0) -> bool:
    """Is ``pid`` still running after up to ``wait`` s? A zombie (killed, not yet reaped by the
    process it was reparented to) is not."""
    end = time.monotonic() + wait
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        if state in ("Z", "X"):
            return False
        if time.monotonic() > end:
            return True
        time.sleep(0.2)


def test_sigkill_of_the_harness_on_a_lab_host_then_cleanup_there_leaves_nothing(
    loopback_lab: LoopbackLab, lab_files: tuple[Path, Path], tmp_path: Path
) -> None:
    """The harness running a scenario on lab-a is SIGKILLed (by the pid the agent reported) while
    its workload holds memory: the controller records lab-a as failed and exits 3; then
    ``harness cleanup`` run on lab-a over SSH leaves nothing of that run (its cgroups in every
    hierarchy, its ledger, its workload's processes) and marks the run ``killed``; a foreign
    ``harness/<x>`` cgroup on the host survives."""
    from harness.host.cgroups import hierarchies
    from harness.hosts.ssh import SSHHost, SSHTarget
    from harness.owned import OWNED_DIR

    _, inv = lab_files
    suite = inv.parent / "hold.yaml"
    suite.write_text(HOLD_SUITE)
    results = tmp_path / "results"
    decoy = [h / "harness" / f"decoy-{os.getpid()}" for h in hierarchies() if (h / "harness").is_dir()]
    for d in decoy:
        d.mkdir(exist_ok=True)
    err_lines: list[str] = []
    job_pid: int | None = None
    remote_run: str | None = None
    holders: list[int] = []
    try:
        p = subprocess.Popen(
            [
                *(sys.executable, "-m", "harness", "run", str(suite), "--inventory", str(inv)),
                *("--limit", "lab-a", "--results", str(results)),
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert p.stderr is not None
            for line in p.stderr:
                err_lines.append(line)
                m = re.match(r"\[lab-a\] started: .* \(pid (\d+)\)", line)
                if m:
                    job_pid = int(m.group(1))
                r = re.match(r"\[lab-a\] harness: run (\S+) ", line)
                if r:
                    remote_run = r.group(1)
                if job_pid and remote_run and not holders and line.startswith("[lab-a]   [hold t="):
                    holders = [
                        int(x)
                        for h in hierarchies()
                        for f in (h / "harness" / remote_run).rglob("cgroup.procs")
                        for x in f.read_text().split()
                    ]
                    os.kill(job_pid, signal.SIGKILL)  # the harness on lab-a: no teardown
            p.wait(timeout=300)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(30)
        err = "".join(err_lines)
        print(err)
        assert holders, "lab-a's scenario never started"
        assert p.returncode == 3, err[-3000:]
        assert remote_run is not None
        left = [h / "harness" / remote_run for h in hierarchies() if (h / "harness" / remote_run).exists()]
        ledger = OWNED_DIR / f"run-{remote_run}.jsonl"
        assert left and ledger.exists(), "SIGKILL should have left the run's cgroups and ledger on lab-a"
        # cleanup on the lab host, over SSH, with the host's own harness
        h = loopback_lab.hosts["lab-a"]
        target = SSHTarget(
            "lab-a",
            h.address,
            h.port,
            "root",
            key_file=loopback_lab.client_key,
            known_hosts=loopback_lab.known_hosts,
            connect_timeout=10.0,
            python=sys.executable,
        )
        home = inv.parent / "state" / "lab-a" / "harness"  # harness_home: {{ lab_dir }}/harness
        with SSHHost(target) as ssh:
            res = ssh.run(
                f"cd {shlex.quote(str(REPO))} && HARNESS_RESULTS={shlex.quote(str(home / 'results'))} "
                f"{shlex.quote(sys.executable)} -m harness cleanup",
                timeout=120,
            )
        print(res.stdout, res.stderr)
        assert res.rc == 0, res.stdout + res.stderr
        assert not [d for d in left if d.exists()], f"left after cleanup: {left}"
        assert not ledger.exists()
        assert not [pid for pid in holders if _running(pid)], "the workload outlived cleanup"
        (meta,) = [json.loads(f.read_text()) for f in home.rglob("run.json") if remote_run in str(f)]
        assert meta["status"] == "killed", meta["status"]
        assert all(d.is_dir() for d in decoy), "cleanup removed a foreign harness/<x> cgroup"
    finally:
        for d in decoy:
            with contextlib.suppress(OSError):
                d.rmdir()
