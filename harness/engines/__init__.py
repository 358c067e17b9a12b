"""Container engines the project starts and owns (never the host's system daemons).

Nothing is started at import time; call e.g. :func:`harness.engines.docker.ensure_docker`.
"""

from __future__ import annotations

from typing import Any

from harness.engines import docker

__all__ = ["DockerEngine", "cleanup_cgroup_parent", "docker_status", "ensure_docker"]


def __getattr__(name: str) -> Any:
    # lazy, so that ``python -m harness.engines.docker`` does not import the module twice
    if name in __all__:
        return getattr(docker, name)
    raise AttributeError(name)
