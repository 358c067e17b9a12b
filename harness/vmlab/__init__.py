"""Lab hosts as virtual machines the harness builds and boots itself.

Real lab hosts are multi-socket, cgroup v2, systemd machines with the systemd cgroup driver and
often swap; this machine is none of that. ``harness lab`` gives the harness such hosts anywhere:

* ``image.py``  a Debian 12 guest image (mmdebstrap from this host's apt sources, ``mke2fs -d``,
  no loop mounts), cached under ``/var/lib/harness/lab/images/<key>`` by a hash of its inputs;
* ``seed.py``   per host keys and a small seed disk the guest reads at boot (host key,
  authorized key, hostname, swap), so known_hosts is exact from the first connection;
* ``qemu.py``   the QEMU command line (NUMA node per socket, user networking with
  ``restrict=on``, port forward on 127.0.0.1 only) and the KVM probe;
* ``lab.py``    ``up`` / ``status`` / ``down``, the registry of labs and the inventory written
  for ``harness provision`` and ``harness run --inventory``.
"""

from __future__ import annotations

import os
from pathlib import Path

LAB_ROOT = Path(os.environ.get("HARNESS_VMLAB_ROOT", "/var/lib/harness/lab"))
