"""harness.hosts against real OpenSSH servers on loopback addresses (tests/integration/_sshd.py).

Host-key checking, key refusal, timeouts, one reconnection after a dropped connection, detached
jobs and the streaming sampler (no data lost when the connection drops mid-sample).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.hosts.remote import (
    AGENT_SOURCE,
    RemoteJob,
    RemoteSampler,
    follow,
    push_agent,
    read_samples,
    sequence_gaps,
)
from harness.hosts.ssh import (
    AuthenticationError,
    ConnectError,
    ConnectionLost,
    HostKeyMismatchError,
    SSHHost,
    SSHTarget,
    UnknownHostKeyError,
)
from tests.integration._sshd import LoopbackLab, children

pytestmark = pytest.mark.integration


def _target(lab: LoopbackLab, name: str, **kw: Any) -> SSHTarget:
    h = lab.hosts[name]
    args: dict[str, Any] = {
        "key_file": lab.client_key,
        "known_hosts": lab.known_hosts,
        "connect_timeout": 5.0,
        "python": sys.executable,
        **kw,
    }
    return SSHTarget(name, h.address, h.port, "root", **args)


def _fingerprint(pub: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout
    return out.split()[1]  # SHA256:...


@pytest.fixture
def ssh_a(loopback_lab: LoopbackLab) -> Iterator[SSHHost]:
    ssh = SSHHost(_target(loopback_lab, "lab-a")).connect()
    try:
        yield ssh
    finally:
        ssh.close()


def _wait(pred: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_commands_and_files(ssh_a: SSHHost, tmp_path: Path) -> None:
    res = ssh_a.run("echo out; echo err >&2; exit 3")
    assert (res.rc, res.stdout, res.stderr) == (3, "out\n", "err\n")
    assert ssh_a.run(["cat"], stdin=b"piped").stdout == "piped"
    d = str(tmp_path / "remote" / "x")
    ssh_a.mkdirs(d)
    ssh_a.put_bytes(b"hello\n", f"{d}/a.txt", 0o600)
    ssh_a.mkdirs(f"{d}/sub")
    ssh_a.put_bytes(b"inner", f"{d}/sub/b.bin")
    assert ssh_a.get_bytes(f"{d}/a.txt") == b"hello\n"
    got = ssh_a.get_tree(d, tmp_path / "local")
    assert sorted(p.relative_to(tmp_path / "local").as_posix() for p in got) == ["a.txt", "sub/b.bin"]
    assert (tmp_path / "local" / "sub" / "b.bin").read_bytes() == b"inner"
    assert (Path(d) / "a.txt").stat().st_mode & 0o777 == 0o600


def test_unknown_host_key_is_rejected(loopback_lab: LoopbackLab, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    host = SSHHost(_target(loopback_lab, "lab-a", known_hosts=empty))
    with pytest.raises(UnknownHostKeyError) as ei:
        host.connect()
    msg = str(ei.value)
    h = loopback_lab.hosts["lab-a"]
    assert f"lab-a (root@{h.address}:{h.port}): unknown host key ssh-ed25519 " in msg
    assert _fingerprint(h.host_key.with_suffix(".pub")) in msg
    assert str(empty) in msg and "accept-new" in msg
    assert empty.read_text() == ""  # never recorded without being asked


def test_accept_new_records_the_key_then_strict_checking_passes(
    loopback_lab: LoopbackLab, tmp_path: Path
) -> None:
    kh = tmp_path / "known_hosts"
    with SSHHost(_target(loopback_lab, "lab-b", known_hosts=kh, host_key_policy="accept-new")) as host:
        assert host.run("true").rc == 0
    h = loopback_lab.hosts["lab-b"]
    assert kh.read_text() == h.known_hosts_line()
    with SSHHost(_target(loopback_lab, "lab-b", known_hosts=kh)) as host:
        assert host.run("echo ok").stdout == "ok\n"


def test_changed_host_key_is_refused(loopback_lab: LoopbackLab, tmp_path: Path) -> None:
    a, b = loopback_lab.hosts["lab-a"], loopback_lab.hosts["lab-b"]
    kh = tmp_path / "known_hosts"
    # lab-b's key recorded under lab-a's name: what a man in the middle would look like
    kh.write_text(b.known_hosts_line().replace(f"[{b.address}]:{b.port}", f"[{a.address}]:{a.port}"))
    with pytest.raises(HostKeyMismatchError, match="host key changed: the server offers ssh-ed25519 SHA256:"):
        SSHHost(_target(loopback_lab, "lab-a", known_hosts=kh, host_key_policy="accept-new")).connect()


def test_a_refused_key_is_a_clear_error(loopback_lab: LoopbackLab) -> None:
    with pytest.raises(AuthenticationError) as ei:
        SSHHost(_target(loopback_lab, "lab-c")).connect()
    fp = _fingerprint(loopback_lab.client_key.with_suffix(".pub"))
    assert f"the server refused key {loopback_lab.client_key} (ssh-ed25519 {fp}) for user root" in str(
        ei.value
    )


def test_connect_errors_and_timeouts(loopback_lab: LoopbackLab) -> None:
    # nothing listens: refused at once
    with pytest.raises(ConnectError, match="connection refused"):
        SSHHost(
            SSHTarget(
                "nobody",
                "127.0.0.5",
                1,
                key_file=loopback_lab.client_key,
                known_hosts=loopback_lab.known_hosts,
            )
        ).connect()
    # a server that accepts and never speaks: the banner timeout ends it
    with socket.socket() as srv:
        srv.bind(("127.0.0.5", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        t = SSHTarget(
            "silent",
            "127.0.0.5",
            port,
            key_file=loopback_lab.client_key,
            known_hosts=loopback_lab.known_hosts,
            connect_timeout=1.0,
        )
        with pytest.raises(
            ConnectError,
            match=r"silent \(root@127.0.0.5:\d+\): (connection timed out after 1 s|no SSH handshake within 1 s)",
        ):
            SSHHost(t).connect()


def test_a_server_that_resets_the_handshake_is_named_and_paramiko_stays_quiet(
    loopback_lab: LoopbackLab,
) -> None:
    """A listener that accepts and resets the connection (what a dying sshd does to a connection
    it had accepted): the error says the handshake was reset, not that nothing answered in time,
    and paramiko's own transport-thread traceback does not reach stderr (CI stop 22)."""
    code = f"""
import socket, struct, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from harness.hosts.ssh import ConnectError, SSHHost, SSHTarget
from pathlib import Path
srv = socket.socket()
srv.bind(("127.0.0.5", 0))
srv.listen(1)
import threading
def reset():
    c, _ = srv.accept()
    c.recv(256)  # the client's banner: it now waits for ours, and gets a reset instead
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
threading.Thread(target=reset, daemon=True).start()
t = SSHTarget("resets", "127.0.0.5", srv.getsockname()[1], key_file=Path({str(loopback_lab.client_key)!r}),
              known_hosts=Path({str(loopback_lab.known_hosts)!r}), connect_timeout=5.0)
try:
    SSHHost(t).connect()
except ConnectError as exc:
    print(exc)
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert (
        "reset by the server during the SSH handshake" in p.stdout and "resets (root@127.0.0.5:" in p.stdout
    ), p.stdout
    assert "no SSH handshake within" not in p.stdout
    assert "Traceback" not in p.stderr and p.stderr.strip() == "", p.stderr


def test_reconnects_once_after_a_dropped_connection(loopback_lab: LoopbackLab, ssh_a: SSHHost) -> None:
    assert ssh_a.run("echo before").stdout == "before\n"
    assert loopback_lab.hosts["lab-a"].drop_connections()
    assert ssh_a.run("echo after").stdout == "after\n"
    assert ssh_a.reconnects == 1
    assert [e["kind"] for e in ssh_a.events] == ["connection_lost", "reconnected"]


@pytest.fixture
def lonely_lab(tmp_path: Path) -> Iterator[LoopbackLab]:
    """One more sshd host of its own (127.0.0.6) that a test may stop."""
    lab = LoopbackLab.start(tmp_path / "lonely", [("lab-z", "127.0.0.6")])
    try:
        yield lab
    finally:
        lab.stop()


def test_a_host_gone_for_good_fails_clearly(lonely_lab: LoopbackLab) -> None:
    with SSHHost(_target(lonely_lab, "lab-z")) as host:
        assert host.run("true").rc == 0
        lonely_lab.hosts["lab-z"].stop()  # listener and connections
        with pytest.raises(ConnectionLost) as ei:
            host.run("true")
        assert "the one reconnection failed: cannot connect: connection refused" in str(ei.value)
        assert [e["kind"] for e in host.events] == ["connection_lost", "reconnect_failed"]


def test_detached_job_survives_a_drop_and_reports_its_exit(
    loopback_lab: LoopbackLab, ssh_a: SSHHost, tmp_path: Path
) -> None:
    agent = push_agent(ssh_a, str(tmp_path / "agent"))
    assert Path(agent).read_bytes() == AGENT_SOURCE.read_bytes()
    job = RemoteJob(ssh_a, agent, str(tmp_path / "job"))
    job.start(["sh", "-c", "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.3; done; exit 3"])
    sink = io.BytesIO()
    lines: list[bytes] = []
    result: dict[str, Any] = {}

    def run() -> None:
        result["r"] = follow(ssh_a, agent, job.output, sink, job_dir=job.job_dir, on_line=lines.append)

    t = threading.Thread(target=run)
    t.start()
    _wait(lambda: len(lines) >= 2)
    loopback_lab.hosts["lab-a"].drop_connections()
    t.join(30)
    r = result["r"]
    assert r.ended and r.error is None
    assert sink.getvalue() == b"".join(
        f"line {i}\n".encode() for i in range(1, 7)
    )  # nothing lost, nothing twice
    assert len(r.gaps) == 1 and r.gaps[0]["reconnected"] is True
    assert job.exit_code() == 3


def test_sampler_streams_meminfo_and_a_cgroup_that_appears_later(
    ssh_a: SSHHost, tmp_path: Path, memcg_factory: Any
) -> None:
    from tests.integration.conftest import CGROUP_PREFIX, memory_cgroup_root

    agent = push_agent(ssh_a, str(tmp_path / "agent"))
    root, _ = memory_cgroup_root()
    later = f"{CGROUP_PREFIX}later-{time.monotonic_ns()}"
    out = tmp_path / "samples.jsonl"
    s = RemoteSampler(
        ssh_a, agent, str(tmp_path / "sampler"), out, hz=20, cgroups={"cg": later}, max_seconds=60
    )
    s.start()
    try:
        _wait(lambda: len(read_samples(out)[0]) >= 5)
        (root / later).mkdir()
        (root / later / "memory.limit_in_bytes").write_text(str(48 << 20))
        _wait(lambda: any(r["source"] == "cg" for r in read_samples(out)[0]))
    finally:
        res = s.stop()
        with contextlib.suppress(OSError):
            (root / later).rmdir()
    rows, other = read_samples(out)
    assert res.ended and res.error is None and res.gaps == []
    node = [r for r in rows if r["source"] == "node"]
    cg = [r for r in rows if r["source"] == "cg"]
    mem_total = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    assert node and all(r["MemTotal"] == mem_total for r in node)
    assert cg and all(r["limit"] == 48 << 20 and r["usage"] >= 0 for r in cg)
    assert [o["state"] for o in other if o["kind"] == "cgroup"] == ["found"]
    assert other[-1]["kind"] == "end" and other[-1]["seq"] == len(node)
    assert sequence_gaps(rows) == []


def test_connection_dropped_mid_sample_loses_nothing(
    loopback_lab: LoopbackLab, ssh_a: SSHHost, tmp_path: Path
) -> None:
    agent = push_agent(ssh_a, str(tmp_path / "agent"))
    out = tmp_path / "samples.jsonl"
    s = RemoteSampler(ssh_a, agent, str(tmp_path / "sampler"), out, hz=20, max_seconds=60)
    s.start()
    _wait(lambda: len(read_samples(out)[0]) >= 10)
    dropped = loopback_lab.hosts["lab-a"].drop_connections()
    assert dropped
    n_at_drop = len(read_samples(out)[0])
    _wait(lambda: len(read_samples(out)[0]) >= n_at_drop + 10)  # streaming again
    res = s.stop()
    rows, other = read_samples(out)
    assert res.ended and res.error is None
    assert len(res.gaps) == 1 and res.gaps[0]["reconnected"] is True and res.gaps[0]["offset"] > 0
    assert [e["kind"] for e in ssh_a.events] == ["connection_lost", "reconnected"]
    # every tick the host took is here exactly once: 0..end-1
    seqs = [r["seq"] for r in rows]
    assert seqs == list(range(len(seqs)))
    assert other[-1] == {"kind": "end", "seq": len(seqs), "reason": "stopped"}


def test_connection_lost_for_good_mid_sample_keeps_what_arrived(
    lonely_lab: LoopbackLab, tmp_path: Path
) -> None:
    host = SSHHost(_target(lonely_lab, "lab-z")).connect()
    agent = push_agent(host, str(tmp_path / "agent"))
    out = tmp_path / "samples.jsonl"
    s = RemoteSampler(host, agent, str(tmp_path / "sampler"), out, hz=20, max_seconds=30)
    s.start()
    try:
        _wait(lambda: len(read_samples(out)[0]) >= 5)
        lonely_lab.hosts["lab-z"].stop()
        res = s.stop(timeout=30)
        rows, _ = read_samples(out)
        assert res.error is not None and "reconnection failed" in res.error
        assert len(res.gaps) == 1 and res.gaps[0]["reconnected"] is False
        assert len(rows) >= 5 and sequence_gaps(rows) == []  # what arrived is kept, in order
        assert res.gaps[0]["offset"] == out.stat().st_size
    finally:
        host.close()
        # the host is this machine: stop the detached sampler by its recorded pid
        subprocess.run(
            [sys.executable, str(AGENT_SOURCE), "stop", "--dir", str(tmp_path / "sampler")],
            check=True,
            capture_output=True,
        )


def _tree(pid: int) -> list[int]:
    out = [pid]
    for c in children(pid):
        out += _tree(c)
    return out


def test_a_host_that_stops_answering_ends_a_quiet_follow(lonely_lab: LoopbackLab, tmp_path: Path) -> None:
    """A hung host (every sshd process of it stopped, TCP still up) gives no error; the probe finds it.

    First a job that is quiet for 3 s on a host that answers: the probes pass and nothing is cut.
    Then the host's sshd processes are stopped (SIGSTOP) while its job is quiet: ``follow`` returns
    with the host declared lost instead of waiting for ever.
    """
    sshd = lonely_lab.hosts["lab-z"]
    assert sshd.proc is not None
    with SSHHost(_target(lonely_lab, "lab-z", connect_timeout=2.0)) as host:
        agent = push_agent(host, str(tmp_path / "agent"))
        job = RemoteJob(host, agent, str(tmp_path / "quiet"))
        job.start(["sh", "-c", "echo start; sleep 3; echo end"])
        r = follow(host, agent, job.output, io.BytesIO(), job_dir=job.job_dir, probe_after=0.5)
        assert r.ended and r.error is None and r.gaps == []

        job = RemoteJob(host, agent, str(tmp_path / "hung"))
        job.start(["sh", "-c", "echo start; sleep 60"])
        lines: list[bytes] = []
        result: dict[str, Any] = {}

        def run() -> None:
            result["r"] = follow(
                host,
                agent,
                job.output,
                io.BytesIO(),
                job_dir=job.job_dir,
                on_line=lines.append,
                probe_after=1.0,
            )

        t = threading.Thread(target=run)
        t.start()
        _wait(lambda: lines == [b"start"])
        stopped = _tree(sshd.proc.pid)
        try:
            for pid in stopped:
                os.kill(pid, signal.SIGSTOP)
            t.join(30)
            assert not t.is_alive(), "follow still waits on a host that no longer answers"
        finally:
            for pid in stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        r = result["r"]
        assert not r.ended and "the one reconnection failed" in (r.error or "")
        assert r.gaps[-1]["reconnected"] is False and "no answer to a probe" in r.gaps[-1]["detail"]
        with contextlib.suppress(Exception):
            job.stop()
