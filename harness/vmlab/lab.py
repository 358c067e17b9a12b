"""``lab up`` / ``status`` / ``down``: a named set of VMs, its registry and its inventory.

A lab lives in ``/var/lib/harness/lab/labs/<name>/``:

* ``lab.json``        the registry: per host its QEMU pid **and start time** (a pid is trusted only
                      while /proc shows the same start time), port, files; written before a
                      QEMU starts and updated once it runs, so a crash in between leaves nothing
                      unknown behind;
* ``inventory.yaml``  an inventory in the format of ``harness/provision/inventory.py``
                      (``hostKeyPolicy: reject``), ``keys/`` with the client key and known_hosts;
* ``<host>/``         overlay.qcow2 (over the cached image), seed.raw, swap.raw, console.log,
                      qemu.log.

``down`` and ``harness cleanup`` stop exactly the QEMUs a registry names, by pid, after checking
the start time and that the command line names that host's overlay; nothing else is touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness import procs
from harness.errors import HarnessError, HostError, InputError
from harness.hosts.ssh import HostKeyMismatchError, SSHError, SSHHost, UnknownHostKeyError
from harness.locks import exclusive
from harness.provision.inventory import load_inventory
from harness.vmlab import LAB_ROOT
from harness.vmlab.image import Image, build_image
from harness.vmlab.qemu import VMSpec, accel_args, check_topology, qemu_argv
from harness.vmlab.seed import known_hosts_line, new_keypair, write_seed, write_swap

Say = Callable[[str], None]
REPO = Path(__file__).resolve().parents[2]
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$")


def labs_dir() -> Path:
    return LAB_ROOT / "labs"


@dataclass(frozen=True)
class LabOptions:
    hosts: int = 1
    sockets: int = 2
    memory: int = 4 * 1024**3
    cpus: int = 2
    swap: int = 0
    cgroup: int = 2
    accel: str = "auto"  # auto | tcg | kvm
    boot_timeout: float = 600.0
    kubelet_profile: str = str(REPO / "profiles" / "local.yaml")
    kubelet_version: str = "1.33.4"
    cluster_profile: str = str(REPO / "profiles" / "vm-lab.yaml")


def host_names(lab: str, n: int) -> list[str]:
    return [f"{lab}-{chr(ord('a') + i)}" if n <= 26 else f"{lab}-{i + 1}" for i in range(n)]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (QEMU fails clearly if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def inventory_data(lab: str, hosts: dict[str, int], opts: LabOptions) -> dict[str, Any]:
    """The inventory of a lab (pure): ``hosts`` maps host name to its forwarded SSH port."""
    host_config: dict[str, Any] = {"cgroupDriver": "systemd"}
    if opts.swap:
        # the kubelet refuses to start on a node with swap unless told (KubeletConfiguration failSwapOn)
        host_config["failSwapOn"] = False
    return {
        "apiVersion": "harness/v1",
        "kind": "Inventory",
        "defaults": {
            "user": "root",
            "keyFile": "keys/client_ed25519",
            "knownHosts": "keys/known_hosts",
            "hostKeyPolicy": "reject",
            "connectTimeout": "20s",
            "python": "/usr/bin/python3",
            "vars": {
                "kubelet_profile": opts.kubelet_profile,
                "kubelet_build_version": opts.kubelet_version,
                "kubelet_service": "systemd",
                "kubelet_host_config": host_config,
                "containerd_systemd_cgroup": True,
                "containerd_install_package": False,
                "harness_offline": True,
                "cluster_profile": opts.cluster_profile,
            },
        },
        "hosts": {name: {"address": "127.0.0.1", "port": port} for name, port in hosts.items()},
        "groups": {re.sub(r"[^A-Za-z0-9_]", "_", f"lab_{lab}"): list(hosts)},
    }


def lab_dir(name: str) -> Path:
    return labs_dir() / name


def load_registry(name: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((lab_dir(name) / "lab.json").read_text())
        return data
    except (OSError, ValueError):
        return None


def _save(reg: dict[str, Any]) -> None:
    d = lab_dir(reg["name"])
    tmp = d / f".lab.json.{os.getpid()}"
    tmp.write_text(json.dumps(reg, indent=1, sort_keys=True))
    os.replace(tmp, d / "lab.json")


def list_labs() -> list[str]:
    if not labs_dir().is_dir():
        return []
    return sorted(p.name for p in labs_dir().iterdir() if (p / "lab.json").is_file())


def vm_running(h: dict[str, Any]) -> bool:
    """The host's QEMU runs: same pid, same start time, a command line naming its overlay."""
    pid, start = h.get("pid"), h.get("start_time")
    if not pid or start is None:
        return False
    if procs.proc_start_time(int(pid)) != int(start):
        return False
    return str(h["overlay"]) in " ".join(procs.cmdline(int(pid)))


def lab_lock(name: str) -> str:
    """The machine-wide lock of one lab: held by ``up`` and ``down`` (harness.locks)."""
    return f"lab-{name}"


def up(name: str, opts: LabOptions, *, say: Say | None = None) -> dict[str, Any]:
    """Boot a lab of ``opts.hosts`` VMs and wait until each answers SSH with its known host key.

    Holds the lab's lock: a second ``up`` or a ``down`` of the same lab waits for it, and
    ``harness cleanup`` leaves a lab alone while it is being brought up."""
    say = say or (lambda _m: None)
    if not _NAME.match(name):
        raise InputError("lab up", "NAME", f"{name!r}: use lower-case letters, digits and '-' (at most 32)")
    with exclusive(lab_lock(name), f"bring the VM lab {name} up", say=say):
        return _up(name, opts, say)


def _up(name: str, opts: LabOptions, say: Say) -> dict[str, Any]:
    if opts.cgroup not in (1, 2):
        raise InputError("lab up", "--cgroup", "1 or 2")
    check_topology(opts.memory, opts.cpus, opts.sockets)
    if shutil.which("qemu-system-x86_64") is None or shutil.which("qemu-img") is None:
        raise HarnessError("QEMU not found: install qemu-system-x86 and qemu-utils (scripts/setup.sh does)")
    old = load_registry(name)
    if old is not None:
        if any(vm_running(h) for h in old["hosts"].values()):
            raise HarnessError(
                f"lab {name!r} is up already (harness lab status {name}); lab down {name} first"
            )
        shutil.rmtree(lab_dir(name))
    img = build_image(say=say)
    accel, why = accel_args(img.kernel, LAB_ROOT / "kvm-probe.json", opts.accel)
    say(f"harness: lab {name}: {why}")
    d = lab_dir(name)
    (d / "keys").mkdir(parents=True, exist_ok=True)
    client = new_keypair()
    client.write(d / "keys" / "client_ed25519", f"harness-lab-{name}")
    names = host_names(name, opts.hosts)
    reg: dict[str, Any] = {
        "name": name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "image": img.key,
        "accel": accel,
        "options": {k: getattr(opts, k) for k in LabOptions.__dataclass_fields__},
        "inventory": str(d / "inventory.yaml"),
        "hosts": {},
    }
    ports: dict[str, int] = {}
    known = ""
    specs: dict[str, VMSpec] = {}
    for h in names:
        hd = d / h
        hd.mkdir(parents=True, exist_ok=True)
        port = free_port()
        while port in ports.values():
            port = free_port()
        ports[h] = port
        hk = new_keypair()
        known += known_hosts_line("127.0.0.1", port, hk.public_openssh)
        write_seed(
            hd / "seed.raw",
            hd,
            hostname=h,
            host_key=hk,
            client_public=client.public_openssh,
            swap=bool(opts.swap),
        )
        overlay = hd / "overlay.qcow2"
        _qemu_img(["create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(img.disk), str(overlay)])
        swap = write_swap(hd / "swap.raw", opts.swap) if opts.swap else None
        specs[h] = VMSpec(
            name=h,
            memory=opts.memory,
            cpus=opts.cpus,
            sockets=opts.sockets,
            ssh_port=port,
            overlay=overlay,
            seed=hd / "seed.raw",
            kernel=img.kernel,
            initrd=img.initrd,
            console_log=hd / "console.log",
            swap=swap,
            cgroup=opts.cgroup,
            label=f"harness-lab-{name}-{h}",
        )
        reg["hosts"][h] = {
            "port": port,
            "dir": str(hd),
            "overlay": str(overlay),
            "pid": None,
            "start_time": None,
        }
    (d / "keys" / "known_hosts").write_text(known)
    (d / "inventory.yaml").write_text(
        f"# lab {name}: written by `harness lab up`; removed by `harness lab down {name}`\n"
        + yaml.safe_dump(inventory_data(name, ports, opts), sort_keys=False)
    )
    _save(reg)
    t0 = time.monotonic()
    try:
        for h, spec in specs.items():
            argv = qemu_argv(spec, accel)
            proc = procs.spawn_daemon(argv, Path(reg["hosts"][h]["dir"]) / "qemu.log")
            start = procs.proc_start_time(proc.pid)
            reg["hosts"][h].update(pid=proc.pid, start_time=start, argv=argv)
            _save(reg)
            say(f"harness: lab {name}: {h} QEMU pid {proc.pid}, ssh 127.0.0.1:{spec.ssh_port}")

        inv = load_inventory(d / "inventory.yaml")
        for h in names:
            secs = wait_ssh(inv.hosts[h].target, reg["hosts"][h], opts.boot_timeout - (time.monotonic() - t0))
            reg["hosts"][h]["boot_s"] = round(secs, 1)
            say(f"harness: lab {name}: {h} answers SSH (host key checked) {secs:.1f}s after start")
        _save(reg)
    except BaseException:
        say(f"harness: lab {name}: stopping the VMs started so far")
        down(name, say=say, keep=True)
        raise
    return reg


def _qemu_img(args: list[str]) -> None:
    res = subprocess.run(["qemu-img", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise HarnessError(f"qemu-img {' '.join(args)}: {res.stderr.strip()}")


def wait_ssh(target: Any, host: dict[str, Any], timeout: float) -> float:
    """Seconds from the QEMU start until the guest's sshd accepts the lab key with the known host key."""

    t_start = time.monotonic()
    deadline = t_start + max(10.0, timeout)
    last = ""
    while time.monotonic() < deadline:
        if not vm_running(host):
            raise HarnessError(f"{target.name}: QEMU exited before SSH answered: {_tail(host)}")
        if not _banner(target.address, target.port):
            last = "no SSH banner yet"
            time.sleep(1)
            continue
        ssh = SSHHost(target)
        try:
            ssh.connect()
            ssh.run("true", timeout=30, check=True)
            return time.monotonic() - t_start
        except (HostKeyMismatchError, UnknownHostKeyError) as exc:
            raise HarnessError(f"{target.name}: {exc}") from None
        except SSHError as exc:
            last = exc.reason
        finally:
            ssh.close()
        time.sleep(2)
    raise HarnessError(f"{target.name}: no SSH within {timeout:.0f}s ({last}); console: {_tail(host)}")


def _banner(address: str, port: int) -> bool:
    """The guest's sshd sent its banner (QEMU accepts on the forwarded port long before)."""
    try:
        with socket.create_connection((address, port), timeout=3) as s:
            s.settimeout(3)
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def _tail(host: dict[str, Any]) -> str:
    out = []
    for f in ("qemu.log", "console.log"):
        p = Path(host["dir"]) / f
        if p.exists():
            lines = [ln for ln in p.read_text(errors="replace").splitlines() if ln.strip()][-3:]
            out.append(f"{p}: " + " | ".join(lines))
    return "; ".join(out)


def stop_vm(host: dict[str, Any], timeout: float = 15.0) -> bool:
    """Stop the host's QEMU by pid (start time and overlay checked); True when none runs any more."""
    if not vm_running(host):
        return True
    pid = int(host["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not vm_running(host):
            _reap(pid)
            return True
        time.sleep(0.2)
    if vm_running(host):
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    _reap(pid)
    return not vm_running(host)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def down(
    name: str, *, say: Say | None = None, keep: bool = False, lock_timeout: float | None = None
) -> list[str]:
    """Stop the lab's VMs and (unless ``keep``) remove its folder; what could not be stopped."""
    say = say or (lambda _m: None)
    with exclusive(lab_lock(name), f"take the VM lab {name} down", say=say, timeout=lock_timeout):
        return _down(name, say, keep)


def _down(name: str, say: Say, keep: bool) -> list[str]:
    reg = load_registry(name)
    if reg is None:
        raise HarnessError(f"no lab {name!r} (labs: {', '.join(list_labs()) or 'none'})")
    failed: list[str] = []
    for h, rec in reg["hosts"].items():
        was = vm_running(rec)
        if stop_vm(rec):
            if was:
                say(f"harness: lab {name}: {h} stopped (pid {rec['pid']})")
        else:
            failed.append(f"lab {name} host {h} (QEMU pid {rec['pid']})")
    if not failed and not keep:
        shutil.rmtree(lab_dir(name), ignore_errors=True)
    return failed


def cleanup_all(say: Say | None = None, *, force: bool = False) -> list[str]:
    """For ``harness cleanup``: remove the labs whose VMs are all stopped (a crashed QEMU, a host
    rebooted), by their registry. A lab with a running VM is in use (someone's ``lab up``, perhaps a
    run on it) and is left alone unless ``force``; so is a lab whose ``up``/``down`` holds its lock."""
    say = say or (lambda _m: None)
    failed: list[str] = []
    for name in list_labs():
        reg = load_registry(name)
        running = [h for h, rec in (reg or {}).get("hosts", {}).items() if vm_running(rec)]
        if running and not force:
            say(
                f"harness: lab {name} is running ({', '.join(running)}): left alone "
                f"(harness lab down {name}, or cleanup --force)"
            )
            continue
        try:
            failed += down(name, say=say, lock_timeout=0)
        except HostError as exc:
            say(f"harness: lab {name}: left alone, {exc}")
    return failed


def status(name: str | None = None) -> list[dict[str, Any]]:
    out = []
    for lab in [name] if name else list_labs():
        reg = load_registry(lab)
        if reg is None:
            raise HarnessError(f"no lab {lab!r}")
        for h, rec in reg["hosts"].items():
            out.append(
                {
                    "lab": lab,
                    "host": h,
                    "state": "running" if vm_running(rec) else "stopped",
                    "pid": rec.get("pid"),
                    "ssh": f"127.0.0.1:{rec['port']}",
                    "boot_s": rec.get("boot_s"),
                    "inventory": reg["inventory"],
                }
            )
    return out


def ssh_argv(name: str, host: str | None = None) -> list[str]:
    """OpenSSH's command line into one of lab ``name``'s hosts (the only one, or ``host``), from the
    lab's inventory: its key, its known_hosts and host key policy (``reject``: checked strictly),
    its user at the forwarded port on 127.0.0.1."""
    reg = load_registry(name)
    if reg is None:
        raise InputError("lab ssh", "NAME", f"no lab {name!r} (labs: {', '.join(list_labs()) or 'none'})")
    hosts = load_inventory(reg["inventory"]).hosts
    if host is None:
        if len(hosts) != 1:
            raise InputError(
                "lab ssh",
                "HOST",
                f"lab {name!r} has {len(hosts)} hosts: name one of {', '.join(sorted(hosts))}",
            )
        host = next(iter(hosts))
    if host not in hosts:
        raise InputError(
            "lab ssh", "HOST", f"lab {name!r} has no host {host!r} (hosts: {', '.join(sorted(hosts))})"
        )
    t = hosts[host].target
    return ["ssh", *t.openssh_options(), "-i", str(t.key_file), "-p", str(t.port), f"{t.user}@{t.address}"]


def image(say: Say | None = None, force: bool = False) -> Image:
    return build_image(say=say, force=force)
