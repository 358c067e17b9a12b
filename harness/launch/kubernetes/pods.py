"""Pod manifests, PriorityClasses, names and labels, and deleting pods."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from harness.config.suite import Workload
from harness.images import LEAK_IMAGE, PAUSE_IMAGE
from harness.launch.base import LABEL, LABEL_RUN, LABEL_WORKLOAD, ScenarioContext

NAMESPACE = "harness"
LABEL_SCENARIO = "io.harness.scenario"
_DNS = re.compile(r"[^a-z0-9-]+")


def dns_name(*parts: str, limit: int = 63) -> str:
    s = _DNS.sub("-", "-".join(parts).lower()).strip("-")
    return s[:limit].rstrip("-")


def label_value(v: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", v)[:63].strip("-._")


def on_this_node(spec: dict[str, Any], node_name: str) -> dict[str, Any]:
    """A bare pod's spec bound to the node, without a pod network or API credentials."""
    spec["nodeName"] = node_name
    spec.setdefault("restartPolicy", "Never")
    # No pod network here: the runtime's only CNI network is "loopback" (the node reports
    # NetworkReady), which gives a sandbox no eth0, so containerd cannot set it up. Pods share the
    # host's network namespace instead; the leak program does no networking.
    spec["hostNetwork"] = True
    spec["dnsPolicy"] = "Default"
    spec["automountServiceAccountToken"] = False
    spec["enableServiceLinks"] = False
    return spec


def workload_manifest(ctx: ScenarioContext, workload: Workload, node_name: str) -> dict[str, Any]:
    """The workload's pod: the suite's pod file (as the loader validated it) or one container with the
    workload's resources; the leak image with the workload's arguments; harness labels."""
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
                        "resources": {k: dict(v) for k, v in workload.resources.model_dump().items() if v},
                    }
                ],
                "terminationGracePeriodSeconds": workload.termination_grace_period_s,
                "restartPolicy": "Never",
            },
        }
    md = manifest.setdefault("metadata", {})
    md["name"] = dns_name(ctx.scenario.name[:24], workload.name[:24], ctx.run_id[-8:])
    md["namespace"] = NAMESPACE
    md.setdefault("labels", {}).update(
        {
            LABEL: "true",
            LABEL_RUN: label_value(ctx.run_id),
            LABEL_WORKLOAD: workload.name,
            LABEL_SCENARIO: label_value(ctx.scenario.name),
        }
    )
    spec = on_this_node(manifest.setdefault("spec", {}), node_name)
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


def probe_manifest(ctx: ScenarioContext, name: str, node_name: str) -> dict[str, Any]:
    """A BestEffort pod of the pause image, to ask the kubelet whether it admits one now."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {LABEL: "true", LABEL_RUN: label_value(ctx.run_id), "io.harness.probe": "admission"},
        },
        "spec": on_this_node(
            {
                "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "probe", "image": PAUSE_IMAGE, "imagePullPolicy": "Never"}],
            },
            node_name,
        ),
    }


class PriorityClasses:
    """PriorityClasses for workloads' ``priority`` values, made once per value (labelled)."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self._made: set[str] = set()

    def name_for(self, value: int) -> str:
        name = f"harness-priority-{value}".replace("-" + "-", "-m")
        if name in self._made:
            return name
        try:
            k8s.SchedulingV1Api(self.api).create_priority_class(
                k8s.V1PriorityClass(
                    metadata=k8s.V1ObjectMeta(name=name, labels={LABEL: "true"}),
                    value=value,
                    description="harness workload priority",
                )
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
        self._made.add(name)
        return name


def ensure_namespace(core: Any) -> None:
    try:
        core.read_namespace(NAMESPACE)
    except ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespace(
            k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=NAMESPACE, labels={LABEL: "true"}))
        )


# DELETE requests in flight at once. One after the other, each took a round trip and the decoding of
# the returned pod into the client's models (~12 ms apart in the kubelet's log, ~1.3 s for 110 pods,
# twice per scenario); the API server answers them concurrently. Below the client's connection pool
# (kubernetes.client.Configuration.connection_pool_maxsize: 5 x CPUs).
DELETE_WORKERS = 8


def delete_each(core: Any, names: Sequence[str], grace_s: int) -> None:
    """One DELETE per pod with this grace period, ``DELETE_WORKERS`` at a time; answers are not
    decoded, and a pod already gone (404) or a failed call is left to the caller's wait."""

    def one(name: str) -> None:
        with contextlib.suppress(Exception):
            core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=grace_s, _preload_content=False)

    if len(names) <= 1:
        for n in names:
            one(n)
        return
    with ThreadPoolExecutor(
        max_workers=min(DELETE_WORKERS, len(names)), thread_name_prefix="pod-delete"
    ) as pool:
        list(pool.map(one, names))


def delete_pods(core: Any, names: list[str], timeout: float) -> set[str]:
    """Delete those of these pods the API still has at once (grace 0: the API server removes the
    object without waiting for the kubelet, which then stops what still runs) and wait until the
    API has none of them; returns those still there after ``timeout`` seconds."""
    remaining = set(names) & _pod_names(core) if names else set()
    delete_each(core, sorted(remaining), 0)
    deadline = time.monotonic() + timeout
    while remaining and time.monotonic() < deadline:
        remaining &= _pod_names(core)
        if remaining:
            time.sleep(0.3)
    return remaining


def _pod_names(core: Any) -> set[str]:
    """The names of the namespace's pods: one list call, names picked from the raw JSON (the
    client's models for a node's worth of pods cost ~1 s per call to build)."""
    resp = core.list_namespaced_pod(NAMESPACE, _preload_content=False)
    return {str(p["metadata"]["name"]) for p in json.loads(resp.data).get("items") or []}


def delete_all_harness_objects(api: Any) -> list[str]:
    """Every harness pod and PriorityClass (by label); returns what could not be removed."""
    core = k8s.CoreV1Api(api)
    out: list[str] = []
    try:
        pods = core.list_namespaced_pod(NAMESPACE, label_selector=f"{LABEL}=true").items
        names = [str(p.metadata.name) for p in pods if p.metadata is not None]
        out += [f"pod {NAMESPACE}/{n}" for n in sorted(delete_pods(core, names, timeout=60))]
        sched = k8s.SchedulingV1Api(api)
        for pc in sched.list_priority_class(label_selector=f"{LABEL}=true").items:
            if pc.metadata is not None:
                sched.delete_priority_class(str(pc.metadata.name))
    except (ApiException, OSError) as exc:
        out.append(f"kubernetes objects of the harness: {exc}")
    return out
