"""One scenario, as named steps over typed objects (``pipeline.run_scenario`` reads top to bottom).

    resolve  the suite's scenario as this backend's node sees it: a new object, never mutated
    predict  the model's outcome per workload on the planned timeline
    launch   the node (a kubelet restarted for the profile), then every workload, sampled
    warm-up  touch and release the scenario's memory where fresh memory faults in slowly
    observe  what the kubelet created (cgroup values, memory-manager state), judged at once
    wait     until every workload ended or the scenario's timeout; stop what still runs
    teardown always, whatever happened above
    as-run   the prediction again with each program's real start and pace
    classify each workload's outcome from independent evidence
    judge    observed against predicted, with a sentence for every mismatch

The run (``harness.run``) keeps what is suite-wide: signals, run.json, the tables.
"""

from harness.scenario.context import RunContext, ScenarioResult
from harness.scenario.pipeline import run_scenario

__all__ = ["RunContext", "ScenarioResult", "run_scenario"]
