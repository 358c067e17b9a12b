#!/usr/bin/python
"""Ansible module: deploy a kubelet profile verbatim, keep the previous one, reset manager state.

Files under ``config_dir``:

``config.yaml``                    the profile, byte for byte (``--config``)
``config.d/50-harness-host.conf``  this host's settings (socket, ports, cgroupRoot...; ``--config-dir``)
``effective.json``                 the merged configuration the harness computed (for the next diff)
``previous/``                      the three files as they were before the last change (rollback)

The kubelet keeps CPU and memory manager state in checkpoint files under its root dir and
refuses to start when they disagree with the configuration, e.g. (kubelet 1.33)::

    could not restore state from checkpoint: [memorymanager] configured policy "Static" differs
    from state checkpoint policy "None", please drain this node and delete the memory manager
    checkpoint file ".../memory_manager_state" before restarting Kubelet

So when the policy or the reservations a manager uses change, its state file is removed
(``cpu_manager_state``: cpuManagerPolicy, its options, reservedSystemCPUs, cpu reservations;
``memory_manager_state``: memoryManagerPolicy, reservedMemory, memory and hugepages
reservations, evictionHard memory.available).

``state: rollback`` restores ``previous/`` (and resets manager state the same way, between the
configuration that failed and the one restored). Without a previous configuration the failed one
is removed, so the kubelet is not restarted with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil

DOCUMENTATION = r"""
---
module: harness_kubelet_config
short_description: Deploy a kubelet profile verbatim with a host drop-in, keeping the previous config
options:
  config_dir:
    description: Directory holding config.yaml, config.d/ and previous/.
    type: path
    required: true
  root_dir:
    description: The kubelet's --root-dir (where cpu_manager_state and memory_manager_state live).
    type: path
    required: true
  profile:
    description: The KubeletConfiguration profile text, written verbatim.
    type: str
  dropin:
    description: This host's KubeletConfiguration fields (written as config.d/50-harness-host.conf).
    type: dict
    default: {}
  effective:
    description: The merged configuration (profile + drop-in), used to decide state resets.
    type: dict
    default: {}
  state:
    description: present (deploy) or rollback (restore the previous files).
    type: str
    default: present
    choices: [present, rollback]
author: kubelet memory harness
"""

RETURN = r"""
cleared:
  description: Manager state files removed, with the reason.
  type: dict
  returned: always
previous:
  description: Whether a previous configuration was saved (present) or restored (rollback).
  type: bool
  returned: always
"""

DROPIN = os.path.join("config.d", "50-harness-host.conf")
FILES = ("config.yaml", DROPIN, "effective.json")
CPU_STATE = "cpu_manager_state"
MEMORY_STATE = "memory_manager_state"


def _get(cfg: dict, key: str, default: object = None) -> object:  # type: ignore[type-arg]
    v = cfg.get(key, default)
    return default if v is None else v


def manager_keys(cfg: dict) -> dict[str, dict[str, object]]:  # type: ignore[type-arg]
    """The settings each manager's checkpoint depends on (defaults filled in, names as the kubelet)."""
    kube = _get(cfg, "kubeReserved", {}) or {}
    system = _get(cfg, "systemReserved", {}) or {}
    evh = _get(cfg, "evictionHard", None)
    assert isinstance(kube, dict) and isinstance(system, dict)

    def res(pred: object) -> dict[str, object]:
        return {
            "kubeReserved": {k: v for k, v in sorted(kube.items()) if pred(k)},  # type: ignore[operator]
            "systemReserved": {k: v for k, v in sorted(system.items()) if pred(k)},  # type: ignore[operator]
        }

    return {
        CPU_STATE: {
            "cpuManagerPolicy": str(_get(cfg, "cpuManagerPolicy", "none")).lower(),
            "cpuManagerPolicyOptions": _get(cfg, "cpuManagerPolicyOptions", {}),
            "reservedSystemCPUs": _get(cfg, "reservedSystemCPUs", ""),
            **res(lambda k: k == "cpu"),
        },
        MEMORY_STATE: {
            "memoryManagerPolicy": str(_get(cfg, "memoryManagerPolicy", "None")),
            "reservedMemory": _get(cfg, "reservedMemory", []),
            "evictionHard.memory.available": (evh or {}).get("memory.available")
            if isinstance(evh, dict)
            else None,
            **res(lambda k: k == "memory" or str(k).startswith("hugepages-")),
        },
    }


def state_resets(old: dict | None, new: dict) -> dict[str, str]:  # type: ignore[type-arg]
    """State file -> reason, for every manager whose settings differ between ``old`` and ``new``."""
    if old is None:
        return {}
    a, b = manager_keys(old), manager_keys(new)
    out = {}
    for f in (CPU_STATE, MEMORY_STATE):
        changed = sorted(k for k in set(a[f]) | set(b[f]) if a[f].get(k) != b[f].get(k))
        if changed:
            out[f] = ", ".join(
                f"{k}: {json.dumps(a[f].get(k))} -> {json.dumps(b[f].get(k))}" for k in changed
            )
    return out


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def _write(path: str, text: str, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _load_json(text: str | None) -> dict | None:  # type: ignore[type-arg]
    if text is None:
        return None
    try:
        v = json.loads(text)
    except ValueError:
        return None
    return v if isinstance(v, dict) else None


def render_dropin(dropin: dict) -> str:  # type: ignore[type-arg]
    doc = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", **dropin}
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def _wanted(profile: str, dropin: dict, effective: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {
        "config.yaml": profile,
        DROPIN: render_dropin(dropin),
        "effective.json": json.dumps(effective, indent=2, sort_keys=True) + "\n",
    }


def plan(config_dir: str, root_dir: str, profile: str, dropin: dict, effective: dict) -> dict[str, object]:  # type: ignore[type-arg]
    """What ``deploy`` would do, without writing (check mode): whether anything changes, the
    manager state files it would remove, and an Ansible ``diff`` per file (before/after)."""
    wanted = _wanted(profile, dropin, effective)
    current = {name: _read(os.path.join(config_dir, name)) for name in FILES}
    diff = [
        {
            "before_header": os.path.join(config_dir, n) if current[n] is not None else "(absent)",
            "after_header": os.path.join(config_dir, n),
            "before": current[n] or "",
            "after": wanted[n],
        }
        for n in FILES
        if current[n] != wanted[n]
    ]
    resets = state_resets(_load_json(current["effective.json"]), effective) if diff else {}
    would_clear = {n: r for n, r in resets.items() if os.path.exists(os.path.join(root_dir, n))}
    return {"changed": bool(diff), "diff": diff, "would_clear": would_clear}


def deploy(config_dir: str, root_dir: str, profile: str, dropin: dict, effective: dict) -> dict[str, object]:  # type: ignore[type-arg]
    wanted = _wanted(profile, dropin, effective)
    current = {name: _read(os.path.join(config_dir, name)) for name in FILES}
    if all(current[n] == wanted[n] for n in FILES):
        return {
            "changed": False,
            "previous": os.path.isdir(os.path.join(config_dir, "previous")),
            "cleared": {},
        }
    had_config = current["config.yaml"] is not None
    if had_config:
        prev = os.path.join(config_dir, "previous")
        shutil.rmtree(prev, ignore_errors=True)
        for name in FILES:
            if current[name] is not None:
                _write(os.path.join(prev, name), current[name] or "")
    resets = state_resets(_load_json(current["effective.json"]), effective)
    cleared = _clear(root_dir, resets)
    for name in FILES:
        _write(os.path.join(config_dir, name), wanted[name])
    return {"changed": True, "previous": had_config, "cleared": cleared}


def rollback(config_dir: str, root_dir: str) -> dict[str, object]:
    prev = os.path.join(config_dir, "previous")
    failed = _load_json(_read(os.path.join(config_dir, "effective.json")))
    if not os.path.isfile(os.path.join(prev, "config.yaml")):
        for name in FILES:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(config_dir, name))
        return {"changed": True, "previous": False, "cleared": {}}
    restored = _load_json(_read(os.path.join(prev, "effective.json")))
    resets = state_resets(failed, restored) if failed is not None and restored is not None else {}
    cleared = _clear(root_dir, resets)
    for name in FILES:
        text = _read(os.path.join(prev, name))
        if text is not None:
            _write(os.path.join(config_dir, name), text)
    return {"changed": True, "previous": True, "cleared": cleared}


def _clear(root_dir: str, resets: dict[str, str]) -> dict[str, str]:
    cleared = {}
    for name, reason in resets.items():
        path = os.path.join(root_dir, name)
        if os.path.exists(path):
            os.unlink(path)
            cleared[name] = reason
    return cleared


def main() -> None:  # pragma: no cover - runs under Ansible
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={
            "config_dir": {"type": "path", "required": True},
            "root_dir": {"type": "path", "required": True},
            "profile": {"type": "str"},
            "dropin": {"type": "dict", "default": {}},
            "effective": {"type": "dict", "default": {}},
            "state": {"type": "str", "default": "present", "choices": ["present", "rollback"]},
        },
        required_if=[("state", "present", ["profile"])],
        supports_check_mode=True,
    )
    p = module.params
    try:
        if p["state"] == "present" and (module.check_mode or module._diff):
            planned = plan(p["config_dir"], p["root_dir"], p["profile"], p["dropin"], p["effective"])
            if module.check_mode:
                module.exit_json(
                    changed=planned["changed"],
                    would_clear=planned["would_clear"],
                    **({"diff": planned["diff"]} if module._diff else {}),
                )
            result = deploy(p["config_dir"], p["root_dir"], p["profile"], p["dropin"], p["effective"])
            result["diff"] = planned["diff"]
        elif module.check_mode:  # rollback in check mode: say it would change, touch nothing
            module.exit_json(changed=True)
        elif p["state"] == "present":
            result = deploy(p["config_dir"], p["root_dir"], p["profile"], p["dropin"], p["effective"])
        else:
            result = rollback(p["config_dir"], p["root_dir"])
    except OSError as exc:
        module.fail_json(msg=f"kubelet config in {p['config_dir']}: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
