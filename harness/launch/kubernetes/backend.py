"""The Kubernetes backend: pods on the local cluster's real kubelet (see the package's docstring)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from harness.cluster import Cluster
from harness.cluster.ceiling import Room, kubepods_limit_file, make_room, pod_ceiling, restore
from harness.cluster.ceiling import mem_total as ceiling_mem_total
from harness.cluster.client import api_client
from harness.cluster.runtime import instance
from harness.config.suite import Workload
from harness.engines.containerd import answers
from harness.errors import HarnessError, HostError
from harness.host.cgroups import cgroup_version, controller_dir, iter_pids, memory_root
from harness.host.probes import disposable_host
from harness.launch.base import (
    LABEL_RUN,
    Backend,
    Check,
    ExitInfo,
    Handle,
    KubeletStart,
    NodeObservations,
    NodeView,
    ObservedPod,
    PodRef,
    ScenarioContext,
)
from harness.launch.containerd import ContainerdBackend
from harness.launch.kubernetes import node as kube_node
from harness.launch.kubernetes.admission import AdmissionGate
from harness.launch.kubernetes.logs import LogReader
from harness.launch.kubernetes.pods import (
    NAMESPACE,
    PriorityClasses,
    delete_each,
    delete_pods,
    ensure_namespace,
    label_value,
    workload_manifest,
)
from harness.launch.kubernetes.profiles import use_profile
from harness.launch.kubernetes.watch import ADMISSION_EVENT_REASONS, ClusterWatch
from harness.model.cgroupnames import container_dir, pod_cgroup
from harness.model.layout import WorkloadLayout
from harness.model.predict import Baseline
from harness.owned import run_ledger, sweep
from harness.procs import signal_same, snapshot
from harness.sample.kubeletlog import EvictionSync, eviction_syncs

#: How long a pod may take from creation to a running container. 2026-12-07, a TCG guest sharing 2
#: cores with another, right after a kubelet restart (S9 static pinning, lab ka): sandbox 39 s and
#: container 62 s after the pod was added; 60 s had failed the whole host there.
POD_START_TIMEOUT_S = 120.0
# How far before a scenario's prepare its kubelet log is read back for eviction syncs: the 30 s
# before its start at --v=2 (a few KB/s here), with room to spare.
SYNC_LOOKBACK_BYTES = 1 << 20


class KubernetesBackend(Backend):
    name = "kubernetes"
    kubelet = True
    launch_slack_s = 5.0  # sandbox + container start through the kubelet and containerd
    # the eviction's pod status reaches the watch up to ~1 s after the kubelet's decision, and the
    # model's kill latency is 1 s
    observation_slack_s = 2.0

    def __init__(self, cluster: Cluster | None = None) -> None:
        self._restarted_wall: float | None = None
        self.cluster = cluster or Cluster()
        self._api: Any = None
        self._watch: ClusterWatch | None = None
        self._gate: AdmissionGate | None = None
        self._classes: PriorityClasses | None = None
        self._logs = LogReader()
        self._ctx: ScenarioContext | None = None
        self._host: ContainerdBackend | None = None  # the cluster's containerd, for placement host
        self._host_workloads: set[str] = set()
        self._pod_of: dict[str, str] = {}  # workload -> pod name
        self._room: Room | None = None  # kubepods lowered beside host workloads (cluster.ceiling)
        self._log_offset = 0  # the kubelet log's size at the scenario's prepare (eviction_syncs)
        self._room_entry: dict[str, str] | None = None  # its ledger entry

    # ---- plumbing --------------------------------------------------------------------------
    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = api_client(self.cluster)
        return self._api

    @property
    def core(self) -> Any:
        return k8s.CoreV1Api(self.api)

    @property
    def watch(self) -> ClusterWatch:
        if self._watch is None:
            self._watch = ClusterWatch(self.api, self.cluster)
        return self._watch

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

    # ---- typed hooks -----------------------------------------------------------------------
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

    def node_view(self, host: Mapping[str, Any]) -> NodeView:
        """The node is this host as the cluster's kubelet saw it at its start (capacity and each NUMA
        node's memory), at that kubelet's version."""
        v = self.cluster.record().get("version")
        capacity = kube_node.memory_capacity(self.cluster)
        if capacity is None and host.get("memoryCapacity"):
            capacity = int(host["memoryCapacity"])
        return NodeView(
            memory_capacity_bytes=capacity,
            numa_memory_bytes=kube_node.numa_memory(self.cluster),
            kubelet_version=".".join(str(v).lstrip("v").split(".")[:2]) if v else None,
        )

    def harness_limits(self) -> dict[str, int]:
        """kubepods at the harness's ceiling (``cluster.ceiling.pod_ceiling`` of this host's MemTotal,
        page-rounded as the kernel stores it), written when the kubelet's value is higher. On a 4 GiB
        lab guest that is 10.4 MiB under the kubelet's 2244567040 (labs ka and kb, 2026-12-07). The
        kubelet's own value was sampled there too, in later scenarios: the cap had been written before
        the kubelet's asynchronous write of kubepods (``Cluster.wait_allocatable_enforced`` now waits
        for it, and ``prepare`` re-checks the cap before each scenario)."""
        with contextlib.suppress(OSError, HostError):
            page = os.sysconf("SC_PAGE_SIZE")
            return {"kubepods": pod_ceiling(ceiling_mem_total()) // page * page}
        return {}

    def baseline(self) -> Baseline:
        return kube_node.baseline(self.cluster.kubepods)

    def node_cgroups(self, ctx: ScenarioContext) -> list[tuple[str, str]]:
        """The kubelet's real tree: the root (node-wide usage) and ``kubepods`` (``kubepods.slice``
        with the systemd driver)."""
        return [("node", ""), ("kubepods", self.cluster.kubepods)]

    def eviction_syncs(self, ctx: ScenarioContext, until_wall: float) -> list[EvictionSync] | None:
        """The syncs the kubelet logged from 30 s before this scenario (``sample.kubeletlog``), but
        none of a kubelet that its ``prepare`` restarted, nor of a process before the running one (an
        earlier scenario's kubelet): a scenario shorter than the 10 s loop may hold no sync of its
        own (S4 lasts ~4 s), and the last one before it gives the loop's phase."""
        log = self.cluster.daemon("kubelet").log
        restarted = self._restarted_wall
        offset = self._log_offset if restarted is not None else max(0, self._log_offset - SYNC_LOOKBACK_BYTES)
        try:
            with log.open("rb") as f:
                f.seek(offset)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return None
        since = time.time() - (time.monotonic() - ctx.t0_mono) - 30.0
        if restarted is not None:
            since = max(since, restarted)
        return eviction_syncs(text, since, until_wall) or None

    def prepare(self, ctx: ScenarioContext) -> KubeletStart | None:
        self._ctx = ctx
        log = self.cluster.daemon("kubelet").log
        self._log_offset = log.stat().st_size if log.exists() else 0  # a restart appends to it
        ensure_namespace(self.core)
        self.watch.ctx = ctx
        self.watch.start()
        before = time.time()
        start = use_profile(self.cluster, ctx)
        # a kubelet (re)started for this scenario (an unchanged one reports 0 s): its syncs only
        self._restarted_wall = before if start is not None and start.seconds > 0 else None
        if start is not None and not start.started:
            return start
        if self._gate is None:
            self._gate = AdmissionGate(self.core, self.api, self.cluster)
        self._gate.wait_no_memory_pressure(ctx)
        self._recheck_ceiling(ctx)
        hosts = {w.name: ctx.layout.workloads[w.name] for w in ctx.scenario.workloads if w.placement != "pod"}
        if hosts:
            # only the harness part of the tree: host workloads, each capped at its leak.max, their
            # node cgroup at the sum, and kubepods lowered if the three would not fit the ceiling
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
            host_total = sum(v for v in limits.values() if v is not None)
            limits[""] = host_total
            if ctx.scenario.exhausts_node:
                # the scenario exists to run the node out of memory: no ceiling, on a host that may
                why = disposable_host()
                if why is None:
                    raise HarnessError(
                        f"scenario {ctx.scenario.name} exhausts the node's memory (exhaustsNode: true): it "
                        "runs only on a disposable host, a `harness lab` VM or one with "
                        "HARNESS_DISPOSABLE_HOST=1"
                    )
                ctx.events.add("harness", "exhausts_node", scenario=ctx.scenario.name, detail=why)
                ctx.tree.create(limits)
                return start
            led = run_ledger(ctx.run_id)

            def record(file: Path, before: str, after: str) -> None:
                # in the run's ledger before it is written: cleanup puts a killed run's limit back
                self._room_entry = {"file": str(file), "before": before, "after": after}
                led.add("cgroup-limit", **self._room_entry)

            try:
                self._room = make_room(
                    host_total, root=self.cluster.cgroup_root, kubepods=self.cluster.kubepods, record=record
                )
            except HarnessError as exc:
                raise HarnessError(f"scenario {ctx.scenario.name}: {exc}") from None
            if self._room is not None:
                ctx.events.add(
                    "harness",
                    "ceiling",
                    detail=json.dumps(
                        {
                            "kubepods": str(self._room.kubepods),
                            "before": self._room.before,
                            "after": self._room.after,
                            "host_workloads": host_total,
                        }
                    ),
                )
            ctx.tree.create(limits)
        return start

    def _recheck_ceiling(self, ctx: ScenarioContext) -> None:
        """Cap ``kubepods`` again before the scenario's pods start if something raised it above the
        harness's ceiling since the kubelet started (the cluster caps it once the kubelet reports
        ``NodeAllocatableEnforced``; a kubelet that retries a failed enforcement a minute later, or
        a cgroup manager that re-applies its unit's properties, writes its own value again). Recorded
        as a ``ceiling_reapplied`` event with the value found."""
        root, kubepods = self.cluster.cgroup_root, self.cluster.kubepods
        limit = kubepods_limit_file(root, kubepods)
        try:
            found = limit.read_text().strip()
        except OSError:
            return
        capped = self.cluster.cap_kubepods()
        if capped is not None:
            ctx.events.add(
                "harness",
                "ceiling_reapplied",
                detail=json.dumps({"kubepods": str(limit.parent), "found": found, "after": capped}),
            )

    def observe_node(self, ctx: ScenarioContext, handles: Mapping[str, Handle]) -> NodeObservations:
        """The scenario's pods with their real uids and container ids, and the memory manager's
        checkpoint (``<kubelet root>/memory_manager_state``), for the verdicts (S8, S9)."""
        pods = [
            ObservedPod(
                workload=w.name,
                namespace=NAMESPACE,
                uid=h.pod.uid,
                container_id=h.container_id,
                admitted=h.kubelet.admission_reason is None,
                api_object=self._current_pod(h.pod.name),
                cpuset_mems=_cpuset_mems(h.cgroup) if h.container_id else None,
            )
            for w in ctx.scenario.workloads
            if (h := handles.get(w.name)) is not None and h.pod is not None and w.placement == "pod"
        ]
        path = self.cluster.kubelet_root / "memory_manager_state"
        try:
            text: str | None = path.read_text()
            error = ""
        except OSError as exc:
            text, error = None, f"cannot read {path}: {exc}"
        return NodeObservations(
            pods=pods,
            cgroup_driver=self.cluster.cgroup_driver,
            overwritten=self.cluster.kubelet_overwritten(),
            memory_manager_state=text,
            memory_manager_state_path=str(path),
            memory_manager_error=error,
        )

    def _current_pod(self, name: str) -> dict[str, Any]:
        """The API server's pod now (the watch may lag), else the watch's last copy."""
        with contextlib.suppress(Exception):
            return dict(self.api.sanitize_for_serialization(self.core.read_namespaced_pod(name, NAMESPACE)))
        return self.watch.pod(name) or {}

    # ---- workloads -------------------------------------------------------------------------
    def launch(self, ctx: ScenarioContext, workload: Workload, layout: WorkloadLayout) -> Handle:
        if workload.placement != "pod":
            return self._launch_host(ctx, workload, layout)
        h, name = self._create_pod(ctx, workload, layout)
        self._wait_started([(h, name)], timeout=POD_START_TIMEOUT_S)
        return h

    def launch_many(
        self,
        ctx: ScenarioContext,
        items: Sequence[tuple[Workload, WorkloadLayout]],
        on_started: Callable[[Handle], None],
    ) -> list[Handle]:
        """Host workloads one after the other, then every pod created (in the scenario's order) before
        waiting for them together: the kubelet starts them concurrently (its pod workers) instead of
        one per ~1 s round trip. Each handle goes to ``on_started`` as its container runs."""
        out: list[Handle] = []
        pending: list[tuple[Handle, str]] = []
        for w, layout in items:
            if w.placement != "pod":
                h = self._launch_host(ctx, w, layout)
                on_started(h)
            else:
                h, name = self._create_pod(ctx, w, layout)
                pending.append((h, name))
            out.append(h)
        # the serial launch's 60 s per pod, for the kubelet's whole batch: plus 1 s per pod
        self._wait_started(pending, timeout=POD_START_TIMEOUT_S + len(pending), on_started=on_started)
        return out

    def _launch_host(self, ctx: ScenarioContext, workload: Workload, layout: WorkloadLayout) -> Handle:
        if self._host is None:
            # a non-Kubernetes workload goes through the node's own runtime, outside k8s.io
            # (issue 9): the cluster's containerd, namespace "harness", cgroup in the harness tree
            self._host = ContainerdBackend(instance(self.cluster))
        self._host_workloads.add(workload.name)
        return self._host.launch(ctx, workload, layout)

    def _create_pod(
        self, ctx: ScenarioContext, workload: Workload, layout: WorkloadLayout
    ) -> tuple[Handle, str]:
        """The workload's pod created (not yet running): its handle and the pod's name."""
        manifest = workload_manifest(ctx, workload, self.cluster.node_name)
        spec = manifest["spec"]
        if workload.priority_class_name:
            spec["priorityClassName"] = workload.priority_class_name
        elif workload.priority is not None:
            if self._classes is None:
                self._classes = PriorityClasses(self.api)
            spec["priorityClassName"] = self._classes.name_for(workload.priority)
        name = manifest["metadata"]["name"]
        h = Handle(
            workload=workload.name,
            backend=self.name,
            cgroup=layout.cgroup,
            # the model's path until the container runs (a pod rejected at admission keeps it)
            cgroup_abs=memory_root(cgroup_version()) / layout.cgroup,
        )
        h.asked_oom_score_adj = layout.oom_score_adj
        h.t_start_mono = time.monotonic()
        h.t_start_wall = time.time()
        self._pod_of[workload.name] = name
        run_ledger(ctx.run_id).add("pod", namespace=NAMESPACE, name=name, run=label_value(ctx.run_id))
        self.core.create_namespaced_pod(NAMESPACE, manifest)
        ctx.events.add("harness", "pod_created", workload=workload.name, pod=name)
        return h, name

    def _wait_started(
        self,
        pods: list[tuple[Handle, str]],
        timeout: float,
        on_started: Callable[[Handle], None] | None = None,
    ) -> None:
        """Until each pod's container runs (its cgroup is known), or the pod ended / was rejected;
        ``on_started`` is called with each handle then."""
        deadline = time.monotonic() + timeout
        pending = list(pods)
        while pending and time.monotonic() < deadline:
            still = []
            for h, name in pending:
                if self._started(h, name):
                    if on_started is not None:
                        on_started(h)
                else:
                    still.append((h, name))
            pending = still
            if pending:
                time.sleep(0.05)
        if pending:
            names = ", ".join(name for _, name in pending[:5]) + (" ..." if len(pending) > 5 else "")
            raise HostError(
                f"{len(pending)} pod(s) in {NAMESPACE} did not start within {timeout:.0f} s: {names}"
            )

    def _started(self, h: Handle, name: str) -> bool:
        """Whether the pod's container runs (then its cgroup is bound) or the pod was rejected."""
        pod = self.watch.pod(name)
        if pod is None:
            with contextlib.suppress(Exception):
                pod = self.api.sanitize_for_serialization(self.core.read_namespaced_pod(name, NAMESPACE))
        if not pod:
            return False
        st = pod.get("status", {})
        if st.get("phase") in ("Failed", "Succeeded") and not st.get("containerStatuses"):
            return True  # rejected at admission; poll() reports it
        for cs in st.get("containerStatuses") or []:
            cid = cs.get("containerID") or ""
            if cid and ((cs.get("state") or {}).get("running") or (cs.get("state") or {}).get("terminated")):
                self._bind_cgroup(h, pod, cid.split("://", 1)[-1])
                return True
        return False

    def _bind_cgroup(self, h: Handle, pod: dict[str, Any], cid: str) -> None:
        uid = pod["metadata"]["uid"]
        qos = (pod.get("status", {}).get("qosClass") or "").lower()
        mem = memory_root(cgroup_version())
        # the kubelet's naming by driver (model.cgroupnames: pod_container_manager_linux.go, ToSystemd)
        driver = self.cluster.cgroup_driver
        pod_rel = pod_cgroup(uid, qos, driver)
        h.cgroup = f"{pod_rel}/{container_dir(cid, driver)}"
        h.cgroup_abs = mem / h.cgroup
        h.container_id = cid
        h.pod = PodRef(name=pod["metadata"]["name"], uid=uid, qos=qos, cgroup_abs=mem / pod_rel)
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

    def poll(self, ctx: ScenarioContext, handle: Handle) -> ExitInfo | None:
        if handle.workload in self._host_workloads:
            assert self._host is not None
            return self._host.poll(ctx, handle)
        name = self._pod_of.get(handle.workload)
        if handle.exit:
            self._refresh_kubelet_view(handle, name)
            return handle.exit
        self._logs.read(handle, ctx.events)
        pod = self.watch.pod(name) if name else None
        if pod is None:
            return None
        st = pod.get("status", {})
        phase = st.get("phase")
        self._refresh_kubelet_view(handle, name)
        term = None
        for cs in st.get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or term
            if not handle.container_id and cs.get("containerID"):
                self._bind_cgroup(handle, pod, cs["containerID"].split("://", 1)[-1])
        if term is None and phase not in ("Failed", "Succeeded"):
            return None
        if term is None and phase == "Failed" and st.get("containerStatuses"):
            return None  # eviction: wait for the container's own termination record
        self._logs.read(handle, ctx.events)
        code = term.get("exitCode") if term else None
        handle.exit = ExitInfo(
            t_mono=self.watch.last_seen(name or ""),
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
            pod_reason=st.get("reason"),
        )
        return handle.exit

    def _refresh_kubelet_view(self, handle: Handle, name: str | None) -> None:
        """Pod phase/reason and the kubelet's pod events into the handle (also after the exit)."""
        pod = self.watch.pod(name) if name else None
        view = handle.kubelet
        st = (pod or {}).get("status", {})
        reason = st.get("reason")
        if pod is not None:
            view.phase = st.get("phase")
            if st.get("phase") == "Failed" and reason and not st.get("containerStatuses"):
                view.admission_reason = f"{reason}: {st.get('message', '')}".strip()
            if reason:
                view.reason = reason
                if view.t_mono is None:
                    view.t_mono = self.watch.last_seen(name or "")
        for ev_reason, msg, t_ev in self.watch.pod_events(name or ""):
            view.t_mono = t_ev if view.t_mono is None else min(t_ev, view.t_mono)
            if ev_reason in ADMISSION_EVENT_REASONS:
                if view.admission_reason is None:
                    view.admission_reason = f"{ev_reason}: {msg}"
                continue
            # Since 1.27 (kubernetes/kubernetes PR #115331, issue #118310) the phase of a pod killed by
            # the eviction manager follows its containers' exit codes: a container that exits 0 on the
            # SIGTERM leaves the pod Succeeded with no reason, and only the Evicted event says what happened.
            view.reason = ev_reason
            view.message = msg

    def stop(self, ctx: ScenarioContext, handle: Handle, timeout: float = 5.0) -> None:
        if handle.workload in self._host_workloads:
            assert self._host is not None
            self._host.stop(ctx, handle, timeout)
            return
        self.stop_many(ctx, [handle], timeout)

    def stop_many(self, ctx: ScenarioContext, handles: Sequence[Handle], timeout: float = 5.0) -> None:
        """SIGTERM each pod's container processes (by pid) and delete every pod (grace ``timeout``,
        ``DELETE_WORKERS`` requests at once), then wait for them together.

        A pod is stopped when the kubelet reports its exit, or when its container's cgroup holds
        no process any more (the kernel's word, before the kubelet's status manager reports it:
        with 110 pods those reports queue behind its API rate limit), or when the API shows it
        deleting with nothing running. A pod whose exit is not seen within ``timeout`` + 30 s, or
        whose exit the kubelet had not reported yet, is recorded as stopped by SIGTERM (143); a
        kernel OOM kill in that instant is still found by kmsg and the cgroup's counter."""
        pods: list[tuple[Handle, str]] = []
        t0 = time.monotonic()
        for handle in handles:
            if handle.workload in self._host_workloads:
                assert self._host is not None
                self._host.stop(ctx, handle, timeout)
                continue
            name = self._pod_of.get(handle.workload)
            if not name or handle.exit:
                continue
            handle.stop_requested = True
            pods.append((handle, name))
        # SIGTERM to each container's processes first, by pid (what the kubelet's graceful stop
        # sends too): the programs exit at once, instead of waiting for the kubelet and the runtime
        # to work through a node's worth of StopContainer calls (8 s for 109 pods on 2 cores)
        for handle, _ in pods:
            self._term_processes(handle)
        delete_each(self.core, [n for _, n in pods], int(timeout))
        stopping = [h for h, _ in pods]
        deadline = time.monotonic() + timeout + 30
        while pods and time.monotonic() < deadline:
            pods = [
                (h, n)
                for h, n in pods
                if self.poll(ctx, h) is None and not self._processes_gone(h) and not self._gone_quiet(n)
            ]
            if pods:
                time.sleep(0.1)
        for handle in stopping:
            if handle.exit is None:
                handle.exit = ExitInfo(time.monotonic(), time.time(), 143, 15, None, stopped_by_harness=True)
        if len(stopping) > 1:
            ctx.events.add(
                "harness",
                "pods_stopped",
                stopped=len(stopping) - len(pods),
                not_seen=len(pods),
                stop_s=round(time.monotonic() - t0, 3),
            )

    def _gone_quiet(self, name: str) -> bool:
        """The pod is being deleted and none of its containers runs any more."""
        pod = self.watch.pod(name)
        return (
            pod is not None
            and bool(pod.get("metadata", {}).get("deletionTimestamp"))
            and not any(
                (cs.get("state") or {}).get("running")
                for cs in pod.get("status", {}).get("containerStatuses") or []
            )
        )

    @staticmethod
    def _container_pids(handle: Handle) -> list[int] | None:
        """The processes in the container's cgroup (empty once it is gone: the runtime removes it
        when it deletes the stopped task); None before the container ran (``cgroup_abs`` is then
        the model's path, not the kubelet's cgroup)."""
        if not handle.container_id or handle.cgroup_abs is None:
            return None
        return list(iter_pids(handle.cgroup_abs))

    @classmethod
    def _term_processes(cls, handle: Handle) -> int:
        """SIGTERM to the processes in the container's cgroup, each by pid and only while it is the
        process read from cgroup.procs (start time checked); returns how many were signalled."""
        pids = cls._container_pids(handle) or []
        return sum(signal_same(pid, start, signal.SIGTERM) for pid, start in snapshot(pids))

    @classmethod
    def _processes_gone(cls, handle: Handle) -> bool:
        """The container ran and its cgroup has no process left, or is gone."""
        return cls._container_pids(handle) == []

    def teardown(self, ctx: ScenarioContext) -> list[str]:
        failed: list[str] = []
        t0 = time.monotonic()
        remaining = delete_pods(self.core, list(self._pod_of.values()), timeout=90)
        if len(self._pod_of) > 1:
            ctx.events.add(
                "harness",
                "pods_deleted",
                deleted=len(self._pod_of) - len(remaining),
                delete_s=round(time.monotonic() - t0, 3),
            )
        failed += [f"pod {NAMESPACE}/{n} still exists" for n in sorted(remaining)]
        led = run_ledger(ctx.run_id)
        for n in sorted(set(self._pod_of.values()) - remaining):
            led.release("pod", namespace=NAMESPACE, name=n, run=label_value(ctx.run_id))
        if self._host is not None:
            failed += self._host.teardown(ctx)
        else:
            failed += ctx.tree.remove()
        if self._room is not None:
            try:
                restore(self._room)
            except HarnessError as exc:
                failed.append(str(exc))
            else:
                if self._room_entry is not None:
                    led.release("cgroup-limit", **self._room_entry)
            self._room = None
        self._room_entry = None
        self._pod_of.clear()
        self._host_workloads.clear()
        self._logs.clear()
        self._ctx = None
        if self._watch is not None:
            self._watch.ctx = None
        return failed

    def health(self) -> list[str]:
        """The cluster's daemons by their pid files, the kubelet's healthz, containerd's socket."""
        c = self.cluster
        out = [
            f"{n} is not running (pid file {c.daemon(n).pidfile}, log {c.daemon(n).log})"
            for n in ("etcd", "kube-apiserver", "kubelet")
            if not c.daemon(n).running()
        ]
        if "kubelet" not in " ".join(out) and not c.kubelet_healthy():
            out.append(f"the kubelet's healthz does not answer (log {c.daemon('kubelet').log})")
        if not answers(instance(c)):
            out.append(f"the cluster's containerd does not answer on {c.containerd_socket}")
        return out

    def close(self) -> None:
        if self._host is not None:
            with contextlib.suppress(Exception):
                self._host.close()
            self._host = None
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
        if self._api is not None:
            with contextlib.suppress(Exception):
                self._api.close()
            self._api = None

    @classmethod
    def cleanup_all(cls) -> list[str]:
        """Delete the pods that runs no longer alive recorded in their ledgers (by name, and only
        while the pod still carries that run's label), if the cluster is up; the cluster itself, the
        shared PriorityClasses and anything not in a ledger stay. Host workloads (tasks of the
        cluster's containerd) are in the same ledgers: the containerd backend's cleanup removes them."""
        c = Cluster()
        if not c.daemon("kube-apiserver").running():
            return []
        api = api_client(c)
        core = k8s.CoreV1Api(api)

        def remove(e: dict[str, Any]) -> str | None:
            ns, name = str(e.get("namespace")), str(e.get("name"))
            try:
                pod = core.read_namespaced_pod(name, ns)
            except ApiException as exc:
                return None if exc.status == 404 else f"pod {ns}/{name}: {exc.reason}"
            labels = (pod.metadata.labels or {}) if pod.metadata is not None else {}
            if labels.get(LABEL_RUN) != e.get("run"):
                return None  # the name belongs to another run's pod now: not ours
            left = delete_pods(core, [name], timeout=60)
            return f"pod {ns}/{name} still exists" if left else None

        try:
            return sweep({"pod": remove})
        finally:
            with contextlib.suppress(Exception):
                api.close()


def _cpuset_mems(rel: str, root: Path | None = None) -> str | None:
    """The NUMA nodes a container cgroup (``rel``: below the cgroup root) may allocate from.

    ``cpuset.mems`` where the runtime wrote it (the memory manager's nodes); on cgroup v2 a container
    without them (no ``CpusetMems`` from the kubelet: not Guaranteed, or no memory manager) has an
    empty ``cpuset.mems`` and the kernel applies its parent's nodes, ``cpuset.mems.effective``
    (Documentation/admin-guide/cgroup-v2.rst, "cpuset.mems"). 2026-12-07 on lab kb (v2, Static
    policy) a Burstable container read "" there. On v1 the file is never empty."""
    d = root if root is not None else controller_dir("cpuset")
    if d is None:
        return None
    try:
        mems = (d / rel / "cpuset.mems").read_text().strip()
        if not mems:
            mems = (d / rel / "cpuset.mems.effective").read_text().strip()
        return mems
    except OSError:
        return None
