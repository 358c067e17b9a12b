"""``kubernetes`` backend: workloads as pods on the local cluster's real kubelet.

Pods go through the official Python client as bare pods bound to the node (``spec.nodeName``: no
scheduler; the kubelet runs its own admission), ``imagePullPolicy: Never`` with the locally imported
leak image, QoS from the workload's resources, priority through PriorityClasses, and
``io.harness.*`` labels so that ``harness cleanup`` finds them. What the harness watches:

* pod status (phase, reason, message; container state, reason, exit code, restarts) through a watch;
* events of the harness namespace and of the Node (``Evicted``, ``EvictionThresholdMet``, ``SystemOOM``,
  ``NodeHasInsufficientMemory`` ...) through a second watch, as source ``kubelet`` in events.parquet;
* node conditions (MemoryPressure) and the kubelet's ``/stats/summary`` from its loopback port, polled
  once a second (source ``kubelet-stats``; the stats' own timestamp shows how old the kubelet's view is);
* the container's real cgroup (``kubepods/<qos>/pod<uid>/<container id>``), sampled like any other.

The leak program's JSON lines are read from the container's CRI log file under ``/var/log/pods``.
Pods run with ``hostNetwork: true`` (the cluster has no pod network; see :meth:`_on_this_node`).
Workloads with ``placement: host`` run as containerd tasks of the cluster's own containerd in the
``harness`` namespace (never ``k8s.io``, so the kubelet neither sees nor collects them), in a harness
cgroup capped at their ``leak.max``: the node-wide memory the kubelet sees includes them.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

from harness.config.suite import Workload
from harness.errors import HarnessError
from harness.launch.base import (
    LABEL,
    LABEL_RUN,
    LABEL_WORKLOAD,
    Backend,
    Check,
    ExitInfo,
    Handle,
    ScenarioContext,
)
from harness.launch.cgrouptree import CGROUP_ROOT, memory_root
from harness.model.predict import WorkloadLayout

NAMESPACE = "harness"
LABEL_SCENARIO = "io.harness.scenario"
POD_LOG_DIR = Path(
    "/var/log/pods"
)  # kubelet: pkg/kubelet/kuberuntime/kuberuntime_manager.go podLogsRootDirectory
# Pod status reasons written when the kubelet refuses a pod at admission
# (pkg/kubelet/lifecycle/predicate.go, pkg/kubelet/cm/topologymanager/topology_manager.go,
# pkg/kubelet/eviction/eviction_manager.go Admit).
ADMISSION_REASONS = {
    "OutOfmemory",
    "OutOfcpu",
    "OutOfpods",
    "TopologyAffinityError",
    "UnexpectedAdmissionError",
    "NodeAffinity",
    "NodeSelectorMismatching",
    "Evicted",  # refused under MemoryPressure (the eviction manager's Admit)
    "InvalidNodeInfo",
}
# Kubelet events about a pod that decide its outcome even when its status does not say so
# (pkg/kubelet/eviction/eviction_manager.go evictPod: event reason "Evicted"; preemption: "Preempting").
POD_EVENT_REASONS = {"Evicted", "Preempting"}
# Rejections at admission are also events (pkg/kubelet/kubelet.go rejectPod records reason and
# message at once), while the Failed status can reach the API up to a status-manager sync later
# (~10 s seen here), so the event gives the time.
ADMISSION_EVENT_REASONS = ADMISSION_REASONS - {"Evicted"}
_DNS = re.compile(r"[^a-z0-9-]+")


def _dns(*parts: str, limit: int = 63) -> str:
    s = _DNS.sub("-", "-".join(parts).lower()).strip("-")
    return s[:limit].rstrip("-")


def _label_value(v: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", v)[:63].strip("-._")


class KubeletRefused(HarnessError):
    """The kubelet exited at start with the scenario's profile (an outcome, for scenario S9)."""

    def __init__(self, start: Any) -> None:
        self.start = start
        super().__init__(f"the kubelet refused to start: {start.error}")


def predicted_start_errors(profile: Any, facts: Any) -> list[str]:
    """Why the model says the kubelet will refuse ``profile`` on ``facts`` ([] = it starts):
    node allocatable validation (pkg/kubelet/cm/container_manager_linux.go validateNodeAllocatable),
    the memory manager's reservedMemory check (pkg/kubelet/cm/memorymanager/policy_static.go via
    validateReservedMemory) and the topology manager's options."""
    from harness.model.memorymanager import validate_reserved_memory
    from harness.model.node import node_allocatable
    from harness.model.topology import validate_options

    return [
        *node_allocatable(profile, facts).errors,
        *validate_reserved_memory(profile, facts),
        *validate_options(profile, facts),
    ]


class KubernetesBackend(Backend):
    name = "kubernetes"

    def __init__(self, cluster: Any = None) -> None:
        from harness.cluster import Cluster

        self.cluster = cluster or Cluster()
        self._api: Any = None
        self._pods: dict[str, dict[str, Any]] = {}  # pod name -> latest object (dict)
        self._seen: dict[str, float] = {}  # pod name -> t_mono of the last update
        self._probes = 0  # admission probes created (unique names)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._ctx: ScenarioContext | None = None
        self._host: Any = None  # ContainerdBackend (cluster instance) for placement host
        self._log_pos: dict[str, int] = {}
        self._handles: dict[str, Handle] = {}
        self._pod_of: dict[str, str] = {}  # workload -> pod name
        self._priority_classes: set[str] = set()
        self._started = False
        self.last_start: Any = None
        self._pod_events: dict[str, list[tuple[str, str, float]]] = {}  # pod -> (reason, message, t_mono)

    # ---- plumbing --------------------------------------------------------------------------
    @property
    def core(self) -> Any:
        from kubernetes import client as k8s

        return k8s.CoreV1Api(self.api)

    @property
    def api(self) -> Any:
        if self._api is None:
            from harness.cluster.client import api_client

            self._api = api_client(self.cluster)
        return self._api

    def sanity_checks(self) -> list[Check]:
        try:
            self.cluster.require_up()
        except HarnessError as exc:
            return [Check("cluster", False, str(exc), "harness cluster up")]
        try:
            node = self.core.read_node(self.cluster.node_name)
        except Exception as exc:
            return [
                Check(
                    "cluster",
                    False,
                    f"cannot read node {self.cluster.node_name}: {exc}",
                    "harness cluster status",
                )
            ]
        ready = {c.type: c.status for c in node.status.conditions or []}.get("Ready")
        return [
            Check(
                "cluster", True, f"node {node.metadata.name} kubelet {node.status.node_info.kubelet_version}"
            ),
            Check("node Ready", ready == "True", f"Ready={ready}", "harness cluster status"),
        ]

    def versions(self) -> dict[str, Any]:
        rec = self.cluster.record()
        out: dict[str, Any] = {
            "kubernetes": rec.get("version"),
            "kubelet_profile": rec.get("kubelet_profile"),
        }
        with contextlib.suppress(Exception):
            info = self.core.read_node(self.cluster.node_name).status.node_info
            out.update(
                kubelet=info.kubelet_version,
                runtime=info.container_runtime_version,
                kernel=info.kernel_version,
            )
        return out

    def numa_memory(self) -> dict[str, int]:
        """Each NUMA node's memory as the running kubelet saw it at its start: from its memory
        manager's checkpoint when there is one (machineState.<node>.memoryMap.memory.total, exactly
        what cAdvisor reported to it), else from the harness's read just before the kubelet started
        (on this VM memory is onlined over time, so later reads differ)."""
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            state = json.loads((self.cluster.kubelet_root / "memory_manager_state").read_text())
            if state.get("policyName") == "Static" and state.get("machineState"):
                return {
                    str(n): int(v["memoryMap"]["memory"]["total"]) for n, v in state["machineState"].items()
                }
        return {
            str(k): int(v)
            for k, v in (self.cluster.record().get("numa_memory_at_kubelet_start") or {}).items()
        }

    def kubelet_version(self) -> str | None:
        v = self.cluster.record().get("version")
        return str(v) if v else None

    def baseline(self) -> Any:
        """What the node already uses before a scenario, as cAdvisor computes it for the kubelet:
        working set = usage - total_inactive_file (cadvisor container/libcontainer/handler.go
        setMemoryStats; the eviction manager's memory.available = capacity - root working set)."""
        from harness.model.predict import Baseline
        from harness.sample.cgroupfs import parse_memory_stat

        mem = memory_root(1 if (CGROUP_ROOT / "memory").is_dir() else 2)
        out = {}
        for name, d in (("root", mem), ("kubepods", mem / "kubepods")):
            try:
                if (d / "memory.usage_in_bytes").exists():
                    usage = int((d / "memory.usage_in_bytes").read_text())
                    stat = parse_memory_stat((d / "memory.stat").read_text())
                    inactive = stat.get("total_inactive_file", 0)
                else:
                    usage = int((d / "memory.current").read_text())
                    inactive = parse_memory_stat((d / "memory.stat").read_text()).get("inactive_file", 0)
            except (OSError, ValueError):
                usage, inactive = 0, 0
            out[name] = (usage, max(0, usage - inactive))
        return Baseline(
            root_working_set=out["root"][1],
            kubepods_working_set=out["kubepods"][1],
            root_usage=out["root"][0],
            kubepods_usage=out["kubepods"][0],
        )

    def node_cgroups(self, ctx: ScenarioContext) -> list[tuple[str, str]]:
        """The kubelet's real tree: the root (node-wide usage) and ``kubepods``."""
        return [("node", ""), ("kubepods", "kubepods")]

    def _ensure_namespace(self) -> None:
        from kubernetes import client as k8s
        from kubernetes.client.rest import ApiException

        try:
            self.core.read_namespace(NAMESPACE)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.core.create_namespace(
                k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=NAMESPACE, labels={LABEL: "true"}))
            )

    def _start_watchers(self) -> None:
        if self._started:
            return
        self._started = True
        self._stop.clear()
        for target in (self._watch_pods, self._watch_events, self._poll_kubelet):
            t = threading.Thread(target=target, daemon=True, name=f"k8s-{target.__name__}")
            t.start()
            self._threads.append(t)

    def _watch_pods(self) -> None:
        from kubernetes import client as k8s
        from kubernetes import watch

        core = k8s.CoreV1Api(self.api)
        rv = None
        while not self._stop.is_set():
            w = watch.Watch()
            try:
                kw: dict[str, Any] = {"label_selector": f"{LABEL}=true", "timeout_seconds": 30}
                if rv:
                    kw["resource_version"] = rv
                for ev in w.stream(core.list_namespaced_pod, NAMESPACE, **kw):
                    obj = ev["object"]
                    rv = obj.metadata.resource_version
                    d = self.api.sanitize_for_serialization(obj)
                    name = obj.metadata.name
                    with self._lock:
                        prev = self._pods.get(name)
                        self._pods[name] = d
                        self._seen[name] = time.monotonic()
                    self._pod_changed(name, prev, d, ev["type"])
                    if self._stop.is_set():
                        break
            except Exception as exc:
                if "410" in str(exc) or "Expired" in str(exc):
                    rv = None
                if not self._stop.is_set():
                    time.sleep(0.5)
            finally:
                w.stop()

    def _pod_changed(self, name: str, prev: dict[str, Any] | None, d: dict[str, Any], kind: str) -> None:
        ctx = self._ctx
        if ctx is None:
            return
        st = d.get("status", {})
        pst = (prev or {}).get("status", {})
        workload = d.get("metadata", {}).get("labels", {}).get(LABEL_WORKLOAD)
        if (st.get("phase"), st.get("reason")) != (pst.get("phase"), pst.get("reason")):
            ctx.events.add(
                "kubelet",
                "pod_phase",
                workload=workload,
                pod=name,
                phase=st.get("phase"),
                reason=st.get("reason"),
                detail=st.get("message"),
            )
        for cs in st.get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated")
            old: dict[str, Any] = next(
                (c for c in pst.get("containerStatuses") or [] if c.get("name") == cs.get("name")), {}
            )
            if term and not (old.get("state") or {}).get("terminated"):
                ctx.events.add(
                    "kubelet",
                    "container_terminated",
                    workload=workload,
                    pod=name,
                    exit_code=term.get("exitCode"),
                    reason=term.get("reason"),
                    detail=term.get("message"),
                    restarts=cs.get("restartCount"),
                    finished_at=term.get("finishedAt"),
                )

    def _watch_events(self) -> None:
        from kubernetes import client as k8s
        from kubernetes import watch

        core = k8s.CoreV1Api(self.api)
        seen: set[str] = set()
        start = time.time()
        while not self._stop.is_set():
            w = watch.Watch()
            try:
                for ev in w.stream(core.list_event_for_all_namespaces, timeout_seconds=30):
                    e = ev["object"]
                    inv = e.involved_object
                    if not (
                        (inv.kind == "Pod" and inv.namespace == NAMESPACE)
                        or (inv.kind == "Node" and inv.name == self.cluster.node_name)
                    ):
                        continue
                    key = f"{e.metadata.uid}/{e.count}"
                    ts = e.last_timestamp or e.event_time or e.first_timestamp
                    if key in seen or (ts is not None and ts.timestamp() < start - 2):
                        continue
                    seen.add(key)
                    if inv.kind == "Pod" and e.reason in POD_EVENT_REASONS | ADMISSION_EVENT_REASONS:
                        with self._lock:
                            self._pod_events.setdefault(str(inv.name), []).append(
                                (str(e.reason), str(e.message or ""), time.monotonic())
                            )
                    if self._ctx is not None:
                        self._ctx.events.add(
                            "kubelet",
                            str(e.reason),
                            object=f"{inv.kind}/{inv.name}",
                            detail=e.message,
                            event_type=e.type,
                            count=e.count,
                            t_event_wall=ts.timestamp() if ts else None,
                        )
                    if self._stop.is_set():
                        break
            except Exception:
                if not self._stop.is_set():
                    time.sleep(0.5)
            finally:
                w.stop()

    def _poll_kubelet(self) -> None:
        """Node conditions and /stats/summary once a second (only changes are recorded)."""
        last_conditions: dict[str, str] = {}
        last_stats_time = None
        while not self._stop.wait(1.0):
            ctx = self._ctx
            if ctx is None:
                continue
            with contextlib.suppress(Exception):
                node = json.loads(self.cluster.api_get(f"/api/v1/nodes/{self.cluster.node_name}", timeout=2))
                conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
                for k, v in conds.items():
                    if last_conditions.get(k) != v:
                        ctx.events.add("kubelet", "node_condition", condition=k, status=v)
                last_conditions = conds
            with contextlib.suppress(Exception):
                s = json.loads(self.cluster.kubelet_get("/stats/summary", timeout=2))
                t = s["node"]["memory"].get("time")
                if t != last_stats_time:
                    last_stats_time = t
                    pods = {
                        p["podRef"]["name"]: (p.get("memory") or {}).get("workingSetBytes")
                        for p in s.get("pods", [])
                        if p["podRef"].get("namespace") == NAMESPACE
                    }
                    ctx.events.add(
                        "kubelet-stats",
                        "summary",
                        stats_time=t,
                        available_bytes=s["node"]["memory"].get("availableBytes"),
                        working_set_bytes=s["node"]["memory"].get("workingSetBytes"),
                        detail=json.dumps(pods),
                    )

    # ---- the kubelet's configuration ---------------------------------------------------------
    def use_profile(self, ctx: ScenarioContext) -> Any:
        """Restart the kubelet with the scenario's profile if it runs with another one.

        Returns the KubeletStart of that restart (None when nothing changed). When the kubelet
        refuses the profile, it is started again with the previous one (the cluster stays usable)
        and :class:`KubeletRefused` is raised with the kubelet's own error line.
        """
        from harness.cluster.build import ensure_built

        prof = ctx.scenario.profile
        if prof is None or not Path(prof.source).is_file():
            return None
        want = Path(prof.source).resolve()
        rec = self.cluster.record()
        current = Path(rec["kubelet_profile"]).resolve() if rec.get("kubelet_profile") else None
        if current == want:
            return None
        version = str(rec.get("version"))
        built = ensure_built(version)
        res = self.cluster.start_kubelet(built, self.cluster.kubelet_config(want, version), profile=want)
        ctx.events.add(
            "harness",
            "kubelet_restart",
            profile=str(want),
            ok=res.ok,
            seconds=res.seconds,
            detail=res.error or None,
        )
        if not res.ok:
            if current is not None:
                back = self.cluster.start_kubelet(
                    built, self.cluster.kubelet_config(current, version), profile=current
                )
                ctx.events.add(
                    "harness", "kubelet_restart", profile=str(current), ok=back.ok, seconds=back.seconds
                )
                if back.ok:
                    self.cluster.wait_node_ready()
            raise KubeletRefused(res)
        self.cluster.wait_node_ready()
        return res

    # ---- workloads -------------------------------------------------------------------------
    def prepare(self, ctx: ScenarioContext) -> None:
        self._ctx = ctx
        self._ensure_namespace()
        self._start_watchers()
        self.last_start = self.use_profile(ctx)
        self._wait_no_memory_pressure(ctx)
        hosts = {w.name: ctx.layout.workloads[w.name] for w in ctx.scenario.workloads if w.placement != "pod"}
        if hosts:
            # only the harness part of the tree: host workloads, each capped at its leak.max
            limits: dict[str, int | None] = {}
            for w in ctx.scenario.workloads:
                if w.name in hosts:
                    if w.leak.max_bytes <= 0:
                        raise HarnessError(
                            f"scenario {ctx.scenario.name}: host workload {w.name} needs leak.max on the "
                            "kubernetes backend (it drains the real node; the cap keeps the host safe)"
                        )
                    cg = hosts[w.name].cgroup
                    parts = cg.split("/")
                    for i in range(1, len(parts)):
                        limits.setdefault("/".join(parts[:i]), None)
                    limits[cg] = w.leak.max_bytes + (64 << 20)
            limits.setdefault("", None)
            ctx.tree.create(limits)

    def _wait_no_memory_pressure(self, ctx: ScenarioContext) -> None:
        """Start every scenario on a node without MemoryPressure: after an eviction the condition
        stays for evictionPressureTransitionPeriod (pkg/kubelet/eviction/eviction_manager.go
        synchronize: thresholdsFirstObservedAt / nodeConditionsLastObservedAt), and meanwhile the
        kubelet refuses BestEffort pods at admission, which would change the scenario."""
        prof = ctx.scenario.profile
        period = prof.pressure_transition_seconds if prof is not None else 300.0
        deadline = time.monotonic() + period + 30
        waited = False
        while time.monotonic() < deadline:
            try:
                node = json.loads(self.cluster.api_get(f"/api/v1/nodes/{self.cluster.node_name}", timeout=5))
            except Exception:
                return
            conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
            # The node object can lag the kubelet by a status update (nodeStatusUpdateFrequency):
            # right after an eviction it may still say False while the eviction manager refuses
            # BestEffort pods. When it says False, ask the kubelet itself with a probe pod.
            rejected = None if conds.get("MemoryPressure") == "True" else self._probe_admission(ctx)
            if conds.get("MemoryPressure") != "True" and rejected is None:
                if waited:
                    ctx.events.add("harness", "memory_pressure_cleared")
                return
            if not waited:
                ctx.events.add(
                    "harness",
                    "waiting_for_memory_pressure_to_clear",
                    seconds=period,
                    detail=rejected or "node condition MemoryPressure=True",
                )
                waited = True
            time.sleep(1.0)
        raise HarnessError(
            f"node {self.cluster.node_name} still under MemoryPressure {period + 30:.0f} s after the previous "
            "scenario: something outside the harness uses the node's memory"
        )

    def _on_this_node(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A bare pod's spec bound to the node, without a pod network or API credentials."""
        spec["nodeName"] = self.cluster.node_name
        spec.setdefault("restartPolicy", "Never")
        # No pod network here: the runtime's only CNI network is "loopback" (the node reports
        # NetworkReady), which gives a sandbox no eth0, so containerd cannot set it up. Pods share the
        # host's network namespace instead; the leak program does no networking.
        spec["hostNetwork"] = True
        spec["dnsPolicy"] = "Default"
        spec["automountServiceAccountToken"] = False
        spec["enableServiceLinks"] = False
        return spec

    def _probe_admission(self, ctx: ScenarioContext, timeout: float = 30.0) -> str | None:
        """Whether the kubelet admits a BestEffort pod now: its eviction manager's Admit refuses them
        while its own MemoryPressure condition is set (pkg/kubelet/eviction/eviction_manager.go
        ``Admit``). Returns the rejection message, None when admitted. The probe (the pause image)
        is deleted before returning."""
        from harness.images import PAUSE_IMAGE

        name = _dns("probe", ctx.scenario.name[:24], ctx.run_id[-8:], f"{self._probes}")
        self._probes += 1
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": NAMESPACE,
                "labels": {
                    LABEL: "true",
                    LABEL_RUN: _label_value(ctx.run_id),
                    "io.harness.probe": "admission",
                },
            },
            "spec": self._on_this_node(
                {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "probe", "image": PAUSE_IMAGE, "imagePullPolicy": "Never"}],
                }
            ),
        }
        self.core.create_namespaced_pod(NAMESPACE, manifest)
        verdict: str | None = None
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                pod = self.api.sanitize_for_serialization(self.core.read_namespaced_pod(name, NAMESPACE))
                st = pod.get("status", {})
                if st.get("phase") == "Failed":
                    verdict = f"{st.get('reason') or 'Failed'}: {st.get('message') or ''}".strip()
                    break
                if st.get("phase") == "Running" or st.get("conditions") or st.get("startTime"):
                    break  # the kubelet admitted it and started syncing it
                time.sleep(0.1)
            else:
                raise HarnessError(
                    f"probe pod {NAMESPACE}/{name}: no answer from the kubelet in {timeout:.0f} s"
                )
        finally:
            self._delete_pods([name], timeout=60)
        return verdict

    def launch(self, ctx: ScenarioContext, workload: Workload, layout: WorkloadLayout) -> Handle:
        if workload.placement != "pod":
            if self._host is None:
                # a non-Kubernetes workload goes through the node's own runtime, outside k8s.io
                # (issue 9): the cluster's containerd, namespace "harness", cgroup in the harness tree
                from harness.cluster.runtime import instance
                from harness.launch.containerd import ContainerdBackend

                self._host = ContainerdBackend(instance(self.cluster))
            h: Handle = self._host.launch(ctx, workload, layout)
            h.extra["host"] = True
            return h
        manifest = self.pod_manifest(ctx, workload)
        name = manifest["metadata"]["name"]
        h = Handle(
            workload=workload.name,
            backend=self.name,
            cgroup=layout.cgroup,
            # the model's path until the container runs (a pod rejected at admission keeps it)
            cgroup_abs=memory_root(1 if (CGROUP_ROOT / "memory").is_dir() else 2) / layout.cgroup,
        )
        h.asked_oom_score_adj = layout.oom_score_adj
        h.t_start_mono = time.monotonic()
        h.t_start_wall = time.time()
        self._handles[workload.name] = h
        self._pod_of[workload.name] = name
        self.core.create_namespaced_pod(NAMESPACE, manifest)
        ctx.events.add("harness", "pod_created", workload=workload.name, pod=name)
        self._wait_started(ctx, h, name, timeout=60.0)
        return h

    def pod_manifest(self, ctx: ScenarioContext, workload: Workload) -> dict[str, Any]:
        from harness.images import LEAK_IMAGE

        if workload.pod_manifest is not None:
            # the suite's pod file, as parsed (the loader validated it); status is never sent
            manifest: dict[str, Any] = workload.pod_manifest.model_dump(by_alias=True, exclude_unset=True)
            manifest.pop("status", None)
            manifest["metadata"] = {
                k: v for k, v in manifest.get("metadata", {}).items() if k in ("labels", "annotations")
            }
        else:
            manifest = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {},
                "spec": {
                    "containers": [
                        {
                            "name": workload.name,
                            "resources": {
                                k: dict(v) for k, v in workload.resources.model_dump().items() if v
                            },
                        }
                    ],
                    "terminationGracePeriodSeconds": workload.termination_grace_period_s,
                    "restartPolicy": "Never",
                },
            }
        name = _dns(ctx.scenario.name[:24], workload.name[:24], ctx.run_id[-8:])
        md = manifest.setdefault("metadata", {})
        md["name"] = name
        md["namespace"] = NAMESPACE
        md.setdefault("labels", {}).update(
            {
                LABEL: "true",
                LABEL_RUN: _label_value(ctx.run_id),
                LABEL_WORKLOAD: workload.name,
                LABEL_SCENARIO: _label_value(ctx.scenario.name),
            }
        )
        spec = self._on_this_node(manifest.setdefault("spec", {}))
        if workload.priority is not None and not workload.priority_class_name:
            spec["priorityClassName"] = self._priority_class(workload.priority)
        elif workload.priority_class_name:
            spec["priorityClassName"] = workload.priority_class_name
        spec.pop("priority", None)  # the Priority admission plugin computes it from the class
        c = spec["containers"][0]
        c["image"] = LEAK_IMAGE
        c["imagePullPolicy"] = "Never"
        c.setdefault("name", workload.name)
        c["args"] = list(workload.leak.leak_args())
        if workload.leak.mode == "pagecache":
            c["args"].append("--file=/data/pagecache.dat")
            c.setdefault("volumeMounts", []).append({"name": "data", "mountPath": "/data"})
            spec.setdefault("volumes", []).append({"name": "data", "emptyDir": {}})
        return manifest

    def _priority_class(self, value: int) -> str:
        from kubernetes import client as k8s
        from kubernetes.client.rest import ApiException

        name = f"harness-priority-{value}".replace("-" + "-", "-m")
        if name in self._priority_classes:
            return name
        api = k8s.SchedulingV1Api(self.api)
        try:
            api.create_priority_class(
                k8s.V1PriorityClass(
                    metadata=k8s.V1ObjectMeta(name=name, labels={LABEL: "true"}),
                    value=value,
                    description="harness workload priority",
                )
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
        self._priority_classes.add(name)
        return name

    def _pod(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._pods.get(name)

    def _wait_started(self, ctx: ScenarioContext, h: Handle, name: str, timeout: float) -> None:
        """Until the container runs (its cgroup is known), or the pod ended / was rejected."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pod = self._pod(name)
            if pod is None:
                with contextlib.suppress(Exception):
                    pod = self.api.sanitize_for_serialization(self.core.read_namespaced_pod(name, NAMESPACE))
            if pod:
                st = pod.get("status", {})
                if st.get("phase") in ("Failed", "Succeeded") and not st.get("containerStatuses"):
                    return  # rejected at admission; poll() reports it
                for cs in st.get("containerStatuses") or []:
                    cid = cs.get("containerID") or ""
                    if cid and (
                        (cs.get("state") or {}).get("running") or (cs.get("state") or {}).get("terminated")
                    ):
                        self._bind_cgroup(h, pod, cid.split("://", 1)[-1])
                        return
            time.sleep(0.05)
        raise HarnessError(f"pod {NAMESPACE}/{name} did not start within {timeout:.0f} s")

    def _bind_cgroup(self, h: Handle, pod: dict[str, Any], cid: str) -> None:
        uid = pod["metadata"]["uid"]
        qos = (pod.get("status", {}).get("qosClass") or "").lower()
        mem = memory_root(1 if (CGROUP_ROOT / "memory").is_dir() else 2)
        # kubelet cgroupfs naming (pkg/kubelet/cm/qos_container_manager_linux.go, pod_container_manager_linux.go)
        pod_rel = f"kubepods/pod{uid}" if qos == "guaranteed" else f"kubepods/{qos}/pod{uid}"
        h.cgroup = f"{pod_rel}/{cid}"
        h.cgroup_abs = mem / h.cgroup
        h.container_id = cid
        h.extra["pod"] = pod["metadata"]["name"]
        h.extra["pod_uid"] = uid
        h.extra["qos"] = qos
        h.extra["pod_cgroup_abs"] = str(mem / pod_rel)
        with contextlib.suppress(OSError):
            h.pids = [int(p) for p in (h.cgroup_abs / "cgroup.procs").read_text().split()]
        with contextlib.suppress(OSError, IndexError):
            h.applied_oom_score_adj = int(Path(f"/proc/{h.pids[0]}/oom_score_adj").read_text())
        if (
            h.asked_oom_score_adj is not None
            and h.applied_oom_score_adj is not None
            and h.applied_oom_score_adj != h.asked_oom_score_adj
        ):
            dev = (
                f"oom_score_adj {h.asked_oom_score_adj} asked by the kubelet, {h.applied_oom_score_adj} applied "
                "(containerd restrict_oom_score_adj: this host cannot set negative values)"
            )
            h.deviations.append(dev)
            if self._ctx:
                self._ctx.events.add("harness", "host_deviation", workload=h.workload, detail=dev)

    def _read_log(self, h: Handle) -> None:
        pod = h.extra.get("pod")
        uid = h.extra.get("pod_uid")
        if not pod or not uid:
            return
        d = POD_LOG_DIR / f"{NAMESPACE}_{pod}_{uid}" / h.workload
        try:
            logs = sorted(d.glob("*.log"))
        except OSError:
            return
        for f in logs[:1]:
            key = str(f)
            pos = self._log_pos.get(key, 0)
            try:
                with open(f, "rb") as fh:
                    fh.seek(pos)
                    data = fh.read()
            except OSError:
                return
            end = data.rfind(b"\n")
            if end < 0:
                return
            self._log_pos[key] = pos + end + 1
            for raw in data[: end + 1].splitlines():
                # CRI log format: "<RFC3339Nano> <stdout|stderr> <P|F> <line>"
                parts = raw.decode(errors="replace").split(" ", 3)
                if len(parts) < 4:
                    continue
                ev = h.take_line(parts[3])
                if ev is not None and self._ctx:
                    h.add_milestone(self._ctx.events, ev)

    def poll(self, ctx: ScenarioContext, handle: Handle) -> ExitInfo | None:
        if handle.extra.get("host"):
            assert self._host is not None
            return self._host.poll(ctx, handle)
        name = self._pod_of.get(handle.workload)
        if handle.exit:
            self._refresh_reason(handle, name)
            return handle.exit
        self._read_log(handle)
        pod = self._pod(name) if name else None
        if pod is None:
            return None
        st = pod.get("status", {})
        phase = st.get("phase")
        reason = self._refresh_reason(handle, name)
        term = None
        for cs in st.get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or term
            if not handle.container_id and cs.get("containerID"):
                self._bind_cgroup(handle, pod, cs["containerID"].split("://", 1)[-1])
        if term is None and phase not in ("Failed", "Succeeded"):
            return None
        if term is None and phase == "Failed" and st.get("containerStatuses"):
            return None  # eviction: wait for the container's own termination record
        self._read_log(handle)
        code = term.get("exitCode") if term else None
        handle.exit = ExitInfo(
            t_mono=self._seen.get(name or "", time.monotonic()),
            t_wall=time.time(),
            exit_code=code,
            signal=(code - 128) if isinstance(code, int) and code > 128 else None,
            runtime_oom_killed=(term.get("reason") == "OOMKilled") if term else None,
            stopped_by_harness=handle.stop_requested,
        )
        ctx.events.add(
            "runtime",
            "exit",
            workload=handle.workload,
            exit_code=code,
            reason=(term or {}).get("reason"),
            pod_reason=reason,
        )
        return handle.exit

    def conformance(self, ctx: ScenarioContext, handles: dict[str, Handle]) -> list[Any]:
        """Every cgroup value of kubepods, the QoS tiers and the scenario's pods vs the model (S8)."""
        from harness.verdict.cgroups import check_cgroups

        sc = ctx.scenario
        assert sc.profile is not None and sc.node is not None
        pods = []
        dirs: dict[tuple[str, str], str] = {}
        names: dict[str, str] = {}
        for w in sc.workloads:
            h = handles.get(w.name)
            if h is None or w.placement != "pod" or not h.extra.get("pod_uid") or not h.container_id:
                continue
            pod = w.to_pod(NAMESPACE).model_copy(deep=True)
            pod.metadata.uid = str(h.extra["pod_uid"])
            pods.append(pod)
            dirs[(pod.metadata.uid, pod.spec.containers[0].name)] = h.container_id
            names[pod.metadata.uid] = w.name
        version = 1 if (CGROUP_ROOT / "memory").is_dir() else 2
        checks = check_cgroups(sc.profile, sc.node, pods, dirs, cgroup_version=version, workloads=names)
        # every container's oom_score_adj as applied (version-dependent: sidecars from 1.33)
        from harness.sample.oomscore import container_oom_scores

        for pod in pods:
            name = self._pod_of.get(names[pod.metadata.uid], "")
            obj = self._pod(name) or {}
            with contextlib.suppress(Exception):  # the watch may lag: the API's current pod
                obj = self.api.sanitize_for_serialization(self.core.read_namespaced_pod(name, NAMESPACE))
            if obj.get("metadata"):
                checks += container_oom_scores(
                    obj,
                    pod,
                    sc.profile,
                    sc.node,
                    memory_root=memory_root(version),
                    workload=names[pod.metadata.uid],
                )
        return checks

    def memory_manager_diffs(self, ctx: ScenarioContext, handles: dict[str, Handle]) -> list[str]:
        """The kubelet's memory_manager_state vs the model's after admitting the scenario's pods (S9).

        The model admits the running pods in launch order with their real uids
        (harness.model.topology.admit_pod: topology merge, then staticPolicy.Allocate).
        """
        from harness.model.memorymanager import compare_states, parse_state_file
        from harness.model.topology import admit_pod

        sc = ctx.scenario
        assert sc.profile is not None and sc.node is not None
        path = self.cluster.kubelet_root / "memory_manager_state"
        try:
            actual = parse_state_file(path.read_text())
        except (OSError, ValueError) as exc:
            return [f"cannot read {path}: {exc}"]
        state = None
        for w in sc.workloads:
            h = handles.get(w.name)
            if h is None or not h.extra.get("pod_uid") or h.extra.get("admission_reason"):
                continue
            pod = w.to_pod(NAMESPACE).model_copy(deep=True)
            pod.metadata.uid = str(h.extra["pod_uid"])
            _, state = admit_pod(pod, sc.profile, sc.node, state)
        if state is None:
            from harness.model.memorymanager import initial_state

            state = initial_state(sc.profile, sc.node)
        return compare_states(state, actual)

    def _refresh_reason(self, handle: Handle, name: str | None) -> str | None:
        """Pod phase/reason and the kubelet's pod events into the handle (also after the exit)."""
        pod = self._pod(name) if name else None
        st = (pod or {}).get("status", {})
        reason = st.get("reason")
        if pod is not None:
            handle.extra["kubelet_phase"] = st.get("phase")
            if st.get("phase") == "Failed" and reason and not st.get("containerStatuses"):
                handle.extra["admission_reason"] = f"{reason}: {st.get('message', '')}".strip()
            if reason:
                handle.extra["kubelet_reason"] = reason
                handle.extra.setdefault("t_kubelet_mono", self._seen.get(name or "", time.monotonic()))
        with self._lock:
            pod_events = list(self._pod_events.get(name or "", []))
        for ev_reason, msg, t_ev in pod_events:
            if ev_reason in ADMISSION_EVENT_REASONS:
                handle.extra.setdefault("admission_reason", f"{ev_reason}: {msg}")
                handle.extra["t_kubelet_mono"] = min(t_ev, handle.extra.get("t_kubelet_mono", t_ev))
                continue
            # Since 1.27 (kubernetes/kubernetes PR #115331, issue #118310) the phase of a pod killed by
            # the eviction manager follows its containers' exit codes: a container that exits 0 on the
            # SIGTERM leaves the pod Succeeded with no reason, and only the Evicted event says what happened.
            handle.extra["kubelet_reason"] = ev_reason
            handle.extra["kubelet_message"] = msg
            handle.extra["t_kubelet_mono"] = min(t_ev, handle.extra.get("t_kubelet_mono", t_ev))
        return str(reason) if reason else None

    def stop(self, ctx: ScenarioContext, handle: Handle, timeout: float = 5.0) -> None:
        if handle.extra.get("host"):
            assert self._host is not None
            self._host.stop(ctx, handle, timeout)
            return
        name = self._pod_of.get(handle.workload)
        if not name or handle.exit:
            return
        handle.stop_requested = True
        with contextlib.suppress(Exception):
            self.core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=int(timeout))
        deadline = time.monotonic() + timeout + 30
        while time.monotonic() < deadline and self.poll(ctx, handle) is None:
            pod = self._pod(name)
            if (
                pod is not None
                and pod.get("metadata", {}).get("deletionTimestamp")
                and not any(
                    (cs.get("state") or {}).get("running")
                    for cs in pod.get("status", {}).get("containerStatuses") or []
                )
            ):
                break
            time.sleep(0.1)
        if handle.exit is None:
            handle.exit = ExitInfo(time.monotonic(), time.time(), 143, 15, None, stopped_by_harness=True)

    def _delete_pods(self, names: list[str], timeout: float) -> set[str]:
        """Delete these pods at once (grace 0) and wait until the API has none of them; returns
        those still there after ``timeout`` seconds."""
        from kubernetes.client.rest import ApiException

        for n in names:
            with contextlib.suppress(Exception):
                self.core.delete_namespaced_pod(n, NAMESPACE, grace_period_seconds=0)
        deadline = time.monotonic() + timeout
        remaining = set(names)
        while remaining and time.monotonic() < deadline:
            for n in list(remaining):
                try:
                    self.core.read_namespaced_pod(n, NAMESPACE)
                except ApiException as exc:
                    if exc.status == 404:
                        remaining.discard(n)
            if remaining:
                time.sleep(0.3)
        return remaining

    def teardown(self, ctx: ScenarioContext) -> list[str]:
        failed: list[str] = []
        remaining = self._delete_pods(list(self._pod_of.values()), timeout=90)
        failed += [f"pod {NAMESPACE}/{n} still exists" for n in sorted(remaining)]
        if self._host is not None:
            failed += self._host.teardown(ctx)
        else:
            failed += ctx.tree.remove()
        self._pod_of.clear()
        self._handles.clear()
        self._log_pos.clear()
        self._ctx = None
        return failed

    def close(self) -> None:
        if self._host is not None:
            with contextlib.suppress(Exception):
                self._host.close()
            self._host = None
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        self._threads.clear()
        self._started = False
        if self._api is not None:
            with contextlib.suppress(Exception):
                self._api.close()

    @classmethod
    def cleanup_all(cls) -> list[str]:
        """Delete every harness pod and PriorityClass if the cluster is up (the cluster itself stays);
        returns what could not be removed."""
        from kubernetes import client as k8s
        from kubernetes.client.rest import ApiException

        from harness.cluster import Cluster

        c = Cluster()
        if not (c.daemon("kube-apiserver").running()):
            return []
        b = cls(c)
        out: list[str] = []
        try:
            names = [
                p.metadata.name
                for p in b.core.list_namespaced_pod(NAMESPACE, label_selector=f"{LABEL}=true").items
            ]
            for n in names:
                b.core.delete_namespaced_pod(n, NAMESPACE, grace_period_seconds=0)
            deadline = time.monotonic() + 60
            while names and time.monotonic() < deadline:
                names = [
                    p.metadata.name
                    for p in b.core.list_namespaced_pod(NAMESPACE, label_selector=f"{LABEL}=true").items
                ]
                time.sleep(0.5)
            out += [f"pod {NAMESPACE}/{n}" for n in names]
            api = k8s.SchedulingV1Api(b.api)
            for pc in api.list_priority_class(label_selector=f"{LABEL}=true").items:
                api.delete_priority_class(str(pc.metadata.name))  # type: ignore[union-attr]
        except (ApiException, OSError) as exc:
            out.append(f"kubernetes objects of the harness: {exc}")
        b.close()
        from harness.cluster.runtime import instance
        from harness.engines.containerd import answers
        from harness.launch.containerd import cleanup_namespace

        inst = instance(c)
        if answers(inst):
            out += cleanup_namespace(inst)  # host workloads; the kubelet's k8s.io is never touched
        return out
