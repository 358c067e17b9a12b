"""Keys made on the controller and the seed disk that hands them to a guest.

The host key of every VM and the lab's client key are generated here (``cryptography``), so the
inventory's known_hosts holds the exact key before the VM first boots and ``hostKeyPolicy:
reject`` works from the first connection. They reach the guest on a small read-only ext4 disk
made with ``mke2fs -d`` (no mount on the host); the image's ``harness-seed`` unit mounts it
before sshd starts and runs its ``setup.sh``. A seed disk works with any kernel (fw_cfg needs
the ``qemu_fw_cfg`` module, the kernel command line is limited to 2 KiB).
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness.errors import HarnessError

SEED_SIZE = "4M"


@dataclass(frozen=True)
class KeyPair:
    private_openssh: bytes
    public_openssh: str  # "ssh-ed25519 AAAA..."

    def write(self, path: Path, comment: str = "") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.private_openssh)
        path.chmod(0o600)
        path.with_name(path.name + ".pub").write_text(f"{self.public_openssh} {comment}".rstrip() + "\n")


def new_keypair() -> KeyPair:
    key = Ed25519PrivateKey.generate()
    priv = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return KeyPair(priv, pub.decode())


def known_hosts_line(address: str, port: int, host_public: str) -> str:
    name = address if port == 22 else f"[{address}]:{port}"
    return f"{name} {host_public}\n"


def setup_script(hostname: str, *, swap: bool) -> str:
    """What the guest runs from the seed disk at every boot (``$1`` is the mounted seed)."""
    lines = [
        "#!/bin/sh",
        "set -eu",
        'S="$1"',
        'install -m 0600 "$S/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key',
        'install -m 0644 "$S/ssh_host_ed25519_key.pub" /etc/ssh/ssh_host_ed25519_key.pub',
        "install -d -m 0700 /root/.ssh",
        'install -m 0600 "$S/authorized_keys" /root/.ssh/authorized_keys',
        f"echo {shlex.quote(hostname)} > /etc/hostname",
        f"hostname {shlex.quote(hostname)}",
        f"printf '127.0.0.1 localhost {hostname}\\n' > /etc/hosts",
    ]
    if swap:
        lines.append("swapon /dev/disk/by-id/virtio-hswap")
    return "\n".join(lines) + "\n"


def write_seed(
    dest: Path, workdir: Path, *, hostname: str, host_key: KeyPair, client_public: str, swap: bool
) -> Path:
    """The seed disk image ``dest`` (raw ext4, label hseed)."""
    src = workdir / "seed"
    src.mkdir(parents=True, exist_ok=True)
    (src / "ssh_host_ed25519_key").write_bytes(host_key.private_openssh)
    (src / "ssh_host_ed25519_key").chmod(0o600)
    (src / "ssh_host_ed25519_key.pub").write_text(host_key.public_openssh + f" root@{hostname}\n")
    (src / "authorized_keys").write_text(client_public + " harness-lab\n")
    (src / "setup.sh").write_text(setup_script(hostname, swap=swap))
    res = subprocess.run(
        ["mke2fs", "-q", "-F", "-t", "ext4", "-L", "hseed", "-d", str(src), str(dest), SEED_SIZE],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise HarnessError(f"seed disk for {hostname}: mke2fs failed: {res.stderr.strip()}")
    return dest


def write_swap(dest: Path, size_bytes: int) -> Path:
    """A sparse raw swap disk (``mkswap`` on a plain file: no loop device)."""
    with open(dest, "wb") as f:
        f.truncate(size_bytes)
    res = subprocess.run(["mkswap", "-L", "hswap", str(dest)], capture_output=True, text=True)
    if res.returncode != 0:
        raise HarnessError(f"mkswap {dest}: {res.stderr.strip()}")
    return dest
