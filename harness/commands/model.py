"""``harness model ...``: the model's answers for a profile, a pod or a scenario."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from harness.backends import NAMES
from harness.config.kubelet import KubeletConfiguration, load_profile
from harness.config.node import NodeFacts, detect_local_facts, load_facts, parse_facts, parse_numa_memory
from harness.config.pod import load_pods
from harness.config.suite import load_suite
from harness.errors import InputError
from harness.model import admit, cgroups, fit, memorymanager, node, oom, qos, resources, thresholds
from harness.model.predict import predict_scenario
from harness.model.sizing import size_workloads
from harness.model.swap import FIRST_MINOR as FIRST_SWAP_MINOR
from harness.quantity import format_binary_si, to_bytes


def node_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Flags describing the node, shared by the model commands."""
    opts = [
        click.option(
            "--facts",
            "facts_file",
            type=click.Path(dir_okay=False),
            help="Host facts file (YAML/JSON, e.g. from the Ansible facts role).",
        ),
        click.option("--memory-capacity", help="MemTotal of the node, e.g. 16Gi (default: this host)."),
        click.option("--cpus", type=int, help="Number of CPUs (default: this host)."),
        click.option("--numa-memory", help="Per-NUMA-node memory, e.g. 0=8Gi,1=8Gi."),
        click.option("--cgroup-version", type=click.Choice(["1", "2"]), help="Default 2."),
        click.option("--kubelet-version", help="Kubelet minor, e.g. 1.33 (default: newest supported, 1.34)."),
        click.option(
            "--oci-runtime",
            type=click.Choice(["runc", "crun"]),
            help="The container runtime's OCI runtime (container cpu.weight on cgroup v2; default runc).",
        ),
        click.option(
            "--runtime-version",
            help="Version of --oci-runtime, e.g. 1.3.2 (default: this host's `runc --version`, else 1.1.5).",
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def build_facts(
    facts_file: str | None,
    memory_capacity: str | None,
    cpus: int | None,
    numa_memory: str | None,
    cgroup_version: str | None,
    kubelet_version: str | None,
    oci_runtime: str | None = None,
    runtime_version: str | None = None,
) -> NodeFacts:
    data: dict[str, Any]
    if facts_file:
        data = load_facts(facts_file).model_dump(by_alias=True)
    else:
        data = detect_local_facts()
        data.pop("cgroupVersion", None)  # default cgroup v2 unless asked
        if memory_capacity or numa_memory:
            data.pop("numaNodes", None)
    try:
        if memory_capacity:
            data["memoryCapacity"] = to_bytes(memory_capacity)
        if numa_memory:
            data["numaNodes"] = parse_numa_memory(numa_memory)
            if not memory_capacity:
                data["memoryCapacity"] = sum(n["memory"] for n in data["numaNodes"])
    except ValueError as exc:
        raise InputError(None, "--memory-capacity/--numa-memory", str(exc)) from None
    if cpus:
        data["cpus"] = cpus
    if cgroup_version:
        data["cgroupVersion"] = int(cgroup_version)
    if kubelet_version:
        data["kubeletVersion"] = kubelet_version
    if oci_runtime:
        data["ociRuntime"] = oci_runtime
    if runtime_version:
        data[f"{data.get('ociRuntime', 'runc')}Version"] = runtime_version
    return parse_facts(data, facts_file or "<node flags>")


def _emit(obj: Any, as_json: bool, text: Callable[[], str]) -> None:
    if as_json:
        click.echo(json.dumps(obj, indent=2, sort_keys=False))
    else:
        click.echo(text())


def node_summary(profile: KubeletConfiguration, facts: NodeFacts) -> dict[str, Any]:
    """The node-level numbers of the model, as ``harness model node --json`` prints them."""
    minor = facts.kubelet_minor
    errors: list[str] = []
    alloc = node.node_allocatable(profile, facts)
    errors += alloc.errors
    ths: list[thresholds.Threshold] = []
    try:
        ths = thresholds.parse_thresholds(profile, minor)
    except thresholds.ThresholdError as exc:
        errors.append(str(exc))
    errors += memorymanager.validate_reserved_memory(profile, facts)
    cap = alloc.memory_capacity
    kl = alloc.kubepods_memory_limit

    def capacity_for(sig: str) -> int:
        return kl if sig == thresholds.ALLOCATABLE_MEMORY_AVAILABLE else cap

    mem = [t for t in ths if t.signal in thresholds.MEMORY_SIGNALS]
    return {
        "profile": profile.source,
        "kubelet_version": facts.kubelet_version,
        "cgroup_version": facts.cgroup_version,
        "capacity_bytes": cap,
        "reservation": alloc.reservation,
        "allocatable_bytes": alloc.allocatable_memory,
        "kubepods_limit_bytes": kl,
        "hugepages_bytes": facts.hugepages_capacity,
        "eviction_hard": [
            {
                "signal": t.signal,
                "value": t.value.text,
                "bytes": t.value.resolve(capacity_for(t.signal)),
                "min_reclaim_bytes": t.min_reclaim_bytes(capacity_for(t.signal)),
            }
            for t in mem
            if t.hard
        ],
        "eviction_soft": [
            {
                "signal": t.signal,
                "value": t.value.text,
                "bytes": t.value.resolve(capacity_for(t.signal)),
                "grace_period_s": t.grace_period_s,
            }
            for t in mem
            if not t.hard
        ],
        "enforce_node_allocatable": profile.enforce_node_allocatable_effective,
        "memory_manager_policy": profile.memory_manager_policy,
        "topology_manager_policy": profile.topology_manager_policy,
        "errors": errors,
    }


@click.group("model")
def model_group() -> None:
    """What the model predicts for a kubelet profile, a pod or a scenario."""


@model_group.command("node")
@click.argument("profile", type=click.Path(dir_okay=False))
@node_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def model_node(profile: str, as_json: bool, **node_flags: Any) -> None:
    """Capacity, allocatable, kubepods limit and eviction thresholds of a node.

    \b
    Example:
      harness model node profiles/default.yaml --memory-capacity 16Gi --json
    Exits 2 when the kubelet would refuse this configuration (errors are printed).
    """
    prof = load_profile(profile)
    facts = build_facts(**node_flags)
    s = node_summary(prof, facts)

    def text() -> str:
        lines = [
            f"capacity     {format_binary_si(s['capacity_bytes']):>12}  ({s['capacity_bytes']} bytes)",
            f"allocatable  {format_binary_si(s['allocatable_bytes']):>12}  ({s['allocatable_bytes']} bytes)",
            f"kubepods     {format_binary_si(s['kubepods_limit_bytes']):>12}  ({s['kubepods_limit_bytes']} bytes)",
        ]
        for t in s["eviction_hard"]:
            lines.append(f"evict hard   {t['signal']}<{t['value']} = {t['bytes']} bytes")
        for t in s["eviction_soft"]:
            lines.append(
                f"evict soft   {t['signal']}<{t['value']} = {t['bytes']} bytes, grace {t['grace_period_s']}s"
            )
        return "\n".join(lines)

    _emit(s, as_json, text)
    if s["errors"]:
        for e in s["errors"]:
            click.echo(f"harness: kubelet would refuse to start: {e}", err=True)
        sys.exit(2)


@model_group.command("pod")
@click.argument("profile", type=click.Path(dir_okay=False))
@click.argument("pod_file", metavar="POD.yaml", type=click.Path(dir_okay=False))
@node_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def model_pod(profile: str, pod_file: str, as_json: bool, **node_flags: Any) -> None:
    """QoS class, oom_score_adj and cgroup values of a pod's cgroups.

    \b
    Example:
      harness model pod profiles/default.yaml suites/pods/burstable.yaml --memory-capacity 16Gi --json
    """
    prof = load_profile(profile)
    facts = build_facts(**node_flags)
    pods = load_pods(pod_file)
    if len(pods) != 1:
        raise InputError(pod_file, None, f"expected one Pod, found {len(pods)}")
    out = pod_summary(prof, facts, pods[0])
    _emit(out, as_json, lambda: _pod_text(out))


def pod_summary(profile: KubeletConfiguration, facts: NodeFacts, pod: Any) -> dict[str, Any]:
    minor = facts.kubelet_minor
    admission = pod_admission(profile, facts, pod)
    if not admission["admitted"]:
        # the kubelet refuses the pod: no cgroup is ever created for it
        return {
            "pod": pod.name,
            "qos_class": qos.pod_qos(pod, profile, minor),
            "requests": resources.pod_requests(pod, profile, minor),
            "limits": resources.pod_limits(pod, profile, minor),
            "admission": admission,
        }
    pc = cgroups.pod_cgroup(pod, profile, facts)
    cc = {
        c.path.rsplit("/", 1)[-1]: c
        for c in cgroups.container_cgroups(pod, profile, facts, include_init=True)
    }
    containers = []
    for c in [*pod.spec.init_containers, *pod.spec.containers]:
        v = cc.get(c.name)
        containers.append(
            {
                "name": c.name,
                "init": c in pod.spec.init_containers,
                "sidecar": c.is_sidecar,
                "oom_score_adj": oom.container_oom_score_adj(
                    pod, c.name, facts.memory_capacity_bytes, profile, minor
                ),
                "memory_limit_bytes": v.memory_limit_bytes if v else None,
                "memory_high_bytes": v.memory_high_bytes if v else None,
                "memory_min_bytes": v.memory_min_bytes if v else None,
                "cpu_shares": v.cpu_shares if v else None,
                "cpu_weight": v.cpu_weight if v else None,
                "cpu_quota_us": v.cpu_quota_us if v else None,
                "oom_group": v.oom_group if v else None,
                "cgroup": v.path if v else None,
            }
        )
    return {
        "pod": pod.name,
        "qos_class": qos.pod_qos(pod, profile, minor),
        "requests": resources.pod_requests(pod, profile, minor),
        "limits": resources.pod_limits(pod, profile, minor),
        "admission": admission,
        "pod_cgroup": {
            "path": pc.path,
            "memory_limit_bytes": pc.memory_limit_bytes,
            "cpu_shares": pc.cpu_shares,
            "cpu_weight": pc.cpu_weight,
            "cpu_quota_us": pc.cpu_quota_us,
            "memory_min_bytes": pc.memory_min_bytes,
            "pids_max": pc.pids_max,
        },
        "containers": containers,
    }


def pod_admission(profile: KubeletConfiguration, facts: NodeFacts, pod: Any) -> dict[str, Any]:
    """The kubelet's admit handlers for this pod alone on the node, in their order (k8s:
    pkg/kubelet/kubelet.go): topology/memory manager (``model.admit``), then the resource fit against
    allocatable with the critical-pod handler (``model.fit``; alone on the node, a critical pod that
    does not fit has nothing to preempt)."""
    res, _ = admit.admit_pod(pod, profile, facts, None)
    if not res.admitted:
        return {"admitted": False, "reason": res.reason, "message": res.message, "critical": pod.is_critical}
    alloc = node.node_allocatable(
        profile, facts
    ).allocatable  # status.allocatable, as predicate.go sees the node
    f = fit.admit_fit(
        pod, [], {k: alloc[k] for k in ("cpu", "memory") if k in alloc}, profile, facts.kubelet_minor
    )
    return {
        "admitted": f.admitted,
        "reason": f.reason or None,
        "message": f.message or None,
        "critical": pod.is_critical,
        "allocatable": {k: alloc.get(k) for k in ("cpu", "memory")},
    }


def _pod_text(out: dict[str, Any]) -> str:
    adm = out["admission"]
    if not adm["admitted"]:
        return (
            f"pod {out['pod']}: QoS {out['qos_class']}: refused at admission: {adm['reason']}: {adm['message']}"
            + (" (a critical pod: nothing to preempt on an empty node)" if adm.get("critical") else "")
        )
    lines = [f"pod {out['pod']}: QoS {out['qos_class']}", f"  pod cgroup {out['pod_cgroup']['path']}"]
    for k, v in out["pod_cgroup"].items():
        if k != "path":
            lines.append(f"    {k:<20} {v}")
    for c in out["containers"]:
        kind = " (init, runs to completion)" if c["init"] and not c["sidecar"] else ""
        lines.append(f"  container {c['name']}{kind}: oom_score_adj {c['oom_score_adj']}")
        for k in ("memory_limit_bytes", "memory_high_bytes", "cpu_shares", "cpu_weight", "cpu_quota_us"):
            lines.append(f"    {k:<20} {c[k]}")
    return "\n".join(lines)


@model_group.command("predict")
@click.argument("scenario_file", metavar="SCENARIO.yaml", type=click.Path(dir_okay=False))
@click.option("--scenario", "only", help="Only this scenario of a suite (name or id).")
@click.option(
    "--backend",
    type=click.Choice(NAMES),
    default="kubernetes",
    show_default=True,
    help="kubernetes: a real kubelet acts; the others: only the kernel acts.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def model_predict(scenario_file: str, only: str | None, backend: str, as_json: bool) -> None:
    """Predict each workload's outcome, time window, mechanism and victims.

    \b
    Example:
      harness model predict suites/local.yaml --backend process
    """
    suite = load_suite(scenario_file)
    scenarios = [suite.scenario(only)] if only else suite.scenarios
    preds = [predict_scenario(size_workloads(s), kubelet=backend == "kubernetes") for s in scenarios]
    obj: dict[str, Any] = {"suite": suite.name, "backend": backend, "scenarios": [p.to_dict() for p in preds]}
    if len(preds) == 1:
        obj["workloads"] = obj["scenarios"][0]["workloads"]

    def text() -> str:
        lines = []
        for p in preds:
            lines.append(f"scenario {p.scenario} ({'kubelet' if p.kubelet else 'kernel only'})")
            for w in p.workloads:
                win = _window(w.earliest_s, w.latest_s)
                lines.append(f"  {w.name:<20} {w.outcome:<16} {win:<16} {w.mechanism}")
                if w.race:
                    for a in w.alternatives:
                        lines.append(
                            f"  {'':<20}   or {a.outcome:<13} {_window(a.earliest_s, a.latest_s):<16} "
                            f"{a.share:.0%} of loop phases"
                        )
                if w.victims:
                    lines.append(f"  {'':<20}   victims: {', '.join(w.victims)}")
                for n in w.notes:
                    lines.append(f"  {'':<20}   note: {n}")
            for n in p.notes:
                lines.append(f"  note: {n}")
        return "\n".join(lines)

    _emit(obj, as_json, text)


def _window(a: float | None, b: float | None) -> str:
    if a is None:
        return "-"
    if b is None or abs(b - a) < 0.05:
        return f"t={a:.1f}s"
    return f"t={a:.1f}..{b:.1f}s"


@model_group.command("explain")
@click.argument("profile", type=click.Path(dir_okay=False))
@node_options
def model_explain(profile: str, **node_flags: Any) -> None:
    """A readable breakdown: capacity → reservations → thresholds → allocatable → kubepods.

    \b
    Example:
      harness model explain profiles/default.yaml --memory-capacity 16Gi --cgroup-version 1
    """
    prof = load_profile(profile)
    facts = build_facts(**node_flags)
    summary = node_summary(prof, facts)
    click.echo(explain_text(prof, facts, summary))
    if summary["errors"]:
        sys.exit(2)


def explain_text(
    profile: KubeletConfiguration, facts: NodeFacts, summary: dict[str, Any] | None = None
) -> str:
    s = summary or node_summary(profile, facts)
    cap = s["capacity_bytes"]

    def q(n: int) -> str:
        return f"{format_binary_si(n):>10} {n / 1048576:>11.1f} MiB"

    lines = [
        f"Profile {Path(profile.source).name} on a node with kubelet {facts.kubelet_version}, "
        f"cgroup v{facts.cgroup_version}",
        "",
        f"  capacity (MemTotal)                      {q(cap)}",
    ]
    kr = profile.kube_reserved.get("memory")
    sr = profile.system_reserved.get("memory")
    if kr:
        lines.append(f"  - kubeReserved.memory                    {q(to_bytes(kr))}")
    if sr:
        lines.append(f"  - systemReserved.memory                  {q(to_bytes(sr))}")
    hard_node = [t for t in s["eviction_hard"] if t["signal"] == "memory.available"]
    for t in hard_node:
        lines.append(f"  - evictionHard memory.available<{t['value']:<8} {q(t['bytes'])}")
    for k, v in s["hugepages_bytes"].items():
        lines.append(f"  - {k:<38} {q(v)}")
    lines += [
        f"  = allocatable (status.allocatable)       {q(s['allocatable_bytes'])}",
        "",
        f"  kubepods cgroup memory limit             {q(s['kubepods_limit_bytes'])}",
        "    = capacity - kubeReserved - systemReserved"
        + (
            " (enforceNodeAllocatable has 'pods')"
            if "pods" in s["enforce_node_allocatable"]
            else " not enforced: enforceNodeAllocatable lacks 'pods', so kubepods gets the capacity"
        ),
        "    (eviction thresholds and hugepages are not subtracted here: pods can use",
        "     memory above 'allocatable' until the eviction manager notices)",
        "",
        "Eviction thresholds (the kubelet checks every 10 s):",
    ]
    for t in s["eviction_hard"]:
        if t["signal"] == "memory.available":
            trig = cap - t["bytes"]
            lines.append(
                f"  hard {t['signal']}<{t['value']}: evicts when the node's working set exceeds "
                f"{format_binary_si(trig)} ({trig} bytes)"
            )
        else:
            trig = s["kubepods_limit_bytes"] - t["bytes"]
            lines.append(
                f"  hard {t['signal']}<{t['value']}: evicts when the pods' working set exceeds "
                f"{format_binary_si(trig)} ({trig} bytes) [copied from memory.available because "
                "enforceNodeAllocatable has 'pods']"
            )
    for t in s["eviction_soft"]:
        lines.append(f"  soft {t['signal']}<{t['value']}: after {t['grace_period_s']:g}s above it")
    if not s["eviction_hard"] and not s["eviction_soft"]:
        lines.append("  none: only the kernel OOM killer protects this node's memory")
    gap = [t for t in s["eviction_hard"] if t["signal"] == "allocatableMemory.available"]
    if gap:
        g = gap[0]["bytes"]
        lines += [
            "",
            f"Race margin: pods leaking faster than {format_binary_si(g)} per 10 s loop "
            f"(~{g / 10 / 1048576:.1f} MiB/s) can reach the kubepods limit between two eviction",
            "checks, and the kernel OOM killer acts before the kubelet.",
        ]
    lines += [
        "",
        "Swap (memorySwap.swapBehavior, kuberuntime_container_linux.go):",
        f"  {swap_text(profile, facts)}",
    ]
    lines += [
        "",
        "The whole node's OOM (a real kubelet's node; model.predict Baseline.root_unavailable):",
        "  the kernel's global OOM killer acts when the workloads have taken the memory that was",
        "  available at the start (MemTotal - MemAvailable, si_mem_available), page cache reclaimed",
        "  first; victims by badness with the kubelet's oom_score_adj. A node without swap thrashes",
        "  before it (reclaim of its programs' file pages): the kill comes at that point or later,",
        "  as late as the node's recorded stall or the scenario's end (exhaustsNode scenarios).",
        "  The kubelet's memory.available counts active page cache as used; once the free memory",
        "  is down to the zones' low watermarks the kernel reclaims that cache (inactive first),",
        "  so memory.available does not fall much below the memory that is neither anon nor cache",
        "  (slab, page tables) plus the watermark (Baseline.root_free_before_reclaim).",
    ]
    if s["errors"]:
        lines += ["", "The kubelet would refuse to start:"] + [f"  {e}" for e in s["errors"]]
    lines += ["", "Not modelled (predictions are made without them):"] + [f"  - {n}" for n in NOT_MODELLED]
    return "\n".join(lines)


def swap_text(profile: KubeletConfiguration, facts: NodeFacts) -> str:
    """One line: what the kubelet gives containers of each QoS class in swap on this node."""
    if facts.kubelet_minor < FIRST_SWAP_MINOR:
        return f"kubelet {facts.kubelet_version}: swap rules before 1.30 are not modelled"
    if not facts.swap_controller:
        return "no swap controller (swap accounting off): the kubelet writes no swap limit"
    node = f"node swap {format_binary_si(facts.swap_bytes)}"
    if profile.swap_behavior != "LimitedSwap":
        what = (
            "memory.swap.max 0 for every container"
            if facts.cgroup_version == 2
            else ("memory.memsw.limit_in_bytes = the memory limit (no swap beyond it)")
        )
        return f"{profile.swap_behavior or 'NoSwap (default)'}: {what}; {node}"
    if facts.cgroup_version != 2:
        return f"LimitedSwap needs cgroup v2: NoSwap here; {node}"
    share = facts.swap_bytes / facts.memory_capacity_bytes
    return (
        f"LimitedSwap: a Burstable container with request != limit gets memory.swap.max = request x "
        f"{share:.3f} (swap/MemTotal); Guaranteed, BestEffort and critical pods 0; {node}"
    )


# Kubelet features that act on node memory and that the model does not reproduce: a prediction
# for a node or scenario that depends on one of them is made without it.
NOT_MODELLED = (
    "local-storage eviction (nodefs/imagefs signals, inodes, ephemeral-storage limits, emptyDir sizeLimit)",
    "pid eviction (pid.available) and pods' pid limits beyond the pod cgroup's pids.max",
    "in-place pod resize (InPlacePodVerticalScaling): cgroup values are those of the pod as admitted",
    "swap in the eviction signals (memory.available ignores swap; a swapping pod's working set is "
    "modelled as if it stayed resident) and swap rules of kubelets before 1.30",
    "MemoryQoS throttling: a leak past memory.high with nothing to reclaim (anon memory, no swap) "
    "crawls at the pace of direct reclaim (measured on a 4 GiB TCG guest: 0.08 MiB/s, 240 to 245 "
    "MiB of a 256 MiB limit in 60 s), so memory.max may never be reached; the model predicts the "
    "OOM kill at memory.max as if memory.high were absent",
    "image and container garbage collection (eviction reclaims node-level resources before pods)",
    "the eviction loop's drift: it sleeps 10 s after each sync, and a sync takes 0.2-1 s on a TCG "
    "guest (28 s while the node thrashed); predictions use a 10 s period from every phase, and a "
    "run judges an eviction against the kubelet's recorded syncs (its log, kubelet_eviction_syncs)",
    "the eviction of a pod whose containers the kernel just killed: the killed process's memory is "
    "released while it exits (GiBs take a while), and the kubelet ranks a pod until its pod worker "
    "has seen it terminate (GetActivePods, up to a 1 s PLEG relist), so a sync just after a kill may "
    "still see the node short and evict the dead pod (reason Evicted over the OOM kill; seen 0.04 s "
    "after a kill, S4) instead of another; the model frees a killed process's memory at once and "
    "drops its pod the moment it dies",
    "the scheduler: pods are bound to the node as given; only the kubelet's own admission is modelled",
    "the CPU manager beyond its topology hints, and device plugins / DRA",
)
