"""A single-node Kubernetes on this host: etcd, kube-apiserver, containerd and a real kubelet.

Built from upstream (``harness.cluster.build``), started by the harness, listening on loopback only,
everything under one state directory (default ``/var/lib/harness/cluster``)::

    build/v1.33.4/bin/...     binaries per version (kept across ``down``)
    pki/                      CA, certificates and keys (harness.cluster.pki)
    etcd/                     etcd data
    kubelet/                  the kubelet's --root-dir (memory/cpu manager state files live here)
    kubelet/config.yaml       the profile's KubeletConfiguration plus the local node's fields
    containerd/               containerd root (its socket and state are under /run/harness/cluster)
    logs/<component>.log      one log per component
    pids/<component>.json     pid + start time of what ``up`` started; ``down`` stops exactly those
    admin.kubeconfig          the harness's credentials (O=system:masters)
    cluster.json              version, profile, ports, node name, timings of the last ``up``

Ports (all on 127.0.0.1): etcd 23790/23800 (not 2379: a packaged etcd may own it), apiserver 6443,
kubelet 10250 (https, client certificates from the CA) and healthz 10248.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from harness.cluster.build import BuildResult, binary_version, build_for, ensure_built, normalize_version
from harness.cluster.ceiling import cap_kubepods, confine_daemons, kubepods_limit_file, mem_total
from harness.cluster.client import api_client
from harness.cluster.daemon import Daemon
from harness.cluster.pki import Pki, ensure_pki, kubeconfig
from harness.cluster.runtime import (
    cluster_containerd_status,
    ensure_cluster_containerd,
    instance,
    stop_cluster_containerd,
)
from harness.config.errors import load_yaml_mapping, safe_load
from harness.config.kubelet import load_profile
from harness.errors import HarnessError, HostError
from harness.host.cgroups import CGROUP_ROOT, hierarchies, rmdir_tree
from harness.images import PAUSE_IMAGE
from harness.locks import exclusive
from harness.model.cgroupnames import Driver, kubelet_cgroup
from harness.owned import Ledger
from harness.procs import read_pid

DEFAULT_STATE = Path(os.environ.get("HARNESS_CLUSTER_DIR", "/var/lib/harness/cluster"))
RUN_DIR = Path("/run/harness/cluster")
NODE_NAME = "harness-node"
DEFAULT_VERSION = "1.33.4"
ETCD_CLIENT_PORT = 23790
ETCD_PEER_PORT = 23800
APISERVER_PORT = 6443
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
COMPONENTS = ("etcd", "containerd", "kube-apiserver", "kubelet")
CLUSTER_OWNER = "cluster"  # its ledger (harness.owned): the kubepods cgroups its kubelet created
CLUSTER_LOCK = "cluster"  # harness.locks: up, down and kubelet restarts, one at a time machine-wide

Progress = Callable[[str], None]

# State files the kubelet's resource managers keep in its root dir; upstream docs
# (administer-cluster/memory-manager, cpu-management-policies) tell operators to delete them when the
# policy or the reservations change, or the kubelet refuses to start.
MANAGER_STATE_FILES = ("memory_manager_state", "cpu_manager_state")
MANAGER_FIELDS = (
    "memoryManagerPolicy",
    "reservedMemory",
    "cpuManagerPolicy",
    "cpuManagerPolicyOptions",
    "reservedSystemCPUs",
    "kubeReserved",
    "systemReserved",
    "evictionHard",
    "topologyManagerPolicy",
)


@dataclass
class KubeletStart:
    ok: bool
    seconds: float
    error: str = ""  # the kubelet's own error line when it refused to start
    log_tail: str = ""


@dataclass
class Cluster:
    state: Path = DEFAULT_STATE
    run_dir: Path = RUN_DIR
    node_name: str = NODE_NAME
    progress: Progress = field(default=lambda _m: None)
    ledger_dir: Path | None = None  # harness.owned's directory (default /run/harness/owned)
    etcd_client_port: int = ETCD_CLIENT_PORT
    etcd_peer_port: int = ETCD_PEER_PORT
    cgroup_root: Path = CGROUP_ROOT

    # ---- paths -----------------------------------------------------------------------------
    @property
    def pki(self) -> Pki:
        return Pki(self.state / "pki")

    @property
    def kubelet_root(self) -> Path:
        return self.state / "kubelet"

    @property
    def kubelet_config_path(self) -> Path:
        return self.kubelet_root / "config.yaml"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.state / "admin.kubeconfig"

    @property
    def record_path(self) -> Path:
        return self.state / "cluster.json"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{APISERVER_PORT}"

    @property
    def cgroup_driver(self) -> Driver:
        """The kubelet's (and runc's) cgroup driver: ``systemd`` where systemd is PID 1 (sd_booted:
        ``/run/systemd/system`` exists; the kubeadm default, and what a lab host runs), ``cgroupfs``
        elsewhere (this controller). ``HARNESS_CGROUP_DRIVER`` overrides it."""
        env = os.environ.get("HARNESS_CGROUP_DRIVER", "")
        if env in ("cgroupfs", "systemd"):
            return env  # type: ignore[return-value]
        return "systemd" if Path("/run/systemd/system").is_dir() else "cgroupfs"

    @property
    def kubepods(self) -> str:
        """The kubelet's kubepods cgroup below the cgroup root, as its driver names it."""
        return kubelet_cgroup("kubepods", self.cgroup_driver)

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd" / "containerd.sock"

    def daemon(self, name: str) -> Daemon:
        return Daemon(name, self.state / "logs" / f"{name}.log", self.state / "pids" / f"{name}.json")

    def record(self) -> dict[str, Any]:
        try:
            rec: dict[str, Any] = json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            return {}
        return rec

    def _save_record(self, rec: dict[str, Any]) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec, indent=2, default=str) + "\n")
        tmp.replace(self.record_path)

    # ---- up --------------------------------------------------------------------------------
    def up(self, version: str, profile: Path, *, memory_capacity: int | None = None) -> dict[str, Any]:
        """Build (or reuse) ``version``, start whatever is not running, (re)start the kubelet with
        ``profile``; returns timings. Idempotent: a second ``up`` with the same inputs changes nothing.
        Holds the cluster's machine-wide lock (harness.locks): a second ``up`` or ``down`` waits."""
        with exclusive(CLUSTER_LOCK, f"bring the local cluster up (v{version})", say=self.progress):
            return self._up(version, profile)

    def _up(self, version: str, profile: Path) -> dict[str, Any]:
        v = normalize_version(version)
        t0 = time.monotonic()
        timings: dict[str, float] = {}
        self._check_host()
        rec = self.record()

        t = time.monotonic()
        built = ensure_built(v, progress=self.progress)
        timings["build"] = round(time.monotonic() - t, 1)
        if not built.cached:
            self.progress(f"built v{v}: {built.seconds}")

        self.state.mkdir(parents=True, exist_ok=True)
        self.state.chmod(0o700)
        pki = ensure_pki(self.state / "pki", self.node_name)
        self.admin_kubeconfig.write_text(kubeconfig(self.server, pki, "harness", "admin"))
        self.admin_kubeconfig.chmod(0o600)
        (self.state / "kubelet.kubeconfig").write_text(
            kubeconfig(self.server, pki, self.node_name, "kubelet")
        )

        t = time.monotonic()
        etcd_restarted = self._start_etcd()
        timings["etcd"] = round(time.monotonic() - t, 1)
        t = time.monotonic()
        self._start_containerd()
        timings["containerd"] = round(time.monotonic() - t, 1)
        t = time.monotonic()
        self._start_apiserver(built, restart=rec.get("version") != v or etcd_restarted)
        timings["kube-apiserver"] = round(time.monotonic() - t, 1)

        t = time.monotonic()
        config = self.kubelet_config(profile, v)
        start = self.start_kubelet(built, config, profile=profile)
        if not start.ok:
            raise HostError(f"the kubelet v{v} did not start: {start.error or start.log_tail}")
        timings["kubelet"] = round(time.monotonic() - t, 1)
        t = time.monotonic()
        self.wait_node_ready()
        timings["node_ready"] = round(time.monotonic() - t, 1)
        self.apply_ceiling()  # also when the kubelet was already running (a cluster of an older harness)
        timings["total"] = round(time.monotonic() - t0, 1)
        rec = self.record()
        rec.update(
            {
                "version": v,
                "profile": str(profile),
                "node": self.node_name,
                "server": self.server,
                "kubeconfig": str(self.admin_kubeconfig),
                "containerd_socket": str(self.containerd_socket),
                "timings": timings,
                "up_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
        self._save_record(rec)
        return timings

    def _check_host(self) -> None:
        missing = [b for b in ("etcd", "containerd", "runc", "ctr") if shutil.which(b) is None]
        if missing:
            raise HostError(
                f"missing {', '.join(missing)} (scripts/setup.sh installs etcd-server, containerd, runc)"
            )
        if not Path("/dev/kmsg").exists():
            raise HostError(
                "/dev/kmsg is missing: the kubelet's OOM watcher cannot start (kubelet oomwatcher)"
            )

    def etcd_argv(self) -> list[str]:
        """etcd on loopback over TLS only: clients and the peer listener need a certificate of the
        cluster's CA (without one, any local user could write pods the kubelet runs as root)."""
        pki = self.pki
        client = f"https://127.0.0.1:{self.etcd_client_port}"
        peer = f"https://127.0.0.1:{self.etcd_peer_port}"
        return [
            shutil.which("etcd") or "etcd",
            "--name=harness",
            f"--data-dir={self.state / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=harness={peer}",
            f"--cert-file={pki.crt('etcd-server')}",
            f"--key-file={pki.key('etcd-server')}",
            "--client-cert-auth=true",
            f"--trusted-ca-file={pki.ca}",
            f"--peer-cert-file={pki.crt('etcd-peer')}",
            f"--peer-key-file={pki.key('etcd-peer')}",
            "--peer-client-cert-auth=true",
            f"--peer-trusted-ca-file={pki.ca}",
            "--listen-metrics-urls=",
            "--logger=zap",
            "--log-level=warn",
            "--quota-backend-bytes=2147483648",
        ]

    def _start_etcd(self) -> bool:
        """Start etcd unless it runs with these arguments; True when (re)started (an etcd of an
        earlier version of the harness, e.g. plain HTTP, is restarted, and the apiserver with it)."""
        d = self.daemon("etcd")
        argv = self.etcd_argv()
        rec = d.record() or {}
        if d.running() and rec.get("argv") == argv:
            return False
        if d.running():
            self.progress("restarting etcd: its arguments changed (TLS with client certificates)")
            d.stop()
        self.progress(f"starting etcd on 127.0.0.1:{self.etcd_client_port} (TLS, client certificates)")
        data = self.state / "etcd"
        data.mkdir(parents=True, exist_ok=True)
        data.chmod(0o700)
        d.start(argv)
        self._wait(self._etcd_healthy, 60, d, "etcd /health")
        return True

    def _etcd_healthy(self) -> bool:
        pki = self.pki
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        ctx.load_cert_chain(str(pki.crt("apiserver-etcd-client")), str(pki.key("apiserver-etcd-client")))
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{self.etcd_client_port}/health", context=ctx, timeout=2.0
            ) as r:
                return bool(r.status == 200)
        except (OSError, ValueError):
            return False

    def _start_containerd(self) -> None:

        ensure_cluster_containerd(self, progress=self.progress)

    def _start_apiserver(self, built: BuildResult, *, restart: bool) -> None:
        d = self.daemon("kube-apiserver")
        if d.running() and restart:
            self.progress("restarting kube-apiserver (new version or new etcd)")
            d.stop()
        if d.running():
            return
        self.progress(f"starting kube-apiserver {built.build.version} on 127.0.0.1:{APISERVER_PORT}")
        pki = self.pki
        cert_dir = self.state / "apiserver"
        cert_dir.mkdir(parents=True, exist_ok=True)
        d.start(
            [
                str(built.bin_dir / "kube-apiserver"),
                f"--etcd-servers=https://127.0.0.1:{self.etcd_client_port}",
                f"--etcd-cafile={pki.ca}",
                f"--etcd-certfile={pki.crt('apiserver-etcd-client')}",
                f"--etcd-keyfile={pki.key('apiserver-etcd-client')}",
                "--bind-address=127.0.0.1",
                f"--secure-port={APISERVER_PORT}",
                # the kubernetes Service's endpoint would be this address; nothing here needs that
                # Service, so no reconciler, and the apiserver needs no default route
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                "--service-cluster-ip-range=10.0.0.0/24",
                f"--cert-dir={cert_dir}",
                f"--tls-cert-file={pki.crt('apiserver')}",
                f"--tls-private-key-file={pki.key('apiserver')}",
                f"--client-ca-file={pki.ca}",
                f"--kubelet-client-certificate={pki.crt('apiserver-kubelet-client')}",
                f"--kubelet-client-key={pki.key('apiserver-kubelet-client')}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--authorization-mode=Node,RBAC",
                # no controller-manager creates default ServiceAccounts or kube-root-ca.crt,
                # so ServiceAccount admission would block every pod (local-cluster-notes §1.4)
                "--disable-admission-plugins=ServiceAccount",
                "--enable-admission-plugins=NodeRestriction,Priority",
                "--anonymous-auth=false",
                "--profiling=false",
                "--v=1",
            ]
        )
        self._wait(lambda: self._api_ready(), 180, d, "kube-apiserver /readyz")

    def _api_ready(self) -> bool:
        try:
            return self.api_get("/readyz") == "ok"
        except (OSError, HarnessError):
            return False

    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca))
        ctx.load_cert_chain(str(self.pki.crt("admin")), str(self.pki.key("admin")))
        return ctx

    def api_get(self, path: str, timeout: float = 5.0) -> str:
        with urllib.request.urlopen(f"{self.server}{path}", context=self._ssl(), timeout=timeout) as r:
            return str(r.read().decode())

    def kubelet_get(self, path: str, timeout: float = 5.0) -> str:
        """GET from the kubelet's own HTTPS port on loopback (stats/summary, pods, configz)."""
        with urllib.request.urlopen(
            f"https://127.0.0.1:{KUBELET_PORT}{path}", context=self._ssl(), timeout=timeout
        ) as r:
            return str(r.read().decode())

    # ---- kubelet ---------------------------------------------------------------------------
    def kubelet_config(self, profile: Path, version: str) -> dict[str, Any]:
        """The profile's KubeletConfiguration verbatim, plus only what a local node needs."""

        load_profile(profile)  # validates (file + field in errors)
        cfg: dict[str, Any] = load_yaml_mapping(profile)
        minor = int(normalize_version(version).split(".")[1])
        pki = self.pki
        local: dict[str, Any] = {
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "cgroupDriver": self.cgroup_driver,  # and containerd runs runc with SystemdCgroup to match
            "address": "127.0.0.1",
            "port": KUBELET_PORT,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": KUBELET_HEALTHZ_PORT,
            "tlsCertFile": str(pki.crt("kubelet-serving")),
            "tlsPrivateKeyFile": str(pki.key("kubelet-serving")),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(pki.ca)},
            },
            # every request to the kubelet's API is authorized by the apiserver (SubjectAccessReview):
            # the harness's admin certificate (system:masters) and the apiserver's kubelet client
            # (system:masters) may; any other certificate of the CA may not
            "authorization": {"mode": "Webhook"},
            "staticPodPath": str(self.state / "manifests"),
            "resolvConf": "/etc/resolv.conf",
            "failSwapOn": False,
            "registerNode": True,
        }
        if minor >= 31:
            # field added in 1.31 (KEP-4569); 1.35 flips its default to true and refuses cgroup v1
            local["failCgroupV1"] = False
        # Never garbage-collect the locally imported images: nothing can pull them back
        # (imageGCHighThresholdPercent 100 disables image GC, kubelet config docs).
        defaults = {"imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99}
        out = dict(cfg)
        added = []
        for k, val in {**defaults}.items():
            if k not in out:
                out[k] = val
                added.append(k)
        for k, val in local.items():
            if k in cfg and cfg[k] != val and k not in ("failSwapOn",):
                self.progress(f"note: profile field {k}={cfg[k]!r} is replaced by the local node's {val!r}")
            out[k] = val
            added.append(k)
        out["apiVersion"] = "kubelet.config.k8s.io/v1beta1"
        out["kind"] = "KubeletConfiguration"
        (self.state / "manifests").mkdir(parents=True, exist_ok=True)
        return out

    def _clear_manager_state(self, new: dict[str, Any]) -> list[str]:
        """Delete the memory/cpu manager state files when their policy or reservations change."""
        try:
            old = safe_load(self.kubelet_config_path.read_text()) or {}
        except OSError:
            old = {}
        changed = [f for f in MANAGER_FIELDS if old.get(f) != new.get(f)]
        removed = []
        if changed:
            for name in MANAGER_STATE_FILES:
                p = self.kubelet_root / name
                if p.exists():
                    p.unlink()
                    removed.append(name)
            if removed:
                self.progress(f"cleared {', '.join(removed)} ({', '.join(changed)} changed)")
        return removed

    def start_kubelet(
        self,
        built: BuildResult,
        config: dict[str, Any],
        *,
        profile: Path | None = None,
        timeout: float = 90.0,
    ) -> KubeletStart:
        """(Re)start the kubelet with ``config``; waits for healthz, or for its exit and error.
        Under the cluster's lock (re-entrant: ``up`` holds it already)."""
        with exclusive(CLUSTER_LOCK, "restart the local cluster's kubelet", say=self.progress):
            return self._start_kubelet(built, config, profile=profile, timeout=timeout)

    def _start_kubelet(
        self, built: BuildResult, config: dict[str, Any], *, profile: Path | None, timeout: float
    ) -> KubeletStart:
        d = self.daemon("kubelet")
        self.kubelet_root.mkdir(parents=True, exist_ok=True)
        unchanged = (
            d.running()
            and self.kubelet_config_path.exists()
            and safe_load(self.kubelet_config_path.read_text()) == config
            and self.record().get("kubelet_binary") == str(built.bin_dir / "kubelet")
        )
        if unchanged:
            return KubeletStart(True, 0.0)
        if d.running():
            self.progress("stopping the kubelet to apply the new configuration")
            d.stop(timeout=30)
        self._clear_manager_state(config)
        tmp = self.kubelet_config_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=True))
        tmp.replace(self.kubelet_config_path)
        argv = [
            str(built.bin_dir / "kubelet"),
            f"--config={self.kubelet_config_path}",
            f"--kubeconfig={self.state / 'kubelet.kubeconfig'}",
            f"--root-dir={self.kubelet_root}",
            f"--hostname-override={self.node_name}",
            "--v=2",
            # each eviction sync's start and decision in the log (sample.kubeletlog), that file alone
            "--vmodule=eviction_manager=3",
        ]
        minor = int(built.build.version.split(".")[1])
        if minor < 35:
            # keeps the imported pause image out of image GC (flag removed in 1.35)

            argv.append(f"--pod-infra-container-image={PAUSE_IMAGE}")
        self.progress(f"starting kubelet v{built.build.version} (config {self.kubelet_config_path})")
        log_offset = d.log.stat().st_size if d.log.exists() else 0
        self.claim_pod_cgroups()
        t = time.monotonic()
        t_wall = time.time()
        d.start(argv)
        rec = self.record()
        # cAdvisor reads each NUMA node's memory once, when the kubelet starts; on hosts whose memory
        # is onlined over time (this VM) it differs from later reads, so keep what the kubelet saw.
        rec["numa_memory_at_kubelet_start"] = numa_memory()
        # and the node's capacity: cAdvisor's MemTotal, read once at the same start
        # (pkg/kubelet/kubelet.go setCachedMachineInfo; cm.CapacityFromMachineInfo)
        rec["mem_total_at_kubelet_start"] = None
        with contextlib.suppress(OSError, HostError):
            rec["mem_total_at_kubelet_start"] = mem_total()
        rec["kubepods_limit_by_kubelet"] = None  # this kubelet's own write is not capped yet
        rec["kubelet_binary"] = str(built.bin_dir / "kubelet")
        rec["kubelet_profile"] = str(profile) if profile else None
        self._save_record(rec)
        deadline = t + timeout
        while time.monotonic() < deadline:
            if _http_ok(f"http://127.0.0.1:{KUBELET_HEALTHZ_PORT}/healthz", timeout=1.0):
                if config.get("cgroupsPerQOS", True):
                    # the kubelet writes kubepods after healthz answers: cap it after that write
                    self.wait_allocatable_enforced(t_wall, timeout=max(deadline - time.monotonic(), 5.0))
                self.apply_ceiling()
                return KubeletStart(True, round(time.monotonic() - t, 1))
            if not d.running():
                text = _read_from(d.log, log_offset)
                return KubeletStart(
                    False, round(time.monotonic() - t, 1), kubelet_error(text), d.log_tail(15)
                )
            time.sleep(0.3)
        return KubeletStart(
            False, round(time.monotonic() - t, 1), f"healthz not ok after {timeout:.0f} s", d.log_tail(15)
        )

    def wait_allocatable_enforced(self, since_wall: float, timeout: float = 60.0) -> bool:
        """Wait until the kubelet started at ``since_wall`` has written its limit on ``kubepods``.

        Its healthz answers before that write (``SyncLoopHealthCheck`` is ok until the sync loop
        stalls; kubelet.go), and the write comes later, from a goroutine: ``updateRuntimeUp`` runs
        ``initializeRuntimeDependentModules`` once the runtime answers, whose ``ContainerManager.Start``
        calls ``enforceNodeAllocatableCgroups``, which updates ``kubepods`` to capacity (or allocatable)
        in a goroutine and records the Node event ``NodeAllocatableEnforced`` when done (retrying
        every minute on failure; pkg/kubelet/cm/node_container_manager_linux.go, events/event.go).
        A ceiling written before that event is overwritten (labs ka and kb, 2026-12-07: the first
        scenario sampled the ceiling, later ones the kubelet's value). Returns whether the event came
        within ``timeout`` seconds; says so on the console when it did not."""
        selector = urllib.parse.quote(
            f"involvedObject.kind=Node,involvedObject.name={self.node_name},reason=NodeAllocatableEnforced",
            safe="=,",
        )
        deadline = time.monotonic() + timeout
        last = "no such event yet"
        while time.monotonic() < deadline:
            try:
                items = json.loads(self.api_get(f"/api/v1/events?fieldSelector={selector}"))["items"]
                if any(_event_time(e) >= int(since_wall) - 1 for e in items):
                    return True
            except (OSError, ValueError, KeyError) as exc:
                last = f"GET events: {exc}"
            time.sleep(0.3)
        self.progress(
            f"the kubelet has not reported NodeAllocatableEnforced within {timeout:.0f} s ({last}); "
            "capping kubepods now, the kubelet may still raise it"
        )
        return False

    def apply_ceiling(self) -> None:
        """The harness's memory ceiling (harness.cluster.ceiling): the daemons in ``harness-cluster``,
        ``kubepods`` capped below the host's memory whatever the profile says."""
        pids = [p for n in ("etcd", "kube-apiserver", "kubelet") if (p := self.daemon(n).pid()) is not None]
        cd = read_pid(instance(self).pidfile_path)
        if cd is not None:
            pids.append(cd)
        confine_daemons(pids, root=self.cgroup_root)
        capped = self.cap_kubepods()
        if capped is not None:
            self.progress(f"kubepods capped at {capped / (1 << 30):.2f} GiB (the harness's ceiling)")

    def cap_kubepods(self) -> int | None:
        """``ceiling.cap_kubepods`` on this cluster's ``kubepods``, keeping what the kubelet had
        written there in the cluster's record (``kubepods_limit_by_kubelet``: the file, the kubelet's
        value and the harness's as the kernel shows them), so that the cgroup verdicts still judge
        the kubelet's value on a host whose ceiling is below it (a 4 GiB lab VM). Returns the
        limit written, None when the kubelet's value was at or below the ceiling."""
        limit = kubepods_limit_file(self.cgroup_root, self.kubepods)
        try:
            found: str | None = limit.read_text().strip()
        except OSError:
            found = None
        capped = cap_kubepods(root=self.cgroup_root, kubepods=self.kubepods)
        if capped is not None and found is not None:
            with contextlib.suppress(OSError):
                rec = self.record()
                rec["kubepods_limit_by_kubelet"] = {
                    "file": str(limit),
                    "kubelet": found,
                    "harness": limit.read_text().strip(),
                }
                self._save_record(rec)
        return capped

    def kubelet_overwritten(self) -> dict[str, tuple[str, str]]:
        """The files whose kubelet value the harness's ceiling replaced since the kubelet last started:
        file -> (the kubelet's value, the harness's)."""
        ov = self.record().get("kubepods_limit_by_kubelet")
        if not isinstance(ov, dict):
            return {}
        return {str(ov["file"]): (str(ov["kubelet"]), str(ov["harness"]))}

    def kubelet_healthy(self) -> bool:
        return _http_ok(f"http://127.0.0.1:{KUBELET_HEALTHZ_PORT}/healthz", timeout=2.0)

    def wait_node_ready(self, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = "no Node object yet"
        while time.monotonic() < deadline:
            try:
                node = json.loads(self.api_get(f"/api/v1/nodes/{self.node_name}"))
                conds = {c["type"]: c for c in node.get("status", {}).get("conditions", [])}
                ready = conds.get("Ready", {})
                if ready.get("status") == "True":
                    return dict(node)
                last = f"Ready={ready.get('status')} ({ready.get('reason')}: {ready.get('message')})"
            except urllib.error.HTTPError as exc:
                last = f"GET node: HTTP {exc.code}"
            except OSError as exc:
                last = f"GET node: {exc}"
            time.sleep(0.5)
        raise HostError(
            f"node {self.node_name} not Ready after {timeout:.0f} s: {last}; kubelet log {self.daemon('kubelet').log}"
        )

    def _wait(self, ok: Callable[[], bool], timeout: float, d: Daemon, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ok():
                return
            if not d.running():
                raise HostError(
                    f"{d.name} exited while waiting for {what}; last log lines ({d.log}):\n{d.log_tail()}"
                )
            time.sleep(0.3)
        raise HostError(f"{what} not ready after {timeout:.0f} s; last log lines ({d.log}):\n{d.log_tail()}")

    # ---- down / status ---------------------------------------------------------------------
    def down(self, *, purge: bool = False) -> list[str]:
        """Stop exactly what ``up`` started (kubelet first), by pid, under the cluster's lock.
        Returns what was stopped."""
        with exclusive(CLUSTER_LOCK, "bring the local cluster down", say=self.progress):
            return self._down(purge=purge)

    def _down(self, *, purge: bool) -> list[str]:
        stopped = []
        self._delete_pods()
        for name in ("kubelet", "kube-apiserver"):
            if self.daemon(name).stop(timeout=30):
                stopped.append(name)

        if stop_cluster_containerd(self):
            stopped.append("containerd")
        if self.daemon("etcd").stop():
            stopped.append("etcd")
        self._remove_pod_cgroups()
        if purge:
            for sub in ("etcd", "kubelet", "containerd", "pki", "apiserver", "manifests"):
                with contextlib.suppress(FileNotFoundError):
                    _rmtree(self.state / sub)
        return stopped

    def _delete_pods(self) -> None:
        """Pods still on the node at ``down``: stop their containers through the kubelet (best effort)."""
        if not (self.daemon("kubelet").running() and self.daemon("kube-apiserver").running()):
            return
        try:
            pods = json.loads(self.api_get(f"/api/v1/pods?fieldSelector=spec.nodeName={self.node_name}"))
        except (OSError, ValueError, HarnessError):
            return
        if not pods.get("items"):
            return
        # lazy: the Kubernetes client loads only when a cluster is used
        from kubernetes import client as k8s

        core = k8s.CoreV1Api(api_client(self))
        for p in pods["items"]:
            md = p["metadata"]
            with contextlib.suppress(Exception):
                core.delete_namespaced_pod(md["name"], md["namespace"], grace_period_seconds=0)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if not json.loads(self.api_get(f"/api/v1/pods?fieldSelector=spec.nodeName={self.node_name}"))[
                    "items"
                ]:
                    return
            time.sleep(0.5)

    def claim_pod_cgroups(self) -> list[Path]:
        """Before the kubelet starts: record in the cluster's ledger (harness.owned) each
        ``kubepods`` it will create, i.e. those that do not exist yet. A ``kubepods`` that exists
        already (a host's own kubelet: its default path) is not ours, and ``down`` leaves it."""
        led = Ledger.open(CLUSTER_OWNER, directory=self.ledger_dir)
        mine = {str(e.get("path")) for e in led.live("cluster-cgroup")}
        out = []
        for mount in hierarchies(self.cgroup_root):
            top = mount / self.kubepods
            if not top.exists() and str(top) not in mine:
                led.add("cluster-cgroup", path=str(top))
                out.append(top)
        return out

    def _remove_pod_cgroups(self) -> list[str]:
        """The kubelet leaves ``kubepods`` behind: remove, once nothing runs there, those the
        cluster's ledger says its kubelet created (never another kubelet's); returns what stayed."""
        led = Ledger.open(CLUSTER_OWNER, directory=self.ledger_dir)
        failed = []
        if self.cgroup_driver == "systemd" and led.live("cluster-cgroup") and shutil.which("systemctl"):
            # the systemd driver's slices are units: stop them (systemd removes their cgroups)
            subprocess.run(
                ["systemctl", "stop", self.kubepods.split("/")[0]],
                capture_output=True,
                timeout=60,
                check=False,
            )
        for e in led.live("cluster-cgroup"):
            top = Path(str(e.get("path")))
            if top.is_dir():
                failed += rmdir_tree(top)
            if not top.exists():
                led.release(**e)
        return failed

    def status(self) -> dict[str, Any]:
        rec = self.record()
        comps: dict[str, Any] = {}
        for name in ("etcd", "kube-apiserver", "kubelet"):
            d = self.daemon(name)
            comps[name] = {"running": d.running(), "pid": d.pid(), "log": str(d.log)}

        comps["containerd"] = cluster_containerd_status(self)
        out: dict[str, Any] = {
            "state": str(self.state),
            "components": comps,
            **{k: rec.get(k) for k in ("version", "profile", "timings")},
        }
        out["versions"] = {}
        if rec.get("version"):
            b = build_for(rec["version"])
            for c in ("kubelet", "kube-apiserver"):
                out["versions"][c] = binary_version(b.binary(c))
        with contextlib.suppress(OSError):
            out["versions"]["etcd"] = subprocess.run(
                ["etcd", "--version"], capture_output=True, text=True, timeout=10
            ).stdout.splitlines()[0]
        if comps["kube-apiserver"]["running"]:
            try:
                node = json.loads(self.api_get(f"/api/v1/nodes/{self.node_name}"))
                st = node.get("status", {})
                out["node"] = {
                    "name": self.node_name,
                    "kubeletVersion": st.get("nodeInfo", {}).get("kubeletVersion"),
                    "containerRuntimeVersion": st.get("nodeInfo", {}).get("containerRuntimeVersion"),
                    "conditions": {c["type"]: c["status"] for c in st.get("conditions", [])},
                    "capacity": st.get("capacity", {}),
                    "allocatable": st.get("allocatable", {}),
                }
            except (OSError, ValueError, HarnessError) as exc:
                out["node"] = {"error": str(exc)}
        return out

    def require_up(self) -> dict[str, Any]:
        """The cluster record, or a clear error when the cluster is not running."""
        missing = [n for n in ("etcd", "kube-apiserver", "kubelet") if not self.daemon(n).running()]
        if missing:
            raise HostError(
                f"the local cluster is not running ({', '.join(missing)} down); start it with `harness cluster up`"
            )
        return self.record()


def numa_memory(root: Path = Path("/sys/devices/system/node")) -> dict[str, int]:
    """NUMA node id -> MemTotal bytes from /sys/devices/system/node/node*/meminfo."""

    out: dict[str, int] = {}
    for d in sorted(root.glob("node[0-9]*")):
        with contextlib.suppress(OSError):
            m = re.search(r"MemTotal:\s+(\d+) kB", (d / "meminfo").read_text())
            if m:
                out[d.name[4:]] = int(m.group(1)) * 1024
    return out


def kubelet_error(log_text: str) -> str:
    """The line that says why the kubelet exited (klog ``E`` lines, ``failed to run Kubelet``)."""
    lines = [ln for ln in log_text.splitlines() if ln.strip()]
    for pat in ("failed to run Kubelet", "Failed to run kubelet", "command failed", "Error: "):
        for ln in reversed(lines):
            if pat in ln:
                return ln.strip()
    for ln in reversed(lines):
        if ln.startswith("E") or ln.startswith("F"):
            return ln.strip()
    return lines[-1].strip() if lines else ""


def _event_time(event: dict[str, Any]) -> float:
    """The latest time of a core/v1 Event (``lastTimestamp``, else ``eventTime`` or
    ``firstTimestamp``) in seconds since the epoch; 0 when it has none."""
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        value = event.get(key)
        if value:
            text = str(value).replace("Z", "+00:00")
            return datetime.fromisoformat(text).timestamp()
    return 0.0


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return bool(r.status == 200)
    except (OSError, ValueError):
        return False


def _rmtree(path: Path) -> None:
    if path.is_dir():
        # kubelet pod volumes may still be mounted (tmpfs for projected volumes): unmount first
        with open("/proc/self/mounts") as f:
            mounts = [ln.split()[1] for ln in f if ln.split()[1].startswith(str(path) + "/")]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        shutil.rmtree(path)
