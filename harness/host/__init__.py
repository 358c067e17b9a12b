"""The host's own kernel interfaces, at the bottom of the package: the cgroup filesystem (the
harness-owned tree, hierarchies, removal) and probes of what this host allows.

Nothing here imports another harness package but ``harness.errors`` and ``harness.procs``.
"""
