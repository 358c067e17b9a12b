"""The kubelet runs with each scenario's profile: restarted when it differs, rolled back when refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.cluster.build import ensure_built
from harness.launch.base import KubeletStart, ScenarioContext


def use_profile(cluster: Any, ctx: ScenarioContext) -> KubeletStart | None:
    """Restart the kubelet with the scenario's profile if it runs with another one.

    Returns how that start went (None when nothing changed). When the kubelet refuses the profile,
    it is started again with the previous one (the cluster stays usable) and the refusal is
    returned, with the kubelet's own error line: a refusal is the scenario's outcome (S9).
    """
    prof = ctx.scenario.profile
    if prof is None or not Path(prof.source).is_file():
        return None
    want = Path(prof.source).resolve()
    rec = cluster.record()
    current = Path(rec["kubelet_profile"]).resolve() if rec.get("kubelet_profile") else None
    if current == want:
        return None
    version = str(rec.get("version"))
    built = ensure_built(version)
    res = cluster.start_kubelet(built, cluster.kubelet_config(want, version), profile=want)
    ctx.events.add(
        "harness",
        "kubelet_restart",
        profile=str(want),
        ok=res.ok,
        seconds=res.seconds,
        detail=res.error or None,
    )
    start = KubeletStart(started=res.ok, seconds=res.seconds, error=res.error, log_tail=res.log_tail)
    if not res.ok:
        if current is not None:
            back = cluster.start_kubelet(built, cluster.kubelet_config(current, version), profile=current)
            ctx.events.add(
                "harness", "kubelet_restart", profile=str(current), ok=back.ok, seconds=back.seconds
            )
            if back.ok:
                cluster.wait_node_ready()
        return start
    cluster.wait_node_ready()
    return start
