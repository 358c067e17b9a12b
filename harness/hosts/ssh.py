"""Lab hosts over SSH (paramiko): run commands, move files, stream a remote agent's output.

Security and failure behaviour:

* **Host keys are checked by default** against the known_hosts file the inventory names (never
  the user's ``~/.ssh/known_hosts`` implicitly). An unknown host is a clear error giving the key
  type and SHA256 fingerprint and how to add it; a changed key is refused. Only
  ``hostKeyPolicy: accept-new`` (asked for explicitly) records an unknown key, and it then appends
  it to that known_hosts file, like OpenSSH's ``StrictHostKeyChecking=accept-new``.
* **Key authentication only**: the key file the inventory names; no agent, no ``~/.ssh/id_*``
  discovery, no passwords. A refused key names the key's fingerprint and the user.
* **Timeouts** on the TCP connect, the banner, authentication and every command.
* **Reconnect once on a dropped connection**: an operation that finds the connection gone makes
  one new connection (shared by every thread using this host) and retries when it is safe to
  (commands marked idempotent, file transfers); streams resume from their own offset (see
  :mod:`harness.hosts.remote`). Each loss and reconnection is recorded in :attr:`SSHHost.events`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shlex
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import paramiko

from harness.errors import HostError

HostKeyPolicy = Literal["reject", "accept-new"]

# paramiko's transport thread logs a failed handshake with its traceback at ERROR; with no handler
# configured, Python's last-resort handler would print that to stderr beside the harness's own
# one-line error (ConnectError, above). A NullHandler keeps it off stderr and still lets a user's
# own logging configuration (handlers on the root logger) receive it.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

# what a dropped or dead connection raises inside paramiko and the socket layer
_DROPPED: tuple[type[BaseException], ...] = (EOFError, OSError, paramiko.SSHException)


@dataclass(frozen=True)
class SSHTarget:
    """Where and how to reach one lab host (resolved from the inventory)."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    key_file: Path | None = None
    known_hosts: Path | None = None  # required to connect: never ~/.ssh/known_hosts implicitly
    host_key_policy: HostKeyPolicy = "reject"
    connect_timeout: float = 10.0
    python: str = "/usr/bin/python3"

    @property
    def label(self) -> str:
        return f"{self.name} ({self.user}@{self.address}:{self.port})"

    def openssh_options(self) -> list[str]:
        """OpenSSH's ``-o`` options for this host: only its known_hosts and its key, no prompts, its
        host key policy, its connect timeout (Ansible's ssh and ``harness lab ssh``)."""
        strict = "accept-new" if self.host_key_policy == "accept-new" else "yes"
        return [
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",
            "-o", f"StrictHostKeyChecking={strict}",
            "-o", f"ConnectTimeout={int(max(1, self.connect_timeout))}",
        ]  # fmt: skip

    @property
    def known_hosts_name(self) -> str:
        """How OpenSSH and paramiko name this host in known_hosts."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


class SSHError(HostError):
    """A lab host could not be reached or used; the message names the host."""

    def __init__(self, target: SSHTarget, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"{target.label}: {reason}")


class UnknownHostKeyError(SSHError):
    pass


class HostKeyMismatchError(SSHError):
    pass


class AuthenticationError(SSHError):
    pass


class ConnectError(SSHError):
    pass


class ConnectionLost(SSHError):
    pass


class RemoteCommandError(SSHError):
    def __init__(self, target: SSHTarget, command: str, result: CommandResult) -> None:
        self.result = result
        detail = (result.stderr or result.stdout).strip().splitlines()
        tail = detail[-1] if detail else "no output"
        super().__init__(target, f"{command!r} exited {result.rc}: {tail}")


@dataclass
class CommandResult:
    rc: int
    stdout: str
    stderr: str


def fingerprint(key: paramiko.PKey) -> str:
    """``ssh-ed25519 SHA256:...`` as ``ssh-keygen -l`` prints it."""
    return f"{key.get_name()} {key.fingerprint}"


class _Policy(paramiko.MissingHostKeyPolicy):
    """Unknown host key: refuse with a clear error, or (accept-new) record it in our known_hosts."""

    def __init__(self, target: SSHTarget, known_hosts: Path) -> None:
        self.target = target
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        t = self.target
        if t.host_key_policy == "accept-new":
            client.get_host_keys().add(hostname, key.get_name(), key)
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            with open(self.known_hosts, "a") as f:
                f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            return
        keyscan = f"ssh-keyscan -p {t.port} {t.address}" if t.port != 22 else f"ssh-keyscan {t.address}"
        raise UnknownHostKeyError(
            t,
            f"unknown host key {fingerprint(key)}: {hostname} is not in {self.known_hosts}; "
            f"check the fingerprint and add it ({keyscan} >> {self.known_hosts}), "
            "or set hostKeyPolicy: accept-new for this host in the inventory",
        )


@dataclass
class _Conn:
    client: paramiko.SSHClient
    generation: int
    sftp: paramiko.SFTPClient | None = None


@dataclass
class SSHHost:
    """One lab host. Thread-safe: threads share one connection and one reconnection."""

    target: SSHTarget
    keepalive_s: int = 15
    events: list[dict[str, Any]] = field(default_factory=list)
    reconnects: int = 0
    _conn: _Conn | None = field(default=None, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    # ------------------------------------------------------------------ connection

    def connect(self) -> SSHHost:
        with self._lock:
            if self._conn is None or not self._active(self._conn):
                self._conn = _Conn(self._open(), (self._conn.generation + 1) if self._conn else 1)
        return self

    def __enter__(self) -> SSHHost:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            if conn.sftp is not None:
                with contextlib.suppress(Exception):
                    conn.sftp.close()
            conn.client.close()

    @staticmethod
    def _active(conn: _Conn) -> bool:
        tr = conn.client.get_transport()
        return tr is not None and tr.is_active()

    def _open(self) -> paramiko.SSHClient:
        t = self.target
        if t.key_file is None:
            raise AuthenticationError(t, "no key file configured (keyFile in the inventory)")
        key_file = Path(os.path.expanduser(str(t.key_file)))
        if not key_file.is_file():
            raise AuthenticationError(t, f"key file {key_file} does not exist")
        try:
            pkey = paramiko.PKey.from_path(key_file)
        except (paramiko.SSHException, OSError, ValueError) as exc:
            raise AuthenticationError(t, f"cannot load key file {key_file}: {exc}") from None
        if t.known_hosts is None:
            raise UnknownHostKeyError(
                t,
                "no known_hosts file named (set knownHosts in the inventory; ~/.ssh/known_hosts is not used)",
            )
        known_hosts = Path(os.path.expanduser(str(t.known_hosts)))
        client = paramiko.SSHClient()
        if known_hosts.is_file():
            try:
                client.load_host_keys(str(known_hosts))
            except (OSError, paramiko.SSHException) as exc:
                raise UnknownHostKeyError(t, f"cannot read known_hosts {known_hosts}: {exc}") from None
        client.set_missing_host_key_policy(_Policy(t, known_hosts))
        timeout = t.connect_timeout
        try:
            client.connect(
                t.address,
                port=t.port,
                username=t.user,
                pkey=pkey,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                channel_timeout=timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except UnknownHostKeyError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyMismatchError(
                t,
                f"host key changed: the server offers {fingerprint(exc.key)} but {known_hosts} has "
                f"{fingerprint(exc.expected_key)} for {t.known_hosts_name}; refusing to connect "
                "(if the host was reinstalled, remove its old line from that file)",
            ) from None
        except paramiko.AuthenticationException:
            client.close()
            raise AuthenticationError(
                t, f"the server refused key {key_file} ({fingerprint(pkey)}) for user {t.user}"
            ) from None
        except TimeoutError:
            client.close()
            raise ConnectError(t, f"connection timed out after {timeout:g} s") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            # paramiko reports a handshake its transport thread gave up on (e.g. no SSH banner
            # in time) as "No existing session" once it tries to authenticate
            client.close()
            if "reset by peer" in str(exc) or isinstance(exc, ConnectionResetError):
                raise ConnectError(
                    t,
                    "the connection was reset by the server during the SSH handshake "
                    "(sshd stopping, overloaded (MaxStartups) or refusing this client?)",
                ) from None
            if "No existing session" in str(exc) or "protocol banner" in str(exc):
                raise ConnectError(
                    t, f"no SSH handshake within {timeout:g} s (is an SSH server listening there?)"
                ) from None
            raise ConnectError(t, f"cannot connect: {_describe(exc)}") from None
        tr = client.get_transport()
        if tr is not None and self.keepalive_s:
            tr.set_keepalive(self.keepalive_s)
        return client

    def current(self) -> _Conn:
        with self._lock:
            if self._conn is None:
                self.connect()
            assert self._conn is not None
            return self._conn

    def reconnect(self, seen_generation: int, reason: str) -> _Conn:
        """After a drop seen on connection ``seen_generation``: one new connection, or ConnectionLost.

        Threads that saw the same drop share the one reconnection.
        """
        with self._lock:
            if (
                self._conn is not None
                and self._conn.generation != seen_generation
                and self._active(self._conn)
            ):
                return self._conn
            self.events.append(
                {"kind": "connection_lost", "host": self.target.name, "wall": time.time(), "detail": reason}
            )
            old, self._conn = self._conn, None
            if old is not None:
                with contextlib.suppress(Exception):
                    old.client.close()
            try:
                client = self._open()
            except SSHError as exc:
                self.events.append(
                    {
                        "kind": "reconnect_failed",
                        "host": self.target.name,
                        "wall": time.time(),
                        "detail": exc.reason,
                    }
                )
                raise ConnectionLost(
                    self.target, f"connection lost ({reason}) and the one reconnection failed: {exc.reason}"
                ) from None
            self.reconnects += 1
            self._conn = _Conn(client, seen_generation + 1)
            self.events.append(
                {"kind": "reconnected", "host": self.target.name, "wall": time.time(), "detail": reason}
            )
            return self._conn

    def _with_retry(self, op: Callable[[_Conn], Any], what: str, retry: bool = True) -> Any:
        conn = self.current()
        try:
            return op(conn)
        except SSHError:
            raise
        except _DROPPED as exc:
            if self._active(conn) and not isinstance(exc, EOFError):
                raise  # a real error of the operation, not a drop
            conn = self.reconnect(conn.generation, f"{what}: {_describe(exc)}")
            if not retry:
                raise ConnectionLost(self.target, f"connection dropped during {what}; reconnected") from None
            try:
                return op(conn)
            except _DROPPED as exc2:
                raise ConnectionLost(self.target, f"{what}: {_describe(exc2)}") from None

    # ------------------------------------------------------------------ commands

    def run(
        self,
        command: str | list[str],
        *,
        timeout: float = 120.0,
        check: bool = False,
        stdin: bytes | None = None,
        idempotent: bool = True,
    ) -> CommandResult:
        """Run a command and collect its output; retried once after a drop when ``idempotent``."""
        cmd = command if isinstance(command, str) else shlex.join(command)

        def op(conn: _Conn) -> CommandResult:
            return self._exec(conn, cmd, timeout, stdin)

        res: CommandResult = self._with_retry(op, f"running {cmd[:60]!r}", retry=idempotent)
        if check and res.rc != 0:
            raise RemoteCommandError(self.target, cmd, res)
        return res

    def _exec(self, conn: _Conn, cmd: str, timeout: float, stdin: bytes | None) -> CommandResult:
        tr = conn.client.get_transport()
        if tr is None or not tr.is_active():
            raise EOFError("transport closed")
        chan = tr.open_session(timeout=self.target.connect_timeout)
        try:
            chan.settimeout(timeout)
            chan.exec_command(cmd)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout
            while True:
                got = False
                while chan.recv_ready():
                    out += chan.recv(65536)
                    got = True
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    got = True
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if not tr.is_active():
                    raise EOFError("connection dropped while the command ran")
                if time.monotonic() > deadline:
                    raise SSHError(self.target, f"{cmd[:80]!r} did not finish within {timeout:g} s")
                if not got:
                    select.select([chan], [], [], 0.1)
            rc = chan.recv_exit_status()
            if rc == -1 and not tr.is_active():
                raise EOFError("connection dropped before the exit status arrived")
            return CommandResult(rc, out.decode(errors="replace"), err.decode(errors="replace"))
        finally:
            chan.close()

    def answers(self, timeout: float | None = None) -> bool:
        """Whether the host still answers on the current connection: a session channel opened (and
        closed) within ``timeout`` s (default: the connect timeout).

        A host that stops answering with its TCP connection still up (powered off, hung, cut off by
        a firewall that drops packets) gives no error: a quiet stream from it just stays quiet, and
        paramiko's keepalive expects no reply. Opening a channel needs the server's confirmation.
        """
        with self._lock:
            conn = self._conn
        if conn is None:
            return False
        tr = conn.client.get_transport()
        if tr is None or not tr.is_active():
            return False
        try:
            chan = tr.open_session(timeout=timeout or self.target.connect_timeout)
        except (paramiko.SSHException, OSError, EOFError):
            return False
        with contextlib.suppress(Exception):
            chan.close()
        return True

    def open_channel(self, command: str) -> tuple[paramiko.Channel, int]:
        """Start ``command`` on a new exec channel; returns (channel, connection generation)."""

        def op(conn: _Conn) -> tuple[paramiko.Channel, int]:
            tr = conn.client.get_transport()
            if tr is None or not tr.is_active():
                raise EOFError("transport closed")
            chan = tr.open_session(timeout=self.target.connect_timeout)
            chan.exec_command(command)
            chan.shutdown_write()
            return chan, conn.generation

        result: tuple[paramiko.Channel, int] = self._with_retry(op, f"starting {command[:60]!r}")
        return result

    # ------------------------------------------------------------------ files

    def _sftp(self, conn: _Conn) -> paramiko.SFTPClient:
        with self._lock:
            if conn.sftp is None:
                conn.sftp = conn.client.open_sftp()
                conn.sftp.get_channel().settimeout(max(30.0, self.target.connect_timeout))
            return conn.sftp

    def mkdirs(self, remote_dir: str, mode: int = 0o755) -> None:
        def op(conn: _Conn) -> None:
            sftp = self._sftp(conn)
            parts = [p for p in remote_dir.split("/") if p]
            path = ""
            for p in parts:
                path += "/" + p
                try:
                    sftp.stat(path)
                except FileNotFoundError:
                    sftp.mkdir(path, mode)

        self._with_retry(op, f"creating {remote_dir}")

    def put_bytes(self, data: bytes, remote: str, mode: int = 0o644) -> None:
        def op(conn: _Conn) -> None:
            sftp = self._sftp(conn)
            tmp = f"{remote}.part{os.getpid()}"
            with sftp.open(tmp, "wb") as f:
                f.write(data)
            sftp.chmod(tmp, mode)
            sftp.posix_rename(tmp, remote)

        self._with_retry(op, f"writing {remote}")

    def put(self, local: Path, remote: str, mode: int | None = None) -> None:
        self.put_bytes(
            Path(local).read_bytes(),
            remote,
            mode if mode is not None else (Path(local).stat().st_mode & 0o777),
        )

    def get_bytes(self, remote: str) -> bytes:
        def op(conn: _Conn) -> bytes:
            with self._sftp(conn).open(remote, "rb") as f:
                data: bytes = f.read()
                return data

        result: bytes = self._with_retry(op, f"reading {remote}")
        return result

    def get_tree(self, remote_dir: str, local_dir: Path) -> list[Path]:
        """Copy ``remote_dir`` recursively into ``local_dir`` (SFTP); returns the files written."""
        written: list[Path] = []

        def walk(sftp: paramiko.SFTPClient, rdir: str, ldir: Path) -> None:
            ldir.mkdir(parents=True, exist_ok=True)
            for entry in sorted(sftp.listdir_attr(rdir), key=lambda e: e.filename):
                rpath = f"{rdir}/{entry.filename}"
                mode = entry.st_mode or 0
                if stat.S_ISDIR(mode):
                    walk(sftp, rpath, ldir / entry.filename)
                elif stat.S_ISREG(mode):
                    lpath = ldir / entry.filename
                    sftp.get(rpath, str(lpath))
                    written.append(lpath)

        def op(conn: _Conn) -> None:
            written.clear()
            walk(self._sftp(conn), remote_dir.rstrip("/"), Path(local_dir))

        self._with_retry(op, f"fetching {remote_dir}")
        return written


def _describe(exc: BaseException) -> str:
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return "connection refused (is sshd listening on that address and port?)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is sshd listening on that address and port?)"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]
