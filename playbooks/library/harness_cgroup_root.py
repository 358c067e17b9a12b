#!/usr/bin/python
"""Ansible module: make (or remove) a kubelet cgroupRoot in every cgroup hierarchy.

The kubelet refuses to start when its ``cgroupRoot`` is missing in any hierarchy it uses
("cgroup [...] has some missing paths"). On cgroup v1 each controller is its own mount, so the
directory is created under each of them (and the named ``systemd`` one); a new v1 cpuset cgroup
starts with empty ``cpuset.cpus``/``cpuset.mems`` and gets its parent's values. On v2 the
directory is created once and the parent's controllers are enabled for it.

``state: absent`` removes the directory and everything below it (deepest first), as long as no
process is left inside; it reports which directories could not be removed.
"""

from __future__ import annotations

import os
import time

DOCUMENTATION = r"""
---
module: harness_cgroup_root
short_description: Create or remove a kubelet cgroupRoot in every cgroup hierarchy
options:
  path:
    description: The cgroup path, e.g. /lab-a (relative to each hierarchy's root).
    type: str
    required: true
  state:
    description: present or absent.
    type: str
    default: present
    choices: [present, absent]
author: kubelet memory harness
"""

RETURN = r"""
created:
  description: Directories created.
  type: list
  returned: always
removed:
  description: Directories removed.
  type: list
  returned: always
"""


def hierarchies(mountinfo: str) -> list[tuple[str, str, set[str]]]:
    """(mount point, fstype, options) of every cgroup and cgroup2 mount."""
    out = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        f = left.split()
        r = right.split()
        if len(f) < 5 or len(r) < 3 or r[0] not in ("cgroup", "cgroup2"):
            continue
        out.append((f[4], r[0], set(r[2].split(","))))
    return out


def ensure(path: str, mountinfo: str) -> list[str]:
    rel = path.strip("/")
    if not rel or ".." in rel.split("/"):
        raise ValueError(f"invalid cgroup path {path!r}")
    created: list[str] = []
    for mnt, fstype, opts in hierarchies(mountinfo):
        if fstype == "cgroup2" and any(m[1] == "cgroup" and "memory" in m[2] for m in hierarchies(mountinfo)):
            continue  # hybrid host: the kubelet uses the v1 hierarchies
        cur = mnt
        for part in rel.split("/"):
            parent, cur = cur, os.path.join(cur, part)
            if os.path.isdir(cur):
                continue
            if fstype == "cgroup2":
                _enable_controllers(parent)
            os.mkdir(cur)
            created.append(cur)
            if fstype == "cgroup" and "cpuset" in opts:
                for name in ("cpuset.cpus", "cpuset.mems"):
                    mine = os.path.join(cur, name)
                    with open(mine) as f:
                        empty = not f.read().strip()
                    if empty:
                        with open(os.path.join(parent, name)) as f:
                            value = f.read().strip()
                        with open(mine, "w") as f:
                            f.write(value)
        if fstype == "cgroup2":
            _enable_controllers(cur)
    return created


def _enable_controllers(d: str) -> None:
    try:
        with open(os.path.join(d, "cgroup.controllers")) as f:
            avail = f.read().split()
        with open(os.path.join(d, "cgroup.subtree_control")) as f:
            enabled = set(f.read().split())
    except OSError:
        return
    for c in avail:
        if c in ("cpu", "cpuset", "memory", "pids", "hugetlb", "io") and c not in enabled:
            try:
                with open(os.path.join(d, "cgroup.subtree_control"), "w") as f:
                    f.write(f"+{c}")
            except OSError:
                pass


def remove(path: str, mountinfo: str, timeout: float = 10.0) -> tuple[list[str], list[str]]:
    rel = path.strip("/")
    if not rel:
        raise ValueError("refusing to remove the cgroup root itself")
    removed: list[str] = []
    failed: list[str] = []
    for mnt, _fstype, _opts in hierarchies(mountinfo):
        top = os.path.join(mnt, rel)
        if not os.path.isdir(top):
            continue
        dirs = [dp for dp, _dn, _fn in os.walk(top)]
        for d in sorted(dirs, key=lambda p: p.count("/"), reverse=True):
            deadline = time.monotonic() + timeout
            while True:
                try:
                    os.rmdir(d)
                    removed.append(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if time.monotonic() > deadline:
                        failed.append(f"{d}: {exc.strerror}")
                        break
                    time.sleep(0.05)
    return removed, failed


def main() -> None:  # pragma: no cover - runs under Ansible
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={
            "path": {"type": "str", "required": True},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
        },
        supports_check_mode=False,
    )
    with open("/proc/self/mountinfo") as f:
        mountinfo = f.read()
    try:
        if module.params["state"] == "present":
            created = ensure(module.params["path"], mountinfo)
            module.exit_json(changed=bool(created), created=created, removed=[])
        removed, failed = remove(module.params["path"], mountinfo)
        if failed:
            module.fail_json(msg="could not remove " + "; ".join(failed), removed=removed, created=[])
        module.exit_json(changed=bool(removed), removed=removed, created=[])
    except (OSError, ValueError) as exc:
        module.fail_json(msg=f"cgroup root {module.params['path']}: {exc}")


if __name__ == "__main__":
    main()
