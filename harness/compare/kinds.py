"""A host deviation's kind: what went wrong on the host, without the numbers of this run.

Deviations are written as sentences by the launchers and the run pipeline (``harness/run.py``
for a slow leak, ``harness/launch/base.py`` ``applied_oom_score_adj``, ``containerd.py`` and
``kubernetes.py`` for oom_score_adj). Their numbers are the host's own pace of the night (the
slow leak's MiB/s, a chunk's seconds), so two runs on the same host rarely write the same text.
The gate compares kinds; the sentences are shown as context.

Each known sentence has a pattern here (and a unit test with the sentence as the code writes it);
anything else falls back to the text with its numbers replaced by ``N``, so a new message still
compares by shape rather than by value.
"""

from __future__ import annotations

import re

# (kind, pattern): first match wins; patterns follow the f-strings of the places named above.
KNOWN: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        # harness/run.py (as-run schedule): SLOW_FRACTION of the asked rate not reached
        "slow leak: this host's page faults are slower than the schedule",
        re.compile(r"^the leak allocated .* MiB/s of the .* MiB/s asked .*this host's page faults"),
    ),
    (
        "slow leak: this host's file writes are slower than the schedule",
        re.compile(r"^the leak allocated .* MiB/s of the .* MiB/s asked .*this host's file writes"),
    ),
    (
        # harness/launch/base.py applied_oom_score_adj
        "negative oom_score_adj cannot be written (no CAP_SYS_RESOURCE)",
        re.compile(r"^oom_score_adj -?\d+ cannot be written on this host \(no CAP_SYS_RESOURCE\)"),
    ),
    (
        # harness/launch/kubernetes.py _bind_cgroup
        "oom_score_adj asked by the kubelet not applied (containerd restrict_oom_score_adj)",
        re.compile(
            r"^oom_score_adj -?\d+ asked by the kubelet, -?\d+ applied \(containerd restrict_oom_score_adj"
        ),
    ),
    (
        # harness/launch/containerd.py (set on every process of the task)
        "oom_score_adj could not be set on every process",
        re.compile(r"^oom_score_adj -?\d+ could not be set on every process"),
    ),
)

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def deviation_kind(message: str) -> str:
    """The stable key of a host deviation.

    >>> deviation_kind("the leak allocated 212 MiB/s of the 400 MiB/s asked (a chunk took up to "
    ...     "0.31 s, interval 0.1 s): this host's page faults are slower than the schedule; judged on "
    ...     "the as-run timeline")
    "slow leak: this host's page faults are slower than the schedule"
    >>> deviation_kind("cgroup memory.high 123456 not applied")
    'cgroup memory.high N not applied'
    """
    text = " ".join(str(message).split())
    for kind, pattern in KNOWN:
        if pattern.search(text):
            return kind
    return _NUMBER.sub("N", text)
