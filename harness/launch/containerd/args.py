"""The arguments of ``ctr run`` for one detached task."""

from __future__ import annotations

from pathlib import Path

from harness.launch.containerd.names import CGROUP_MOUNT


def ctr_run_args(
    image: str,
    cid: str,
    argv: list[str],
    *,
    cgroup: str,
    labels: dict[str, str],
    log: Path,
    pidfile: Path,
    runc_root: Path,
    memory_limit: int | None,
) -> list[str]:
    """The arguments of ``ctr run`` (after ``ctr --address A --namespace N``) for one detached task."""
    args = ["run", "--detach", "--cgroup", cgroup, "--log-uri", f"file://{log}", "--pid-file", str(pidfile)]
    args += ["--runc-root", str(runc_root), "--mount", CGROUP_MOUNT]
    for k, v in sorted(labels.items()):
        args += ["--label", f"{k}={v}"]
    if memory_limit is not None:
        args += ["--memory-limit", str(memory_limit)]
    return [*args, image, cid, *argv]
