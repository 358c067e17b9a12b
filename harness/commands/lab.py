"""``harness lab``: lab hosts as VMs the harness builds and boots (harness/vmlab)."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import click

from harness.errors import InputError
from harness.quantity import to_bytes
from harness.vmlab.image import build_image


def _say(msg: str) -> None:
    click.echo(msg, err=True)


def _bytes(value: str, flag: str) -> int:
    try:
        return to_bytes(value, what=flag)
    except Exception as exc:  # the quantity parser's own message names the value
        raise InputError("lab up", flag, str(exc)) from None


@click.group("lab")
def lab_group() -> None:
    """Virtual lab hosts: Debian 12, systemd, cgroup v2, NUMA sockets, optional swap.

    \b
      harness lab image                               build (or reuse) the guest image
      harness lab up lab --hosts 2 --sockets 2 --memory 4Gi --swap 2Gi
      harness provision /var/lib/harness/lab/labs/lab/inventory.yaml
      harness run suites/local.yaml --inventory /var/lib/harness/lab/labs/lab/inventory.yaml
      harness lab ssh lab --host lab-a -- systemctl is-system-running
      harness lab down lab
    """


@lab_group.command("image")
@click.option("--force", is_flag=True, help="Rebuild even when the cached image matches.")
def image_cmd(force: bool) -> None:
    """Build and cache the guest image (keyed by a hash of its inputs; a second call is a cache hit)."""
    img = build_image(say=_say, force=force)
    click.echo(f"{img.key} {img.dir} kernel {img.kernel_release}{' (cached)' if img.cached else ''}")


@lab_group.command("up")
@click.argument("name")
@click.option("--hosts", type=click.IntRange(1, 8), default=1, show_default=True)
@click.option("--sockets", type=click.IntRange(1, 8), default=2, show_default=True, help="NUMA nodes.")
@click.option("--memory", default="4Gi", show_default=True, help="Memory per host (split over the sockets).")
@click.option("--cpus", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--swap", default="0", show_default=True, help="A swap disk of this size (0: none).")
@click.option("--cgroup", type=click.Choice(["1", "2"]), default="2", show_default=True)
@click.option(
    "--accel",
    type=click.Choice(["auto", "tcg", "kvm"]),
    default="auto",
    show_default=True,
    help="auto: KVM when a probe boot works, TCG otherwise.",
)
@click.option("--boot-timeout", type=float, default=600.0, show_default=True, help="Seconds to wait for SSH.")
@click.option(
    "--kubelet-profile",
    default=None,
    help="KubeletConfiguration for provisioning (default profiles/local.yaml).",
)
@click.option(
    "--kubelet-version",
    default="1.33.4",
    show_default=True,
    callback=lambda _c, _p, v: _version(v),
    help="The kubelet (and kube-apiserver) release the lab's hosts get from provisioning; built on "
    "this machine by `harness cluster build --version V` when not cached.",
)
def up_cmd(
    name: str,
    hosts: int,
    sockets: int,
    memory: str,
    cpus: int,
    swap: str,
    cgroup: str,
    accel: str,
    boot_timeout: float,
    kubelet_profile: str | None,
    kubelet_version: str,
) -> None:
    """Boot lab NAME and write its inventory (printed last)."""
    # lazy: harness.vmlab.lab loads paramiko, cryptography and pandas (via provision); CLI start-up
    from harness.vmlab.lab import LabOptions, up

    opts = LabOptions(
        hosts=hosts,
        sockets=sockets,
        memory=_bytes(memory, "--memory"),
        cpus=cpus,
        swap=_bytes(swap, "--swap") if swap not in ("0", "") else 0,
        cgroup=int(cgroup),
        accel=accel,
        boot_timeout=boot_timeout,
        **({"kubelet_profile": str(Path(kubelet_profile).resolve())} if kubelet_profile else {}),
        kubelet_version=kubelet_version,
    )
    reg = up(name, opts, say=_say)
    click.echo(reg["inventory"])


@lab_group.command("status")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
def status_cmd(name: str | None, as_json: bool) -> None:
    """The labs and their VMs (running means: same pid, same start time, its overlay)."""
    from harness.vmlab.lab import status  # lazy: paramiko/pandas via harness.provision (CLI start-up)

    rows = status(name)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo("no labs")
        return
    for r in rows:
        click.echo(
            f"{r['lab']:<12} {r['host']:<16} {r['state']:<8} pid {r['pid']!s:<8} ssh {r['ssh']:<16} "
            f"boot {r['boot_s'] if r['boot_s'] is not None else '-'}s  {r['inventory']}"
        )


@lab_group.command("down")
@click.argument("name")
@click.option("--keep", is_flag=True, help="Keep the lab's folder (overlays, logs) after stopping.")
def down_cmd(name: str, keep: bool) -> None:
    """Stop lab NAME's QEMUs (by pid, start time checked) and remove its folder."""
    from harness.vmlab.lab import down  # lazy: paramiko/pandas via harness.provision (CLI start-up)

    failed = down(name, say=_say, keep=keep)
    if failed:
        for f in failed:
            click.echo(f"harness: could not stop {f}", err=True)
        sys.exit(1)
    click.echo(f"harness: lab {name} is down")


@lab_group.command("ssh", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--host", default=None, help="The lab's host (needed when it has several).")
@click.option("--print", "print_only", is_flag=True, help="Print the ssh command line instead of running it.")
def ssh_cmd(name: str, command: tuple[str, ...], host: str | None, print_only: bool) -> None:
    """A shell (or COMMAND) on a lab host, over SSH with the lab's key and known host key.

    \b
      harness lab ssh lab                              a shell on the only host
      harness lab ssh lab --host lab-b -- systemctl is-system-running
      harness lab ssh lab -- 'cat > /root/suite.yaml' < suites/vm-sweep.yaml
    """
    from harness.vmlab.lab import ssh_argv  # lazy: paramiko/pandas via harness.provision (CLI start-up)

    argv = ssh_argv(name, host)
    if command:
        argv += ["--", *command]
    if print_only:
        click.echo(shlex.join(argv))
        return
    sys.stdout.flush()
    os.execvp(argv[0], argv)


def _version(value: str) -> str:
    """``--kubelet-version``: a release like 1.33.4 (a bad one is a usage error, exit 2)."""
    # lazy: harness.cluster.build is only needed when lab up runs (CLI start-up)
    from harness.cluster.build import normalize_version
    from harness.errors import HarnessError

    try:
        return normalize_version(value)
    except HarnessError as exc:
        raise click.BadParameter(str(exc), param_hint="--kubelet-version") from exc
