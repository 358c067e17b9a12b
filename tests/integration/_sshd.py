"""Loopback "lab hosts": real OpenSSH servers on 127.0.0.2, 127.0.0.3, ... with their own keys.

Each host is ``/usr/sbin/sshd -D -e -f <its config>`` listening on ``<address>:<free port>``, with
its own ed25519 host key, its own ``authorized_keys`` (a test can make a host refuse the client's
key by putting another key there), root login by key only. They share this machine's kernel and
filesystem, which is why the playbooks give every inventory host its own directories.

Everything is stopped by pid: the listener this module started, and for ``drop_connections`` the
per-connection sshd processes that are its children.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SSHD = "/usr/sbin/sshd"


def keygen(path: Path, comment: str = "harness-test") -> Path:
    """An ed25519 key pair at ``path`` and ``path.pub`` (no passphrase)."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(x) for x in (task / "children").read_text().split()]
    return out


@dataclass
class SshdHost:
    name: str
    address: str
    port: int
    dir: Path
    host_key: Path
    authorized_keys: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.dir / "sshd.log"

    def known_hosts_line(self) -> str:
        kind, b64 = self.host_key.with_suffix(".pub").read_text().split()[:2]
        name = self.address if self.port == 22 else f"[{self.address}]:{self.port}"
        return f"{name} {kind} {b64}\n"

    def start(self) -> None:
        cfg = self.dir / "sshd_config"
        cfg.write_text(
            "\n".join(
                [
                    f"ListenAddress {self.address}:{self.port}",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "MaxStartups 100:30:200",
                    "MaxSessions 100",
                    "Subsystem sftp internal-sftp",
                    "LogLevel INFO",
                    "",
                ]
            )
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        log = open(self.log, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"sshd for {self.name} exited {self.proc.returncode}: {self.log.read_text()[-2000:]}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.address, self.port), timeout=0.5),
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd for {self.name} is not listening on {self.address}:{self.port}")
            time.sleep(0.05)

    def connection_pids(self) -> list[int]:
        """The per-connection sshd processes (children of the listener we started)."""
        return children(self.proc.pid) if self.proc and self.proc.poll() is None else []

    def drop_connections(self) -> list[int]:
        """Kill every open connection of this host by pid (server side), as a network drop would."""
        pids = self.connection_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def stop(self) -> None:
        if self.proc is None:
            return
        for pid in self.connection_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None


@dataclass
class LoopbackLab:
    """Several sshd hosts, a client key they accept and a known_hosts file with their keys."""

    base: Path
    hosts: dict[str, SshdHost] = field(default_factory=dict)

    @property
    def client_key(self) -> Path:
        return self.base / "client_ed25519"

    @property
    def other_key(self) -> Path:
        return self.base / "other_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.base / "known_hosts"

    @classmethod
    def start(cls, base: Path, names_addresses: list[tuple[str, str]]) -> LoopbackLab:
        base.mkdir(parents=True, exist_ok=True)
        lab = cls(base)
        keygen(lab.client_key, "harness-test-client")
        keygen(lab.other_key, "harness-test-other")
        try:
            for name, addr in names_addresses:
                d = base / name
                d.mkdir()
                ak = d / "authorized_keys"
                ak.write_text(lab.client_key.with_suffix(".pub").read_text())
                h = SshdHost(name, addr, free_port(addr), d, keygen(d / "ssh_host_ed25519_key"), ak)
                h.start()
                lab.hosts[name] = h
            lab.known_hosts.write_text("".join(h.known_hosts_line() for h in lab.hosts.values()))
        except BaseException:
            lab.stop()
            raise
        return lab

    def refuse_client_key(self, name: str) -> None:
        """Make ``name`` accept only the *other* key, so it refuses the client's."""
        self.hosts[name].authorized_keys.write_text(self.other_key.with_suffix(".pub").read_text())

    def inventory(
        self,
        path: Path,
        names: list[str] | None = None,
        *,
        known_hosts: Path | None = None,
        defaults_vars: dict[str, Any] | None = None,
        host_vars: dict[str, dict[str, Any]] | None = None,
        python: str = "controller",
        extra: dict[str, Any] | None = None,
    ) -> Path:
        """Write an inventory YAML for these hosts and return its path."""
        doc: dict[str, Any] = {
            "apiVersion": "harness/v1",
            "kind": "Inventory",
            "defaults": {
                "user": "root",
                "keyFile": str(self.client_key),
                "knownHosts": str(known_hosts or self.known_hosts),
                "connectTimeout": "10s",
                "python": python,
                "vars": dict(defaults_vars or {}),
            },
            "hosts": {},
        }
        for n in names or list(self.hosts):
            h = self.hosts[n]
            doc["hosts"][n] = {
                "address": h.address,
                "port": h.port,
                "vars": dict((host_vars or {}).get(n, {})),
            }
        doc.update(extra or {})
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def stop(self) -> None:
        for h in self.hosts.values():
            h.stop()
