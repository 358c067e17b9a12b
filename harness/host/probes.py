"""What this host allows the harness to do, probed rather than assumed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# what `harness lab image` puts in its guests (harness/vmlab/image.py): the seed disk's applier
LAB_VM_MARKERS = (Path("/usr/local/sbin/harness-seed"), Path("/etc/systemd/system/harness-seed.service"))


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


def disposable_host(markers: tuple[Path, ...] = LAB_VM_MARKERS) -> str | None:
    """Why this host may be run out of memory on purpose (a scenario with ``exhaustsNode``), or
    None: a guest of ``harness lab`` (its image's seed unit is there), or a host whose operator
    set ``HARNESS_DISPOSABLE_HOST=1``."""
    if os.environ.get("HARNESS_DISPOSABLE_HOST") == "1":
        return "HARNESS_DISPOSABLE_HOST=1"
    if all(m.exists() for m in markers):
        return "a harness lab VM"
    return None
