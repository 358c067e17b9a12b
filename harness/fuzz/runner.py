"""``harness fuzz`` on the local cluster: per profile, restart the kubelet with it, send the pods in
batches the node admits, compare each with the model, delete the batch; always delete every pod of
the run and give the kubelet back its configuration (also on Ctrl-C).

Reuses the kubernetes backend's machinery: pod binding and PriorityClasses
(``launch.kubernetes.pods``), the kubelet restart of ``launch.kubernetes.profiles``, the run's ledger
(``harness cleanup`` removes what a killed fuzz run left), and the verdicts' readers of the node's
state (``verdict.cgroups.check_cgroups``, ``verdict.oomscore.container_oom_scores``).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from harness import quantity
from harness.cluster import Cluster
from harness.cluster.build import ensure_built
from harness.cluster.client import api_client
from harness.config.errors import load_yaml_mapping
from harness.config.kubelet import KubeletConfiguration, load_profile
from harness.config.node import NodeFacts, detect_local_facts, parse_kubelet_version
from harness.errors import HarnessError, HostError
from harness.fuzz.compare import (
    Admission,
    Difference,
    PodResult,
    compare_admission,
    compare_batch,
    refused_causes,
    write_reproducers,
)
from harness.fuzz.generate import FuzzPod, generate_pods, generate_profiles, pod_level_allowed
from harness.fuzz.plan import plan_batches, predict_admissions
from harness.host.cgroups import cgroup_version
from harness.host.probes import probe_negative_oom_score_adj
from harness.launch.base import LABEL, LABEL_RUN
from harness.launch.kubernetes.node import numa_memory
from harness.launch.kubernetes.pods import (
    NAMESPACE,
    PriorityClasses,
    delete_pods,
    ensure_namespace,
    label_value,
    on_this_node,
)
from harness.model.node import node_allocatable
from harness.model.qos import pod_qos
from harness.model.validation import API_REFUSED
from harness.owned import run_ledger

LABEL_FUZZ = "io.harness.fuzz"
REPO = Path(__file__).resolve().parents[2]
BASE_PROFILE = REPO / "profiles" / "cluster-default.yaml"
ADMIT_TIMEOUT_S = 30.0
START_TIMEOUT_S = 60.0
DELETE_TIMEOUT_S = 60.0


@dataclass
class FuzzOptions:
    pods: int
    seed: int
    profiles: int = 1
    out_dir: Path | None = None
    max_batch: int = 12
    base_profile: Path = BASE_PROFILE


@dataclass
class ProfileRun:
    index: int
    path: str
    allocatable_model: dict[str, int] = field(default_factory=dict)
    allocatable_node: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    kubelet_restart_s: float | None = None


@dataclass
class FuzzReport:
    seed: int
    pods_asked: int
    run_id: str
    out_dir: str
    kubelet_version: str = ""
    profiles: list[ProfileRun] = field(default_factory=list)
    results: list[PodResult] = field(default_factory=list)
    node_differences: list[Difference] = field(default_factory=list)  # batch and node level
    tier_files: int = 0
    seconds: float = 0.0
    complete: bool = False

    @property
    def differences(self) -> list[Difference]:
        return [d for r in self.results for d in r.differences] + self.node_differences

    @property
    def compared(self) -> int:
        return sum(1 for r in self.results if r.compared)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "pods": self.pods_asked,
            "compared": self.compared,
            "differences": len(self.differences),
            "complete": self.complete,
            "run_id": self.run_id,
            "out_dir": self.out_dir,
            "kubelet_version": self.kubelet_version,
            "seconds": round(self.seconds, 1),
            "files_compared": sum(r.files for r in self.results) + self.tier_files,
            "oom_scores_compared": sum(r.oom_scores for r in self.results),
            "host_deviations": sum(len(r.host_deviations) for r in self.results),
            "profiles": [p.__dict__ for p in self.profiles],
            "node_differences": [d.__dict__ for d in self.node_differences],
            "pods_detail": [r.to_dict() for r in self.results],
        }


def default_out_dir(seed: int, results: Path) -> Path:
    return results / f"fuzz-{seed}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


class _Node:
    """The cluster's node through the API, and its kubelet's restarts."""

    def __init__(self, cluster: Cluster, say: Callable[[str], None]) -> None:
        self.cluster = cluster
        self.say = say
        self.api = api_client(cluster)
        self.core = k8s.CoreV1Api(self.api)

    def read(self) -> dict[str, Any]:
        return dict(self.api.sanitize_for_serialization(self.core.read_node(self.cluster.node_name)))

    def pod(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.api.sanitize_for_serialization(self.core.read_namespaced_pod(name, NAMESPACE)))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def foreign_pods(self, run_label: str) -> list[str]:
        """Pods on the node that are not this run's and still hold resources."""
        pods = self.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={self.cluster.node_name}")
        out = []
        for p in pods.items:
            labels = (p.metadata.labels or {}) if p.metadata else {}
            phase = p.status.phase if p.status else None
            if p.metadata and labels.get(LABEL_RUN) != run_label and phase not in ("Succeeded", "Failed"):
                out.append(f"{p.metadata.namespace}/{p.metadata.name}")
        return out

    def restart_kubelet(self, config: dict[str, Any], profile: Path | None) -> float:
        """Restart the kubelet with ``config``; wait until the node's status is from the new kubelet."""
        version = str(self.cluster.record().get("version"))
        built = ensure_built(version)
        t_wall = time.time()
        res = self.cluster.start_kubelet(built, config, profile=profile)
        if not res.ok:
            raise HostError(f"the kubelet did not start with {profile}: {res.error or res.log_tail}")
        self.cluster.wait_node_ready()
        if res.seconds == 0.0:
            return 0.0  # the kubelet already ran with this configuration (not restarted)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            conds = {c["type"]: c for c in self.read().get("status", {}).get("conditions", [])}
            beat = conds.get("Ready", {}).get("lastHeartbeatTime")
            if beat and conds["Ready"].get("status") == "True":
                t = datetime.fromisoformat(str(beat).replace("Z", "+00:00")).timestamp()
                if t >= int(t_wall):
                    return res.seconds
            time.sleep(0.5)
        raise HostError(f"node {self.cluster.node_name}: no status from the restarted kubelet in 90 s")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.api.close()


def _admission(obj: dict[str, Any]) -> Admission | None:
    """The kubelet's admission of a pod from its status (None: not decided yet)."""
    st = obj.get("status") or {}
    if st.get("phase") == "Failed" and not st.get("containerStatuses"):
        return Admission(False, str(st.get("reason") or ""), str(st.get("message") or ""))
    if st.get("conditions") or st.get("containerStatuses") or st.get("initContainerStatuses"):
        return Admission(True)
    return None


def _started(obj: dict[str, Any], fp: FuzzPod) -> bool:
    """Every regular container and sidecar runs, every regular init container ended (exit 0)."""
    st = obj.get("status") or {}
    states = {
        c["name"]: (c.get("state") or {})
        for c in [*(st.get("initContainerStatuses") or []), *(st.get("containerStatuses") or [])]
    }
    spec = fp.manifest["spec"]
    for c in spec.get("initContainers", []):
        s = states.get(c["name"], {})
        if c.get("restartPolicy") == "Always":
            if not s.get("running"):
                return False
        elif (s.get("terminated") or {}).get("exitCode") != 0:
            return False
    return all(states.get(c["name"], {}).get("running") for c in spec["containers"])


def _states(obj: dict[str, Any]) -> str:
    st = obj.get("status") or {}
    parts = []
    for c in [*(st.get("initContainerStatuses") or []), *(st.get("containerStatuses") or [])]:
        s = c.get("state") or {}
        (kind, detail), *_ = s.items() if s else [("unknown", {})]
        why = (detail or {}).get("reason") or (detail or {}).get("message") or ""
        parts.append(f"{c['name']}={kind}{'(' + why + ')' if why else ''}")
    return f"phase {st.get('phase')}: " + (", ".join(parts) or "no container status")


def _ints(resources: dict[str, Any]) -> dict[str, int]:
    out = {}
    if "memory" in resources:
        out["memory"] = quantity.to_bytes(resources["memory"])
    if "cpu" in resources:
        out["cpu"] = quantity.to_millis(resources["cpu"])
    return out


class FuzzRun:
    def __init__(self, opts: FuzzOptions, out_dir: Path, say: Callable[[str], None]) -> None:
        self.opts = opts
        self.out = out_dir
        self.say = say
        self.cluster = Cluster()
        self.run_id = f"fuzz-{opts.seed}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
        self.run_label = label_value(self.run_id)
        self.ledger = run_ledger(self.run_id)
        self.live: set[str] = set()  # pods of this run that may exist
        self.report = FuzzReport(opts.seed, opts.pods, self.run_id, str(out_dir))

    # ---- the run ---------------------------------------------------------------------------
    def run(self) -> FuzzReport:
        t0 = time.monotonic()
        try:
            return self._run()
        finally:
            self.report.seconds = time.monotonic() - t0
            self.ledger.finish()  # dropped when every pod is gone; else kept for `harness cleanup`

    def _run(self) -> FuzzReport:
        rec = self.cluster.require_up()
        version = str(rec.get("version") or "")
        self.report.kubelet_version = version
        minor = parse_kubelet_version(version)
        node = _Node(self.cluster, self.say)
        original_config = yaml.safe_load(self.cluster.kubelet_config_path.read_text())
        original_profile = Path(rec["kubelet_profile"]) if rec.get("kubelet_profile") else None
        restarted = False
        try:
            ensure_namespace(node.core)
            foreign = node.foreign_pods(self.run_label)
            if foreign:
                raise HostError(
                    f"the node runs {len(foreign)} pods of others ({', '.join(foreign[:5])}): the comparison "
                    "needs the node to itself (run under the shared lock; `harness cleanup` removes what "
                    "dead runs left)"
                )
            classes = PriorityClasses(node.api)
            base = load_yaml_mapping(self.opts.base_profile)
            profiles = generate_profiles(self.opts.seed, self.opts.profiles, base)
            (self.out / "profiles").mkdir(parents=True, exist_ok=True)
            for k, prof in enumerate(profiles):
                path = self.out / "profiles" / f"profile-{k}.yaml"
                path.write_text(yaml.safe_dump(prof, sort_keys=False))
                profile = load_profile(path)
                mine = [i for i in range(self.opts.pods) if i % len(profiles) == k]
                if not mine:
                    continue
                self.say(f"profile {k}: {path} ({', '.join(f'{a}={b}' for a, b in _knobs(prof).items())})")
                pr = ProfileRun(k, str(path))
                self.report.profiles.append(pr)
                restarted = True
                pr.kubelet_restart_s = node.restart_kubelet(
                    self.cluster.kubelet_config(path, version), path.resolve()
                )
                self._profile(node, classes, k, path, profile, pr, mine, minor)
            self.report.complete = True
        finally:
            self._cleanup(node)
            if restarted:
                self.say("giving the kubelet back its configuration")
                try:
                    node.restart_kubelet(original_config, original_profile)
                finally:
                    node.close()
            else:
                node.close()
        return self.report

    def _facts(self, node: _Node, version: str) -> NodeFacts:
        """The node as the kubelet sees it (as ``scenario.resolve.real_node`` does for a run): its
        capacity (MemTotal and CPUs at its start), NUMA nodes, this host's cgroup version and runtime,
        whether negative oom_score_adj can be applied here."""
        st = node.read().get("status", {})
        cap = st.get("capacity", {})
        facts = detect_local_facts()
        seen = numa_memory(self.cluster)  # each NUMA node as the kubelet saw it at its start
        for n in facts.get("numaNodes", []):
            n["memory"] = seen.get(str(n["id"]), n["memory"])
        facts.update(
            memoryCapacity=quantity.to_bytes(cap["memory"]),
            cpus=quantity.to_millis(cap["cpu"]) // 1000,
            kubeletVersion=version,
            negativeOomScoreAdj=probe_negative_oom_score_adj(),
        )
        return NodeFacts.model_validate(facts)

    def _profile(
        self,
        node: _Node,
        classes: PriorityClasses,
        k: int,
        path: Path,
        profile: KubeletConfiguration,
        pr: ProfileRun,
        indexes: list[int],
        minor: int,
    ) -> None:
        version = self.report.kubelet_version
        facts = self._facts(node, version)
        model_alloc = node_allocatable(profile, facts).allocatable
        pr.allocatable_model = {r: model_alloc[r] for r in ("memory", "cpu")}
        pr.allocatable_node = _ints(node.read().get("status", {}).get("allocatable", {}))
        for r in ("memory", "cpu"):
            if pr.allocatable_model.get(r) != pr.allocatable_node.get(r):
                self.report.node_differences.append(
                    Difference(
                        "allocatable",
                        r,
                        str(pr.allocatable_model.get(r)),
                        str(pr.allocatable_node.get(r)),
                        profile=k,
                    )
                )
        level = pod_level_allowed(profile, minor)
        every = generate_pods(
            self.opts.seed, self.opts.pods, prefix=f"fuzz-{self.opts.seed}", pod_level_resources=level
        )
        fps = [every[i] for i in indexes]
        models = [fp.pod() for fp in fps]
        batches = plan_batches(models, pr.allocatable_node, profile, minor, self.opts.max_batch)
        pr.batches = len(batches)
        for b, batch in enumerate(batches):
            self._batch(
                node, classes, k, b, path, profile, facts, minor, model_alloc, [fps[i] for i in batch]
            )

    def _batch(
        self,
        node: _Node,
        classes: PriorityClasses,
        k: int,
        b: int,
        path: Path,
        profile: KubeletConfiguration,
        facts: NodeFacts,
        minor: int,
        allocatable: dict[str, int],
        fps: list[FuzzPod],
    ) -> None:
        done = len(self.report.results)
        self.say(f"profile {k} batch {b}: {len(fps)} pods")
        predicted = predict_admissions([fp.pod() for fp in fps], allocatable, profile, minor)
        results = []
        objs: dict[str, dict[str, Any]] = {}
        for fp, pred in zip(fps, predicted, strict=True):
            res = PodResult(fp.name, fp.index, k, b, pod_qos(fp.pod(), profile, minor), fp.features, pred)
            results.append(res)
            self.report.results.append(res)
            obj = self._send(node, classes, fp, res)
            if obj is not None:
                objs[fp.name] = obj
        try:
            self._compare(node, k, b, path, profile, facts, fps, results, objs)
        finally:
            self._delete(node, [fp.name for fp in fps])
        for i, res in enumerate(results):
            n = done + i + 1
            state = "admitted" if res.observed and res.observed.admitted else "rejected"
            if res.observed is None:
                state = "not compared"
            verdict = "ok" if not res.differences else f"DIFF ({len(res.differences)})"
            self.say(
                f"  [{n:>3}/{self.opts.pods}] {res.name} {res.qos:<10} {','.join(sorted(set(res.features))) or '-':<28}"
                f" {state:<9} files {res.files:>3}  oom {res.oom_scores}  {verdict}"
            )
            for d in res.differences:
                self.say(f"        {d.kind} {d.where}: model {d.expected}, observed {d.observed}")

    def _send(
        self, node: _Node, classes: PriorityClasses, fp: FuzzPod, res: PodResult
    ) -> dict[str, Any] | None:
        """Create the pod and wait for the kubelet's admission decision (so the next pod is admitted
        after it, as the model assumes)."""
        manifest = json.loads(json.dumps(fp.manifest))
        md = manifest["metadata"]
        md["namespace"] = NAMESPACE
        md["labels"] = {LABEL: "true", LABEL_RUN: self.run_label, LABEL_FUZZ: str(self.opts.seed)}
        on_this_node(manifest["spec"], self.cluster.node_name)
        if fp.priority is not None:
            manifest["spec"]["priorityClassName"] = classes.name_for(fp.priority)
        self.ledger.add("pod", namespace=NAMESPACE, name=fp.name, run=self.run_label)
        self.live.add(fp.name)
        try:
            node.core.create_namespaced_pod(NAMESPACE, manifest)
        except ApiException as exc:
            if exc.status and 400 <= exc.status < 500 and exc.status != 409:
                res.observed = Admission(False, API_REFUSED, refused_causes(exc.body))
                for where, exp, got in compare_admission(res.predicted, res.observed):
                    res.differences.append(
                        Difference(
                            "admission", where, exp, f"{got} ({exc.status} {exc.body or exc.reason})", fp.name
                        )
                    )
                return None
            raise HostError(f"creating pod {NAMESPACE}/{fp.name}: {exc.status} {exc.reason}") from None
        deadline = time.monotonic() + ADMIT_TIMEOUT_S
        while time.monotonic() < deadline:
            obj = node.pod(fp.name)
            adm = _admission(obj) if obj else None
            if obj is not None and adm is not None:
                res.observed = adm
                for where, exp, got in compare_admission(res.predicted, adm):
                    res.differences.append(Difference("admission", where, exp, got, fp.name))
                return obj
            time.sleep(0.1)
        raise HostError(
            f"pod {NAMESPACE}/{fp.name}: no admission decision from the kubelet in {ADMIT_TIMEOUT_S:.0f} s"
        )

    def _compare(
        self,
        node: _Node,
        k: int,
        b: int,
        path: Path,
        profile: KubeletConfiguration,
        facts: NodeFacts,
        fps: list[FuzzPod],
        results: list[PodResult],
        objs: dict[str, dict[str, Any]],
    ) -> None:
        admitted = [
            (fp, res) for fp, res in zip(fps, results, strict=True) if res.observed and res.observed.admitted
        ]
        deadline = time.monotonic() + START_TIMEOUT_S
        pending = {fp.name for fp, _ in admitted}
        while pending and time.monotonic() < deadline:
            for fp, _ in admitted:
                if fp.name in pending:
                    obj = node.pod(fp.name)
                    if obj is not None:
                        objs[fp.name] = obj
                        if _started(obj, fp):
                            pending.discard(fp.name)
            if pending:
                time.sleep(0.3)
        for fp, res in admitted:
            if fp.name in pending:
                res.differences.append(
                    Difference(
                        "start", "containers", "every container started", _states(objs[fp.name]), fp.name
                    )
                )
        tier_diffs, tier_files = compare_batch(
            fps, results, objs, profile, facts, cgroup_version=cgroup_version()
        )
        self.report.tier_files += tier_files
        node_diffs = [d for d in self.report.node_differences if d.profile == k and d.reproducer is None]
        self.report.node_differences += tier_diffs
        write_reproducers(
            self.out,
            f"fuzz-{self.opts.seed}-profile-{k}-batch-{b}",
            fps,
            results,
            tier_diffs + node_diffs,
            path,
            k,
            b,
        )

    def _delete(self, node: _Node, names: list[str]) -> None:
        left = delete_pods(node.core, names, timeout=DELETE_TIMEOUT_S)
        for n in names:
            if n not in left:
                self.ledger.release("pod", namespace=NAMESPACE, name=n, run=self.run_label)
                self.live.discard(n)
        if left:
            raise HostError(
                f"pods still there {DELETE_TIMEOUT_S:.0f} s after deletion: {', '.join(sorted(left))}"
            )

    def _cleanup(self, node: _Node) -> None:
        """Every pod of this run, whatever happened (ledger entries kept for those that stay)."""
        with contextlib.suppress(Exception):
            listed = node.core.list_namespaced_pod(NAMESPACE, label_selector=f"{LABEL_RUN}={self.run_label}")
            self.live |= {str(p.metadata.name) for p in listed.items if p.metadata is not None}
        if self.live:
            self.say(f"deleting {len(self.live)} pods of this run")
            left = delete_pods(node.core, sorted(self.live), timeout=DELETE_TIMEOUT_S)
            for n in sorted(self.live - left):
                self.ledger.release("pod", namespace=NAMESPACE, name=n, run=self.run_label)
            self.live = set(left)
            if left:
                self.say(f"still there (harness cleanup removes them): {', '.join(sorted(left))}")


def _knobs(prof: dict[str, Any]) -> dict[str, Any]:
    return {
        k: prof[k]
        for k in ("kubeReserved", "systemReserved", "evictionHard", "cpuCFSQuota", "podPidsLimit")
        if k in prof
    }


def run_fuzz(opts: FuzzOptions, out_dir: Path, say: Callable[[str], None]) -> FuzzReport:
    """Run it; the report is also written to ``<out>/fuzz.json``."""
    if opts.pods < 1 or opts.profiles < 1:
        raise HarnessError("--pods and --profiles must be at least 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    fr = FuzzRun(opts, out_dir, say)
    try:
        return fr.run()
    finally:
        (out_dir / "fuzz.json").write_text(json.dumps(fr.report.to_dict(), indent=2, default=str))
