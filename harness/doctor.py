"""``harness doctor``: what each backend needs on this host, checked without changing anything.

The backends' own ``sanity_checks`` (what a run calls before it starts) bring the project's
Docker engine and containerd up on demand and import the leak image: right before a run, wrong
for a diagnosis. Here the Docker and containerd checks only look: binaries on disk, the daemon's
status (``docker_status`` / ``containerd.status``, which never start a daemon) and, when the
daemon already answers, its cgroup driver and whether the image is imported. The process and
kubernetes backends' checks already only look (a cgroup's writability, a short-lived child's
``oom_score_adj``, the local cluster's pid files and its node), so they are used as they are.

``harness doctor --fix`` runs the backends' own checks, which start what is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from harness.backends import get_backend
from harness.engines.containerd import ctr, default_instance, status
from harness.engines.docker import _client, docker_status
from harness.errors import HarnessError
from harness.images import LEAK_IMAGE, image_name
from harness.launch.base import Check
from harness.launch.containerd.backend import binary_checks

SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def docker_checks() -> list[Check]:

    checks = [
        Check(
            "dockerd binary",
            shutil.which("dockerd", path=SYSTEM_PATH) is not None,
            "Debian package docker.io",
            "run scripts/setup.sh (apt-get install docker.io)",
        )
    ]
    if not checks[0].ok:
        return checks
    st = docker_status()
    if not st.get("answering"):
        checks.append(_not_running(str(st["socket"])))
        return checks
    driver = st.get("cgroup_driver")
    checks.append(Check("engine", True, f"Docker {st.get('server_version')} on {st['socket']}"))
    checks.append(
        Check(
            "cgroup driver",
            driver == "cgroupfs",
            f"{driver}",
            "the harness places containers with cgroupfs paths",
        )
    )
    checks.append(_docker_image(str(st["socket"])))
    return checks


def _not_running(socket: str) -> Check:
    """An engine that does not answer: fine for doctor (a run starts it), said with the fix."""
    return Check(
        "engine",
        True,
        f"not running (started on demand by a run; socket {socket})",
        "harness doctor --fix starts it now",
    )


def _docker_image(socket: str) -> Check:

    name = image_name("leak")
    c = _client(Path(socket), 10)
    try:
        c.images.get(name)
        return Check("leak image", True, name)
    except Exception:
        return Check(
            "leak image", True, f"{name} not imported yet (a run imports it)", "harness doctor --fix"
        )
    finally:
        c.close()


def containerd_checks() -> list[Check]:

    checks = binary_checks()
    if not all(c.ok for c in checks):
        return checks
    inst = default_instance()
    st = status(inst)
    if not st.get("answering"):
        checks.append(_not_running(str(st["socket"])))
        return checks
    checks.append(Check("engine", True, f"containerd {st.get('server_version')} on {st['socket']}"))

    images = ctr(inst, "images", "ls", "-q", namespace="harness", check=False).stdout.split()
    checks.append(
        Check(
            "leak image",
            True,
            LEAK_IMAGE if LEAK_IMAGE in images else f"{LEAK_IMAGE} not imported yet (a run imports it)",
        )
    )
    return checks


def backend_checks(name: str) -> list[Check]:
    """The read-only checks of one backend."""
    if name == "docker":
        return docker_checks()
    if name == "containerd":
        return containerd_checks()

    b = get_backend(name)
    try:
        return b.sanity_checks()
    finally:
        b.close()


def fix_checks(name: str) -> list[Check]:
    """The backend's own checks: they start the engine and import the image when missing."""

    b = get_backend(name)
    try:
        return b.sanity_checks()
    finally:
        b.close()


def run_doctor(backends: list[str], echo: Callable[[str], None], *, fix: bool = False) -> int:
    """Print one line per check; 0 when nothing is missing, 1 otherwise."""
    worst = 0
    for name in backends:
        try:
            checks = (fix_checks if fix else backend_checks)(name)
        except (HarnessError, ImportError) as exc:
            echo(f"{name}: unavailable: {exc}")
            worst = 1
            continue
        for c in checks:
            mark = "ok " if c.ok else "MISSING"
            line = f"{name:<11} {mark:<8} {c.name}: {c.detail}"
            if c.fix and (not c.ok or "harness doctor --fix" in c.fix):
                line += f"  -> {c.fix}"
            echo(line)
            if not c.ok:
                worst = 1
    return worst
