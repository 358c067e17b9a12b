"""Sampling: what really happened on the host, at a resolution finer than the kubelet's loop.

- :mod:`harness.sample.cgroupfs` — pure parsers of cgroup v1/v2 memory and cpuset files,
  working set as cAdvisor computes it, cgroup paths and host layout detection.
- :mod:`harness.sample.procfs` — ``/proc/meminfo``.
- :mod:`harness.sample.sampler` — the kept-fd, batched, streaming sampler (``samples.parquet``).
- :mod:`harness.sample.kmsg` — ``/dev/kmsg`` follower and OOM-kill parser.
- :mod:`harness.sample.oomwatch` — OOM counters by eventfd (v1) / inotify (v2) / polling.
"""
