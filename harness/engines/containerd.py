"""containerd instances owned by the project: Debian's ``containerd`` with its own root, state and socket.

Two users share this module:

* the ``containerd`` backend (harness.launch.containerd) runs workloads through
  :func:`default_instance` (root ``/var/lib/harness/containerd``, state and socket under
  ``/run/harness/containerd/``);
* the local Kubernetes cluster (harness.cluster) runs its own instance, e.g.
  ``ContainerdInstance.under(Path("/var/lib/harness/cluster/containerd"),
  Path("/run/harness/cluster/containerd"))``, whose CRI plugin serves the kubelet.

:func:`write_config` writes a ``version = 2`` config.toml: the CRI plugin stays enabled (sandbox
image = the harness pause image, runc v2 with cgroupfs, overlayfs, CNI from ``/usr/lib/cni`` and
a conf dir under the instance state), ``restrict_oom_score_adj = true`` exactly when this host
cannot write a negative ``oom_score_adj``, and nothing listens on TCP except the CRI streaming
server on 127.0.0.1 (debug and metrics addresses are empty). runc keeps its state under the
instance (``<state>/runc``), not in the shared ``/run/containerd/runc``.

:func:`ensure_containerd` starts ``/usr/bin/containerd --config ...`` only when the instance's
socket does not answer (``ctr --address SOCKET version``), in its own session, with a log and a
pid file. :func:`stop` stops it by that pid and, by their pids, the ``containerd-shim-runc-v2``
processes whose command line names this instance's socket (and the container processes below
them). Other containerd daemons on the host (the host's own, Docker's) are never touched: a pid
is only signalled when its command line names this instance's config or socket.

Command line: ``python -m harness.engines.containerd status|start|stop [--root DIR --run-dir DIR]``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
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

from harness.errors import HarnessError, HostError
from harness.host.probes import probe_negative_oom_score_adj
from harness.images import PAUSE_IMAGE
from harness.locks import exclusive
from harness.owned import live_users, mark_on_demand, on_demand
from harness.procs import (
    alive,
    cmdline,
    descendants,
    exe_name,
    proc_start_time,
    read_pid,
    same_alive,
    signal_same,
    snapshot,
    spawn_daemon,
)

DEFAULT_ROOT = Path("/var/lib/harness/containerd")
DEFAULT_RUN_DIR = Path("/run/harness/containerd")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SOCKET_MAX = 107  # sun_path is 108 bytes with the terminating NUL
SHIM_PREFIX = "containerd-shim"
# snapshotters that cannot work here (no aufs/btrfs/zfs/devmapper pool) and only add log noise
DISABLED_PLUGINS = (
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.snapshotter.v1.devmapper",
)


def which(name: str) -> str | None:
    return shutil.which(name, path=SYSTEM_PATH + ":" + os.environ.get("PATH", ""))


@dataclass
class ContainerdInstance:
    """Where one project-owned containerd keeps everything. No default paths: see :meth:`under`."""

    root: Path  # persistent data: content, snapshots, metadata
    state: Path  # runtime state (bundles, runc state, CNI conf dir)
    socket: Path  # gRPC address (ttrpc: the same path + ".ttrpc")
    config: Path | None = None  # default: <state>/config.toml
    pidfile: Path | None = None  # default: <state>/containerd.pid
    log: Path | None = None  # default: <root>/containerd.log
    sandbox_image: str = ""  # default: the harness pause image (harness.images.PAUSE_IMAGE)
    cni_bin_dir: Path = Path("/usr/lib/cni")
    cni_conf_dir: Path | None = None  # default: <state>/cni/net.d
    cri: bool = True  # keep the CRI plugin (the cluster's kubelet talks to it)
    restrict_oom_score_adj: bool | None = None  # None: probe the host
    runc: str | None = None  # default: shutil.which("runc")
    containerd: str | None = None  # default: shutil.which("containerd")
    extra_toml: str = ""  # appended verbatim to config.toml (more plugin sections)
    # runc's systemd cgroup driver (SystemdCgroup = true), for a kubelet with cgroupDriver: systemd
    systemd_cgroup: bool = False
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the daemon

    def __post_init__(self) -> None:
        self.root, self.state, self.socket = Path(self.root), Path(self.state), Path(self.socket)
        if not self.root.is_absolute() or not self.state.is_absolute() or not self.socket.is_absolute():
            raise HarnessError(
                f"containerd instance paths must be absolute: root={self.root} state={self.state} "
                f"socket={self.socket}"
            )
        if len(str(self.socket)) + len(".ttrpc") > SOCKET_MAX:
            raise HarnessError(
                f"containerd socket path {self.socket} is too long for a unix socket "
                f"(with .ttrpc it must stay under {SOCKET_MAX} bytes)"
            )
        self.config = Path(self.config) if self.config else self.state / "config.toml"
        self.pidfile = Path(self.pidfile) if self.pidfile else self.state / "containerd.pid"
        self.log = Path(self.log) if self.log else self.root / "containerd.log"
        self.cni_conf_dir = Path(self.cni_conf_dir) if self.cni_conf_dir else self.state / "cni" / "net.d"
        if not self.sandbox_image:
            self.sandbox_image = PAUSE_IMAGE

    @classmethod
    def under(cls, root: Path, run_dir: Path, **kw: Any) -> ContainerdInstance:
        """An instance with its data in ``root`` and its state and socket in ``run_dir``."""
        run_dir = Path(run_dir)
        return cls(root=Path(root), state=run_dir / "state", socket=run_dir / "containerd.sock", **kw)

    @property
    def address(self) -> str:
        return str(self.socket)

    @property
    def runc_root(self) -> Path:
        """runc's state directory for this instance (runc adds ``/<namespace>``)."""
        return self.state / "runc"

    @property
    def config_path(self) -> Path:
        assert self.config is not None
        return self.config

    @property
    def pidfile_path(self) -> Path:
        assert self.pidfile is not None
        return self.pidfile

    @property
    def log_path(self) -> Path:
        assert self.log is not None
        return self.log


def default_instance() -> ContainerdInstance:
    """The instance of the harness's ``containerd`` backend."""
    return ContainerdInstance.under(DEFAULT_ROOT, DEFAULT_RUN_DIR)


# --------------------------------------------------------------------------- config


def _q(s: object) -> str:
    """A TOML basic string (JSON string escapes are valid TOML escapes)."""
    return json.dumps(str(s))


def render_config(inst: ContainerdInstance, *, restrict_oom_score_adj: bool, runc: str) -> str:
    """The config.toml (version 2) of ``inst``; pure (no probing, no file access)."""
    cri = "io.containerd.grpc.v1.cri"
    disabled = list(DISABLED_PLUGINS) + ([] if inst.cri else [cri])
    lines = [
        "# written by harness.engines.containerd; regenerated at every start",
        "version = 2",
        f"root = {_q(inst.root)}",
        f"state = {_q(inst.state)}",
        "oom_score = 0",
        "disabled_plugins = [" + ", ".join(_q(p) for p in disabled) + "]",
        "",
        "[grpc]",
        f"  address = {_q(inst.socket)}",
        '  tcp_address = ""',
        "",
        "[ttrpc]",
        f"  address = {_q(str(inst.socket) + '.ttrpc')}",
        "",
        "[debug]",
        '  address = ""',
        '  level = "info"',
        "",
        "[metrics]",
        '  address = ""',
        "",
        '[plugins."io.containerd.internal.v1.opt"]',
        f"  path = {_q(inst.root / 'opt')}",
        "",
        '[plugins."io.containerd.snapshotter.v1.overlayfs"]',
        '  root_path = ""',
    ]
    if inst.cri:
        p = f'[plugins."{cri}"'
        lines += [
            "",
            f"{p}]",
            f"  sandbox_image = {_q(inst.sandbox_image)}",
            f"  restrict_oom_score_adj = {'true' if restrict_oom_score_adj else 'false'}",
            "  disable_tcp_service = true",
            '  stream_server_address = "127.0.0.1"',
            '  stream_server_port = "0"',
            "  enable_selinux = false",
            "  disable_apparmor = true",
            "  systemd_cgroup = false",
            "  disable_hugetlb_controller = true",
            "  tolerate_missing_hugetlb_controller = true",
            "",
            f"{p}.containerd]",
            '  snapshotter = "overlayfs"',
            '  default_runtime_name = "runc"',
            "",
            f"{p}.containerd.runtimes.runc]",
            '  runtime_type = "io.containerd.runc.v2"',
            "",
            f"{p}.containerd.runtimes.runc.options]",
            f"  SystemdCgroup = {'true' if inst.systemd_cgroup else 'false'}",
            f"  BinaryName = {_q(runc)}",
            f"  Root = {_q(inst.runc_root)}",
            "",
            f"{p}.cni]",
            f"  bin_dir = {_q(inst.cni_bin_dir)}",
            f"  conf_dir = {_q(inst.cni_conf_dir)}",
            "  max_conf_num = 1",
        ]
    if inst.extra_toml:
        lines += ["", inst.extra_toml.rstrip()]
    return "\n".join(lines) + "\n"


def write_config(inst: ContainerdInstance) -> Path:
    """Write ``inst.config`` (probing the host for negative oom_score_adj); returns its path."""
    runc = inst.runc or which("runc")
    if runc is None:
        raise HostError("runc not found: install the Debian package runc (scripts/setup.sh)")
    restrict = inst.restrict_oom_score_adj
    if restrict is None:
        restrict = not probe_negative_oom_score_adj()
    text = render_config(inst, restrict_oom_score_adj=restrict, runc=runc)
    path = inst.config_path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- ctr


def ctr_binary() -> str:
    exe = which("ctr")
    if exe is None:
        raise HostError("ctr not found: install the Debian package containerd (scripts/setup.sh)")
    return exe


def ctr(
    inst: ContainerdInstance | str | Path,
    *args: str,
    namespace: str | None = None,
    timeout: float = 60,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``ctr --address SOCKET [--namespace NS] ARGS``; raises HarnessError on failure if ``check``."""
    address = inst.address if isinstance(inst, ContainerdInstance) else str(inst)
    cmd = [ctr_binary(), "--address", address]
    if namespace:
        cmd += ["--namespace", namespace]
    cmd += list(args)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise HostError(f"{' '.join(cmd[3:])} on {address} did not finish within {timeout:g}s") from None
    if check and r.returncode != 0:
        raise HostError(
            f"ctr {' '.join(cmd[3:])} failed (exit {r.returncode}) on {address}: "
            f"{(r.stderr or r.stdout).strip()[-1000:]}"
        )
    return r


def answers(inst: ContainerdInstance, timeout: float = 5.0) -> bool:
    """True when a containerd answers on the instance's socket."""
    if not inst.socket.exists():
        return False
    try:
        return ctr(inst, "version", timeout=timeout, check=False).returncode == 0
    except HarnessError:
        return False


def server_version(inst: ContainerdInstance) -> str | None:
    r = ctr(inst, "version", timeout=10, check=False)
    if r.returncode != 0:
        return None
    server = r.stdout.partition("Server:")[2]
    for line in server.splitlines():
        k, _, v = line.strip().partition(":")
        if k == "Version":
            return v.strip()
    return None


# --------------------------------------------------------------------------- processes


def is_instance_daemon(inst: ContainerdInstance, pid: int) -> bool:
    """Is ``pid`` a containerd started with this instance's config file?"""
    if exe_name(pid) != "containerd":
        return False
    args = cmdline(pid)
    cfg = str(inst.config_path)
    return any(a == cfg or a == f"--config={cfg}" for a in args)


def instance_shims(inst: ContainerdInstance) -> list[int]:
    """Pids of the runtime shims serving this instance (their ``-address`` is its socket)."""
    out = []
    sock = str(inst.socket)
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        pid = int(d.name)
        if not exe_name(pid).startswith(SHIM_PREFIX):
            continue
        args = cmdline(pid)
        for i, a in enumerate(args):
            if (a in ("-address", "--address") and i + 1 < len(args) and args[i + 1] == sock) or a in (
                f"-address={sock}",
                f"--address={sock}",
            ):
                out.append(pid)
                break
    return sorted(out)


def _signal_and_wait(pids: list[int], timeout: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout``, each only to a pid that still has the start time it
    had when chosen (a reused pid is never signalled)."""
    procs = snapshot(pids)
    for p, t in procs:
        signal_same(p, t, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(same_alive(p, t) for p, t in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    for p, t in procs:
        signal_same(p, t, signal.SIGKILL)


def engine_owner(inst: ContainerdInstance) -> str:
    """Name of the instance's lock (harness.locks) and users' ledger (harness.owned)."""
    return "engine-containerd-" + hashlib.sha1(str(inst.socket).encode()).hexdigest()[:10]


def _mounts_under(*dirs: Path) -> list[str]:
    prefixes = [str(d).rstrip("/") + "/" for d in dirs]
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mnt = line.split()[4].replace("\\040", " ")
        if any(mnt.startswith(p) for p in prefixes):
            out.append(mnt)
    return out


def unmount_under(*dirs: Path) -> list[str]:
    """Unmount every mount below ``dirs`` (deepest first, lazily if busy); returns what stayed."""
    failed = []
    for mnt in sorted(set(_mounts_under(*dirs)), key=len, reverse=True):
        r = subprocess.run(["umount", mnt], capture_output=True, text=True)
        if r.returncode != 0:
            r = subprocess.run(["umount", "-l", mnt], capture_output=True, text=True)
            if r.returncode != 0:
                failed.append(f"{mnt}: {r.stderr.strip()}")
    return failed


# --------------------------------------------------------------------------- daemon


@dataclass
class ContainerdHandle:
    """A running instance; ``started_by_us`` when this process started it."""

    instance: ContainerdInstance
    pid: int | None = None
    started_by_us: bool = False
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return self.instance.address

    def ctr(self, *args: str, namespace: str | None = None, timeout: float = 60) -> str:
        return ctr(self.instance, *args, namespace=namespace, timeout=timeout).stdout

    def stop(self, timeout: float = 20.0) -> list[str]:
        """Stop the daemon if this process started it (see :func:`stop` for everything)."""
        if not self.started_by_us:
            return []
        failed = stop(self.instance, timeout=timeout, proc=self._proc)
        self.started_by_us = False
        self._proc = None
        return failed


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def ensure_containerd(
    inst: ContainerdInstance, *, timeout: float = 30.0, on_demand_start: bool = False
) -> ContainerdHandle:
    """The instance, started if its socket does not answer (idempotent; under the instance's lock,
    so two callers never start two daemons; ``on_demand_start``: a run starts it for itself, and
    its last user stops it, see :func:`stop_if_unused`).

    Raises :class:`HostError` quoting the tail of the daemon's log if it cannot be started.
    """
    if answers(inst):
        return ContainerdHandle(inst, pid=read_pid(inst.pidfile_path))
    with exclusive(engine_owner(inst), f"start containerd {inst.socket}"):
        h = _ensure(inst, timeout)
        if h.started_by_us and on_demand_start and h.pid is not None:
            mark_on_demand(engine_owner(inst), h.pid, proc_start_time(h.pid))
        return h


def stop_if_unused(h: ContainerdHandle) -> list[str]:
    """The last user of an instance started on demand (by a run) stops it; an instance started by
    hand or still used by another run stays. Returns what stayed (empty when not stopped)."""
    owner = engine_owner(h.instance)
    with exclusive(owner, f"stop containerd {h.instance.socket}"):
        pid = h.pid if h.pid is not None else read_pid(h.instance.pidfile_path)
        if live_users(owner) or not (h.started_by_us or on_demand(owner, pid)):
            return []
        failed = _stop(h.instance, 20.0, h._proc if h.started_by_us else None)
        h.started_by_us = False
        h._proc = None
        return failed


def _ensure(inst: ContainerdInstance, timeout: float) -> ContainerdHandle:
    h = ContainerdHandle(inst)
    if answers(inst):
        h.pid = read_pid(inst.pidfile_path)
        return h
    old = read_pid(inst.pidfile_path)
    if old is not None and alive(old) and is_instance_daemon(inst, old):
        # ours, still starting (or stuck): wait for it rather than start a second one
        if _wait_answer(inst, timeout, None):
            h.pid = old
            return h
        raise HostError(
            f"containerd pid {old} ({inst.pidfile_path}) runs but does not answer on {inst.socket} "
            f"within {timeout:g}s; log {inst.log_path}:\n{log_tail(inst.log_path)}"
        )
    exe = inst.containerd or which("containerd")
    if exe is None:
        raise HostError("containerd not found: install the Debian package containerd (scripts/setup.sh)")
    ctr_binary()
    for d in (inst.root, inst.state, inst.socket.parent, inst.log_path.parent, inst.cni_conf_dir):
        assert d is not None
        d.mkdir(parents=True, exist_ok=True)
    write_config(inst)
    inst.pidfile_path.unlink(missing_ok=True)
    inst.socket.unlink(missing_ok=True)  # a stale socket of a daemon that died
    cmd = [exe, "--config", str(inst.config_path)]
    env = dict(os.environ)
    env["PATH"] = SYSTEM_PATH + ":" + env.get("PATH", "")
    env.update(inst.env)
    proc = spawn_daemon(cmd, inst.log_path, env=env)
    inst.pidfile_path.write_text(f"{proc.pid}\n")
    h.pid, h._proc, h.started_by_us = proc.pid, proc, True
    if _wait_answer(inst, timeout, proc):
        return h
    rc = proc.poll()
    if rc is None:
        h.stop(timeout=10)
        why = f"did not answer on {inst.socket} within {timeout:g}s (stopped it)"
    else:
        h.started_by_us = False
        inst.pidfile_path.unlink(missing_ok=True)
        why = f"exited with code {rc}"
    raise HostError(f"containerd {why}; log {inst.log_path}:\n{log_tail(inst.log_path)}")


def _wait_answer(inst: ContainerdInstance, timeout: float, proc: subprocess.Popen[bytes] | None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if inst.socket.exists() and answers(inst, timeout=2):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def stop(
    inst: ContainerdInstance, *, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> list[str]:
    """Stop the instance's daemon (pid file), its shims and their containers, all by pid.

    SIGTERM, then SIGKILL after ``timeout``. The pid is only signalled when it is a containerd
    running with this instance's config; shims only when their ``-address`` is this socket.
    Mounts left below the instance's root and state are unmounted. Returns what stayed.
    """
    with exclusive(engine_owner(inst), f"stop containerd {inst.socket}"):
        return _stop(inst, timeout, proc)


def _stop(inst: ContainerdInstance, timeout: float, proc: subprocess.Popen[bytes] | None) -> list[str]:
    pid = proc.pid if proc is not None else read_pid(inst.pidfile_path)
    start = proc_start_time(pid) if pid is not None else None
    if pid is not None and start is not None and (proc is not None or is_instance_daemon(inst, pid)):
        signal_same(pid, start, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while same_alive(pid, start) and time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                break
            time.sleep(0.05)
        signal_same(pid, start, signal.SIGKILL)  # re-checked: only if it is still that daemon
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
    # shims outlive the daemon by design; stop them and the containers below them
    for shim in instance_shims(inst):
        _signal_and_wait([*reversed(descendants(shim)), shim], timeout=5)
    failed = []
    if pid is not None and alive(pid) and (proc is not None or is_instance_daemon(inst, pid)):
        failed.append(f"containerd pid {pid} did not exit")
    failed += [f"shim pid {p} did not exit" for p in instance_shims(inst) if alive(p)]
    failed += unmount_under(inst.root, inst.state)
    if not failed:
        inst.pidfile_path.unlink(missing_ok=True)
        inst.socket.unlink(missing_ok=True)
        Path(str(inst.socket) + ".ttrpc").unlink(missing_ok=True)
    return failed


def status(inst: ContainerdInstance) -> dict[str, Any]:
    """What the instance is doing (never starts it)."""
    pid = read_pid(inst.pidfile_path)
    st: dict[str, Any] = {
        "socket": str(inst.socket),
        "answering": answers(inst),
        "pid": pid,
        "pid_alive": bool(pid and alive(pid) and is_instance_daemon(inst, pid)),
        "root": str(inst.root),
        "state": str(inst.state),
        "config": str(inst.config_path),
        "log": str(inst.log_path),
        "shims": instance_shims(inst),
    }
    if st["answering"]:
        st["server_version"] = server_version(inst)
        nss = ctr(inst, "namespaces", "ls", "-q", check=False).stdout.split()
        st["namespaces"] = {
            ns: {
                "containers": len(
                    ctr(inst, "containers", "ls", "-q", namespace=ns, check=False).stdout.split()
                ),
                "images": len(ctr(inst, "images", "ls", "-q", namespace=ns, check=False).stdout.split()),
            }
            for ns in nss
        }
    return st


def format_status(st: dict[str, Any]) -> str:
    return "\n".join(f"{k:<16} {v}" for k, v in st.items())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m harness.engines.containerd",
        description="Start, stop or inspect a project-owned containerd (default: the harness backend's).",
    )
    p.add_argument("action", choices=["status", "start", "stop"])
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"data root (default {DEFAULT_ROOT})")
    p.add_argument(
        "--run-dir", type=Path, default=DEFAULT_RUN_DIR, help=f"state and socket (default {DEFAULT_RUN_DIR})"
    )
    p.add_argument("--json", action="store_true", help="status as JSON")
    a = p.parse_args(argv)
    try:
        inst = ContainerdInstance.under(a.root, a.run_dir)
        if a.action == "start":
            h = ensure_containerd(inst)
            print(
                f"containerd on {inst.socket} pid {h.pid} ({'started' if h.started_by_us else 'already running'})"
            )
        elif a.action == "stop":
            failed = stop(inst)
            if failed:
                raise HostError("could not stop: " + "; ".join(failed))
        st = status(inst)
        with contextlib.suppress(BrokenPipeError):
            print(json.dumps(st, indent=2) if a.json else format_status(st))
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
