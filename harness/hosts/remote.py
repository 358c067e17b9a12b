"""Jobs and sampling on a lab host through the stdlib agent (:mod:`harness.hosts.remote_sampler`).

The agent file is pushed by SFTP once per connection. Work runs **detached** on the host
(``spawn``) and writes to files there; the controller only *follows* those files over an exec
channel, counting the bytes of complete lines it has stored. So when the connection drops:

1. nothing is lost on the host: the job and the sampler keep running and writing;
2. the controller records ``connection_lost`` with the offset it had reached, reconnects once
   (:meth:`SSHHost.reconnect`) and resumes following from that exact offset;
3. the time the stream was down is recorded as a ``gap`` (``reconnected: true``); samples taken
   on the host during the gap arrive late but complete (the sequence numbers stay contiguous);
4. if the one reconnection fails, the gap is recorded with ``reconnected: false``, everything
   received so far stays in the local file, and the caller marks that host failed; other hosts
   are not affected.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harness.hosts.ssh import ConnectionLost, SSHError, SSHHost

AGENT_SOURCE = Path(__file__).with_name("remote_sampler.py")
AGENT_NAME = "remote_sampler.py"


def push_agent(host: SSHHost, remote_dir: str) -> str:
    """Copy the agent to ``remote_dir`` on the host; returns its remote path."""
    host.mkdirs(remote_dir)
    path = f"{remote_dir.rstrip('/')}/{AGENT_NAME}"
    host.put_bytes(AGENT_SOURCE.read_bytes(), path, 0o755)
    return path


@dataclass
class FollowResult:
    bytes: int
    lines: int
    gaps: list[dict[str, Any]] = field(default_factory=list)
    ended: bool = False  # the job exited and the file was drained
    error: str | None = None


def follow(
    host: SSHHost,
    agent: str,
    remote_file: str,
    sink: IO[bytes],
    *,
    job_dir: str | None = None,
    on_line: Callable[[bytes], None] | None = None,
    stop: threading.Event | None = None,
    stall_timeout: float = 0.0,
    probe_after: float = 0.0,
) -> FollowResult:
    """Copy ``remote_file`` into ``sink`` as it grows, surviving one dropped connection per drop.

    Only complete lines are written to ``sink`` (and passed to ``on_line``), so the resume offset is
    always a line boundary. Returns when the job in ``job_dir`` has exited and everything is
    received, when ``stop`` is set (after a final drain), or when the connection is lost for good.
    ``stall_timeout`` > 0 treats that many seconds without a byte as a dead connection.
    ``probe_after`` > 0 asks the host whether it still answers (:meth:`SSHHost.answers`) after that
    many quiet seconds, and again every as many while it stays quiet: a stream that is merely
    quiet goes on, a host that no longer answers counts as a dropped connection (one reconnection
    is tried), so a dead host ends its own follow instead of keeping the caller waiting for ever.
    """
    res = FollowResult(0, 0)
    offset = 0
    python = host.target.python
    while True:
        cmd = [python, agent, "follow", "--file", remote_file, "--offset", str(offset)]
        if job_dir:
            cmd += ["--job", job_dir]
        try:
            chan, gen = host.open_channel(shlex.join(cmd))
        except ConnectionLost as exc:
            res.error = exc.reason
            res.gaps.append(
                {
                    "kind": "gap",
                    "offset": offset,
                    "wall": time.time(),
                    "reconnected": False,
                    "detail": exc.reason,
                }
            )
            return res
        chan.settimeout(0.2)
        pending = b""
        last_data = last_probe = time.monotonic()
        dropped: str | None = None
        while True:
            try:
                data = chan.recv(65536)
            except TimeoutError:
                data = None
            except OSError as exc:  # socket.timeout is TimeoutError on 3.10+
                dropped = str(exc) or type(exc).__name__
                break
            if data is None:
                if stop is not None and stop.is_set():
                    break
                tr = chan.get_transport()
                if tr is None or not tr.is_active():
                    dropped = "connection closed"
                    break
                if stall_timeout and time.monotonic() - last_data > stall_timeout:
                    dropped = f"no data for {stall_timeout:g} s"
                    break
                if probe_after and time.monotonic() - max(last_data, last_probe) > probe_after:
                    if not host.answers():
                        dropped = (
                            f"quiet for {time.monotonic() - last_data:.0f} s and no answer to a probe"
                            f" within {host.target.connect_timeout:g} s"
                        )
                        break
                    last_probe = time.monotonic()
                continue
            if not data:  # EOF on the channel: the follower exited, or the connection went away
                tr = chan.get_transport()
                if tr is None or not tr.is_active():
                    dropped = "connection closed"
                break
            last_data = time.monotonic()
            pending += data
            cut = pending.rfind(b"\n")
            if cut >= 0:
                complete, pending = pending[: cut + 1], pending[cut + 1 :]
                sink.write(complete)
                sink.flush()
                offset += len(complete)
                res.bytes += len(complete)
                for line in complete.splitlines():
                    res.lines += 1
                    if on_line is not None:
                        on_line(line)
        status = None
        if dropped is None and not (stop is not None and stop.is_set()):
            deadline = time.monotonic() + 5.0
            while not chan.exit_status_ready() and time.monotonic() < deadline:
                tr = chan.get_transport()
                if tr is None or not tr.is_active():
                    dropped = "connection closed"
                    break
                time.sleep(0.02)
            if dropped is None and chan.exit_status_ready():
                status = chan.recv_exit_status()
        with contextlib.suppress(Exception):
            chan.close()
        if dropped is None and stop is not None and stop.is_set():
            res.ended = status == 0
            return res
        if dropped is None:
            if status == 0:
                res.ended = True
                return res
            if status == 3:
                res.error = "the job's supervisor on the host disappeared without an exit record"
                return res
            res.error = (
                f"the follower exited {status}" if status is not None else "the follower gave no exit status"
            )
            return res
        t_lost = time.time()
        try:
            host.reconnect(gen, f"following {remote_file}: {dropped}")
        except ConnectionLost as exc:
            res.error = exc.reason
            res.gaps.append(
                {"kind": "gap", "offset": offset, "wall": t_lost, "reconnected": False, "detail": dropped}
            )
            return res
        res.gaps.append(
            {
                "kind": "gap",
                "offset": offset,
                "wall": t_lost,
                "seconds": round(time.time() - t_lost, 3),
                "reconnected": True,
                "detail": dropped,
            }
        )


@dataclass
class RemoteJob:
    """A command running detached on a lab host under the agent's supervisor."""

    host: SSHHost
    agent: str
    job_dir: str
    pid: int | None = None

    @property
    def output(self) -> str:
        return f"{self.job_dir}/output.log"

    def start(self, argv: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None) -> int:
        cmd = [self.host.target.python, self.agent, "spawn", "--dir", self.job_dir]
        if cwd:
            cmd += ["--cwd", cwd]
        for k, v in (env or {}).items():
            cmd += ["--env", f"{k}={v}"]
        cmd += ["--", *argv]
        # not idempotent: a retry after a drop could start the job twice
        res = self.host.run(cmd, timeout=60, check=True, idempotent=False)
        rec = json.loads(res.stdout.strip().splitlines()[-1])
        if rec.get("pid") is None:
            raise SSHError(
                self.host.target, f"could not start {argv[0]}: {rec.get('error', 'unknown error')}"
            )
        self.pid = int(rec["pid"])
        return self.pid

    def status(self) -> dict[str, Any]:
        res = self.host.run(
            [self.host.target.python, self.agent, "status", "--dir", self.job_dir], check=True, timeout=30
        )
        out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
        return out

    def exit_code(self) -> int | None:
        ex = self.status().get("exit")
        return int(ex["rc"]) if isinstance(ex, dict) and ex.get("rc") is not None else None

    def stop(self, timeout: float = 15.0) -> dict[str, Any]:
        res = self.host.run(
            [self.host.target.python, self.agent, "stop", "--dir", self.job_dir, "--timeout", str(timeout)],
            check=True,
            timeout=timeout + 30,
        )
        out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
        return out


@dataclass
class RemoteSampler:
    """The agent's ``sample`` running on a host, streamed into a local JSONL file.

    ``cgroups`` maps a name to a cgroup path below the memory hierarchy root (``harness/<run>``);
    a cgroup that does not exist yet is picked up when it appears.
    """

    host: SSHHost
    agent: str
    job_dir: str
    local_file: Path
    hz: float = 10.0
    cgroups: dict[str, str] = field(default_factory=dict)
    meminfo: bool = True
    max_seconds: float = 3600.0
    until_job: str | None = None  # stop by itself once this job has exited (the controller may be gone)
    stall_timeout: float = 0.0
    probe_after: float = 0.0
    result: FollowResult | None = None
    _job: RemoteJob | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def spool(self) -> str:
        return f"{self.job_dir}/samples.jsonl"

    def start(self) -> None:
        argv = [self.host.target.python, self.agent, "sample", "--out", self.spool, "--hz", str(self.hz)]
        argv += ["--max-seconds", str(self.max_seconds)]
        if self.meminfo:
            argv.append("--meminfo")
        if self.until_job:
            argv += ["--until-job", self.until_job]
        for name, path in self.cgroups.items():
            argv += ["--cgroup", f"{name}={path}"]
        self._job = RemoteJob(self.host, self.agent, self.job_dir)
        self._job.start(argv)
        self.local_file.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(
            target=self._follow, name=f"sampler-{self.host.target.name}", daemon=True
        )
        self._thread.start()

    def _follow(self) -> None:
        with open(self.local_file, "ab") as sink:
            try:
                self.result = follow(
                    self.host,
                    self.agent,
                    self.spool,
                    sink,
                    job_dir=self.job_dir,
                    stop=self._stop,
                    stall_timeout=self.stall_timeout,
                    probe_after=self.probe_after,
                )
            except SSHError as exc:
                self.result = FollowResult(0, 0, error=exc.reason)

    def stop(self, timeout: float = 30.0) -> FollowResult:
        """Stop the sampler on the host (by its recorded pid), then wait for the stream to drain."""
        stop_error = None
        if self._job is not None:
            try:
                self._job.stop()
            except SSHError as exc:
                stop_error = exc.reason
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._stop.set()
        res = self.result or FollowResult(0, 0, error="the stream did not finish")
        if stop_error and not res.error:
            res.error = f"could not stop the sampler: {stop_error}"
        return res

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def read_samples(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A sampler JSONL file -> (flat sample rows, other records). Rows: one per tick and source.

    ``source`` is ``node`` (meminfo) or the cgroup name; byte values keep their names
    (``MemAvailable``... for the node, ``usage``, ``limit`` and memory.stat keys for cgroups).
    """
    rows: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    if not path.exists():
        return rows, other
    with open(path, "rb") as f:
        for raw in f:
            try:
                rec = json.loads(raw)
            except ValueError:
                other.append({"kind": "corrupt", "line": raw[:200].decode(errors="replace")})
                continue
            if rec.get("kind") != "sample":
                other.append(rec)
                continue
            base = {"seq": rec["seq"], "t_mono": rec["t"], "t_wall": rec["wall"]}
            if "meminfo" in rec:
                rows.append({**base, "source": "node", **rec["meminfo"]})
            for name, cg in rec.get("cg", {}).items():
                rows.append(
                    {**base, "source": name, "usage": cg["usage"], "limit": cg["limit"], **cg["stat"]}
                )
    return rows, other


def sequence_gaps(rows: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Missing ranges of ``seq`` in sample rows: [(first missing, last missing)]. Empty = nothing lost."""
    seqs = sorted({int(r["seq"]) for r in rows})
    out = []
    for a, b in itertools.pairwise(seqs):
        if b > a + 1:
            out.append((a + 1, b - 1))
    return out
