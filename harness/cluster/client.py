"""The official Kubernetes Python client, configured from the cluster's admin kubeconfig."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.cluster import Cluster


def api_client(cluster: Cluster | None = None, kubeconfig: Path | None = None) -> Any:
    """A ``kubernetes.client.ApiClient`` for the local cluster (or any kubeconfig)."""
    # lazy: the Kubernetes client loads only when a cluster is used
    from kubernetes import config as k8s_config

    path = kubeconfig or (cluster.admin_kubeconfig if cluster else None)
    if path is None or not Path(path).exists():
        raise HarnessError(f"kubeconfig {path} does not exist; start the cluster with `harness cluster up`")
    return k8s_config.new_client_from_config(config_file=str(path))
