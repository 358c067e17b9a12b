"""``containerd`` backend (one concern per module: ``names``, ``args``, ``events``, ``oomadj``, ``backend``): the leak image as containerd tasks, through ``ctr``, in the mirrored cgroup tree.

The project's own containerd (harness.engines.containerd, root ``/var/lib/harness/containerd``,
socket ``/run/harness/containerd/containerd.sock``) is started if it does not answer. Workloads run
in the namespace ``harness`` (never ``k8s.io``: the kubelet of a node must neither see nor
garbage-collect them). Each task gets, through ``ctr run -d``:

* ``--cgroup /harness/<run>/<scenario>/<the model's path>``: exactly the path the process backend
  uses, so the kernel's ``task_memcg`` is the model's cgroup (runc creates it in every v1
  hierarchy; the scenario's tree removal walks them all);
* ``--memory-limit`` = the model's container limit (not for host workloads);
* labels ``io.harness.managed/run/workload/scenario`` for cleanup;
* ``--log-uri file://...``: the shim writes the leak program's JSON lines to a file we follow;
* ``--runc-root <instance state>/runc`` (not the shared ``/run/containerd/runc``);
* a read-only ``cgroup`` mount at ``/sys/fs/cgroup``, as Docker and the CRI plugin give every
  container (``ctr``'s default spec has none; without it the leak program cannot find its own
  limit and a heap cap would be taken from MemTotal).

``oom_score_adj``: ``ctr`` 1.6 has no flag for it (``ctr run --config`` replaces the whole spec and
then refuses an image). A task inherits its shim's value (containerd's + 1 = 1 here), so right
after ``ctr run`` returns the harness writes the model's value to ``/proc/<pid>/oom_score_adj``
of every process in the container's cgroup - a child of the shim, so positive values always
work; negative ones need CAP_SYS_RESOURCE and are clamped and recorded as a deviation
(:func:`harness.launch.base.applied_oom_score_adj`), as with Docker. The delay between the task's
start and that write is measured (``benchmarks/bench_containerd_launch.py``) and recorded per
workload (event ``oom_score_adj_set``); a workload that allocated before it is noted.

Runtime events: one ``ctr events`` process per run (filtered to the namespace and to
``/tasks/`` topics, stopped by pid at :meth:`close`) records ``/tasks/oom`` and ``/tasks/exit``
(and start/delete) with containerd's own timestamps into the run's events, source
``containerd``. Exit statuses come from ``/tasks/exit``; ``/tasks/oom`` becomes the runtime's
OOM view used by the classifier (on cgroup v1 the shim gets an OOM notification for every
container below an OOMing ancestor, so it is not proof of a kill - the classifier reports
the disagreement).
"""

from harness.launch.containerd.args import ctr_run_args
from harness.launch.containerd.backend import ContainerdBackend, active_snapshots, cleanup_namespace
from harness.launch.containerd.events import (
    CtrEvent,
    EventFollower,
    parse_event_line,
    parse_rfc3339,
    wall_to_mono,
)
from harness.launch.containerd.names import NAMESPACE, check_namespace, container_id, run_prefix
from harness.launch.containerd.oomadj import read_oom_score_adj, write_oom_score_adj

__all__ = [
    "NAMESPACE",
    "ContainerdBackend",
    "CtrEvent",
    "EventFollower",
    "active_snapshots",
    "check_namespace",
    "cleanup_namespace",
    "container_id",
    "ctr_run_args",
    "parse_event_line",
    "parse_rfc3339",
    "read_oom_score_adj",
    "run_prefix",
    "wall_to_mono",
    "write_oom_score_adj",
]
