"""Step 1: the suite's scenario as it will run on this backend's node (a new object)."""

from __future__ import annotations

from pathlib import Path

import yaml

from harness import quantity
from harness.config.errors import load_yaml_mapping
from harness.config.kubelet import KubeletConfiguration, load_profile
from harness.config.node import NodeFacts
from harness.config.suite import Scenario
from harness.errors import HarnessError
from harness.model.layout import node_layout
from harness.model.predict import Baseline
from harness.model.sizing import size_workloads
from harness.model.validation import pod_resource_errors
from harness.scenario.context import ResolvedScenario, RunContext


def resolve(spec: Scenario, run: RunContext) -> ResolvedScenario:
    """The node as the backend sees it, and the profile the scenario derives from it."""
    assert spec.node is not None and spec.profile is not None, "load the suite with load_suite()"
    node = real_node(spec.node, run)
    baseline = run.backend.baseline()
    profile = spec.profile
    if baseline is not None and spec.pressure_margin:
        profile = pressure_profile(spec, node, profile, baseline, run.store.dir / "profiles")
        run.progress.say(
            f"  node-pressure threshold from the idle node: evictionHard memory.available="
            f"{(profile.eviction_hard or {}).get('memory.available')} ({profile.source})"
        )
    sc = size_workloads(spec.model_copy(update={"node": node, "profile": profile}))
    if run.backend.kubelet:
        refuse_invalid_pods(sc)
    for w, before in zip(sc.workloads, spec.workloads, strict=True):
        if before.memory_from_node:
            run.progress.say(
                f"  {w.name}: memory {w.resources.requests.get('memory')} = {before.memory_from_node} on this node"
            )
    return ResolvedScenario(
        scenario=sc, baseline=baseline, layout=node_layout(sc, kubelet=run.backend.kubelet)
    )


def refuse_invalid_pods(sc: Scenario) -> None:
    """A pod the API server would refuse (422, ``model.validation``) stops the scenario before
    anything starts, naming the workload and each field, as the API server would."""
    assert sc.node is not None and sc.profile is not None
    for w in sc.workloads:
        if w.placement != "pod":
            continue
        errors = pod_resource_errors(w.to_pod("harness"), sc.profile, sc.node.kubelet_minor)
        if errors:
            raise HarnessError(
                f"scenario {sc.name}: workload {w.name}: the API server (kubelet version "
                f"{sc.node.kubelet_version}) refuses this pod: "
                + "; ".join(f"{e.field}: {e.reason}" for e in errors)
            )


def real_node(node: NodeFacts, run: RunContext) -> NodeFacts:
    """A copy of the suite's node with what this host and backend make true: negative oom_score_adj
    only where the host allows it; on a real kubelet this host's memory, each NUMA node as the
    kubelet saw it at its start, and the running kubelet's version."""
    out = node.model_copy(deep=True)
    if not run.host.get("negativeOomScoreAdj", True):
        out.negative_oom_score_adj = False
    view = run.backend.node_view(run.host)
    if view is None:
        return out
    if view.memory_capacity_bytes:
        out.memory_capacity_bytes = view.memory_capacity_bytes
    for n in out.numa_nodes:
        if str(n.id) in view.numa_memory_bytes:
            n.memory_bytes = view.numa_memory_bytes[str(n.id)]
    if view.kubelet_version:
        out.kubelet_version = view.kubelet_version
    return out


def pressure_profile(
    spec: Scenario, node: NodeFacts, profile: KubeletConfiguration, baseline: Baseline, out_dir: Path
) -> KubeletConfiguration:
    """The scenario's profile with evictionHard memory.available = available now - pressureMargin.

    available = capacity - root working set, as the eviction manager computes memory.available
    (pkg/kubelet/eviction/helpers.go makeSignalObservations); rounded down to MiB. The derived
    profile is written next to the run (``profiles/<scenario>.yaml``) and used by kubelet and model.
    """
    assert spec.pressure_margin
    available = node.memory_capacity_bytes - int(baseline.root_working_set)
    threshold_mib = (available - quantity.to_bytes(spec.pressure_margin)) >> 20
    if threshold_mib <= 0:
        raise HarnessError(
            f"scenario {spec.name}: memory.available is {available >> 20} MiB, less than pressureMargin "
            f"{spec.pressure_margin}: the host is too busy for this scenario"
        )
    data = load_yaml_mapping(profile.source)
    data.setdefault("evictionHard", {})["memory.available"] = f"{threshold_mib}Mi"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{spec.name}.yaml"
    path.write_text(
        f"# {profile.source} with evictionHard memory.available = {available >> 20}Mi available at the\n"
        f"# scenario's start - pressureMargin {spec.pressure_margin} (harness/scenario/resolve.py)\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
    return load_profile(path)


def after_kubelet_start(res: ResolvedScenario, run: RunContext) -> ResolvedScenario:
    """The kubelet was restarted for this scenario: its node as it saw it at that start (NUMA sizes
    from its new checkpoint); the baseline and the derived profile stay those of the scenario."""
    assert res.scenario.node is not None
    sc = res.scenario.model_copy(update={"node": real_node(res.scenario.node, run)})
    return ResolvedScenario(scenario=size_workloads(sc), baseline=res.baseline, layout=res.layout)
