"""The guest image: Debian 12 from this host's own apt sources, built once and cached by its inputs.

``mmdebstrap`` (minbase + systemd, sshd, python3, containerd, runc, a Debian kernel) writes a root
directory, a customize hook makes it a lab host (static address on QEMU's user network, sshd with
the host key from the seed disk, the seed unit, the default containerd and etcd services off so
that only what provisioning starts runs), the kernel and initrd are copied out for a direct kernel
boot, and ``mke2fs -t ext4 -d`` turns the directory into the disk (no loop mount, no root-only
mount namespace tricks). Every VM boots a copy-on-write qcow2 overlay of that disk.

The cache key is a hash of everything that shapes the image: suite, variant, packages, the apt
sources file's content, the customize script and the disk size. A second ``harness lab image``
with the same inputs is a cache hit (a manifest written last marks a complete image).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.vmlab import LAB_ROOT

Say = Callable[[str], None]

SUITE = "bookworm"
VARIANT = "minbase"
# What a lab host needs: systemd as PID 1 (the systemd cgroup driver), sshd and python3 (Ansible,
# the remote agent), containerd + runc + CNI loopback (the containerd role), a Debian kernel with
# NUMA, cgroup v2 and PSI (linux-image-cloud-amd64 has all three: CONFIG_NUMA, CONFIG_PSI),
# numactl and procps (facts, checks), curl (the kubelet's health check), python3-venv (the
# harness venv), python3-apt (Ansible's apt module), etcd-server (the in-guest API server's store).
PACKAGES: tuple[str, ...] = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "udev",
    "kmod",
    "openssh-server",
    "python3",
    "python3-apt",
    "python3-venv",
    "iproute2",
    "linux-image-cloud-amd64",
    "initramfs-tools",
    "containerd",
    "runc",
    "containernetworking-plugins",
    "numactl",
    "procps",
    "curl",
    "etcd-server",
    "e2fsprogs",
)
DISK_SIZE = "6G"
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
ROOT_LABEL = "hroot"
BUILDER_VERSION = 1

# Run by mmdebstrap with the root directory as $1 (after the packages are installed).
CUSTOMIZE = r"""#!/bin/sh
set -eu
R="$1"
echo lab > "$R/etc/hostname"
printf '127.0.0.1 localhost\n' > "$R/etc/hosts"
printf 'LABEL=hroot / ext4 rw,errors=remount-ro 0 1\n' > "$R/etc/fstab"
: > "$R/etc/machine-id"
rm -f "$R"/etc/ssh/ssh_host_*
mkdir -p "$R/etc/ssh/sshd_config.d" "$R/etc/systemd/network" "$R/usr/local/sbin"
cat > "$R/etc/ssh/sshd_config.d/harness.conf" <<'EOF'
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF
# QEMU's user network (restrict=on: the guest reaches nothing, the host reaches it only
# through the 127.0.0.1 port forward): a static address, no DHCP wait
cat > "$R/etc/systemd/network/10-lab.network" <<'EOF'
[Match]
Name=en* eth*
[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
cat > "$R/usr/local/sbin/harness-seed" <<'EOF'
#!/bin/sh
# Apply the seed disk the controller wrote for this VM (host key, authorized key, hostname, swap).
set -eu
dev=/dev/disk/by-id/virtio-hseed
i=0
while [ ! -b "$dev" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
[ -b "$dev" ] || { echo "harness-seed: no seed disk" >&2; exit 1; }
mkdir -p /run/harness-seed
mount -o ro "$dev" /run/harness-seed
sh /run/harness-seed/setup.sh /run/harness-seed
umount /run/harness-seed
EOF
chmod 0755 "$R/usr/local/sbin/harness-seed"
cat > "$R/etc/systemd/system/harness-seed.service" <<'EOF'
[Unit]
Description=Apply the harness seed disk
DefaultDependencies=no
After=local-fs.target systemd-udevd.service
Wants=systemd-udevd.service
Before=ssh.service systemd-networkd.service sysinit.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/harness-seed
[Install]
WantedBy=sysinit.target
EOF
chroot "$R" systemctl enable harness-seed.service systemd-networkd.service ssh.service
chroot "$R" systemctl disable containerd.service etcd.service || true
chroot "$R" systemctl mask systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
  e2scrub_all.timer fstrim.timer || true
# journald in memory only: the overlay stays small
mkdir -p "$R/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n' > "$R/etc/systemd/journald.conf.d/harness.conf"
rm -rf "$R/var/cache/apt/archives/"*.deb "$R/var/lib/apt/lists/"*
"""


@dataclass(frozen=True)
class ImageSpec:
    suite: str = SUITE
    variant: str = VARIANT
    packages: tuple[str, ...] = PACKAGES
    sources: Path = SOURCES
    disk_size: str = DISK_SIZE

    def key_inputs(self) -> dict[str, object]:
        try:
            sources = self.sources.read_text()
        except OSError as exc:
            raise HarnessError(f"apt sources {self.sources}: {exc.strerror}") from None
        return {
            "builder": BUILDER_VERSION,
            "suite": self.suite,
            "variant": self.variant,
            "packages": sorted(self.packages),
            "sources": sources,
            "customize": CUSTOMIZE,
            "disk_size": self.disk_size,
        }

    def key(self) -> str:
        """Hash of the inputs: the image's folder name under the cache."""
        blob = json.dumps(self.key_inputs(), sort_keys=True).encode()
        return f"{self.suite}-{hashlib.sha256(blob).hexdigest()[:16]}"


@dataclass
class Image:
    key: str
    dir: Path
    disk: Path
    kernel: Path
    initrd: Path
    kernel_release: str
    built_s: float = 0.0
    cached: bool = False
    packages: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        for k in ("dir", "disk", "kernel", "initrd"):
            d[k] = str(d[k])
        d.pop("cached")
        return d


def images_dir() -> Path:
    return LAB_ROOT / "images"


def load_cached(spec: ImageSpec) -> Image | None:
    d = images_dir() / spec.key()
    try:
        raw = json.loads((d / "image.json").read_text())
    except (OSError, ValueError):
        return None
    img = Image(
        key=raw["key"],
        dir=Path(raw["dir"]),
        disk=Path(raw["disk"]),
        kernel=Path(raw["kernel"]),
        initrd=Path(raw["initrd"]),
        kernel_release=raw["kernel_release"],
        built_s=raw.get("built_s", 0.0),
        packages=raw.get("packages", {}),
        cached=True,
    )
    if not all(p.is_file() for p in (img.disk, img.kernel, img.initrd)):
        return None
    return img


_MISSING = [
    re.compile(r"E: Unable to locate package (\S+)"),
    re.compile(r"E: Package '([^']+)' has no installation candidate"),
    re.compile(r"Package (\S+) is not available"),
]


def missing_package(log: str) -> str | None:
    """The package apt could not find, from mmdebstrap's output (None when another error)."""
    for rx in _MISSING:
        m = rx.search(log)
        if m:
            return m.group(1)
    return None


def mmdebstrap_argv(spec: ImageSpec, rootfs: Path, hook: Path) -> list[str]:
    return [
        "mmdebstrap",
        f"--variant={spec.variant}",
        "--include=" + ",".join(spec.packages),
        f'--customize-hook={hook} "$1"',
        spec.suite,
        str(rootfs),
        str(spec.sources),
    ]


def _need(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        raise HarnessError(f"{tool} not found: install the Debian package {package} (scripts/setup.sh does)")


def build_image(spec: ImageSpec | None = None, *, say: Say | None = None, force: bool = False) -> Image:
    """The cached image for ``spec``, building it when missing (progress through ``say``)."""
    spec = spec or ImageSpec()
    say = say or (lambda _m: None)
    if not force:
        hit = load_cached(spec)
        if hit is not None:
            say(f"harness: lab image {hit.key} (cached, kernel {hit.kernel_release})")
            return hit
    _need("mmdebstrap", "mmdebstrap")
    _need("mke2fs", "e2fsprogs")
    if os.geteuid() != 0:
        raise HarnessError("building a lab image needs root (mmdebstrap in root mode, mke2fs -d ownership)")
    key = spec.key()
    final = images_dir() / key
    work = images_dir() / f".{key}.build{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.monotonic()
    try:
        hook = work / "customize.sh"
        hook.write_text(CUSTOMIZE)
        hook.chmod(0o755)
        rootfs = work / "rootfs"
        argv = mmdebstrap_argv(spec, rootfs, hook)
        say(f"harness: building lab image {key}: mmdebstrap {spec.suite} ({len(spec.packages)} packages)")
        log = work / "mmdebstrap.log"
        _stream(argv, log, say)
        rel = _kernel_release(rootfs)
        kernel, initrd = work / "vmlinuz", work / "initrd.img"
        shutil.copy2(rootfs / "boot" / f"vmlinuz-{rel}", kernel)
        shutil.copy2(rootfs / "boot" / f"initrd.img-{rel}", initrd)
        packages = _package_versions(rootfs)
        say(f"harness: lab image {key}: mke2fs -t ext4 -d rootfs ({spec.disk_size}, kernel {rel})")
        disk = work / "disk.raw"
        t1 = time.monotonic()
        res = subprocess.run(
            [
                "mke2fs",
                "-q",
                "-F",
                "-t",
                "ext4",
                "-L",
                ROOT_LABEL,
                "-d",
                str(rootfs),
                str(disk),
                spec.disk_size,
            ],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise HarnessError(f"mke2fs -d {rootfs} failed: {res.stderr.strip()}")
        say(f"harness: lab image {key}: disk written in {time.monotonic() - t1:.1f}s")
        shutil.rmtree(rootfs)
        img = Image(
            key=key,
            dir=final,
            disk=final / "disk.raw",
            kernel=final / "vmlinuz",
            initrd=final / "initrd.img",
            kernel_release=rel,
            built_s=round(time.monotonic() - t0, 1),
            packages=packages,
        )
        (work / "inputs.json").write_text(json.dumps(spec.key_inputs(), indent=1, sort_keys=True))
        (work / "image.json").write_text(json.dumps(img.to_json(), indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(work, final)
    except BaseException:
        rootfs = work / "rootfs"
        if rootfs.exists():
            shutil.rmtree(rootfs, ignore_errors=True)
        raise
    say(f"harness: lab image {key} built in {img.built_s:.0f}s: {final}")
    return img


def _stream(argv: list[str], log: Path, say: Say) -> None:
    """Run mmdebstrap, its progress lines on the console, all output in ``log``."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"}
    with open(log, "w") as f:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        assert proc.stdout is not None
        for line in proc.stdout:
            f.write(line)
            if line.startswith(("I: ", "E: ", "W: ")):
                say(f"  mmdebstrap: {line.rstrip()}")
        rc = proc.wait()
    if rc != 0:
        text = log.read_text(errors="replace")
        pkg = missing_package(text)
        if pkg:
            raise HarnessError(
                f"lab image: package {pkg!r} is not available from {SOURCES} ({SUITE}); log: {log}"
            )
        tail = " | ".join(text.strip().splitlines()[-3:])
        raise HarnessError(f"mmdebstrap failed (exit {rc}): {tail}; log: {log}")


def _kernel_release(rootfs: Path) -> str:
    found = sorted(p.name.removeprefix("vmlinuz-") for p in (rootfs / "boot").glob("vmlinuz-*"))
    if not found:
        raise HarnessError(f"lab image: no kernel in {rootfs / 'boot'}")
    rel = found[-1]
    if not (rootfs / "boot" / f"initrd.img-{rel}").is_file():
        raise HarnessError(f"lab image: kernel {rel} has no initrd in {rootfs / 'boot'}")
    return rel


def _package_versions(rootfs: Path) -> dict[str, str]:
    res = subprocess.run(
        ["dpkg-query", f"--admindir={rootfs}/var/lib/dpkg", "-W", "-f", "${Package} ${Version}\n"],
        capture_output=True,
        text=True,
    )
    out: dict[str, str] = {}
    for line in res.stdout.splitlines():
        name, _, ver = line.partition(" ")
        out[name] = ver
    return out
