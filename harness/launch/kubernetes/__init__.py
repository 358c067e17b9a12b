"""``kubernetes`` backend: workloads as pods on the local cluster's real kubelet.

Pods go through the official Python client as bare pods bound to the node (``spec.nodeName``: no
scheduler; the kubelet runs its own admission), ``imagePullPolicy: Never`` with the locally imported
leak image, QoS from the workload's resources, priority through PriorityClasses, and
``io.harness.*`` labels so that ``harness cleanup`` finds them.

One concern per module:

* ``backend``   the Backend: launch, poll, stop, teardown, and the typed hooks (node view, baseline,
                the kubelet's start, what the kubelet created);
* ``profiles``  restarting the kubelet with a scenario's profile, and rolling back a refused one;
* ``watch``     pod and event watches, node conditions and ``/stats/summary`` polled once a second;
* ``admission`` a node without MemoryPressure before each scenario, asked of the kubelet by a probe;
* ``pods``      manifests, PriorityClasses, names and labels, deleting pods and waiting for them;
* ``logs``      the leak program's JSON lines from the container's CRI log file;
* ``node``      the node as the kubelet sees it: its baseline usage and NUMA sizes.

Workloads with ``placement: host`` run as containerd tasks of the cluster's own containerd in the
``harness`` namespace (never ``k8s.io``, so the kubelet neither sees nor collects them), in a harness
cgroup capped at their ``leak.max``: the node-wide memory the kubelet sees includes them.
"""

from harness.launch.kubernetes.backend import KubernetesBackend
from harness.launch.kubernetes.pods import NAMESPACE

__all__ = ["NAMESPACE", "KubernetesBackend"]
