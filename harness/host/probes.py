"""What this host allows the harness to do, probed rather than assumed."""

from __future__ import annotations

import subprocess


def probe_negative_oom_score_adj() -> bool:
    """Can this host give a child a negative oom_score_adj? (needs CAP_SYS_RESOURCE)

    Tries to write -1 to a short-lived child's ``/proc/<pid>/oom_score_adj``.
    """
    child = subprocess.Popen(["sleep", "5"], stdin=subprocess.DEVNULL)
    try:
        with open(f"/proc/{child.pid}/oom_score_adj", "w") as f:
            f.write("-1")
        return True
    except PermissionError:
        return False
    finally:
        child.kill()
        child.wait()
