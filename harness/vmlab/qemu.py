"""The QEMU command line of one lab host, and whether KVM really works here.

* NUMA: one node per socket, each with its own ``memory-backend-ram`` and its socket's CPUs, so
  the guest's ``numactl -H`` shows the layout a multi-socket lab host has.
* Disks: the root overlay (qcow2 over the cached raw image), the read-only seed disk and the
  optional swap disk, as virtio-blk with serials (``/dev/disk/by-id/virtio-<serial>``).
* Network: user-mode networking with ``restrict=on`` (the guest reaches nothing, not even the
  host) and one port forward to the guest's sshd bound to 127.0.0.1 only; no tap device.
* Direct kernel boot with the image's kernel and initrd; ``psi=1`` so that PSI files exist even
  with a kernel built with CONFIG_PSI_DEFAULT_DISABLED=y (Debian's cloud kernel 6.1 is not, its
  generic kernel config has varied), and ``systemd.unified_cgroup_hierarchy=0`` for a cgroup v1 host.

``probe_kvm`` boots the guest kernel under KVM with no root device: a kernel that gets as far as
"VFS: Unable to mount root fs" proves KVM runs an unmodified kernel. A PVM host (/dev/kvm
present, only PVM guests run) fails with "KVM internal error", so the lab uses TCG there.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError, InputError

QEMU = "qemu-system-x86_64"
MiB = 1024 * 1024
TCG_ACCEL = ["-accel", "tcg,thread=multi,tb-size=256", "-cpu", "max"]
KVM_ACCEL = ["-accel", "kvm", "-cpu", "host"]


@dataclass(frozen=True)
class VMSpec:
    name: str  # the inventory host name (also the guest's hostname)
    memory: int  # bytes
    cpus: int
    sockets: int
    ssh_port: int
    overlay: Path
    seed: Path
    kernel: Path
    initrd: Path
    console_log: Path
    swap: Path | None = None
    cgroup: int = 2
    label: str = ""  # -name: names the lab and host in ps


def check_topology(memory: int, cpus: int, sockets: int, source: str = "lab up") -> None:
    if sockets < 1 or cpus < 1:
        raise InputError(source, "--sockets/--cpus", "must be at least 1")
    if cpus % sockets:
        raise InputError(source, "--cpus", f"{cpus} CPUs cannot be split evenly over {sockets} sockets")
    if memory % (sockets * 2 * MiB):
        raise InputError(
            source,
            "--memory",
            f"{memory} bytes cannot be split into {sockets} NUMA nodes of whole 2 MiB pages",
        )
    if memory < 512 * MiB * sockets:
        raise InputError(source, "--memory", "at least 512Mi per socket")


def kernel_cmdline(spec: VMSpec) -> str:
    args = ["root=LABEL=hroot", "rw", "console=ttyS0", "psi=1", "panic=-1", "net.ifnames=1"]
    if spec.cgroup == 1:
        args.append("systemd.unified_cgroup_hierarchy=0")
    return " ".join(args)


def qemu_argv(spec: VMSpec, accel: list[str]) -> list[str]:
    """The full QEMU command line for ``spec`` (pure: no file is touched)."""
    check_topology(spec.memory, spec.cpus, spec.sockets)
    per_socket = spec.cpus // spec.sockets
    node_mem = spec.memory // spec.sockets
    argv = [
        QEMU,
        "-name",
        spec.label or spec.name,
        "-machine",
        "q35",
        *accel,
        "-m",
        f"{spec.memory // MiB}M",
        "-smp",
        f"{spec.cpus},sockets={spec.sockets},cores={per_socket},threads=1",
    ]
    for i in range(spec.sockets):
        first, last = i * per_socket, (i + 1) * per_socket - 1
        cpus = f"{first}" if first == last else f"{first}-{last}"
        argv += [
            "-object",
            f"memory-backend-ram,id=mem{i},size={node_mem // MiB}M",
            "-numa",
            f"node,nodeid={i},cpus={cpus},memdev=mem{i}",
        ]
    argv += [
        "-kernel",
        str(spec.kernel),
        "-initrd",
        str(spec.initrd),
        "-append",
        kernel_cmdline(spec),
        "-drive",
        f"file={spec.overlay},if=none,id=root,format=qcow2,discard=unmap",
        "-device",
        "virtio-blk-pci,drive=root,serial=hroot",
        "-drive",
        f"file={spec.seed},if=none,id=seed,format=raw,readonly=on",
        "-device",
        "virtio-blk-pci,drive=seed,serial=hseed",
    ]
    if spec.swap is not None:
        argv += [
            "-drive",
            f"file={spec.swap},if=none,id=swap,format=raw",
            "-device",
            "virtio-blk-pci,drive=swap,serial=hswap",
        ]
    argv += [
        "-netdev",
        f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{spec.ssh_port}-:22",
        "-device",
        "virtio-net-pci,netdev=n0",
        "-nodefaults",
        "-display",
        "none",
        "-serial",
        f"file:{spec.console_log}",
        "-monitor",
        "none",
        "-no-reboot",
    ]
    return argv


def probe_kvm(kernel: Path, cache: Path, timeout: float = 25.0) -> tuple[bool, str]:
    """(KVM usable, why), cached per guest kernel and host kernel in ``cache``."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "no usable /dev/kvm"
    ident = f"{kernel.stat().st_size}:{int(kernel.stat().st_mtime)}:{os.uname().release}"
    try:
        saved = json.loads(cache.read_text())
        if saved.get("ident") == ident:
            return bool(saved["kvm"]), str(saved["why"]) + " (cached probe)"
    except (OSError, ValueError, KeyError):
        pass
    with tempfile.TemporaryDirectory(prefix="harness-kvm-probe-") as tmp:
        console = Path(tmp) / "console.log"
        argv = [
            QEMU,
            *KVM_ACCEL,
            "-m",
            "256M",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            f"file:{console}",
            "-monitor",
            "none",
            "-kernel",
            str(kernel),
            "-append",
            "console=ttyS0 panic=-1 root=/dev/nonexistent",
        ]
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ok, why = False, "no kernel output"
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        text = console.read_text(errors="replace") if console.exists() else ""
        if "VFS: Unable to mount root" in text or "Kernel panic" in text:
            ok, why = True, f"a stock kernel booted under KVM in {time.monotonic() - t0:.1f}s"
        elif "KVM internal error" in out or "emulation failure" in out:
            why = "KVM cannot run a stock kernel here (KVM internal error: emulation failure; a PVM host?)"
        elif out.strip():
            why = "KVM boot failed: " + " | ".join(out.strip().splitlines()[-2:])
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"ident": ident, "kvm": ok, "why": why}))
    return ok, why


def accel_args(kernel: Path, cache: Path, choice: str = "auto") -> tuple[list[str], str]:
    """QEMU accelerator arguments and a line saying why."""
    if choice == "tcg":
        return TCG_ACCEL, "TCG (asked for)"
    ok, why = probe_kvm(kernel, cache)
    if ok:
        return KVM_ACCEL, f"KVM: {why}"
    if choice == "kvm":
        raise HarnessError(f"--accel kvm: {why}")
    return TCG_ACCEL, f"TCG: {why}"
