"""The cluster's container runtime: a containerd of its own (root, state, socket), CRI plugin on.

Config (containerd 1.6, ``version = 2``), following local-cluster-notes §3.1:

* root ``<cluster state>/containerd``, state and socket under ``/run/harness/cluster/containerd``;
  no TCP listener (debug and metrics addresses empty; the CRI streaming server stays on 127.0.0.1);
* ``sandbox_image`` = the harness's locally imported pause image (nothing can be pulled);
* runc v2 with ``SystemdCgroup = false`` (the kubelet's ``cgroupDriver: cgroupfs``);
* ``restrict_oom_score_adj = true`` when this host cannot write a negative ``oom_score_adj``
  (no CAP_SYS_RESOURCE): containerd then clamps the kubelet's -997/-998 to the minimum it may set
  instead of failing every Guaranteed container (containerd pkg/cri/server: restrictOOMScoreAdj);
* CNI: one network made of the ``loopback`` plugin only, so the runtime reports NetworkReady and the
  node becomes Ready, while pods get a network namespace with nothing but ``lo``: no traffic can
  leave them, and no bridge or address appears on the host.

Images are imported into the CRI namespace ``k8s.io`` (the kubelet's) under their fully qualified names.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError, HostError

if TYPE_CHECKING:
    from harness.cluster import Cluster

CNI_BIN_DIR = "/usr/lib/cni"  # Debian containernetworking-plugins
LOOPBACK_CONFLIST = '{"cniVersion": "0.4.0", "name": "harness-loopback", "plugins": [{"type": "loopback"}]}\n'


def containerd_config(cluster: Cluster, *, restrict_oom_score_adj: bool) -> str:
    from harness.images import PAUSE_IMAGE

    run = cluster.containerd_socket.parent
    runc = shutil.which("runc") or "/usr/bin/runc"
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""# written by harness/cluster/runtime.py
version = 2
root = "{cluster.state / "containerd"}"
state = "{run / "state"}"

[grpc]
  address = "{cluster.containerd_socket}"

[ttrpc]
  address = "{cluster.containerd_socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = {str(restrict_oom_score_adj).lower()}
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{runc}"
  [{cri}.cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{run / "cni"}"
    max_conf_num = 1
"""


def _ctr(cluster: Cluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ctr", "--address", str(cluster.containerd_socket), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ensure_cluster_containerd(cluster: Cluster, progress: Callable[[str], None] | None = None) -> None:
    from harness.launch.process import probe_negative_oom_score_adj

    say = progress or (lambda _m: None)
    d = cluster.daemon("containerd")
    if not d.running():
        if not Path(CNI_BIN_DIR, "loopback").exists():
            raise HostError(f"{CNI_BIN_DIR}/loopback is missing (Debian package containernetworking-plugins)")
        run = cluster.containerd_socket.parent
        (run / "cni").mkdir(parents=True, exist_ok=True)
        (run / "cni" / "10-harness-loopback.conflist").write_text(LOOPBACK_CONFLIST)
        (cluster.state / "containerd").mkdir(parents=True, exist_ok=True)
        cfg = cluster.state / "containerd.toml"
        cfg.write_text(containerd_config(cluster, restrict_oom_score_adj=not probe_negative_oom_score_adj()))
        say(f"starting containerd ({cluster.containerd_socket})")
        d.start([shutil.which("containerd") or "containerd", "--config", str(cfg)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if cluster.containerd_socket.exists() and _ctr(cluster, "version", timeout=5).returncode == 0:
                break
            if not d.running():
                raise HarnessError(f"containerd exited at start; last log lines ({d.log}):\n{d.log_tail()}")
            time.sleep(0.2)
        else:
            raise HarnessError(f"containerd did not answer on {cluster.containerd_socket}; log {d.log}")
    import_images(cluster, say)


def import_images(cluster: Cluster, say: Callable[[str], None]) -> None:
    """Import the pause and leak images into ``k8s.io`` unless they are there with the same digest."""
    from harness.cluster import CONTAINERD_NAMESPACE_K8S
    from harness.images import LEAK_IMAGE, PAUSE_IMAGE, build_all, import_into_containerd

    have = _ctr(cluster, "-n", CONTAINERD_NAMESPACE_K8S, "images", "ls", "-q").stdout.split()
    if PAUSE_IMAGE in have and LEAK_IMAGE in have:
        return
    out = cluster.state / "images"
    tars = build_all(out, "oci")
    for name, tar in tars.items():
        say(f"importing image {name} into containerd namespace {CONTAINERD_NAMESPACE_K8S}")
        import_into_containerd(str(cluster.containerd_socket), CONTAINERD_NAMESPACE_K8S, tar)


def stop_cluster_containerd(cluster: Cluster) -> bool:
    """Stop the cluster's containerd by pid, and the shims it started (found by its socket)."""
    d = cluster.daemon("containerd")
    shims = _shim_pids(cluster)
    was = d.stop(timeout=20)
    import contextlib
    import os
    import signal

    for pid in shims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return was


def _shim_pids(cluster: Cluster) -> list[int]:
    """containerd-shim-runc-v2 processes whose command line names this containerd's socket."""
    sock = str(cluster.containerd_socket)
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and sock.encode() in b" ".join(argv):
            out.append(int(p.name))
    return out


def cluster_containerd_status(cluster: Cluster) -> dict[str, Any]:
    d = cluster.daemon("containerd")
    st: dict[str, Any] = {
        "running": d.running(),
        "pid": d.pid(),
        "log": str(d.log),
        "socket": str(cluster.containerd_socket),
    }
    if st["running"]:
        r = _ctr(cluster, "version", timeout=5)
        if r.returncode == 0:
            st["version"] = " ".join(
                ln.split(":", 1)[1].strip() for ln in r.stdout.splitlines() if "Version" in ln
            )[:80]
    return st
