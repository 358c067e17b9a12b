"""What the cluster says while a scenario runs, recorded as run events.

* pod status (phase, reason, message; container state, reason, exit code, restarts) through a watch;
* events of the harness namespace and of the Node (``Evicted``, ``EvictionThresholdMet``, ``SystemOOM``,
  ``NodeHasInsufficientMemory`` ...) through a second watch, as source ``kubelet`` in events.parquet;
* node conditions (MemoryPressure) and the kubelet's ``/stats/summary`` from its loopback port, polled
  once a second (source ``kubelet-stats``; the stats' own timestamp shows how old the kubelet's view is).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch

from harness.launch.base import LABEL, LABEL_WORKLOAD, ScenarioContext
from harness.launch.kubernetes.pods import NAMESPACE

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


class ClusterWatch:
    """Three threads (pods, events, kubelet) for the life of a run; events go to the current
    scenario's sink (``ctx``), pod objects and pod events are kept for the backend to read."""

    def __init__(self, api: Any, cluster: Any) -> None:
        self.api = api
        self.cluster = cluster
        self.ctx: ScenarioContext | None = None
        self._pods: dict[str, dict[str, Any]] = {}  # pod name -> latest object (dict)
        self._seen: dict[str, float] = {}  # pod name -> t_mono of the last update
        self._pod_events: dict[str, list[tuple[str, str, float]]] = {}  # pod -> (reason, message, t_mono)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        for target in (self._watch_pods, self._watch_events, self._poll_kubelet):
            t = threading.Thread(target=target, daemon=True, name=f"k8s-{target.__name__}")
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        self._threads.clear()

    def pod(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._pods.get(name)

    def last_seen(self, name: str) -> float:
        """When the watch last saw this pod change (now if never)."""
        with self._lock:
            return self._seen.get(name, time.monotonic())

    def pod_events(self, name: str) -> list[tuple[str, str, float]]:
        with self._lock:
            return list(self._pod_events.get(name, []))

    def _watch_pods(self) -> None:
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
                    self._pod_changed(name, prev, d)
                    if self._stop.is_set():
                        break
            except Exception as exc:
                if "410" in str(exc) or "Expired" in str(exc):
                    rv = None
                if not self._stop.is_set():
                    time.sleep(0.5)
            finally:
                w.stop()

    def _pod_changed(self, name: str, prev: dict[str, Any] | None, d: dict[str, Any]) -> None:
        ctx = self.ctx
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
                    if self.ctx is not None:
                        self.ctx.events.add(
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
        last_stats_time: Any = None
        while not self._stop.wait(1.0):
            ctx = self.ctx
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
                ours = [p for p in s.get("pods", []) if p["podRef"].get("namespace") == NAMESPACE]
                per_pod = pod_stats(ours)
                # a new node stats time, or a new stats time of one of our pods (each pod cgroup
                # has its own housekeeping in cAdvisor: recording only on the node's would miss them)
                key = (t, tuple(sorted((n, str(v[0])) for n, v in per_pod.items())))
                if key != last_stats_time:
                    last_stats_time = key
                    pods = {n: v[1] for n, v in per_pod.items()}
                    ctx.events.add(
                        "kubelet-stats",
                        "summary",
                        stats_time=t,
                        available_bytes=s["node"]["memory"].get("availableBytes"),
                        working_set_bytes=s["node"]["memory"].get("workingSetBytes"),
                        detail=json.dumps(pods),
                        pod_stats=json.dumps(per_pod),
                        containers=json.dumps(container_stats(ours)),
                    )


def pod_stats(pods: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Per pod, ``[stats time, working set]`` of the summary's *pod-level* memory: what the eviction
    manager ranks pods on (k8s 1.33: pkg/kubelet/eviction/helpers.go ``exceedMemoryRequests`` and
    ``memory`` compare ``memoryUsage(podStats.Memory)``). The stats providers fill ``PodStats.Memory``
    from the pod cgroup's own cAdvisor info (pkg/kubelet/stats/cri_stats_provider.go
    ``addPodCPUMemoryStats``, cadvisor_stats_provider.go ``ListPodStats``: ``getCadvisorPodInfoFromPodUID``),
    refreshed at that cgroup's housekeeping, not its containers': every new time seen here is one
    housekeeping of the pod cgroup (``model.housekeeping``)."""
    out: dict[str, list[Any]] = {}
    for p in pods:
        mem = p.get("memory") or {}
        out[str(p["podRef"]["name"])] = [mem.get("time"), mem.get("workingSetBytes")]
    return out


def container_stats(pods: list[dict[str, Any]]) -> dict[str, dict[str, list[Any]]]:
    """Per pod and container, ``[stats time, working set]`` of the summary's container memory, from
    cAdvisor's cache, refreshed at each container cgroup's own housekeeping (google/cadvisor
    manager/container.go). The eviction ranking reads the pod-level stats (``pod_stats``); runs
    recorded before those were kept have only these."""
    out: dict[str, dict[str, list[Any]]] = {}
    for p in pods:
        row = {}
        for c in p.get("containers") or []:
            mem = c.get("memory") or {}
            row[str(c.get("name"))] = [mem.get("time"), mem.get("workingSetBytes")]
        out[str(p["podRef"]["name"])] = row
    return out
