#!/usr/bin/python
"""Ansible module: the node facts the harness model needs, read on the target host.

Keys follow the harness's NodeFacts (harness/config/node.py: memoryCapacity, cpus, numaNodes,
cgroupVersion, kubeletVersion, pageSize, pidMax, swap, kernel, negativeOomScoreAdj, runcVersion)
plus host details the model does not use (capabilities, hugepages, versions, cgroup layout).
Read-only: it never changes the host (changed is always false).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

DOCUMENTATION = r"""
---
module: harness_node_facts
short_description: Node facts for the kubelet memory harness
description:
  - Reads kernel, cgroup version and layout, NUMA topology with per-node memory, hugepages,
    capabilities, swap, and the versions of runc, containerd and the kubelet.
  - Probes whether a negative oom_score_adj can be written (needs CAP_SYS_RESOURCE).
options:
  name:
    description: Node name to report (the inventory host name).
    type: str
    required: true
  kubelet:
    description: Path of the kubelet binary whose version is reported (missing is fine).
    type: str
    default: kubelet
  containerd:
    description: Path or name of the containerd binary.
    type: str
    default: containerd
  runc:
    description: Path or name of the runc binary.
    type: str
    default: runc
author: kubelet memory harness
"""

RETURN = r"""
node_facts:
  description: The facts, keyed like the harness's NodeFacts plus extra host details.
  returned: always
  type: dict
"""

# linux/capability.h, 0..40
CAPS = (  # noqa: SIM905
    "chown dac_override dac_read_search fowner fsetid kill setgid setuid setpcap linux_immutable "
    "net_bind_service net_broadcast net_admin net_raw ipc_lock ipc_owner sys_module sys_rawio "
    "sys_chroot sys_ptrace sys_pacct sys_admin sys_boot sys_nice sys_resource sys_time "
    "sys_tty_config mknod lease audit_write audit_control setfcap mac_override mac_admin syslog "
    "wake_alarm block_suspend audit_read perfmon bpf checkpoint_restore"
).split()


def _read(path: str, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def binary_si(n: int) -> str:
    """Bytes as the harness formats hugepage sizes: 2097152 -> '2Mi', 1073741824 -> '1Gi'."""
    for suffix, factor in (("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{suffix}"
    return str(n)


def parse_cpulist(s: str) -> list[int]:
    out: list[int] = []
    for part in s.strip().split(","):
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def decode_caps(hexmask: str) -> list[str]:
    mask = int(hexmask, 16)
    return [f"CAP_{name.upper()}" for i, name in enumerate(CAPS) if mask & (1 << i)]


def cgroup_layout(mountinfo: str) -> tuple[int, str]:
    """(version of the memory controller, 'unified' | 'hybrid' | 'legacy')."""
    v1_memory = False
    v1_any = False
    v2 = False
    for line in mountinfo.splitlines():
        _, _, right = line.partition(" - ")
        r = right.split()
        if len(r) < 3:
            continue
        if r[0] == "cgroup":
            v1_any = True
            if "memory" in r[2].split(","):
                v1_memory = True
        elif r[0] == "cgroup2":
            v2 = True
    if v1_memory:
        return 1, "hybrid" if v2 else "legacy"
    if v2 and not v1_any:
        return 2, "unified"
    return (2, "hybrid") if v2 else (1, "legacy")


def version_of(argv: list[str], pattern: str) -> str | None:
    exe = argv[0]
    if not os.path.isabs(exe):
        found = shutil.which(exe, path=os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin")
        if not found:
            return None
        exe = found
    elif not os.access(exe, os.X_OK):
        return None
    try:
        out = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(pattern, out.stdout + out.stderr)
    return m.group(1) if m else None


def probe_negative_oom_score_adj() -> bool:
    """Write -1 to a child's oom_score_adj: refused without CAP_SYS_RESOURCE."""
    try:
        p = subprocess.Popen(["sleep", "5"])
    except OSError:
        return False
    try:
        with open(f"/proc/{p.pid}/oom_score_adj", "w") as f:
            f.write("-1")
        return True
    except OSError:
        return False
    finally:
        p.kill()
        p.wait()


def collect(name: str, kubelet: str, containerd: str, runc: str, root: str = "/") -> dict[str, object]:
    r = root.rstrip("/")
    meminfo = _read(f"{r}/proc/meminfo")

    def mi(key: str) -> int:
        m = re.search(rf"^{key}:\s+(\d+)(?: kB)?", meminfo, re.M)
        return int(m.group(1)) * (1024 if key not in ("HugePages_Total", "HugePages_Free") else 1) if m else 0

    cg_version, layout = cgroup_layout(_read(f"{r}/proc/self/mountinfo"))
    nodes = []
    base = f"{r}/sys/devices/system/node"
    names = (
        sorted((d for d in os.listdir(base) if re.fullmatch(r"node\d+", d)), key=lambda d: int(d[4:]))
        if os.path.isdir(base)
        else []
    )
    for d in names:
        nid = int(d[4:])
        nm = re.search(r"MemTotal:\s+(\d+) kB", _read(f"{base}/{d}/meminfo"))
        hp: dict[str, int] = {}
        hdir = f"{base}/{d}/hugepages"
        for hd in sorted(os.listdir(hdir)) if os.path.isdir(hdir) else []:
            m = re.fullmatch(r"hugepages-(\d+)kB", hd)
            if m:
                count = int(_read(f"{hdir}/{hd}/nr_hugepages", "0") or 0)
                if count:
                    hp[binary_si(int(m.group(1)) * 1024)] = count
        nodes.append(
            {
                "id": nid,
                "memory": int(nm.group(1)) * 1024 if nm else 0,
                "hugepages": hp,
                "cpus": parse_cpulist(_read(f"{base}/{d}/cpulist")),
                "distances": [int(x) for x in _read(f"{base}/{d}/distance").split()],
            }
        )
    hugepages: dict[str, dict[str, int]] = {}
    hroot = f"{r}/sys/kernel/mm/hugepages"
    for hd in sorted(os.listdir(hroot)) if os.path.isdir(hroot) else []:
        m = re.fullmatch(r"hugepages-(\d+)kB", hd)
        if m:
            hugepages[binary_si(int(m.group(1)) * 1024)] = {
                "total": int(_read(f"{hroot}/{hd}/nr_hugepages", "0") or 0),
                "free": int(_read(f"{hroot}/{hd}/free_hugepages", "0") or 0),
            }
    status = _read(f"{r}/proc/self/status")
    cap_m = re.search(r"^CapEff:\s+([0-9a-f]+)", status, re.M)
    caps = decode_caps(cap_m.group(1)) if cap_m else []
    swaps = [ln.split()[0] for ln in _read(f"{r}/proc/swaps").splitlines()[1:] if ln.strip()]
    uname = os.uname()
    facts: dict[str, object] = {
        "name": name,
        "hostname": uname.nodename,
        "memoryCapacity": mi("MemTotal"),
        "cpus": len(parse_cpulist(_read(f"{r}/sys/devices/system/cpu/online"))) or os.cpu_count() or 1,
        "cgroupVersion": cg_version,
        "cgroupLayout": layout,
        "pageSize": os.sysconf("SC_PAGE_SIZE"),
        "pidMax": int(_read(f"{r}/proc/sys/kernel/pid_max", "4194304").strip() or 4194304),
        "swap": mi("SwapTotal"),
        "swapDevices": swaps,
        "kernel": uname.release,
        "architecture": uname.machine,
        "hugepages": hugepages,
        "capabilities": caps,
        "negativeOomScoreAdj": probe_negative_oom_score_adj(),
        "systemd": os.path.isdir(f"{r}/run/systemd/system"),
    }
    if nodes:
        facts["numaNodes"] = nodes
    runc_v = version_of([runc, "--version"], r"runc version (\S+)")
    if runc_v:
        facts["runcVersion"] = runc_v.split("+")[0]
    ctd_v = version_of([containerd, "--version"], r"containerd \S+ v?(\d+\.\d+\.\d+\S*)")
    if ctd_v:
        facts["containerdVersion"] = ctd_v
    kv = version_of([kubelet, "--version"], r"Kubernetes v(\d+\.\d+\.\d+\S*)")
    if kv:
        facts["kubeletVersion"] = kv
    return facts


def main() -> None:  # pragma: no cover - runs under Ansible
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "kubelet": {"type": "str", "default": "kubelet"},
            "containerd": {"type": "str", "default": "containerd"},
            "runc": {"type": "str", "default": "runc"},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        facts = collect(p["name"], p["kubelet"], p["containerd"], p["runc"])
    except (OSError, ValueError) as exc:
        module.fail_json(msg=f"cannot read node facts: {exc}")
    module.exit_json(changed=False, node_facts=facts)


if __name__ == "__main__":
    main()
