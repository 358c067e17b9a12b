"""The project's own Docker engine: Debian's ``dockerd`` with its own root, socket and pid file.

:func:`ensure_docker` starts ``dockerd`` only when the project's socket
(``/run/harness/docker.sock``) does not answer, with

* ``--data-root <state_dir>/data``, ``--exec-root /run/harness/docker``,
  ``--pidfile /run/harness/docker.pid``, ``-H unix:///run/harness/docker.sock``;
* its own empty ``--config-file`` (the host's ``/etc/docker/daemon.json`` is not read);
* no networking: ``--bridge=none --iptables=false --ip-masq=false --ip6tables=false``;
* ``--exec-opt native.cgroupdriver=cgroupfs`` (no systemd here; cgroup v1 or v2);
* its log in ``<state_dir>/dockerd.log``.

``dockerd`` then runs its own managed ``containerd`` under the exec root; the host's
containerd service is neither needed nor touched. :meth:`DockerEngine.stop` stops the daemon by
the pid it started (never by name), and the processes it left behind by their pids.

Command line: ``python -m harness.engines.docker status|start|stop``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HostError
from harness.host.cgroups import rmdir_tree
from harness.locks import exclusive
from harness.owned import live_users, mark_on_demand, on_demand
from harness.procs import (
    alive,
    descendants,
    exe_name,
    proc_start_time,
    read_pid,
    same_alive,
    signal_same,
    snapshot,
    spawn_daemon,
)

DEFAULT_STATE_DIR = Path("/var/lib/harness/docker")
DEFAULT_RUN_DIR = Path("/run/harness")
SOCKET_NAME = "docker.sock"
PIDFILE_NAME = "docker.pid"
EXEC_ROOT_NAME = "docker"
LOG_NAME = "dockerd.log"
ENGINE_OWNER = "engine-docker"  # its lock (harness.locks) and its users' ledger (harness.owned)
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _client(socket: Path, timeout: float = 120) -> Any:
    # lazy: the Docker SDK loads only when the Docker engine is used
    import docker

    return docker.DockerClient(base_url=f"unix://{socket}", timeout=int(timeout))


def ping(socket: Path, timeout: float = 2.0) -> bool:
    """True when a Docker engine answers on ``socket``."""
    if not socket.exists():
        return False
    try:
        c = _client(socket, timeout)
    except Exception:
        return False
    try:
        return bool(c.ping())
    except Exception:
        return False
    finally:
        c.close()


def _is_dockerd(pid: int) -> bool:
    return exe_name(pid).startswith("dockerd")


def cgroup_mounts() -> list[Path]:
    """Mount points of every cgroup hierarchy (each v1 controller, named ones, and cgroup2)."""
    seen: list[Path] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) >= 5 and right.split()[:1] in (["cgroup"], ["cgroup2"]):
            mnt = Path(fields[4])
            if mnt not in seen:
                seen.append(mnt)
    return seen


def cgroup_parent_dirs(parent: str) -> list[Path]:
    """Every directory of ``parent`` (a ``--cgroup-parent`` path) in every hierarchy, deepest first."""
    rel = parent.strip("/")
    if not rel or ".." in rel.split("/"):
        raise ValueError(f"refusing cgroup parent {parent!r}")
    dirs: list[Path] = []
    for mnt in cgroup_mounts():
        top = mnt / rel
        if top.is_dir():
            dirs.extend(p for p in top.rglob("*") if p.is_dir())
            dirs.append(top)
    return sorted(dirs, key=lambda p: len(p.parts), reverse=True)


def cleanup_cgroup_parent(parent: str, timeout: float = 10.0) -> list[Path]:
    """Remove a cgroup parent path Docker created, from every hierarchy, deepest first.

    Docker on cgroup v1 creates ``--cgroup-parent`` at the root of *every* controller hierarchy
    (and of the empty unified one). Call this after the containers below it are removed.
    Returns the directories removed; raises ``OSError`` if one stays busy past ``timeout``.
    """

    dirs = cgroup_parent_dirs(parent)
    rel = parent.strip("/")
    failed: list[str] = []
    for mnt in cgroup_mounts():
        if (mnt / rel).is_dir():
            failed += rmdir_tree(mnt / rel, timeout=timeout)
    if failed:
        raise OSError(f"cgroup parent {parent} not removed: {'; '.join(failed)}")
    return dirs


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class DockerEngine:
    """A Docker engine on the project's socket; ``started_by_us`` when this process started it."""

    socket: Path = DEFAULT_RUN_DIR / SOCKET_NAME
    state_dir: Path = DEFAULT_STATE_DIR
    run_dir: Path = DEFAULT_RUN_DIR
    pid: int | None = None
    started_by_us: bool = False
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def log_path(self) -> Path:
        return self.state_dir / LOG_NAME

    @property
    def pidfile(self) -> Path:
        return self.run_dir / PIDFILE_NAME

    def client(self, timeout: float = 120) -> Any:
        """A ``docker.DockerClient`` for this engine (close it when done)."""
        return _client(self.socket, timeout)

    def ping(self) -> bool:
        return ping(self.socket)

    def info(self) -> dict[str, Any]:
        c = self.client()
        try:
            return dict(c.info())
        finally:
            c.close()

    def stop(self, timeout: float = 30.0, *, force: bool = False) -> None:
        """Stop the daemon by its pid, if this process started it (or ``force``: the pid file's daemon).

        SIGTERM, then after ``timeout`` SIGKILL; processes it leaves behind (its containerd,
        shims) are stopped by their pids too. Every signal goes to a pid only while it still has
        the start time seen when it was chosen (``harness.procs.signal_same``): a pid reused by
        another process in the meantime is never signalled. Holds the engine's lock.
        """
        if not self.started_by_us and not force:
            return
        with exclusive(ENGINE_OWNER, "stop the project's Docker engine"):
            self._stop(timeout)

    def _stop(self, timeout: float) -> None:
        pid = self.pid if self.started_by_us else read_pid(self.pidfile)
        if pid is None:
            return
        if not self.started_by_us and not _is_dockerd(pid):
            return
        start = proc_start_time(pid)
        if start is None:
            return
        tree = snapshot(descendants(pid))
        signal_same(pid, start, signal.SIGTERM)
        if not self._wait_exit(pid, timeout):
            tree = sorted(set(tree) | set(snapshot(descendants(pid))))
            signal_same(pid, start, signal.SIGKILL)
            self._wait_exit(pid, 10)
        # whatever it started and did not stop (containerd, shims, container processes)
        left = [(p, t) for p, t in tree if same_alive(p, t)]
        for p, t in left:
            signal_same(p, t, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while any(same_alive(p, t) for p, t in left) and time.monotonic() < deadline:
            time.sleep(0.05)
        for p, t in left:
            signal_same(p, t, signal.SIGKILL)
        self.started_by_us = False
        self._proc = None

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout=timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


def stop_if_unused(engine: DockerEngine) -> bool:
    """The last user of an engine started on demand (by a run) stops it; an engine started by hand
    (``start``, ``doctor --fix``) or still used by another run stays. True if stopped."""
    with exclusive(ENGINE_OWNER, "stop the project's Docker engine"):
        pid = engine.pid if engine.pid is not None else read_pid(engine.pidfile)
        if live_users(ENGINE_OWNER) or not (engine.started_by_us or on_demand(ENGINE_OWNER, pid)):
            return False
        engine.pid = pid
        engine._stop(timeout=30)
        return True


def dockerd_command(dockerd: str, state_dir: Path, run_dir: Path, socket: Path) -> list[str]:
    return [
        dockerd,
        "--config-file",
        str(state_dir / "daemon.json"),
        "--data-root",
        str(state_dir / "data"),
        "--exec-root",
        str(run_dir / EXEC_ROOT_NAME),
        "--pidfile",
        str(run_dir / PIDFILE_NAME),
        "-H",
        f"unix://{socket}",
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-masq=false",
        "--userland-proxy=false",
        "--exec-opt",
        "native.cgroupdriver=cgroupfs",
        "--log-level=info",
    ]


def ensure_docker(
    state_dir: Path = DEFAULT_STATE_DIR,
    *,
    run_dir: Path = DEFAULT_RUN_DIR,
    timeout: float = 60.0,
    dockerd: str = "dockerd",
    on_demand_start: bool = False,
) -> DockerEngine:
    """The project's Docker engine, started if its socket does not answer (under the engine's lock:
    two callers never start two daemons).

    Raises :class:`HostError` (with the tail of the daemon's log) if it cannot be started.
    """
    if ping(Path(run_dir) / SOCKET_NAME):
        return _ensure_docker(state_dir, run_dir, timeout, dockerd, on_demand_start)
    with exclusive(ENGINE_OWNER, "start the project's Docker engine"):
        return _ensure_docker(state_dir, run_dir, timeout, dockerd, on_demand_start)


def _ensure_docker(
    state_dir: Path, run_dir: Path, timeout: float, dockerd: str, on_demand_start: bool
) -> DockerEngine:
    state_dir, run_dir = Path(state_dir), Path(run_dir)
    socket = run_dir / SOCKET_NAME
    engine = DockerEngine(socket=socket, state_dir=state_dir, run_dir=run_dir)
    if ping(socket):
        engine.pid = read_pid(engine.pidfile)
        return engine

    # a daemon of ours that is still starting (its pid file names a live dockerd): wait for it
    old = read_pid(engine.pidfile)
    if old is not None and _is_dockerd(old) and alive(old):
        if _wait_ping(socket, timeout, None):
            engine.pid = old
            return engine
        raise HostError(
            f"dockerd pid {old} (pid file {engine.pidfile}) runs but does not answer on {socket} "
            f"within {timeout:g}s; log {engine.log_path}:\n{log_tail(engine.log_path)}"
        )

    exe = shutil.which(dockerd, path=SYSTEM_PATH + ":" + os.environ.get("PATH", ""))
    if exe is None:
        raise HostError("dockerd not found: install the Debian package docker.io (scripts/setup.sh)")
    for d in (state_dir, state_dir / "data", run_dir):
        d.mkdir(parents=True, exist_ok=True)
    (state_dir / "daemon.json").write_text("{}\n")
    if old is not None:
        engine.pidfile.unlink(missing_ok=True)  # stale: that pid is not a dockerd any more

    cmd = dockerd_command(exe, state_dir, run_dir, socket)
    env = dict(os.environ)
    env["PATH"] = SYSTEM_PATH + ":" + env.get("PATH", "")
    proc = spawn_daemon(cmd, engine.log_path, env=env)
    engine.pid = proc.pid
    engine._proc = proc
    engine.started_by_us = True
    if _wait_ping(socket, timeout, proc):
        if on_demand_start:
            mark_on_demand(ENGINE_OWNER, proc.pid, proc_start_time(proc.pid))
        return engine
    rc = proc.poll()
    if rc is None:
        engine.stop(timeout=10)
        why = f"did not answer on {socket} within {timeout:g}s (stopped it)"
    else:
        engine.started_by_us = False
        why = f"exited with code {rc}"
    raise HostError(f"dockerd {why}; log {engine.log_path}:\n{log_tail(engine.log_path)}")


def _wait_ping(socket: Path, timeout: float, proc: subprocess.Popen[bytes] | None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ping(socket):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def docker_status(state_dir: Path = DEFAULT_STATE_DIR, *, run_dir: Path = DEFAULT_RUN_DIR) -> dict[str, Any]:
    """What the project's Docker engine is doing (never starts it)."""
    socket = Path(run_dir) / SOCKET_NAME
    pidfile = Path(run_dir) / PIDFILE_NAME
    pid = read_pid(pidfile)
    status: dict[str, Any] = {
        "socket": str(socket),
        "answering": ping(socket),
        "pid": pid,
        "pid_alive": bool(pid and alive(pid) and _is_dockerd(pid)),
        "state_dir": str(state_dir),
        "log": str(Path(state_dir) / LOG_NAME),
    }
    if status["answering"]:
        c = _client(socket, 10)
        try:
            info = c.info()
            version = c.version()
        finally:
            c.close()
        status.update(
            {
                "server_version": version.get("Version"),
                "api_version": version.get("ApiVersion"),
                "cgroup_driver": info.get("CgroupDriver"),
                "cgroup_version": info.get("CgroupVersion"),
                "storage_driver": info.get("Driver"),
                "docker_root_dir": info.get("DockerRootDir"),
                "containers": info.get("Containers"),
                "containers_running": info.get("ContainersRunning"),
                "images": info.get("Images"),
                "warnings": info.get("Warnings") or [],
            }
        )
    return status


def format_status(status: dict[str, Any]) -> str:
    return "\n".join(f"{k:<20} {v}" for k, v in status.items())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.engines.docker", description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["status", "start", "stop"])
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    p.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    p.add_argument("--json", action="store_true", help="status as JSON")
    a = p.parse_args(argv)
    try:
        if a.action == "start":
            e = ensure_docker(a.state_dir, run_dir=a.run_dir)
            print(
                f"docker engine on {e.socket} pid {e.pid} ({'started' if e.started_by_us else 'already running'})"
            )
        elif a.action == "stop":
            DockerEngine(socket=a.run_dir / SOCKET_NAME, state_dir=a.state_dir, run_dir=a.run_dir).stop(
                force=True
            )
        st = docker_status(a.state_dir, run_dir=a.run_dir)
        print(json.dumps(st, indent=2) if a.json else format_status(st))
    except HostError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
