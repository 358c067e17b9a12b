"""How long a VM lab host takes here, step by step, and how fast a guest allocates memory.

    python3 benchmarks/bench_vm_lab.py              # cached image, one VM: boot, provision, leak rate
    python3 benchmarks/bench_vm_lab.py --cold       # also a cold image build (a temporary cache, ~2 min)

Prints: image build cold (mmdebstrap + mke2fs -d) and cached (a cache hit), boot to SSH (QEMU
start until the guest's sshd accepts the lab key with the known host key), provisioning
(site.yml), and the anonymous-memory rate the leak program reaches in the guest (1 GiB in
64 MiB chunks as fast as possible, every page written), under the accelerator the probe chose
(TCG on a PVM host). One VM at a time; it is always stopped (by pid) at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def harness(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True, text=True, env=env
    )
    if res.returncode != 0:
        raise SystemExit(f"harness {' '.join(args)} failed ({res.returncode}): {res.stderr[-2000:]}")
    return res


def timed(*args: str, env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess[str]]:
    t = time.monotonic()
    res = harness(*args, env=env)
    return time.monotonic() - t, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cold", action="store_true", help="also build the image cold in a temporary cache")
    ap.add_argument("--no-provision", action="store_true")
    args = ap.parse_args()

    if args.cold:
        with tempfile.TemporaryDirectory(prefix="harness-vmlab-bench-", dir="/var/tmp") as tmp:
            env = {**os.environ, "HARNESS_VMLAB_ROOT": tmp}
            cold, _ = timed("lab", "image", env=env)
            print(f"image build cold:   {cold:7.1f} s")
    timed("lab", "image")  # make sure the shared cache has it
    cached, _ = timed("lab", "image")
    print(f"image build cached: {cached:7.1f} s")

    name = f"bench-{uuid.uuid4().hex[:6]}"
    try:
        up_s, res = timed("lab", "up", name, "--hosts", "1", "--sockets", "2", "--memory", "4Gi")
        inventory = Path(res.stdout.strip().splitlines()[-1])
        accel = next((ln for ln in res.stderr.splitlines() if "TCG" in ln or "KVM" in ln), "")
        boot = next(
            (ln.split()[-3].rstrip("s") for ln in res.stderr.splitlines() if "answers SSH" in ln), "?"
        )
        print(f"lab up (1 VM):      {up_s:7.1f} s   boot to SSH {boot} s   {accel.split(': ', 1)[-1][:60]}")

        from harness.hosts.ssh import SSHHost
        from harness.provision.inventory import load_inventory

        (host,) = load_inventory(inventory).hosts.values()
        with SSHHost(host.target) as ssh:
            ssh.put(REPO / "workloads" / "build" / "leak", "/tmp/leak", mode=0o755)
            rates = []
            for _ in range(3):
                out = ssh.run(
                    "s=$(date +%s%N); /tmp/leak --chunk=67108864 --interval-ms=0 --max=1073741824 "
                    "--hold-ms=0 >/dev/null; e=$(date +%s%N); echo $((e-s))",
                    timeout=300,
                    check=True,
                ).stdout
                rates.append(1024 / (int(out.strip()) / 1e9))
        print(f"leak rate in guest: {min(rates):7.0f} .. {max(rates):.0f} MiB/s  (1 GiB, 3 runs)")

        if not args.no_provision:
            with tempfile.TemporaryDirectory(prefix="harness-vmlab-bench-") as tmp:
                prov, _ = timed("provision", str(inventory), "--results", tmp, "--quiet")
                print(f"provision site.yml: {prov:7.1f} s")
                again, _ = timed("provision", str(inventory), "--results", tmp, "--quiet")
                print(f"provision again:    {again:7.1f} s  (nothing to change)")
    finally:
        t = time.monotonic()
        subprocess.run([sys.executable, "-m", "harness", "lab", "down", name], cwd=REPO, capture_output=True)
        print(f"lab down:           {time.monotonic() - t:7.1f} s")


if __name__ == "__main__":
    main()
