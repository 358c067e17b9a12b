"""Between scenarios: is the node still healthy? A daemon that died (containerd, the kubelet, the
Docker engine) is recorded in the run's events and stops the run with a :class:`HostError` (the
host failed, not the kubelet's behaviour); the scenarios done so far keep their verdicts."""

from __future__ import annotations

from harness.errors import HarnessError, HostError
from harness.scenario.context import RunContext


def require_healthy(run: RunContext, *, after: str | None, before: str | None) -> None:
    """Raise :class:`HostError` (after recording a ``host_failure`` event) if the backend reports a
    daemon down."""
    problems = run.backend.health()
    if not problems:
        return
    where = f"after scenario {after}" if after else "before the first scenario"
    run.events.add("harness", "host_failure", scenario=after, detail="; ".join(problems))
    run.progress.say(f"harness: the node is not healthy {where}: " + "; ".join(problems))
    raise HostError(
        f"the node is not healthy {where}"
        + (f" (scenario {before} not started)" if before else "")
        + ": "
        + "; ".join(problems)
    )


def as_host_failure(run: RunContext, scenario: str, exc: HarnessError) -> HarnessError:
    """An error in a scenario while a daemon is down is the host's failure: a :class:`HostError`
    naming the daemon (recorded as a ``host_failure`` event); otherwise ``exc`` itself."""
    problems = run.backend.health()
    if not problems:
        return exc
    run.events.add("harness", "host_failure", scenario=scenario, detail="; ".join(problems))
    return HostError(f"scenario {scenario}: " + "; ".join(problems) + f" ({str(exc).splitlines()[0]})")
