"""The kubelet's memory-manager checkpoint against the model's state after the same admissions (S9, S10).

The model admits the running pods in launch order with their real uids (``model.admit.admit_pod``:
topology merge, then staticPolicy.Allocate), and the two states are compared entry by entry.
"""

from __future__ import annotations

from harness.config.suite import Scenario
from harness.launch.base import NodeObservations
from harness.model.admit import admit_pod
from harness.model.memorymanager import compare_states, initial_state, parse_state_file
from harness.verdict import Verdict


def memory_manager_diffs(sc: Scenario, obs: NodeObservations) -> list[str]:
    assert sc.profile is not None and sc.node is not None
    if obs.memory_manager_state is None:
        return [obs.memory_manager_error or f"cannot read {obs.memory_manager_state_path}"]
    try:
        actual = parse_state_file(obs.memory_manager_state)
    except ValueError as exc:
        return [f"cannot read {obs.memory_manager_state_path}: {exc}"]
    workloads = {w.name: w for w in sc.workloads}
    state = None
    for p in obs.pods:
        if not p.admitted:
            continue
        pod = workloads[p.workload].to_pod(p.namespace).model_copy(deep=True)
        pod.metadata.uid = p.uid
        _, state = admit_pod(pod, sc.profile, sc.node, state)
    if state is None:
        state = initial_state(sc.profile, sc.node)
    return compare_states(state, actual)


def memory_manager_verdict(sc: Scenario, obs: NodeObservations) -> Verdict:
    diffs = memory_manager_diffs(sc, obs)
    return Verdict.check(
        sc.name,
        "memory-manager-state",
        "state file as modelled",
        "as modelled" if not diffs else f"{len(diffs)} differences",
        not diffs,
        diffs,
    )
