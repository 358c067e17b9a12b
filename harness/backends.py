"""The backends by name: the one registry that the suite loader, the commands and the run use.

A backend class is imported on first use (``backend_class``): Docker's and Kubernetes' client
libraries load only when a run asks for that backend.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Literal, get_args

from harness.errors import HarnessError

if TYPE_CHECKING:  # the classes live above this module; the registry names them by path only
    from harness.launch.base import Backend

BackendName = Literal["process", "docker", "containerd", "kubernetes"]
NAMES: tuple[str, ...] = get_args(BackendName)
_CLASSES: dict[str, str] = {
    "process": "harness.launch.process:ProcessBackend",
    "docker": "harness.launch.docker:DockerBackend",
    "containerd": "harness.launch.containerd:ContainerdBackend",
    "kubernetes": "harness.launch.kubernetes:KubernetesBackend",
}


def backend_class(name: str) -> type[Backend]:
    """The class of backend ``name`` (imported now); a clear error for an unknown name."""
    try:
        module, _, cls = _CLASSES[name].partition(":")
    except KeyError:
        raise HarnessError(f"unknown backend {name!r} ({', '.join(NAMES)})") from None
    found: type[Backend] = getattr(importlib.import_module(module), cls)
    return found


def get_backend(name: str) -> Backend:
    """A new instance of backend ``name``."""
    return backend_class(name)()
