"""Namespaces, ids and labels of the harness's containerd objects."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from harness.errors import HarnessError

NAMESPACE = "harness"
REFUSED_NAMESPACES = ("k8s.io",)  # the kubelet's (CRI) namespace: never put or remove anything there
LABEL_SCENARIO = "io.harness.scenario"
CONTAINER_PREFIX = "harness-"
IMAGE_CACHE = Path(os.environ.get("HARNESS_IMAGE_CACHE", "/var/lib/harness/images"))
EVENT_TOPICS = ("/tasks/oom", "/tasks/exit", "/tasks/start", "/tasks/delete")
CGROUP_MOUNT = "type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=ro:nosuid:noexec:nodev"
_ID_BAD = re.compile(r"[^A-Za-z0-9._-]+")


def check_namespace(namespace: str) -> str:
    """The namespace, if the harness may use it; ``k8s.io`` (the kubelet's) is refused."""
    if not namespace or namespace in REFUSED_NAMESPACES:
        raise HarnessError(
            f"containerd namespace {namespace!r} is refused: the harness works only in its own "
            f"namespace (default {NAMESPACE!r}), never in the kubelet's k8s.io"
        )
    if _ID_BAD.search(namespace):
        raise HarnessError(f"containerd namespace {namespace!r}: use letters, digits, '.', '_' or '-'")
    return namespace


def run_prefix(run_id: str) -> str:
    """The container-id prefix of one run: ``harness-<8 hex of the run id>-``."""
    return f"{CONTAINER_PREFIX}{hashlib.sha256(run_id.encode()).hexdigest()[:8]}-"


def container_id(run_id: str, scenario: str, workload: str) -> str:
    """A valid containerd id (``[A-Za-z0-9]+([._-][A-Za-z0-9]+)*``, <= 76 chars), unique per run."""
    tail = hashlib.sha256(f"{run_id}/{scenario}/{workload}".encode()).hexdigest()[:6]
    body = _ID_BAD.sub("-", f"{scenario}-{workload}")
    body = re.sub(r"[._-]{2,}", "-", body).strip("._-")[:50].rstrip("._-")
    return f"{run_prefix(run_id)}{body}-{tail}"


# --------------------------------------------------------------------------- ctr events
