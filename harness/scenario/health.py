"""Is the node still healthy? Checked while a scenario waits for its workloads and between scenarios.
A daemon that died (containerd, the kubelet, the Docker engine) is recorded in the run's events; the
scenario it died in stops waiting and is judged on the evidence so far (its verdicts say so), and the
run stops with a :class:`HostError` (the host failed, not the kubelet's behaviour, exit 3) instead of
starting the next scenario on a broken node; the scenarios done so far keep their verdicts."""

from __future__ import annotations

from harness.errors import HarnessError, HostError
from harness.scenario.context import RunContext
from harness.verdict import Verdict


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


def record_failure(run: RunContext, scenario: str, problems: list[str]) -> list[str]:
    """A daemon found down while the scenario runs (by the wait step): recorded as a
    ``host_failure`` event and said at once; returns ``problems``."""
    run.events.add("harness", "host_failure", scenario=scenario, detail="; ".join(problems))
    run.progress.say(
        f"harness: the node failed during scenario {scenario}: "
        + "; ".join(problems)
        + " (the scenario stops here; its workloads are judged on the evidence so far)"
    )
    return problems


def note_in_verdicts(verdicts: list[Verdict], problems: list[str]) -> None:
    """Every verdict of a scenario whose node failed under it says so (a reason and a host
    deviation): the outcome was judged on the evidence gathered until the failure."""
    text = (
        "the node failed during the scenario: " + "; ".join(problems) + " (judged on the evidence until then)"
    )
    for v in verdicts:
        v.reasons.append(text)
        v.host_deviations.append(text)
